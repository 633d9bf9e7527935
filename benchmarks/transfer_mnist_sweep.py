"""Head-only transfer vs training from scratch on MNIST 5-9 (issue 13), with the learning rate
chosen for each arm separately on a held-out validation split (never on the test set).

For each seed: the source CNN (benchmarks/transfer_mnist.Net) trains in PyTorch on digits
0-4, is exported and converted (``from_torch``), cut before its classifier (64 features, BN
frozen) and given a new Linear(64, 5) head trained alone; the scratch arm is the same network
converted from a fresh PyTorch model, all layers trained (BN in training form). Both arms: the
same steps and batch size, learning rates {0.01, 0.03, 0.1} x {SGD momentum 0.9, Adam}, a pool
of N labelled 5-9 images. The rate with the best validation accuracy (2,000 5-9 training images
outside every pool) is reported with its test accuracy (all 5-9 test images)::

    .venv/bin/python benchmarks/transfer_mnist_sweep.py --pools 100 1000 0 --seeds 0 1
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as TF

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transfer_mnist import B, Net, mnist_arrays, train_etm  # noqa: E402

from edgetrain import convert  # noqa: E402

GRID = [(lr, opt) for opt in ("sgd", "adam") for lr in (0.01, 0.03, 0.1)]
VAL = 2000


def source_net(x, y, steps, seed):
    torch.manual_seed(seed)
    src = Net()
    opt = torch.optim.SGD(src.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(seed)
    xs, ys = x[y < 5], y[y < 5]
    for _ in range(steps):
        i = rng.integers(0, len(xs), B)
        opt.zero_grad()
        TF.cross_entropy(src(torch.from_numpy(xs[i])), torch.from_numpy(ys[i])).backward()
        opt.step()
    return src


def cut(net, trainable, bn, where="classifier"):
    """Cut before the classifier (64 features) or before fc (256 conv features)."""
    name = [n for n in net.nodes() if n[1] == "Gemm"][0 if where == "fc" else -1][2][0]
    return net.extract(["input"], [name], trainable=trainable, bn=bn)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pools", type=int, nargs="+", default=[100, 1000, 0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--source-steps", type=int, default=300,
                    help="PyTorch training steps of the source network on digits 0-4")
    ap.add_argument("--cut", choices=("classifier", "fc"), default="classifier")
    ap.add_argument("--arms", nargs="+", default=["transfer", "scratch"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    x, y = mnist_arrays(True)
    xt, yt = mnist_arrays(False)
    xh, yh = x[y >= 5], y[y >= 5] - 5
    xv, yv = xh[-VAL:], yh[-VAL:]          # validation: never in a pool
    xh, yh = xh[:-VAL], yh[:-VAL]
    xe, ye = xt[yt >= 5], yt[yt >= 5] - 5
    example = torch.randn(B, 1, 28, 28)
    for seed in args.seeds:
        src = source_net(x, y, args.source_steps, seed)
        torch.manual_seed(100 + seed)
        fresh = Net()
        for pool in args.pools:
            rng = np.random.default_rng(1000 + seed)
            pick = rng.permutation(len(xh))[:pool] if pool else np.arange(len(xh))
            xp, yp = xh[pick], yh[pick]
            best = {}
            width = 256 if args.cut == "fc" else 64
            for arm in args.arms:
                for lr, opt in GRID:
                    t0 = time.time()
                    if arm == "transfer":
                        body = cut(convert.from_torch(src, example, dropout="off"), False,
                                   "frozen", args.cut)
                    else:
                        body = cut(convert.from_torch(fresh, example, dropout="off"), True,
                                   "train", args.cut)
                    test, val = train_etm(body, width, xp, yp, xe, ye, args.steps, seed, lr, opt,
                                          evals=((xv, yv),))
                    print(f"seed {seed} pool {pool or len(xh)} {arm} {opt} lr {lr}: val "
                          f"{val:.4f} test {test:.4f} [{time.time() - t0:.0f} s]", flush=True)
                    if arm not in best or val > best[arm][0]:
                        best[arm] = (val, test, opt, lr)
            print(f"RESULT seed {seed} pool {pool or len(xh)} cut {args.cut}: " + ", ".join(
                f"{arm} {b[1]:.4f} ({b[2]} {b[3]})" for arm, b in best.items()), flush=True)


if __name__ == "__main__":
    main()
