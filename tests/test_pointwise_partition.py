"""Partitions of the pointwise (1x1) NCHW GEMM and the small-work thread thresholds (issue 15).

When the task grid of et_f32_gemm_nchw splits the rows and the whole B (K x n*np) fits one
packed block, B is packed once by all threads (panels x K strips) and the row tiles are split
over tasks that share it (1x1 planes, the late MobileNetV2 blocks). These shapes take that path
at threads > 1 (M > MR = 14, n * np <= 1024, K * n * np <= 128K) and the plain grid at 1 thread:
training must give the same bytes at threads 1, 2 and 3, and match PyTorch (float64).
"""
import numpy as np
import pytest
import torch

import edgetrain as et
from edgetrain import nn, optim

LR = 0.05


class Net(nn.Module):
    """1x1 pre (c -> c), 1x1 expand (c -> hidden) + relu6, 1x1 project (hidden -> classes),
    averaged over pixels (pre makes the expand's input gradient run: A = W^T)."""

    def __init__(self, c, hidden, classes):
        super().__init__()
        self.pre = nn.Conv2d(c, c, 1, bias=False)
        self.expand = nn.Conv2d(c, hidden, 1)
        self.act = nn.ReLU6()
        self.project = nn.Conv2d(hidden, classes, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()

    def forward(self, x):
        return self.flat(self.pool(self.project(self.act(self.expand(self.pre(x))))))


def run(state, shape, hidden, classes, threads, x, y):
    model = Net(shape[1], hidden, classes)
    model.load_state_dict(state)
    sess = et.TrainSession.from_module(
        model, inputs={"data": shape}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((shape[0],), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=LR), threads=threads)
    sess.Train()
    losses = [sess.RunGraph({"data": x, "label": y})["loss"].tobytes() for _ in range(2)]
    return losses, {k: v.copy() for k, v in sess.get_parameters().items()}


def torch_step(state, x, y):
    """One SGD step in float64: the loss before it and the parameters after it."""
    p = {k: torch.tensor(np.asarray(v), dtype=torch.float64, requires_grad=True)
         for k, v in state.items()}
    h = torch.nn.functional.conv2d(torch.tensor(x, dtype=torch.float64), p["pre.weight"])
    h = torch.nn.functional.conv2d(h, p["expand.weight"], p["expand.bias"])
    h = torch.clamp(h, 0.0, 6.0)
    o = torch.nn.functional.conv2d(h, p["project.weight"]).mean(dim=(2, 3))
    loss = torch.nn.functional.cross_entropy(o, torch.tensor(y))
    loss.backward()
    return loss.item(), {k: (v - LR * v.grad).detach().numpy() for k, v in p.items()}


@pytest.mark.parametrize("shape,hidden,classes", [
    ((32, 40, 1, 1), 200, 10),   # 1x1 planes: N = 32, one panel, K strips in the packing pass
    ((7, 23, 2, 2), 97, 17),     # N = 28: a partial panel across images, odd sizes
    ((9, 64, 3, 3), 150, 30),    # N = 81: three panels, the last partial
    ((5, 33, 5, 7), 45, 15),     # N = 175: panels across image boundaries
    ((16, 190, 1, 1), 333, 12),  # expand input gradient: W^T packed by threads (M*K >= 32768)
])
def test_pointwise_shared_b_bits_and_values(shape, hidden, classes):
    et.manual_seed(3)
    state = Net(shape[1], hidden, classes).state_dict()
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, classes, size=shape[0]).astype(np.int64)
    ref_losses, ref_params = run(state, shape, hidden, classes, 1, x, y)
    for threads in (2, 3):
        losses, params = run(state, shape, hidden, classes, threads, x, y)
        assert losses == ref_losses, f"threads={threads}: losses differ"
        differ = [k for k in params if params[k].tobytes() != ref_params[k].tobytes()]
        assert not differ, f"threads={threads} changes the bits of {differ}"
    # the first step against PyTorch in float64
    loss64, after64 = torch_step(state, x, y)
    assert np.frombuffer(ref_losses[0], dtype=np.float32)[0] == pytest.approx(loss64, rel=1e-5)
    model = Net(shape[1], hidden, classes)
    model.load_state_dict(state)
    sess = et.TrainSession.from_module(
        model, inputs={"data": shape}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((shape[0],), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=LR), threads=2)
    sess.Train()
    sess.RunGraph({"data": x, "label": y})
    got = sess.get_parameters()
    for k, v in after64.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-4, atol=1e-5, err_msg=k)
