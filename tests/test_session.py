"""TrainSession: the public contract of issue 3, resumability, file safety, memory planning."""
import os
import random

import numpy as np
import pytest

import edgetrain as et
from edgetrain import nn, optim
from edgetrain import _native
from edgetrain.errors import (ModelFormatError, ShapeError, LabelError, SessionStateError,
                              NotFoundError, EdgetrainError)

F = nn.functional


class LeNet(nn.Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, 10)
        self.dropout = nn.Dropout(p)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.flatten(x, 1)
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x)


class SmallBNNet(nn.Module):
    """Conv + BatchNorm + dropout: eval semantics differ from training."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 7 * 7, 10)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(self.drop(F.flatten(x, 1)))


def make_session(batch=64, threads=2, p=0.5, seed=1):
    et.manual_seed(seed)
    model = LeNet(p)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (batch, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((batch,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4),
        threads=threads)
    return model, sess


def random_batch(batch, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, 1, 28, 28), dtype=np.float32),
            rng.integers(0, 10, batch).astype(np.int64))


def test_issue_contract(tmp_path, mnist_batches):
    model, sess = make_session()
    (x, y), = mnist_batches(64, 1)
    sess.Train()
    out = sess.RunGraph({"data": x, "label": y})
    assert set(out) >= {"loss", "output"}
    assert out["loss"].shape == () and np.isfinite(out["loss"])
    assert out["output"].shape == (64, 10)
    sess.Eval()
    logits = sess.RunGraph({"data": x})["output"]
    assert logits.shape == (64, 10) and logits.dtype == np.float32
    sess.learning_rate = 0.001
    assert sess.learning_rate == pytest.approx(0.001)
    sess.SaveToFile(tmp_path / "lenet.etm")
    sess.SaveToFile(tmp_path / "lenet-infer.etm", inference_only=True)
    again = et.TrainSession.load(tmp_path / "lenet.etm", threads=1)
    again.Resize({"data": (17, 1, 28, 28), "label": (17,)})
    params = again.get_parameters()
    assert set(params) == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                           "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert params["conv1.weight"].shape == (20, 1, 5, 5)
    info = again.memory_info()
    n_params = sum(v.size for v in params.values())
    assert info["params"] >= 4 * n_params
    assert info["grads"] >= 4 * n_params
    assert info["optimizer"] >= 4 * n_params  # momentum buffers
    assert info["activations"] > 0
    assert info["activations"] < info["activations_without_reuse"]
    assert info["total"] >= sum(info[k] for k in ("params", "grads", "optimizer", "activations"))
    assert again.learning_rate == pytest.approx(0.001)


def test_train_30_equals_15_save_load_15(tmp_path, mnist_batches):
    """Resuming from a saved file is bit-exact, dropout RNG included."""
    batches = mnist_batches(32, 30)
    _, a = make_session(batch=32, threads=2, p=0.5, seed=3)
    _, b = make_session(batch=32, threads=2, p=0.5, seed=3)
    a.Train(); b.Train()
    for x, y in batches:
        a.RunGraph({"data": x, "label": y})
    for x, y in batches[:15]:
        b.RunGraph({"data": x, "label": y})
    b.SaveToFile(tmp_path / "half.etm")
    c = et.TrainSession.load(tmp_path / "half.etm", threads=2)
    assert c.step == 15
    c.Train()
    for x, y in batches[15:]:
        c.RunGraph({"data": x, "label": y})
    pa, pc = a.get_parameters(), c.get_parameters()
    for k in pa:
        assert np.array_equal(pa[k], pc[k]), k
    assert c.step == a.step == 30


def test_training_reduces_loss(mnist_batches):
    _, sess = make_session(batch=64, p=0.0)
    sess.Train()
    losses = [float(sess.RunGraph({"data": x, "label": y})["loss"])
              for x, y in mnist_batches(64, 60)]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])


def test_eval_uses_running_stats_and_no_dropout(tmp_path):
    import torch

    et.manual_seed(0)
    model = SmallBNNet()
    sess = et.TrainSession.from_module(
        model, inputs={"data": (8, 1, 14, 14)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((8,), "int64")}, optimizer=optim.SGD(model.parameters(), lr=0.1))
    x, y = random_batch(8)
    x = x[:, :, :14, :14].copy()
    sess.Train()
    for _ in range(3):
        sess.RunGraph({"data": x, "label": y})
    sess.Eval()
    o1 = sess.RunGraph({"data": x})["output"]
    o2 = sess.RunGraph({"data": x})["output"]
    assert np.array_equal(o1, o2)  # no dropout, no statistics update

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.fc = torch.nn.Linear(4 * 7 * 7, 10)
            self.drop = torch.nn.Dropout(0.3)

        def forward(self, x):
            x = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
            return self.fc(self.drop(torch.flatten(x, 1)))

    twin = Twin()
    sd = {k: torch.from_numpy(v) for k, v in sess.get_parameters().items()}
    twin.load_state_dict(sd, strict=False)
    twin.eval()
    with torch.no_grad():
        ref = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(o1, ref, rtol=1e-4, atol=1e-5)
    # the running statistics moved away from their initial values
    assert not np.allclose(sess.get_parameters()["bn.running_mean"], 0)

    sess.SaveToFile(tmp_path / "full.etm")
    sess.SaveToFile(tmp_path / "infer.etm", inference_only=True)
    assert os.path.getsize(tmp_path / "infer.etm") < os.path.getsize(tmp_path / "full.etm")
    inf = et.TrainSession.load(tmp_path / "infer.etm")
    inf.Eval()
    np.testing.assert_allclose(inf.RunGraph({"data": x})["output"], o1, rtol=1e-5, atol=1e-5)
    with pytest.raises(SessionStateError):
        inf.Train()


def test_partial_batch_via_resize(mnist_batches):
    """A 17-sample batch trains and evaluates like the same samples in PyTorch."""
    import torch

    model, sess = make_session(batch=64, p=0.0)
    x, y = mnist_batches(17, 1)[0]
    params0 = sess.get_parameters()
    sess.Resize({"data": (17, 1, 28, 28), "label": (17,)})
    sess.Train()
    loss = float(sess.RunGraph({"data": x, "label": y})["loss"])

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 20, 5)
            self.conv2 = torch.nn.Conv2d(20, 50, 5)
            self.fc1 = torch.nn.Linear(800, 500)
            self.fc2 = torch.nn.Linear(500, 10)

        def forward(self, x):
            F_ = torch.nn.functional
            x = F_.max_pool2d(F_.relu(self.conv1(x)), 2)
            x = F_.max_pool2d(F_.relu(self.conv2(x)), 2)
            return self.fc2(F_.relu(self.fc1(torch.flatten(x, 1))))

    twin = Twin()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in params0.items()})
    ref = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y))
    assert loss == pytest.approx(ref.item(), rel=1e-4)
    sess.Eval()
    out = sess.RunGraph({"data": x})["output"]
    assert out.shape == (17, 10)


def test_no_heap_allocation_during_a_step(mnist_batches):
    if _native.debug_alloc_count() < 0:
        pytest.fail("the extension is built without ET_DEBUG_ALLOC allocation counting")
    _, sess = make_session(batch=32)
    batches = mnist_batches(32, 6)
    sess.Train()
    sess.RunGraph({"data": batches[0][0], "label": batches[0][1]})
    before = _native.debug_alloc_count()
    for x, y in batches[1:]:
        sess._s.set_input("data", x)
        sess._s.set_input("label", y)
        sess._s.run()
    assert _native.debug_alloc_count() == before


def test_profile_counts_nodes_without_allocating(mnist_batches):
    _, sess = make_session(batch=32)
    batches = mnist_batches(32, 4)
    sess.Train()
    assert not sess.profiling and sess.profile() == {}  # off by default: nothing recorded
    sess.RunGraph({"data": batches[0][0], "label": batches[0][1]})
    assert sess.profile() == {}
    sess.profiling = True  # allocates and zeroes the counters (outside a step)
    before = _native.debug_alloc_count()
    for x, y in batches[1:]:
        sess._s.set_input("data", x)
        sess._s.set_input("label", y)
        sess._s.run()
    if before >= 0:
        assert _native.debug_alloc_count() == before
    by_op = sess.profile()
    assert by_op["conv2d"]["calls"] == 2 * 3 and by_op["sgd_update"]["calls"] >= 3
    assert all(r["ms"] >= 0 and r["ms_per_call"] * r["calls"] == pytest.approx(r["ms"])
               for r in by_op.values())
    by_node = sess.profile(by="node")
    assert sum(r["calls"] for r in by_node.values()) == 3 * sess._s.node_count("train")
    assert any("conv2d conv1" in k for k in by_node)
    sess.profiling = True  # switching on again resets
    assert sess.profile() == {}
    sess.profiling = False
    with pytest.raises(Exception):
        sess.profile(by="layer")


def test_bad_inputs_are_clear_errors(tmp_path):
    _, sess = make_session(batch=8)
    x, y = random_batch(8)
    sess.Train()
    with pytest.raises(ShapeError):
        sess.RunGraph({"data": x[:4], "label": y})
    with pytest.raises(NotFoundError):
        sess.RunGraph({"data": x})
    bad = y.copy()
    bad[3] = 10
    step = sess.step
    with pytest.raises(LabelError):
        sess.RunGraph({"data": x, "label": bad})
    bad[3] = -1
    with pytest.raises(LabelError):
        sess.RunGraph({"data": x, "label": bad})
    assert sess.step == step  # a failed step does not count
    with pytest.raises((TypeError, ValueError)):
        sess.RunGraph({"data": x.astype(np.complex64), "label": y})
    with pytest.raises(OSError):
        et.TrainSession.load(tmp_path / "missing.etm")
    with pytest.raises(ShapeError):
        sess.Resize({"data": (8, 3, 28, 28), "label": (8,)})
    with pytest.raises(NotFoundError):
        sess.Resize({"nope": (8,)})
    # a failed resize leaves the session usable at its old shapes
    sess.RunGraph({"data": x, "label": y})


def test_failed_save_keeps_existing_model(tmp_path):
    _, sess = make_session(batch=8)
    target = tmp_path / "model.etm"
    sess.SaveToFile(target)
    before = target.read_bytes()
    with pytest.raises(OSError):
        sess.SaveToFile(tmp_path / "no-such-dir" / "model.etm")
    assert target.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name != "model.etm"]


def _mutations(data: bytes, n: int, seed: int = 1234):
    rnd = random.Random(seed)
    for i in range(n):
        b = bytearray(data)
        kind = i % 4
        if kind == 0:
            b = b[:rnd.randrange(len(b))]
        elif kind == 1:
            for _ in range(rnd.randint(1, 4)):
                pos = rnd.randrange(len(b))
                b[pos] ^= 1 << rnd.randrange(8)
        elif kind == 2:  # absurd 32/64-bit value in the header, table or records
            pos = rnd.randrange(min(len(b) - 8, 4096)) & ~3
            val = rnd.choice([0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 2**63, 2**64 - 1, 0])
            b[pos:pos + 8] = val.to_bytes(8, "little")
            if bytes(b) == data:  # the field already held that value: flip a bit instead
                b[pos] ^= 0x10
        else:  # bit flip in the metadata region, with checksums made valid again
            pos = rnd.randrange(min(len(b), 4096))
            b[pos] ^= 1 << rnd.randrange(8)
            b = bytearray(_refresh_checksums(bytes(b)))
        if bytes(b) == data:  # two flips cancelled out: still make it a mutation
            b[0] ^= 1
        yield bytes(b)


def _refresh_checksums(b: bytes) -> bytes:
    """Recompute all CRCs so the semantic checks behind them are exercised too."""
    import struct
    import zlib

    b = bytearray(b)
    try:
        nsec = struct.unpack_from("<I", b, 24)[0]
        if not 1 <= nsec <= 64:
            return bytes(b)
        for i in range(nsec):
            e = 64 + 32 * i
            off, size = struct.unpack_from("<QQ", b, e + 8)
            if off + size <= len(b):
                struct.pack_into("<I", b, e + 24, zlib.crc32(bytes(b[off:off + size])))
        struct.pack_into("<I", b, 32, zlib.crc32(bytes(b[64:64 + 32 * nsec])))
        struct.pack_into("<I", b, 36, zlib.crc32(bytes(b[:36])))
    except struct.error:
        pass
    return bytes(b)


def test_1000_corrupt_files_raise_clear_errors(tmp_path):
    """Truncations, bit flips and absurd values: every one is a ModelFormatError (a
    ValueError). A further quarter of the mutations recompute the checksums so that the
    semantic checks behind them are reached; those must be rejected or run safely."""
    _, sess = make_session(batch=4, p=0.5)
    path = tmp_path / "m.etm"
    sess.SaveToFile(path)
    data = path.read_bytes()
    x, y = random_batch(4)
    rejected = 0
    for i, blob in enumerate(_mutations(data, 1000)):
        try:
            s = et.TrainSession.from_bytes(blob, threads=1)
        except ModelFormatError as e:
            assert isinstance(e, ValueError) and str(e)
            rejected += 1
            continue
        assert i % 4 == 3, f"mutation {i} (kind {i % 4}) was accepted"
        # a semantic mutation the reader accepts must still be safe to run
        try:
            s.Train()
            s.RunGraph({"data": x, "label": y})
            s.Eval()
            s.RunGraph({"data": x})
        except EdgetrainError:
            pass
    assert rejected >= 900


def test_learning_rate_schedule_runs_in_c(mnist_batches):
    et.manual_seed(0)
    model = LeNet(0.0)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (16, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((16,), "int64")}, optimizer=opt, scheduler=sched)
    sess.Train()
    seen = []
    for x, y in mnist_batches(16, 5):
        seen.append(sess.learning_rate)
        sess.RunGraph({"data": x, "label": y})
    assert seen == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
