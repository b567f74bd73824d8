"""Which learning rate and training classes suit the metric chapter's `short` budget?

Trains one Conv-4 ProtoNet embedding (channels-last filters, seed 0) for a fixed
number of episodes with Adam and cosine annealing from LR to 0, then measures its
accuracy on fixed *validation* episodes (the `val` characters, seed 1, 15 queries
per class: 300 5-way 1-shot, 200 20-way 1-shot and 200 5-way 5-shot episodes).
The test episodes are not touched, so the choice made from these numbers does not
peek at the test set. The metric chapter took its `short` learning rate and its
choice of training classes from the runs in
`benchmarks/results/protonet_short_budget_cpu.txt`.

Run: ``python benchmarks/protonet_short_budget.py NAME WAYS SHOTS QUERIES LR
STEPS [rot]``
(``rot`` adds the 90/180/270-degree rotations of the `train` characters as new
classes). It prints the training loss every 100 episodes and a JSON line with the
validation accuracies (mean and 95% CI half-width, in %), and writes
``/tmp/exp/NAME.json`` and ``/tmp/exp/NAME.pt``.
"""

import json
import sys
import time

import torch

from metalearn.data import omniglot, rotate_classes
from metalearn.episodes import FixedEpisodes
from metalearn.evaluate import evaluate
from metalearn.models import Conv4
from metalearn.protonet import make_protonet_step, protonet_classifier

name, ways, shots, q = sys.argv[1], *map(int, sys.argv[2:5])
lr, steps = float(sys.argv[5]), int(sys.argv[6])
data = omniglot()
train = data.split("train")
val = data.split("val")
if len(sys.argv) > 7 and sys.argv[7] == "rot":
    train = rotate_classes(train)
print("classes", len(train), flush=True)
torch.manual_seed(0)
emb = Conv4(hidden=64, head=False).to(memory_format=torch.channels_last)
opt = torch.optim.Adam(emb.parameters(), lr)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
step = make_protonet_step(emb, train, ways=ways, shots=shots, queries=q)
g = torch.Generator().manual_seed(0)
t0 = time.perf_counter()
for i in range(steps):
    loss, m = step(g)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    if i % 100 == 0:
        print(i, m, f"{time.perf_counter() - t0:.0f}s", flush=True)
train_s = time.perf_counter() - t0
res = {"name": name, "cfg": sys.argv[2:], "train_s": train_s,
       "threads": torch.get_num_threads()}
for w, s, n in [(5, 1, 300), (20, 1, 200), (5, 5, 200)]:
    eps = FixedEpisodes(val, n, ways=w, shots=s, queries=15, seed=1)
    r = evaluate(protonet_classifier(emb), eps, progress=False)
    res[f"{w}w{s}s"] = [round(100 * r.mean, 2), round(100 * r.ci95, 2)]
print(json.dumps(res), flush=True)
open(f"/tmp/exp/{name}.json", "w").write(json.dumps(res))
torch.save(emb.state_dict(), f"/tmp/exp/{name}.pt")
