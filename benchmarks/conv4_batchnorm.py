"""Time a Conv-4 forward and backward pass with each batch-norm implementation.

The two forms of ``metalearn.models.BatchNorm`` compute the same function: the
fused kernel (``F.batch_norm``, the default) and the op-by-op form that is used
under ``vmap`` and for second derivatives (``op_by_op_batch_norm``). This script
times a forward and backward pass of the Conv-4 embedding on a batch of 600
28x28 images (one 60-way 5-shot 5-query ProtoNet episode) with each, with the
filters in the default and in the channels-last memory format, and prints the
share of the time spent in the convolutions (from ``torch.profiler``); the rest
is batch norm, ReLU and pooling.

Run: ``python benchmarks/conv4_batchnorm.py [--images 600] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch

from metalearn.models import Conv4, op_by_op_batch_norm
from metalearn.runtime import device_description


def seconds(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median wall time of ``repeats`` forward+backward passes after a warm-up."""
    times = []
    for i in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        started = time.perf_counter()
        model(x).logsumexp(dim=1).sum().backward()
        if i:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_shares(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """Fractions of the profiled CPU time in convolutions and in all other ops."""
    from torch.profiler import profile

    with profile() as prof:
        model(x).logsumexp(dim=1).sum().backward()
    total = conv = 0.0
    for event in prof.key_averages():
        total += event.self_cpu_time_total
        if "convolution" in event.key:
            conv += event.self_cpu_time_total
    return conv / total, 1 - conv / total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    cpu = torch.device("cpu")
    print(
        f"hardware: {device_description(cpu)}, torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )
    print(
        f"config: Conv4(64) embedding, {args.images} images of 28x28, forward + "
        f"backward, median of {args.repeats} after 1 warm-up"
    )
    torch.manual_seed(0)
    x = torch.rand(args.images, 1, 28, 28)
    contiguous = Conv4(head=False)  # NCHW filters (the default)
    model = Conv4(head=False)
    model.load_state_dict(contiguous.state_dict())
    model.features.to(memory_format=torch.channels_last)
    rows = []
    for name, net in (("channels-last", model), ("contiguous", contiguous)):
        for form in ("fused", "op by op"):
            if form == "fused":
                rows.append(
                    (name, form, seconds(net, x, args.repeats), time_shares(net, x))
                )
            else:
                with op_by_op_batch_norm():
                    rows.append(
                        (name, form, seconds(net, x, args.repeats), time_shares(net, x))
                    )
    for name, form, time_s, (conv, other) in rows:
        print(
            f"filters {name:>13}, batch norm {form:>8}: {time_s:.3f} s "
            f"(convolutions {conv:.0%} of profiled time, other ops {other:.0%})"
        )
    slowest = max(row[2] for row in rows)
    fastest = min(row[2] for row in rows)
    print(f"speed-up of the fastest over the slowest: {slowest / fastest:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
