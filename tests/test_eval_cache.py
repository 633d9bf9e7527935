"""The EVAL program's cache of packed conv weights and BatchNorm factors (issue 15,
kernels/runtime/eval_cache.c).

An eval run with the cache must give the bits of a run without it (EDGETRAIN_EVAL_CACHE=0 at
load), at every thread count; every write of the weights between eval runs (a train step, a
grad run, set_parameters / load, set_tensor) must be seen by the next eval, which then equals
a fresh session's eval with those weights, bit for bit; memory_info reports the cache."""
import numpy as np
import pytest

import edgetrain as et
from edgetrain import nn, optim


def randomize(m, seed):
    """Random weights and BatchNorm statistics (a fresh BN is almost the identity)."""
    r = np.random.RandomState(seed)
    sd = m.state_dict()
    for k, v in sd.items():
        if k.endswith("running_mean"):
            sd[k] = (r.randn(*v.shape) * 0.5).astype(np.float32)
        elif k.endswith("running_var"):
            sd[k] = r.uniform(0.2, 2.0, v.shape).astype(np.float32)
        elif v.dtype == np.float32:
            sd[k] = (r.randn(*v.shape) * (0.3 if v.ndim == 1 else 0.2)).astype(np.float32)
    m.load_state_dict(sd)


class Net(nn.Module):
    """Each conv path whose weights the forward packs: im2col (3x3), grouped im2col, the
    pointwise NCHW path (large enough not to be a small GEMM), a strided 1x1 (im2col), a
    depthwise conv (BatchNorm factors only) and a small pointwise conv (nothing packed)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 24, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(24)
        self.c2 = nn.Conv2d(24, 24, 3, padding=1, groups=3, bias=True)   # grouped
        self.b2 = nn.BatchNorm2d(24)
        self.c3 = nn.Conv2d(24, 48, 1, bias=False)                       # pointwise
        self.b3 = nn.BatchNorm2d(48)
        self.c4 = nn.Conv2d(48, 48, 3, stride=2, padding=1, groups=48, bias=False)  # depthwise
        self.b4 = nn.BatchNorm2d(48)
        self.c5 = nn.Conv2d(48, 40, 1, stride=2, bias=True)              # strided 1x1
        self.c6 = nn.Conv2d(40, 5, 1, bias=True)                         # small pointwise
        self.fc = nn.Linear(5 * 3 * 3, 10)

    def forward(self, x):
        x = nn.functional.relu6(self.b1(self.c1(x)))
        x = nn.functional.relu(self.b2(self.c2(x)))
        x = self.b3(self.c3(x))
        x = nn.functional.relu6(self.b4(self.c4(x)))
        x = nn.functional.relu(self.c5(x))
        x = self.c6(x)
        return self.fc(x.reshape(x.shape[0], -1))


SHAPE = (3, 11, 11)


def model(seed=0):
    nn.init.manual_seed(seed)
    m = Net()
    randomize(m, seed + 1)
    return m


def session(m, threads, cache=True, monkeypatch=None, sgd=None):
    """A session of m; with sgd (its keyword arguments) a trainable one (labels "labels")."""
    monkeypatch.setenv("EDGETRAIN_EVAL_CACHE", "1" if cache else "0")
    kw = {}
    if sgd is not None:
        kw = dict(loss=nn.CrossEntropyLoss(), labels={"labels": ((None,), "int64")},
                  optimizer=optim.SGD(m.parameters(), **sgd))
    return et.TrainSession.from_module(m, inputs={"x": (None,) + SHAPE}, threads=threads,
                                       max_batch=8, **kw)


def batch(n, seed=5):
    return np.random.RandomState(seed).randn(n, *SHAPE).astype(np.float32)


def eval_out(sess, x):
    sess.Eval()
    return sess.RunGraph({"x": x})["output"]


def fresh_eval(values, threads, x, monkeypatch):
    """The eval output of a new session without the cache whose weights are `values`."""
    s = session(model(), threads, cache=False, monkeypatch=monkeypatch)
    s.set_parameters(values)
    return eval_out(s, x)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_bits_with_and_without_cache(threads, monkeypatch):
    x = batch(4)
    on = session(model(), threads, monkeypatch=monkeypatch)
    off = session(model(), threads, cache=False, monkeypatch=monkeypatch)
    want = eval_out(off, x)
    assert off.memory_info()["eval_cache"] == 0
    first, second = eval_out(on, x), eval_out(on, x)   # the run that fills it, one that reuses it
    assert on.memory_info()["eval_cache"] > 0
    np.testing.assert_array_equal(first, want)
    np.testing.assert_array_equal(second, want)
    # a partial batch (another plan: the cache is laid out again), then the full one again
    np.testing.assert_array_equal(eval_out(on, x[:3]), eval_out(off, x[:3]))
    np.testing.assert_array_equal(eval_out(on, x), want)


def test_thread_count_change_keeps_bits(monkeypatch):
    """The packed bytes do not depend on the thread count: filled at 1 thread, used at 3."""
    x = batch(4)
    on = session(model(), 1, monkeypatch=monkeypatch)
    eval_out(on, x)
    on.threads = 3
    off = session(model(), 3, cache=False, monkeypatch=monkeypatch)
    np.testing.assert_array_equal(eval_out(on, x), eval_out(off, x))
    on.threads = 2
    np.testing.assert_array_equal(eval_out(on, x), eval_out(off, x))


@pytest.mark.parametrize("threads", [1, 2])
def test_train_step_invalidates(threads, monkeypatch):
    x, y = batch(4), np.arange(4, dtype=np.int64) % 10
    sess = session(model(), threads, monkeypatch=monkeypatch, sgd=dict(lr=0.5, momentum=0.9))
    before = eval_out(sess, x)
    sess.Train()
    assert sess.memory_info()["eval_cache"] == 0          # freed by the mode switch
    sess.RunGraph({"x": x, "labels": y})
    after = eval_out(sess, x)
    assert not np.array_equal(after, before)               # the step changed the weights
    np.testing.assert_array_equal(after, fresh_eval(sess.get_parameters(), threads, x, monkeypatch))


def test_grad_run_invalidates(monkeypatch):
    """A GRAD run updates the BatchNorm running statistics the fused factors come from."""
    x, y = batch(4), np.arange(4, dtype=np.int64) % 10
    sess = session(model(), 1, monkeypatch=monkeypatch, sgd=dict(lr=0.1))
    before = eval_out(sess, x)
    sess.Grad()
    sess.RunGraph({"x": x, "labels": y})
    after = eval_out(sess, x)
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, fresh_eval(sess.get_parameters(), 1, x, monkeypatch))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_set_parameters_and_load_invalidate(threads, monkeypatch):
    x = batch(4)
    sess = session(model(0), threads, monkeypatch=monkeypatch)
    first = eval_out(sess, x)
    other = model(7)
    values = {k: v for k, v in other.state_dict().items() if not k.endswith("num_batches_tracked")}
    sess.set_parameters(values)                       # every weight and statistic
    got = eval_out(sess, x)
    assert not np.array_equal(got, first)
    np.testing.assert_array_equal(got, fresh_eval(values, threads, x, monkeypatch))
    # one conv weight only (the pointwise path), then one BatchNorm statistic only
    w = sess.get_parameters()
    w["c3.weight"] = w["c3.weight"] * np.float32(-1.5)
    sess.set_parameters({"c3.weight": w["c3.weight"]})
    np.testing.assert_array_equal(eval_out(sess, x), fresh_eval(w, threads, x, monkeypatch))
    w["b1.running_var"] = w["b1.running_var"] * np.float32(3.0)
    sess.set_tensor("b1.running_var", w["b1.running_var"])
    np.testing.assert_array_equal(eval_out(sess, x), fresh_eval(w, threads, x, monkeypatch))
    # reading the weights does not drop the cache, and changes nothing
    again = eval_out(sess, x)
    sess.get_parameters()
    sess.state_dict()
    np.testing.assert_array_equal(eval_out(sess, x), again)


def test_saved_and_loaded_file(tmp_path, monkeypatch):
    """A session loaded from a saved file, or from an inference-only file (whose weights were
    folded at save, so its own bits), caches too: the bits of the same file without it."""
    x = batch(4)
    sess = session(model(), 1, monkeypatch=monkeypatch)
    want = eval_out(sess, x)
    sess.SaveToFile(tmp_path / "m.etm")
    sess.SaveToFile(tmp_path / "inf.etm", inference_only=True)
    for name in ("m.etm", "inf.etm"):
        monkeypatch.setenv("EDGETRAIN_EVAL_CACHE", "0")
        off = eval_out(et.TrainSession.load(tmp_path / name, threads=2), x)
        if name == "m.etm":
            np.testing.assert_array_equal(off, want)
        monkeypatch.setenv("EDGETRAIN_EVAL_CACHE", "1")
        loaded = et.TrainSession.load(tmp_path / name, threads=2)
        np.testing.assert_array_equal(eval_out(loaded, x), off)
        np.testing.assert_array_equal(eval_out(loaded, x), off)
        assert loaded.memory_info()["eval_cache"] > 0


def packed_lower_bound(m):
    """Bytes the packed weights take at least: every conv weight whose forward packs it (not
    the depthwise c4, not the small c6), plus two floats per fused BatchNorm channel."""
    sd = m.state_dict()
    w = sum(sd[f"{c}.weight"].size for c in ("c1", "c2", "c3", "c5")) * 4
    bn = sum(sd[f"{b}.running_var"].size for b in ("b1", "b2", "b3", "b4")) * 8
    return w + bn


def test_memory_info(monkeypatch):
    m = model()
    sess = session(m, 2, monkeypatch=monkeypatch, sgd=dict(lr=0.1))
    sess.Eval()
    info = sess.memory_info()
    assert info["eval_cache"] == 0                         # made at the first eval run
    eval_out(sess, batch(4))
    info = sess.memory_info()
    low = packed_lower_bound(m)
    # at least the weights it packs; at most twice that (padding to GEMM panels, headers)
    assert low <= info["eval_cache"] <= 2 * low + 64 * 1024, (info["eval_cache"], low)
    assert info["total"] == sum(info[k] for k in ("params", "grads", "optimizer", "consts",
                                                  "inputs", "activations", "workspace",
                                                  "eval_cache"))
    sess.Train()
    assert sess.memory_info()["eval_cache"] == 0


def test_memory_limit_leaves_no_room(monkeypatch):
    """Under a memory limit with no room for it, eval runs without the cache (same bits)."""
    x = batch(4)
    sess = session(model(), 1, monkeypatch=monkeypatch)
    want = eval_out(sess, x)
    sess.max_memory = sess.memory_info()["total"] - sess.memory_info()["eval_cache"]
    got = eval_out(sess, x)
    assert sess.memory_info()["eval_cache"] == 0
    np.testing.assert_array_equal(got, want)
    sess.max_memory = None
    np.testing.assert_array_equal(eval_out(sess, x), want)
    assert sess.memory_info()["eval_cache"] > 0
