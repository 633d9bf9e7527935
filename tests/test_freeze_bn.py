"""QConfig(freeze_bn_step=N): the folded Conv+BatchNorm pairs freeze their BatchNorm at step N.

Against torch.ao.nn.intrinsic.qat.ConvBn2d + freeze_bn_stats() called at step N (losses, weights,
running statistics over SGD steps); running statistics bit-exact frozen from step N on and
moving before, for every thread count; a checkpoint saved before the freeze step resumes
bit-identically; bad values. (The frozen kernels against torch's eval-mode batch_norm in float64:
tests/test_ops_vs_torch.py, cases batchnorm_train-frozen_*.)
"""
import numpy as np
import pytest
import torch
from torch.ao import quantization as tq

import edgetrain as et
from edgetrain import nn, optim, quant
from edgetrain.nn import functional as F

RNG = np.random.default_rng(20261214)
N, C, OC, HW, CLASSES = 4, 3, 5, 6, 4
FREEZE, STEPS, LR = 3, 6, 0.05


def bits_equal(a, b, what):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape, what
    diff = np.flatnonzero(a.view(np.uint32) != b.view(np.uint32))
    assert diff.size == 0, f"{what}: {diff.size} values differ"


def _data():
    g = np.random.default_rng(5)
    p = {
        "w": (g.standard_normal((OC, C, 3, 3)) * 0.3).astype(np.float32),
        "b": (g.standard_normal(OC) * 0.1).astype(np.float32),
        "gamma": g.uniform(0.5, 1.5, OC).astype(np.float32),
        "beta": (g.standard_normal(OC) * 0.1).astype(np.float32),
        "fw": (g.standard_normal((CLASSES, OC * HW * HW)) * 0.1).astype(np.float32),
        "fb": (g.standard_normal(CLASSES) * 0.1).astype(np.float32),
    }
    xs = [(g.standard_normal((N, C, HW, HW)) * (1.0 + 0.2 * i) + 0.1 * i).astype(np.float32)
          for i in range(STEPS)]
    ws = [g.standard_normal((N, CLASSES)).astype(np.float32) for _ in range(STEPS)]
    return p, xs, ws


def _model(p):
    m = nn.Sequential(nn.Conv2d(C, OC, 3, padding=1), nn.BatchNorm2d(OC), nn.ReLU(),
                      nn.Flatten(), nn.Linear(OC * HW * HW, CLASSES))
    m[0].weight.data, m[0].bias.data = p["w"].copy(), p["b"].copy()
    m[1].weight.data, m[1].bias.data = p["gamma"].copy(), p["beta"].copy()
    m[4].weight.data, m[4].bias.data = p["fw"].copy(), p["fb"].copy()
    return m


def _session(p, freeze=FREEZE, threads=2):
    m = _model(p)
    return et.TrainSession.from_module(
        m, inputs={"x": (N, C, HW, HW)}, labels={"wout": ((N, CLASSES), "float32")},
        loss=lambda y, wout: F.sum(F.mul(y, wout)),
        optimizer=optim.SGD(m.parameters(), lr=LR),
        quantize=quant.QConfig(freeze_bn_step=freeze), threads=threads)


def _torch_reference(p, xs, ws):
    import torch.ao.nn.intrinsic.qat as niq
    import torch.ao.nn.qat as nnqat

    wq = tq.FakeQuantize.with_args(observer=tq.MovingAveragePerChannelMinMaxObserver,
                                   quant_min=-127, quant_max=127, dtype=torch.qint8,
                                   qscheme=torch.per_channel_symmetric, ch_axis=0)
    aq = tq.FakeQuantize.with_args(observer=tq.MovingAverageMinMaxObserver, quant_min=0,
                                   quant_max=255, dtype=torch.quint8,
                                   qscheme=torch.per_tensor_affine)
    qc = tq.QConfig(activation=aq, weight=wq)
    convbn = niq.ConvBn2d(C, OC, 3, padding=1, bias=True, qconfig=qc)
    fc = nnqat.Linear(OC * HW * HW, CLASSES, qconfig=qc)
    act1, act2 = aq(), aq()
    with torch.no_grad():
        convbn.weight.copy_(torch.tensor(p["w"]))
        convbn.bias.copy_(torch.tensor(p["b"]))
        convbn.bn.weight.copy_(torch.tensor(p["gamma"]))
        convbn.bn.bias.copy_(torch.tensor(p["beta"]))
        fc.weight.copy_(torch.tensor(p["fw"]))
        fc.bias.copy_(torch.tensor(p["fb"]))
    mods = torch.nn.ModuleList([convbn, fc, act1, act2]).train()
    opt = torch.optim.SGD(list(convbn.parameters()) + list(fc.parameters()), lr=LR)
    losses, stats = [], []
    for step, (x, w) in enumerate(zip(xs, ws)):
        if step == FREEZE:
            torch.ao.nn.intrinsic.qat.freeze_bn_stats(convbn)
        opt.zero_grad()
        y = act1(convbn(torch.tensor(x)))
        y = act2(fc(torch.relu(y).flatten(1)))
        loss = (y * torch.tensor(w)).sum()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        stats.append((convbn.bn.running_mean.detach().numpy().copy(),
                      convbn.bn.running_var.detach().numpy().copy()))
    params = {"0.weight": convbn.weight, "0.bias": convbn.bias, "1.weight": convbn.bn.weight,
              "1.bias": convbn.bn.bias, "4.weight": fc.weight, "4.bias": fc.bias}
    return losses, stats, {k: v.detach().numpy() for k, v in params.items()}


def test_freeze_bn_step_matches_torch_freeze_bn_stats():
    p, xs, ws = _data()
    sess = _session(p)
    sess.Train()
    losses, stats = [], []
    for x, w in zip(xs, ws):
        losses.append(float(sess.RunGraph({"x": x, "wout": w})["loss"]))
        s = sess.get_parameters()
        stats.append((s["1.running_mean"], s["1.running_var"]))
    ref_losses, ref_stats, ref_params = _torch_reference(p, xs, ws)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5,
                               atol=1e-5 * max(abs(v) for v in ref_losses))
    for k, (ours, theirs) in enumerate(zip(stats, ref_stats)):
        np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5, atol=1e-6, err_msg=f"mean {k}")
        np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, err_msg=f"var {k}")
    state = sess.get_parameters()
    for k, v in ref_params.items():
        np.testing.assert_allclose(state[k], v, rtol=1e-5, atol=1e-5 * np.abs(v).max(),
                                   err_msg=k)
    print("max |loss diff|", max(abs(a - b) for a, b in zip(losses, ref_losses)),
          "max |weight diff|", max(float(np.abs(state[k] - v).max()) for k, v in ref_params.items()))


@pytest.mark.parametrize("threads", [1, 3])
def test_running_stats_frozen_from_the_step_on(threads):
    p, xs, ws = _data()
    sess = _session(p, threads=threads)
    sess.Train()
    stats = []
    for x, w in zip(xs, ws):
        sess.RunGraph({"x": x, "wout": w})
        s = sess.get_parameters()
        stats.append(np.concatenate([s["1.running_mean"], s["1.running_var"]]))
    for k in range(1, FREEZE):       # steps 0 .. FREEZE-1 update them
        assert not np.array_equal(stats[k], stats[k - 1]), k
    for k in range(FREEZE, STEPS):   # step FREEZE on: unchanged, bit for bit
        bits_equal(stats[k], stats[FREEZE - 1], f"running stats moved at step {k}")
    if threads == 3:                 # the same bits for every thread count
        one = _session(p, threads=1)
        one.Train()
        for x, w in zip(xs, ws):
            one.RunGraph({"x": x, "wout": w})
        a, b = sess.get_parameters(), one.get_parameters()
        for k in a:
            bits_equal(a[k], b[k], k)


def test_freeze_step_is_in_the_file_and_resumes_bit_identically(tmp_path):
    p, xs, ws = _data()
    sess = _session(p)
    sess.Train()
    for x, w in zip(xs[:2], ws[:2]):
        sess.RunGraph({"x": x, "wout": w})
    path = tmp_path / "freeze.etm"
    sess.SaveToFile(path)
    resumed = et.TrainSession.load(path, threads=2)
    resumed.Train()
    assert resumed.step == sess.step == 2
    for x, w in zip(xs[2:], ws[2:]):     # crosses the freeze step
        a = sess.RunGraph({"x": x, "wout": w})["loss"]
        b = resumed.RunGraph({"x": x, "wout": w})["loss"]
        bits_equal(a, b, "loss")
    pa, pb = sess.get_parameters(), resumed.get_parameters()
    assert set(pa) == set(pb)
    for k in pa:
        bits_equal(pa[k], pb[k], k)
    g = sess.to_graph()
    frozen = [g.nodes[n].iattr for n in range(len(g.nodes))
              if g.nodes[n].op in ("batchnorm_train", "batchnorm_bwd")]
    assert frozen and all(a == [FREEZE] for a in frozen)


def test_no_freeze_leaves_batchnorm_training():
    p, xs, ws = _data()
    sess = _session(p, freeze=None)
    sess.Train()
    stats = []
    for x, w in zip(xs, ws):
        sess.RunGraph({"x": x, "wout": w})
        stats.append(sess.get_parameters()["1.running_mean"])
    assert all(not np.array_equal(a, b) for a, b in zip(stats, stats[1:]))
    g = sess.to_graph()
    assert all(g.nodes[n].iattr == [-1] for n in range(len(g.nodes))
               if g.nodes[n].op in ("batchnorm_train", "batchnorm_bwd"))


@pytest.mark.parametrize("bad", [-1, -5, True, False, 3.0, 2.5, "3"])
def test_bad_freeze_bn_step(bad):
    with pytest.raises(quant.QuantConfigError, match="freeze_bn_step") as e:
        quant.QConfig(freeze_bn_step=bad)
    assert isinstance(e.value, ValueError)


def test_freeze_bn_step_zero_and_numpy_int_accepted():
    assert quant.QConfig(freeze_bn_step=0).freeze_bn_step == 0
    assert quant.QConfig(freeze_bn_step=np.int64(4)).freeze_bn_step == 4


def test_et_train_freezes_the_running_stats_at_the_step(tmp_path):
    """et_train (host build, no Python in the loop) trains a QAT Conv+BN model exported with
    freeze_bn_step=3: its running statistics move over steps 0..2 and not after; the file it
    saves after 5 steps is a Python session's on the same batches, bit for bit."""
    from test_android import _make, _python_losses, _run, _write_idx

    et_train = _make("host")
    rng = np.random.default_rng(1)
    data = tmp_path / "tiny"
    data.mkdir()
    images = rng.integers(0, 256, (64, 28, 28))
    labels = rng.integers(0, 10, 64)
    _write_idx(data / "train-images-idx3-ubyte", images)
    _write_idx(data / "train-labels-idx1-ubyte", labels)
    _write_idx(data / "t10k-images-idx3-ubyte", images[:8])
    _write_idx(data / "t10k-labels-idx1-ubyte", labels[:8])
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(4), nn.Flatten(), nn.Linear(4 * 7 * 7, 10))
    sess = et.TrainSession.from_module(
        model, inputs={"data": (8, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((8,), "int64")}, optimizer=optim.SGD(model.parameters(), lr=0.05),
        quantize=quant.QConfig(freeze_bn_step=FREEZE), threads=1)
    src = tmp_path / "qat.etm"
    sess.SaveToFile(str(src))
    stats = {}
    for steps in (2, 3, 5):
        out = tmp_path / f"after{steps}.etm"
        proc = _run([et_train, "-f", src, "-d", data, "-i", steps, "-t", 1, "-p", 1,
                     "--test-limit", 0, "-s", out])
        assert proc.returncode == 0, proc.stderr
        trained = et.TrainSession.load(str(out), threads=1)
        assert trained.step == steps
        p = trained.get_parameters()
        stats[steps] = np.concatenate([p["1.running_mean"], p["1.running_var"]])
    assert not np.array_equal(stats[2], stats[3])      # step 2 still updates them
    bits_equal(stats[5], stats[3], "running stats moved after freeze_bn_step in et_train")
    py, _ = _python_losses(et, src, images, labels, 5, 8)
    p_py = py.get_parameters()
    c5 = et.TrainSession.load(str(tmp_path / "after5.etm"), threads=1).get_parameters()
    assert set(c5) == set(p_py)
    for k in p_py:
        bits_equal(c5[k], p_py[k], k)


def test_files_without_freeze_step_load_and_never_freeze():
    """A file written before the attribute (batchnorm nodes with no iattr) loads and trains
    exactly as freeze_bn_step=None."""
    p, xs, ws = _data()
    sess = _session(p, freeze=None)
    g = sess.to_graph()
    bn = [n for n in range(len(g.nodes)) if g.nodes[n].op in ("batchnorm_train", "batchnorm_bwd")]
    assert bn
    for n in bn:
        g.nodes[n].iattr = []
    old = et.TrainSession.from_graph(g, threads=2)
    sess.Train()
    old.Train()
    for x, w in zip(xs, ws):
        bits_equal(sess.RunGraph({"x": x, "wout": w})["loss"],
                   old.RunGraph({"x": x, "wout": w})["loss"], "loss")
    a, b = sess.get_parameters(), old.get_parameters()
    for k in a:
        bits_equal(a[k], b[k], k)


def test_bad_freeze_step_in_a_file_is_refused():
    p, _, _ = _data()
    g = _session(p).to_graph()
    n = next(n for n in range(len(g.nodes)) if g.nodes[n].op == "batchnorm_train")
    g.nodes[n].iattr = [-2]
    with pytest.raises(et.errors.EdgetrainError, match="freeze_step must be >= 0"):
        et.TrainSession.from_graph(g, threads=1)
