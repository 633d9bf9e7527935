"""Transfer on real data (issue 13): a CNN trained in PyTorch on MNIST digits 0-4, exported,
converted, cut before its fully connected layers (256 conv features, BatchNorm frozen), given a
new head for digits 5-9 and trained head-only for 300 steps on a small labelled set (100
images), beats the same network (same cut, same head) converted from a fresh PyTorch model and
trained from scratch, all layers, for 300 steps on the same images.

The comparison leans towards scratch: transfer uses one setting (Adam, lr 0.01), scratch gets
the best of six (SGD momentum 0.9 / Adam x lr 0.01, 0.03, 0.1) chosen on 2,000 held-out 5-9
training images. Measured (test accuracy on all 5-9 test images, seeds 0 / 1): transfer 0.9354 /
0.9457, scratch 0.9303 / 0.9134. The sweep behind this (benchmarks/transfer_mnist_sweep.py, lr
tuned per arm on the validation split) shows where it does not hold: with a source trained only
300 steps, or a cut that keeps the 64-wide fc layer trained for 0-4, or the full 5-9 set, scratch
wins (e.g. full set, fc cut: transfer 0.9809 / 0.9807 vs scratch 0.9840 / 0.9891).
"""
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
from transfer_mnist_sweep import GRID, VAL, B, Net, cut, source_net  # noqa: E402
from transfer_mnist import train_etm  # noqa: E402

from conftest import mnist_arrays  # noqa: E402
from edgetrain import convert  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")]
STEPS, SOURCE_STEPS, POOL = 300, 2000, 100


@pytest.mark.parametrize("seed", [0, 1])
def test_head_only_transfer_beats_scratch_on_a_small_set(seed):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = mnist_arrays(True)
        xt, yt = mnist_arrays(False)
        xh, yh = x[y >= 5], y[y >= 5] - 5
        xv, yv, xh, yh = xh[-VAL:], yh[-VAL:], xh[:-VAL], yh[:-VAL]
        xe, ye = xt[yt >= 5], yt[yt >= 5] - 5
        pick = np.random.default_rng(1000 + seed).permutation(len(xh))[:POOL]
        xp, yp = xh[pick], yh[pick]
        example = torch.randn(B, 1, 28, 28)
        src = source_net(x, y, SOURCE_STEPS, seed)
        body = cut(convert.from_torch(src, example, dropout="off"), False, "frozen", "fc")
        transfer = train_etm(body, 256, xp, yp, xe, ye, STEPS, seed, 0.01, "adam")
        torch.manual_seed(100 + seed)
        fresh = Net()
        runs = []
        for lr, opt in GRID:
            body = cut(convert.from_torch(fresh, example, dropout="off"), True, "train", "fc")
            test, val = train_etm(body, 256, xp, yp, xe, ye, STEPS, seed, lr, opt,
                                  evals=((xv, yv),))
            runs.append((val, test, opt, lr))
        val, scratch, opt, lr = max(runs)
        print(f"seed {seed}: transfer {transfer:.4f}, scratch {scratch:.4f} ({opt} {lr})")
        assert transfer > scratch, (transfer, runs)
    finally:
        torch.set_num_threads(n)
