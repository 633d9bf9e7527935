"""Transfer on real MNIST through ONNX (issue 13): a CNN trained in PyTorch on digits 0-4 is
exported, converted, cut, given a new head for digits 5-9 and trained head-only; the same
network converted from a fresh PyTorch model is trained from scratch, all layers, for the same
steps. Prints both test accuracies on digits 5-9. Not part of the test suite (about a minute)::

    .venv/bin/python benchmarks/transfer_mnist.py [--cut classifier|fc] [--pool N] [--steps 300]

``--cut classifier`` keeps the 64-wide fc layer and trains a new Linear(64, 5); ``--cut fc``
cuts before it (256 conv features, new Linear(256, 5)). ``--pool N`` fine-tunes on the first N
training images of 5-9 only (a small data set).
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn as tnn
import torch.nn.functional as TF

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from conftest import mnist_arrays  # noqa: E402

import edgetrain as et  # noqa: E402
from edgetrain import convert, nn, optim  # noqa: E402

B = 64


class Net(tnn.Module):
    def __init__(self):
        super().__init__()
        self.features = tnn.Sequential(tnn.Conv2d(1, 8, 5), tnn.BatchNorm2d(8), tnn.ReLU(),
                                       tnn.MaxPool2d(2), tnn.Conv2d(8, 16, 5),
                                       tnn.BatchNorm2d(16), tnn.ReLU(), tnn.MaxPool2d(2))
        self.fc = tnn.Sequential(tnn.Linear(256, 64), tnn.ReLU())
        self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(64, 5))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(self.fc(x.view(x.size(0), -1)))


def train_etm(body, width, x, y, xt, yt, steps, seed, lr=0.05, opt="sgd", evals=()):
    """Train ``body`` + a new Linear(width, 5) head; accuracy on (xt, yt) and on each
    (x, y) pair of ``evals``."""
    et.nn.init.manual_seed(seed)
    model = nn.Sequential(body, nn.Linear(width, 5))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = optim.Adam(params, lr=lr) if opt == "adam" else \
        optim.SGD(params, lr=lr, momentum=0.9)
    sess = et.TrainSession.from_module(model, inputs={"data": (B, 1, 28, 28)},
                                       loss=nn.CrossEntropyLoss(),
                                       labels={"label": ((B,), "int64")},
                                       optimizer=optimizer, threads=1)
    rng = np.random.default_rng(seed)
    sess.Train()
    for _ in range(steps):
        i = rng.integers(0, len(x), B)
        sess.RunGraph({"data": x[i], "label": y[i]})
    sess.Eval()
    accs = [float((sess.predict(a, batch_size=B).argmax(1) == b).mean())
            for a, b in ((xt, yt),) + tuple(evals)]
    return accs[0] if not evals else accs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cut", choices=("classifier", "fc"), default="classifier")
    ap.add_argument("--pool", type=int, default=0, help="5-9 training images (0: all)")
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    x, y = mnist_arrays(True)
    xt, yt = mnist_arrays(False)
    torch.manual_seed(0)
    src = Net()
    opt = torch.optim.SGD(src.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    xs, ys = x[y < 5], y[y < 5]
    for _ in range(args.steps):
        i = rng.integers(0, len(xs), B)
        opt.zero_grad()
        TF.cross_entropy(src(torch.from_numpy(xs[i])), torch.from_numpy(ys[i])).backward()
        opt.step()
    xh, yh = x[y >= 5], y[y >= 5] - 5
    if args.pool:
        xh, yh = xh[:args.pool], yh[:args.pool]
    xe, ye = xt[yt >= 5], yt[yt >= 5] - 5
    gemm = 0 if args.cut == "fc" else -1
    width = 256 if args.cut == "fc" else 64

    def cut(net, trainable, bn):
        name = [n for n in net.nodes() if n[1] == "Gemm"][gemm][2][0]
        return net.extract(["input"], [name], trainable=trainable, bn=bn)

    example = torch.randn(B, 1, 28, 28)
    tuned = convert.from_torch(src, example, dropout="off")
    acc_transfer = train_etm(cut(tuned, False, "frozen"), width, xh, yh, xe, ye, args.steps, 1)
    torch.manual_seed(1)
    fresh = convert.from_torch(Net(), example, dropout="off")
    acc_scratch = train_etm(cut(fresh, True, "train"), width, xh, yh, xe, ye, args.steps, 1)
    print(f"cut before {args.cut}, {len(xh)} images of 5-9, {args.steps} steps of {B}: "
          f"transfer (head only) {acc_transfer:.4f}, scratch (all layers) {acc_scratch:.4f} "
          f"[{time.time() - t0:.0f} s]")


if __name__ == "__main__":
    main()
