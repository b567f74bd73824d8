"""Time MAML meta-iterations of ``train()`` on 1 and on 2 processes (torchrun).

Strong scaling: the meta-batch is fixed (32 tasks, Omniglot-sized random
images, Conv-4 with 64 channels, 5-way 1-shot, 1 query per class, one inner
step), and ``N`` processes draw ``32 / N`` tasks each; the gradients are
averaged with an all-reduce (gloo on the CPU, NCCL on GPUs). Each
configuration is one ``torchrun --standalone --nproc_per_node=N`` launch of
this file in ``--worker`` mode, which times ``metalearn.training.train`` itself:
an iteration is the time between two successive calls of the step function
(sampling, meta-loss, backward, all-reduce, optimiser step), median of
``--repeats`` after ``--warmup``. The worker also times an all-reduce of a
buffer the size of the gradient alone.

Run: ``python benchmarks/distributed_scaling.py [--device cpu] [--quick]``.
The default configurations are ``1x1`` (one process, one thread), ``1x2`` (one
process, two threads) and ``2x1`` (two processes of one thread): on a 2-core
CPU the fair comparison is ``2x1`` against ``1x2``, which use the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve()


def worker(args: argparse.Namespace) -> None:
    """One rank of one configuration: time train() and an all-reduce."""
    import torch.distributed as dist

    from metalearn import distributed
    from metalearn.maml import make_maml_step
    from metalearn.models import Conv4
    from metalearn.runtime import device_description
    from metalearn.training import TrainConfig, train
    from metalearn.zoo import prefers_vmap

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    world = distributed.join(device)
    torch.manual_seed(0)
    model = Conv4(1, ways=5, hidden=args.hidden).to(device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (200, 20, 1, 28, 28), dtype=torch.uint8,
                           generator=generator).to(device)
    tasks = args.meta_batch // world.size
    step = make_maml_step(
        model, images, ways=5, shots=1, queries=args.queries, meta_batch_size=tasks,
        inner_lr=0.4, steps=1, first_order=args.first_order,
        vectorise=prefers_vmap(device, "maml", 1, args.queries),
    )
    stamps: list[float] = []

    def timed(g: torch.Generator):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())
        return step(g)

    timed.identity = step.identity
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    train(model, optimiser, timed,
          TrainConfig(steps=args.warmup + args.repeats + 1), progress=False)
    iteration = statistics.median(
        b - a for a, b in zip(stamps[args.warmup:], stamps[args.warmup + 1:],
                              strict=False)
    )
    allreduce = 0.0
    if world.distributed:
        numel = sum(p.numel() for p in model.parameters())
        buffer = torch.zeros(numel, device=device)
        times = []
        for _ in range(20):
            start = time.perf_counter()
            dist.all_reduce(buffer)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        allreduce = statistics.median(times)
    if world.main:
        row = {"processes": world.size, "threads": args.threads,
               "tasks_per_process": tasks, "iteration_s": iteration,
               "allreduce_s": allreduce, "device": device_description(device)}
        Path(args.result).write_text(json.dumps(row))
    if world.distributed:
        dist.destroy_process_group()


def launch(args: argparse.Namespace, processes: int, threads: int) -> dict:
    """One torchrun launch of the worker; its row."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "row.json"
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", str(SCRIPT), "--worker",
            "--threads", str(threads), "--result", str(result),
            "--device", args.device, "--hidden", str(args.hidden),
            "--meta-batch", str(args.meta_batch), "--queries", str(args.queries),
            "--warmup", str(args.warmup), "--repeats", str(args.repeats),
        ]
        if args.first_order:
            command.append("--first-order")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads),
               "METALEARN_PROGRESS": "0"}
        subprocess.run(command, env=env, check=True, timeout=1200)
        return json.loads(result.read_text())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", default="1x1,1x2,2x1",
                        help="PROCESSESxTHREADS, comma-separated")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--queries", type=int, default=1)
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, to check that the script runs")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return []
    if args.quick:
        args.hidden, args.meta_batch, args.warmup, args.repeats = 4, 4, 1, 2
    configs = [tuple(int(n) for n in c.split("x")) for c in args.configs.split(",")]
    order = "first" if args.first_order else "second"
    print(f"torch {torch.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs")
    print(f"config: MAML {order}-order, Conv4({args.hidden}), 5-way 1-shot, "
          f"{args.queries} query/class, meta-batch {args.meta_batch} split over "
          f"the processes, median of {args.repeats} after {args.warmup} warm-up")
    rows = [launch(args, processes, threads) for processes, threads in configs]
    base = rows[0]["iteration_s"]
    for row in rows:
        print(f"{row['processes']} process(es) x {row['threads']} thread(s), "
              f"{row['tasks_per_process']} tasks each: "
              f"{row['iteration_s']:.3f} s per meta-iteration, speed-up "
              f"{base / row['iteration_s']:.2f} over "
              f"{rows[0]['processes']}x{rows[0]['threads']}; all-reduce of the "
              f"gradient {1000 * row['allreduce_s']:.1f} ms [{row['device']}]")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
