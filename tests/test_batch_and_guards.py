"""Any batch size, the non-finite guard, weights back to PyTorch, models with several outputs.

- A default ``DataLoader`` (``drop_last=False``) trains a full MNIST epoch and evaluates the
  test set with a partial last batch and no ``Resize``: the runtime re-plans (cached plans,
  no allocation when a plan is reused) and a partial batch's loss matches PyTorch.
- The batch may be left open at export (``None``) up to ``max_batch``; ``predict`` takes any
  batch and restores the selected program.
- A NaN/Inf loss stops the step in C before anything changes (raise or skip).
- ``state_dict`` / ``update_module`` give PyTorch names and shapes with ``num_batches_tracked``.
- ``forward`` may return a tuple or dict; the loss applies to the named output.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import edgetrain as et
from edgetrain import _native, nn, optim
from edgetrain.data import DataLoader
from edgetrain.data.mnist import MnistDataset
from edgetrain.errors import NonFiniteError, ShapeError
from edgetrain.models.lenet import LeNet

from conftest import mnist_arrays, mnist_dir
from test_lenet_vs_torch import TorchLeNet

LR = 0.01


def lenet_session(batch=64, threads=2, **kw):
    model = LeNet(dropout=0.0)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (batch, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((batch,), "int64")}, optimizer=opt, threads=threads, **kw)
    return model, sess


# ---- a small BatchNorm model and its PyTorch twin ---------------------------------------------
class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 13 * 13, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(nn.functional.relu(self.bn(self.conv(x))), 2)
        return self.fc(x.reshape(x.size(0), -1))


class TorchBNNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 13 * 13, 10)

    def forward(self, x):
        x = TF.max_pool2d(TF.relu(self.bn(self.conv(x))), 2)
        return self.fc(torch.flatten(x, 1))


def bn_session(batch=16, threads=1, model=None, **kw):
    model = model or BNNet()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (batch, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((batch,), "int64")}, optimizer=opt, threads=threads, **kw)
    return model, sess


def persistent_state(sess):
    """Every parameter, buffer and optimizer-state tensor (copies) and the counters."""
    out = {}
    for i in range(sess._s.tensor_count()):
        info = sess._s.info(i)
        if info["kind"] in ("param", "buffer", "optstate"):
            out[f"{info['kind']}:{info['name']}"] = sess._s.get(i)
    out["step"] = sess.step
    return out


def assert_bit_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert np.asarray(a[k]).tobytes() == np.asarray(b[k]).tobytes(), k


# ================================================================================================
# Any batch size
# ================================================================================================
@pytest.mark.slow
def test_full_epoch_with_partial_batches_no_resize():
    """60000 = 937 x 64 + 32 training images, 10000 = 156 x 64 + 16 test images."""
    root = str(mnist_dir())
    train = DataLoader(MnistDataset(root, train=True), batch_size=64, shuffle=True, seed=1)
    test = DataLoader(MnistDataset(root, train=False), batch_size=64)
    assert not train.drop_last and len(train) == 938 and len(test) == 157
    _, sess = lenet_session()
    sess.Train()
    sizes = []
    for x, y in train:
        sizes.append(len(x))
        loss = float(sess.RunGraph({"data": x, "label": y})["loss"])
        assert np.isfinite(loss)
    assert sizes[-1] == 32 and sess.step == 938
    sess.Eval()
    correct = seen = 0
    for x, y in test:
        logits = sess.RunGraph({"data": x})["output"]
        assert logits.shape == (len(x), 10)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(x)
    assert seen == 10000 and len(x) == 16
    assert correct / seen >= 0.975, correct / seen
    assert sess.cached_plans >= 2


def _steps_match_torch(sess, tm, topt, sizes):
    """Train ``sess`` and the float64 torch model ``tm`` on consecutive MNIST batches of
    ``sizes``; every step's loss agrees."""
    x_all, y_all = mnist_arrays(True)
    sess.Train()
    start = 0
    for n in sizes:
        x, y = x_all[start:start + n], y_all[start:start + n]
        start += n
        loss = float(sess.RunGraph({"data": x, "label": y})["loss"])
        topt.zero_grad()
        tl = TF.cross_entropy(tm(torch.tensor(x, dtype=torch.float64)), torch.tensor(y))
        tl.backward()
        topt.step()
        assert loss == pytest.approx(tl.item(), rel=1e-4), n


def test_partial_batch_loss_matches_torch(mnist_batches):
    """A trajectory with batches 64, 32 (partial), 64, 20: mean over the real batch."""
    torch.manual_seed(0)
    tm = TorchLeNet().double()
    model = LeNet(dropout=0.0)
    model.load_state_dict(tm.state_dict())
    tm.load_state_dict({k: torch.tensor(v, dtype=torch.float64)
                        for k, v in model.state_dict().items()})
    opt = optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (64, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((64,), "int64")}, optimizer=opt, threads=2)
    topt = torch.optim.SGD(tm.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    _steps_match_torch(sess, tm, topt, (64, 32, 64, 20))
    params = sess.get_parameters()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(params[k], v.numpy(), atol=1e-4, rtol=0, err_msg=k)


def test_batchnorm_partial_batch_matches_torch():
    """BatchNorm normalises over the real batch and updates its running statistics with it."""
    torch.manual_seed(1)
    tm = TorchBNNet().double()
    model = BNNet()
    model.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    tm.load_state_dict({k: torch.tensor(v, dtype=torch.float64) if v.dtype != np.int64
                        else torch.tensor(v) for k, v in model.state_dict().items()})
    _, sess = bn_session(batch=16, model=model)
    topt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9)
    _steps_match_torch(sess, tm, topt, (16, 5, 16, 3))
    sd = sess.state_dict()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(sd[k], v.numpy(), atol=1e-4, rtol=1e-4, err_msg=k)
    assert int(sd["bn.num_batches_tracked"]) == 4 == int(tm.bn.num_batches_tracked)


def test_cached_plans_allocate_nothing():
    if _native.debug_alloc_count() < 0:
        pytest.fail("the extension is built without ET_DEBUG_ALLOC allocation counting")
    _, sess = lenet_session(batch=64)
    x, y = mnist_arrays(True)
    sess.Train()
    sess.RunGraph({"data": x[:64], "label": y[:64]})
    sess.RunGraph({"data": x[:32], "label": y[:32]})  # plans batch 32 (allocates once)
    sess.Eval()
    sess.RunGraph({"data": x[:16]})                   # and batch 16
    sess.Train()
    assert sess.cached_plans == 3
    before = _native.debug_alloc_count()
    for n in (64, 32, 64, 16, 32):
        sess._s.set_input("data", x[:n])
        sess._s.set_input("label", y[:n])
        sess._s.run()
    assert _native.debug_alloc_count() == before
    # a fifth shape evicts the least recently used plan; the cache stays at 4
    for n in (8, 5):
        sess.RunGraph({"data": x[:n], "label": y[:n]})
    assert sess.cached_plans == 4


def test_batch_limit_and_mismatched_feeds():
    _, sess = lenet_session(batch=64)
    x, y = mnist_arrays(True)
    assert sess.max_batch == 64
    sess.Train()
    with pytest.raises(ShapeError, match="1..64"):
        sess.RunGraph({"data": x[:65], "label": y[:65]})
    with pytest.raises(ShapeError):
        sess.RunGraph({"data": x[:8, :, :27], "label": y[:8]})  # only the batch may change
    with pytest.raises(ShapeError, match="same batch"):
        sess.RunGraph({"data": x[:8], "label": y[:9]})
    assert sess.step == 0
    sess.Resize({"data": (100, 1, 28, 28), "label": (100,)})  # an explicit resize raises the limit
    assert sess.max_batch == 100
    sess.RunGraph({"data": x[:100], "label": y[:100]})
    assert sess.step == 1


def test_open_batch_at_export_and_predict(tmp_path):
    model = LeNet(dropout=0.0)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (None, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((None,), "int64")}, optimizer=opt, threads=2, max_batch=100)
    assert sess.input_shapes() == {"data": (1, 1, 28, 28), "label": (1,)}
    assert sess.max_batch == 100
    x, y = mnist_arrays(True)
    sess.Train()
    for n in (37, 100, 1):
        sess.RunGraph({"data": x[:n], "label": y[:n]})
    with pytest.raises(ShapeError):
        sess.RunGraph({"data": x[:101], "label": y[:101]})
    # predict: any batch (chunks of max_batch), same values as one sample at a time
    out = sess.predict(x[:250])
    assert out.shape == (250, 10) and sess.mode == "train"
    one = np.concatenate([sess.predict(x[i:i + 1]) for i in (0, 137, 249)])
    np.testing.assert_allclose(out[[0, 137, 249]], one, rtol=1e-5, atol=1e-5)
    sess.Eval()
    ref = sess.RunGraph({"data": x[:50]})["output"]
    np.testing.assert_array_equal(sess.predict(x[:50], batch_size=50), ref)
    assert sess.mode == "eval"
    # the limit and the open batch survive a save (format minor 1) and an inference-only save
    sess.SaveToFile(tmp_path / "m.etm")
    sess.SaveToFile(tmp_path / "inf.etm", inference_only=True)
    from edgetrain import fileformat

    assert fileformat.load(tmp_path / "m.etm").state.max_batch == 100
    for name in ("m.etm", "inf.etm"):
        again = et.TrainSession.load(tmp_path / name)
        assert again.max_batch == 100 and again.input_shapes()["data"] == (1, 1, 28, 28)
        np.testing.assert_allclose(again.predict(x[:50]), ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="max_batch"):
        et.TrainSession.from_module(LeNet(), inputs={"data": (64, 1, 28, 28)}, max_batch=32)


# ================================================================================================
# Non-finite guard
# ================================================================================================
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_nan_batch_changes_nothing(policy, threads):
    _, sess = bn_session(batch=16, threads=threads)
    x, y = mnist_arrays(True)
    sess.Train()
    for i in range(2):
        sess.RunGraph({"data": x[16 * i:16 * (i + 1)], "label": y[:16]})
    assert sess.nonfinite == "raise"
    sess.nonfinite = policy
    before = persistent_state(sess)
    for bad_value in (np.nan, np.inf):
        bad = x[32:48].copy()
        bad[5, 0, 10, 10] = bad_value
        if policy == "raise":
            with pytest.raises(NonFiniteError, match="step 2") as e:
                sess.RunGraph({"data": bad, "label": y[32:48]})
            assert isinstance(e.value, FloatingPointError)
        else:
            sess.RunGraph({"data": bad, "label": y[32:48]})
            assert sess.last_step_skipped
        assert_bit_identical(before, persistent_state(sess))
    assert sess.skipped_steps == (2 if policy == "skip" else 0)
    # training goes on from the untouched state
    loss = sess.RunGraph({"data": x[32:48], "label": y[32:48]})["loss"]
    assert np.isfinite(loss) and sess.step == 3 and not sess.last_step_skipped
    with pytest.raises(ValueError):
        sess.nonfinite = "ignore"


# ================================================================================================
# Weights back to PyTorch-style code
# ================================================================================================
def test_state_dict_and_update_module():
    model, sess = bn_session(batch=16)
    x, y = mnist_arrays(True)
    sess.Train()
    for i in range(3):
        sess.RunGraph({"data": x[16 * i:16 * (i + 1)], "label": y[16 * i:16 * (i + 1)]})
    sd = sess.state_dict()
    fresh = BNNet()
    assert list(sd) == list(fresh.state_dict())  # PyTorch's names, in PyTorch's order
    for k, v in fresh.state_dict().items():
        assert sd[k].shape == v.shape and sd[k].dtype == v.dtype, k
    assert int(sd["bn.num_batches_tracked"]) == 3
    fresh.load_state_dict(sd)  # strict
    # a real torch model with the same structure loads it strictly and computes the same
    tm = TorchBNNet()
    tm.load_state_dict(sess.state_dict(as_torch=True))
    assert int(tm.bn.num_batches_tracked) == 3
    tm.eval()
    with torch.no_grad():
        ref = tm(torch.tensor(x[100:120])).numpy()
    np.testing.assert_allclose(sess.predict(x[100:120]), ref, rtol=1e-4, atol=1e-4)
    # update_module copies the trained values into the Module the session came from
    assert not np.array_equal(model.conv.weight.data, sd["conv.weight"])
    sess.update_module(model)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, sd[k], err_msg=k)
    again = et.TrainSession.from_module(model, inputs={"data": (20, 1, 28, 28)})
    np.testing.assert_allclose(again.predict(x[100:120]), ref, rtol=1e-4, atol=1e-4)


# ================================================================================================
# Several outputs
# ================================================================================================
class TwoHeads(nn.Module):
    def __init__(self, as_dict=False):
        super().__init__()
        self.as_dict = as_dict
        self.body = nn.Linear(784, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        feat = nn.functional.relu(self.body(x.reshape(x.size(0), -1)))
        logits = self.head(feat)
        return {"embedding": feat, "logits": logits} if self.as_dict else (feat, logits)


@pytest.mark.parametrize("as_dict", [False, True])
def test_several_outputs(as_dict):
    x, y = mnist_arrays(True)
    x, y = x[:8], y[:8]
    model = TwoHeads(as_dict)
    target = "logits" if as_dict else 1
    sess = et.TrainSession.from_module(
        model, inputs={"data": (8, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((8,), "int64")}, optimizer=optim.SGD(model.parameters(), lr=0.1),
        output=target, threads=1)
    names = ["embedding", "logits"] if as_dict else ["output0", "output1"]
    assert sess.output_names == ["loss"] + names
    out = sess.RunGraph({"data": x, "label": y})
    assert out[names[0]].shape == (8, 32) and out[names[1]].shape == (8, 10)
    # the loss is applied to the named output
    tl = TF.cross_entropy(torch.tensor(out[names[1]], dtype=torch.float64), torch.tensor(y))
    assert float(out["loss"]) == pytest.approx(tl.item(), rel=1e-5)
    sess.Eval()
    assert sess.output_names == names
    pred = sess.predict(x)
    assert set(pred) == set(names) and pred[names[0]].shape == (8, 32)
    np.testing.assert_array_equal(pred[names[0]], np.maximum(pred[names[0]], 0))  # relu features
    with pytest.raises(ValueError, match="output="):
        et.TrainSession.from_module(TwoHeads(as_dict), inputs={"data": (8, 1, 28, 28)},
                                    loss=nn.CrossEntropyLoss(),
                                    labels={"label": ((8,), "int64")})
    with pytest.raises(ValueError, match="not one of"):
        et.TrainSession.from_module(TwoHeads(as_dict), inputs={"data": (8, 1, 28, 28)},
                                    loss=nn.CrossEntropyLoss(),
                                    labels={"label": ((8,), "int64")}, output="nope")


# ================================================================================================
# The Android trainer reports the guard too
# ================================================================================================
def test_et_train_reports_nonfinite_steps(tmp_path):
    import subprocess
    import struct
    from pathlib import Path

    android = Path(__file__).resolve().parents[1] / "android"
    proc = subprocess.run(["make", "-s", "-C", str(android), "TARGET=host", "all"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exe = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(android), "TARGET=host",
                          "print-binary"], capture_output=True, text=True).stdout.strip()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 64), ("t10k", 16)):
        img = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        lab = rng.integers(0, 10, n).astype(np.uint8)
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x803, n, 28, 28) + img.tobytes())
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 0x801, n) + lab.tobytes())
    model = LeNet()
    sess = et.TrainSession.from_module(  # a learning rate that blows up at the second step
        model, inputs={"data": (16, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((16,), "int64")}, optimizer=optim.SGD(model.parameters(), lr=1e30),
        threads=1)
    sess.SaveToFile(tmp_path / "m.etm")
    base = [exe, "-f", str(tmp_path / "m.etm"), "-d", str(tmp_path), "-i", "4", "--test-limit", "0",
            "-s", str(tmp_path / "out.etm")]
    stop = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert stop.returncode != 0
    assert "training step 2" in stop.stderr and "step 1: the loss is NaN" in stop.stderr, stop.stderr
    assert "--skip-nonfinite" in stop.stderr and "not applied" in stop.stderr
    skip = subprocess.run(base + ["--skip-nonfinite"], capture_output=True, text=True, timeout=300)
    assert skip.returncode == 0, skip.stderr
    assert "step 2: skipped" in skip.stdout and "skipped: 3 steps" in skip.stdout, skip.stdout
    # the saved model holds the weights of the one good step
    out = et.TrainSession.load(tmp_path / "out.etm")
    assert out.step == 1
    assert all(np.isfinite(v).all() for v in out.get_parameters().values())
