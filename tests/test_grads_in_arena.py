"""Gradients in the activation arena (kernels/runtime/plan.c, issue 15).

A GRAD tensor is written once by the backward of every train/grad run and read after it, so
the planner places it in the activation arena from its first writer to the end of the program,
pinned at the same offset in every other program; EDGETRAIN_GRADS_IN_ARENA=0 at load keeps the
separate GRAD block. Same bits either way; gradients survive eval runs and re-plans."""
import numpy as np
import pytest

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.errors import NonFiniteError
from edgetrain.models import LeNet
import edgetrain.nn.functional as F


def _lenet(monkeypatch, inside, batch=8, threads=1):
    monkeypatch.setenv("EDGETRAIN_GRADS_IN_ARENA", "1" if inside else "0")
    et.manual_seed(0)
    m = LeNet()
    return et.TrainSession.from_module(
        m, inputs={"data": (batch, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((batch,), "int64")},
        optimizer=optim.SGD(m.parameters(), lr=0.05, momentum=0.9), threads=threads)


def _feeds(batch, seed):
    rng = np.random.default_rng(seed)
    return {"data": rng.standard_normal((batch, 1, 28, 28), dtype=np.float32),
            "label": rng.integers(0, 10, batch)}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k].view(np.uint32), b[k].view(np.uint32), err_msg=k)


def test_the_arena_holds_the_gradients(monkeypatch):
    out, inside = _lenet(monkeypatch, False).memory_info(), _lenet(monkeypatch, True).memory_info()
    assert out["grads_in_arena"] == 0 and out["grads"] > 0
    assert inside["grads"] == inside["grads_in_arena"] == out["grads"]
    # "activations" is the arena less the gradients it holds, so the keys add up to the total
    arena_in, arena_out = inside["activations"] + inside["grads"], out["activations"]
    assert arena_out < arena_in < arena_out + out["grads"]    # planned there, sharing its room
    assert inside["total"] < out["total"]
    for info in (inside, out):
        assert info["total"] == sum(info[k] for k in ("params", "grads", "optimizer", "consts",
                                                      "inputs", "activations", "workspace",
                                                      "eval_cache"))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_same_bits_and_gradients_survive_eval_and_replans(monkeypatch, threads):
    res = {}
    for inside in (False, True):
        sess = _lenet(monkeypatch, inside, threads=threads)
        grads, losses = [], []
        for step in range(3):
            sess.Train()
            losses.append(sess.RunGraph(_feeds(8, step))["loss"])
            g = sess.get_gradients()
            sess.Eval()                                  # an eval run in between
            sess.RunGraph({"data": _feeds(8, 10 + step)["data"]})
            sess.predict(_feeds(3, 20)["data"])          # another batch: a re-plan and back
            _same(sess.get_gradients(), g)
            sess.Grad()
            sess.RunGraph(_feeds(5, 30 + step))          # the grad program at another batch
            g5 = sess.get_gradients()
            sess.Resize({"data": (8, 1, 28, 28), "label": (8,)})   # explicit re-plan
            _same(sess.get_gradients(), g5)
            sess.Train()
            _same(sess.get_gradients(), g5)
            grads.append(g5)
        res[inside] = (losses, grads, sess.get_parameters())
    np.testing.assert_array_equal(np.array(res[False][0]).view(np.uint32),
                                  np.array(res[True][0]).view(np.uint32))
    for a, b in zip(res[False][1], res[True][1]):
        _same(a, b)
    _same(res[False][2], res[True][2])


class _Sqrt(nn.Module):
    """Finite loss; the gradient of parameter k is non-finite when p[k] holds a 0
    (d sqrt|p| / dp at 0). Parameter k has sizes[k] values."""

    def __init__(self, sizes):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.ps = [nn.Parameter(np.ones(n, np.float32)) for n in sizes]
        for k, p in enumerate(self.ps):
            setattr(self, f"p{k}", p)

    def forward(self, x):
        y = self.fc(x)
        for p in self.ps:
            y = y + F.sum(F.sqrt(F.abs(p)))
        return y


@pytest.mark.parametrize("inside", [False, True])
def test_the_guard_checks_every_gradient(monkeypatch, inside):
    monkeypatch.setenv("EDGETRAIN_GRADS_IN_ARENA", "1" if inside else "0")
    n = 4
    et.manual_seed(0)
    m = _Sqrt([3 + k for k in range(n)])
    sess = et.TrainSession.from_module(
        m, inputs={"x": (2, 4)}, loss=nn.MSELoss(), labels={"y": ((2, 2), "float32")},
        optimizer=optim.SGD(m.parameters(), lr=0.01), threads=1)
    assert (sess.memory_info()["grads_in_arena"] > 0) == inside
    feeds = {"x": np.ones((2, 4), np.float32), "y": np.zeros((2, 2), np.float32)}
    sess.Train()
    sess.RunGraph(feeds)
    for k in range(n):
        before = sess.get_parameters()
        bad = before[f"p{k}"].copy()
        bad[k] = 0.0
        sess.set_parameters({f"p{k}": bad})
        with pytest.raises(NonFiniteError, match=f"gradient of 'p{k}'"):
            sess.RunGraph(feeds)
        assert not np.isfinite(sess.get_gradients()[f"p{k}"][k])
        sess.set_parameters({f"p{k}": before[f"p{k}"]})
        sess.RunGraph(feeds)                              # fine again


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("inside", [False, True])
def test_the_guard_scan_on_threads_finds_every_position(monkeypatch, inside, threads):
    """Gradients of 1.2 M values: the scan runs in chunks of 2^18 values on the pool (in the
    block, or across the GRAD tensors side by side). A non-finite value at a tensor's first or
    last element, or at a chunk's edge inside a tensor, is found on every thread count."""
    monkeypatch.setenv("EDGETRAIN_GRADS_IN_ARENA", "1" if inside else "0")
    sizes = [300_000, 5, 400_000, 500_001]
    et.manual_seed(0)
    m = _Sqrt(sizes)
    sess = et.TrainSession.from_module(
        m, inputs={"x": (2, 4)}, loss=nn.MSELoss(), labels={"y": ((2, 2), "float32")},
        optimizer=optim.SGD(m.parameters(), lr=0.0), threads=threads)
    assert (sess.memory_info()["grads_in_arena"] > 0) == inside
    feeds = {"x": np.ones((2, 4), np.float32), "y": np.zeros((2, 2), np.float32)}
    sess.Train()
    sess.RunGraph(feeds)
    # chunk edges near 300 k, 600 k, 900 k values: inside p2 and p3, whatever fc's place
    for k, i in [(0, 0), (0, sizes[0] - 1), (1, 4), (2, 0), (2, 299_995), (2, 300_004),
                 (2, sizes[2] - 1), (3, 0), (3, 199_990), (3, 200_010), (3, sizes[3] - 1)]:
        before = sess.get_parameters()[f"p{k}"]
        bad = before.copy()
        bad[i] = 0.0
        sess.set_parameters({f"p{k}": bad})
        with pytest.raises(NonFiniteError, match=f"gradient of 'p{k}' holds .* at element {i}"):
            sess.RunGraph(feeds)
        sess.set_parameters({f"p{k}": before})
        sess.RunGraph(feeds)                              # fine again
