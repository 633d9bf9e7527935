"""Quantization-aware training (fake quantization in float) against PyTorch.

Forward bits and the straight-through gradient against torch.fake_quantize_per_tensor_affine /
_per_channel_affine (bits 2..8, constructed exact ties, out-of-range values); the observers
against torch.ao.quantization's MinMaxObserver, MovingAverageMinMaxObserver and their
per-channel versions over several steps (min/max, scale and zero point, bitwise); eval never
moves an observer; observe_until_step; a QAT checkpoint resumes bit-identically; LeNet W8A8 QAT
on real MNIST against the float control; bad arguments.
"""
import numpy as np
import pytest
import torch
from torch.ao import quantization as tq

import edgetrain as et
from edgetrain import nn, optim, quant
from edgetrain.nn import functional as F
from edgetrain.models import LeNet
from conftest import mnist_arrays

RNG = np.random.default_rng(20261205)
BITS = list(range(2, 9))


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def ties(scale: float, zp: int, lo: int, hi: int) -> np.ndarray:
    """float32 x with x * (1/scale) (in float) exactly k + 0.5, for levels around the range."""
    s = np.float32(scale)
    inv = np.float32(1.0) / s
    out = []
    for k in range(lo - zp - 3, hi - zp + 3):
        t = np.float32(k + 0.5)
        x0 = np.float32(t * s)
        for x in (np.nextafter(x0, np.float32(-np.inf)), x0, np.nextafter(x0, np.float32(np.inf))):
            if np.float32(x * inv) == t:
                out.append(x)
    return np.array(out, np.float32)


def sample(scale, zp, lo, hi, n=300):
    """Random values over (and beyond) the range, exact ties, the range ends and zeros."""
    s = float(scale)
    span = (hi - lo) * s
    r = RNG.uniform(-1.5 * span, 1.5 * span, n).astype(np.float32)
    far = np.array([-1e6, 1e6, -3.0e4 * s, 3.0e4 * s, 0.0, -0.0], np.float32)
    ends = np.array([(lo - zp) * s, (hi - zp) * s, (lo - zp - 0.5) * s, (hi - zp + 0.5) * s],
                    np.float32)
    return np.concatenate([r, ties(s, zp, lo, hi), far, ends])


class Op(nn.Module):
    """fake_quant of a trainable x with fixed scale / zero point buffers."""

    def __init__(self, x, scale, zp, axis, lo, hi):
        super().__init__()
        self.x = nn.Parameter(x)
        self.scale = nn.Buffer(np.asarray(scale, np.float32))
        self.zero_point = nn.Buffer(np.asarray(zp, np.float32))
        self.axis, self.lo, self.hi = axis, lo, hi

    def forward(self):
        if self.axis is None:
            return quant.fake_quantize_per_tensor_affine(self.x, self.scale, self.zero_point,
                                                         self.lo, self.hi)
        return quant.fake_quantize_per_channel_affine(self.x, self.scale, self.zero_point,
                                                      self.axis, self.lo, self.hi)


def run_op(x, scale, zp, axis, lo, hi, w):
    """(y, dL/dx) for L = sum(y * w), by the runtime."""
    model = Op(x, scale, zp, axis, lo, hi)
    sess = et.TrainSession.from_module(model, inputs={}, loss=lambda y: F.sum(F.mul(y, w)),
                                       threads=2)
    sess.Grad()
    y = sess.RunGraph({})["output"]
    return y, sess.get_gradients()["x"]


def torch_op(x, scale, zp, axis, lo, hi, w):
    xt = torch.tensor(x, requires_grad=True)
    if axis is None:
        y = torch.fake_quantize_per_tensor_affine(xt, float(scale[0]), int(zp[0]), lo, hi)
    else:
        y = torch.fake_quantize_per_channel_affine(xt, torch.tensor(scale),
                                                   torch.tensor(np.asarray(zp, np.int32)),
                                                   axis, lo, hi)
    (y * torch.tensor(w)).sum().backward()
    return y.detach().numpy(), xt.grad.numpy()


def bits_equal(a, b, what):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape, what
    diff = np.flatnonzero(a.view(np.uint32) != b.view(np.uint32))
    assert diff.size == 0, (f"{what}: {diff.size} values differ, first at {diff[0]}: "
                            f"{a.ravel()[diff[0]]!r} vs {b.ravel()[diff[0]]!r}")


# ---------------------------------------------------------------------------------------------
# fake quantization: forward bits and gradient mask
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", BITS)
def test_per_tensor_affine_matches_torch_bitwise(bits):
    lo, hi = quant.activation_range(bits)
    for scale, zp in ((0.0625, lo), (0.1, (lo + hi) // 2), (0.0173, hi), (3.7, 1)):
        x = sample(scale, zp, lo, hi)
        n_ties = ties(scale, zp, lo, hi).size
        assert n_ties > hi - lo, "the tie construction found too few ties"
        w = RNG.standard_normal(x.shape).astype(np.float32)
        s, z = np.array([scale], np.float32), np.array([zp], np.float32)
        y, g = run_op(x, s, z, None, lo, hi, w)
        y_t, g_t = torch_op(x, s, z, None, lo, hi, w)
        bits_equal(y, y_t, f"forward bits={bits} scale={scale} zp={zp}")
        bits_equal(g, g_t, f"gradient bits={bits} scale={scale} zp={zp}")
        assert (g == 0).any() and (g == w).any()   # both sides of the mask are exercised


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("axis", [0, 1])
def test_per_channel_symmetric_matches_torch_bitwise(bits, axis):
    lo, hi = quant.weight_range(bits)
    scales = np.array([0.0625, 0.013, 0.5, 1.7, 0.25 / 3], np.float32)
    cols = [sample(s, 0, lo, hi, n=100) for s in scales]
    m = max(c.size for c in cols)
    x = np.stack([np.resize(c, m) for c in cols])              # [C, m], ties of each channel
    x = x.reshape(5, -1, 2) if axis == 0 else x.T.reshape(-1, 5, 1)
    zp = np.zeros(5, np.float32)
    w = RNG.standard_normal(x.shape).astype(np.float32)
    y, g = run_op(x, scales, zp, axis, lo, hi, w)
    y_t, g_t = torch_op(x, scales, zp, axis, lo, hi, w)
    bits_equal(y, y_t, f"forward bits={bits} axis={axis}")
    bits_equal(g, g_t, f"gradient bits={bits} axis={axis}")


def test_per_channel_affine_zero_points_match_torch():
    lo, hi = 0, 255
    scales = np.array([0.02, 0.1, 0.0078125], np.float32)
    zps = np.array([0, 128, 255], np.float32)
    x = np.stack([np.resize(sample(s, int(z), lo, hi, 200), 400) for s, z in zip(scales, zps)])
    x = x.reshape(2, 3, 200).copy()
    x[:, :, :] = np.stack([x[0], x[1]])
    w = RNG.standard_normal(x.shape).astype(np.float32)
    y, g = run_op(x, scales, zps, 1, lo, hi, w)
    y_t, g_t = torch_op(x, scales, zps, 1, lo, hi, w)
    bits_equal(y, y_t, "forward")
    bits_equal(g, g_t, "gradient")


def test_ties_round_half_even():
    """x * (1/s) = k + 0.5 exactly rounds to the even neighbour (not half away from zero)."""
    s = np.array([0.25], np.float32)
    x = np.array([0.125, 0.375, -0.125, -0.375, 0.625], np.float32)   # 0.5, 1.5, -0.5, -1.5, 2.5
    y, _ = run_op(x, s, np.zeros(1, np.float32), None, -8, 7, np.ones(5, np.float32))
    np.testing.assert_array_equal(y, np.array([0.0, 0.5, 0.0, -0.5, 0.5], np.float32))
    assert not np.signbit(y[2])   # -0.0 + zero point 0.0 = +0.0, as PyTorch (an integer there)


# ---------------------------------------------------------------------------------------------
# observers
# ---------------------------------------------------------------------------------------------
class Observed(nn.Module):
    """One FakeQuantize on the input; a zero parameter gives the train program an update."""

    def __init__(self, fq):
        super().__init__()
        self.fq = fq
        self.w = nn.Parameter(np.zeros(1, np.float32))

    def forward(self, x):
        return F.add(self.fq(x), self.w)


def observed_session(fq, shape):
    model = Observed(fq)
    return et.TrainSession.from_module(model, inputs={"x": shape}, loss=lambda y: F.sum(y),
                                       optimizer=optim.SGD(model.parameters(), lr=0.0),
                                       threads=2)


def batches(shape, steps=6):
    """Batches whose range drifts and widens, so EMA and running min/max differ."""
    return [(RNG.standard_normal(shape) * (1.0 + 0.5 * i) + 0.3 * i - 0.5).astype(np.float32)
            for i in range(steps)]


def torch_observer(kind, per_channel, lo, hi, c):
    if per_channel:
        cls = tq.PerChannelMinMaxObserver if kind == "minmax" else \
            tq.MovingAveragePerChannelMinMaxObserver
        extra = {} if kind == "minmax" else {"averaging_constant": c}
        return cls(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                   quant_min=lo, quant_max=hi, **extra)
    cls = tq.MinMaxObserver if kind == "minmax" else tq.MovingAverageMinMaxObserver
    extra = {} if kind == "minmax" else {"averaging_constant": c}
    return cls(dtype=torch.quint8, qscheme=torch.per_tensor_affine, quant_min=lo, quant_max=hi,
               **extra)


@pytest.mark.parametrize("kind", ["ema", "minmax"])
@pytest.mark.parametrize("per_channel,bits", [(False, 8), (False, 3), (True, 8), (True, 4)])
def test_observers_match_torch(kind, per_channel, bits):
    c = 0.05 if kind == "ema" else 0.01
    if per_channel:
        lo, hi = quant.weight_range(bits)
        fq = quant.FakeQuantize(lo, hi, channels=4, axis=0, symmetric=True, observer=kind,
                                averaging_constant=c)
        shape = (4, 3, 5)
    else:
        lo, hi = quant.activation_range(bits)
        fq = quant.FakeQuantize(lo, hi, observer=kind, averaging_constant=c)
        shape = (3, 7)
    sess = observed_session(fq, shape)
    obs = torch_observer(kind, per_channel, lo, hi, c)
    sess.Train()
    for i, x in enumerate(batches(shape)):
        out = sess.RunGraph({"x": x})["output"]
        obs(torch.tensor(x))
        scale_t, zp_t = obs.calculate_qparams()
        p = sess.get_parameters()
        what = f"step {i}"
        bits_equal(p["fq.min_val"], obs.min_val.numpy().reshape(-1), what + " min_val")
        bits_equal(p["fq.max_val"], obs.max_val.numpy().reshape(-1), what + " max_val")
        bits_equal(p["fq.scale"], scale_t.numpy().reshape(-1), what + " scale")
        np.testing.assert_array_equal(p["fq.zero_point"], zp_t.numpy().reshape(-1), what)
        # the step's forward already used the updated scale and zero point
        if per_channel:
            ref = torch.fake_quantize_per_channel_affine(torch.tensor(x), scale_t, zp_t.int(), 0,
                                                         lo, hi)
        else:
            ref = torch.fake_quantize_per_tensor_affine(torch.tensor(x), float(scale_t),
                                                        int(zp_t), lo, hi)
        bits_equal(out, ref.numpy(), what + " output")
    assert sess.step == 6


def test_eval_never_moves_an_observer():
    fq = quant.FakeQuantize(0, 255, observer="minmax")
    sess = observed_session(fq, (2, 9))
    xs = batches((2, 9), 3)
    sess.Train()
    for x in xs:
        sess.RunGraph({"x": x})
    before = sess.get_parameters()
    sess.Eval()
    wide = (RNG.standard_normal((2, 9)) * 100).astype(np.float32)
    out = sess.RunGraph({"x": wide})["output"]
    after = sess.get_parameters()
    for k in before:
        bits_equal(after[k], before[k], f"eval moved {k}")
    ref = torch.fake_quantize_per_tensor_affine(torch.tensor(wide), float(before["fq.scale"][0]),
                                                int(before["fq.zero_point"][0]), 0, 255)
    bits_equal(out, ref.numpy(), "eval output with the stored scale")


def test_observe_until_step_stops_the_observers():
    fq = quant.FakeQuantize(0, 15, observer="ema", averaging_constant=0.5, observe_until_step=2)
    sess = observed_session(fq, (3, 4))
    sess.Train()
    xs = batches((3, 4), 5)
    states = []
    for x in xs:
        sess.RunGraph({"x": x})
        states.append(sess.get_parameters())
    assert not np.array_equal(states[0]["fq.min_val"], states[1]["fq.min_val"])
    for s in states[2:]:
        for k in ("fq.min_val", "fq.max_val", "fq.scale", "fq.zero_point"):
            bits_equal(s[k], states[1][k], f"{k} moved after observe_until_step")
    # the stop is in the file: a reloaded session also stays frozen
    data = sess.to_graph()
    sess2 = et.TrainSession.from_graph(data)
    sess2.Train()
    sess2.RunGraph({"x": xs[0] * 10})
    bits_equal(sess2.get_parameters()["fq.scale"], states[1]["fq.scale"], "reloaded")


# ---------------------------------------------------------------------------------------------
# QAT models: names, checkpoints, MNIST
# ---------------------------------------------------------------------------------------------
def lenet_session(model, qconfig, lr=0.01, momentum=0.9):
    return et.TrainSession.from_module(
        model, inputs={"x": (None, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"y": ((None,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=lr, momentum=momentum),
        quantize=qconfig, threads=2, seed=7, max_batch=1000)


def test_qat_model_keeps_the_float_parameter_names():
    model = LeNet()
    fp = lenet_session(model, None)
    qat = lenet_session(model, quant.QConfig(weight_bits=4, act_bits=6))
    fp_params = fp.get_parameters(include_buffers=False)
    assert set(qat.get_parameters(include_buffers=False)) == set(fp_params)
    extra = set(qat.get_parameters()) - set(fp_params)
    assert "conv1.weight_fake_quant.scale" in extra
    assert "fc2.activation_post_process.zero_point" in extra
    assert all(".weight_fake_quant." in k or ".activation_post_process." in k for k in extra)
    qat.set_parameters(fp_params)            # a float state initialises the QAT model
    assert type(model.conv1) is nn.Conv2d     # the user's model is not modified
    g = qat.to_graph()
    ev = [g.nodes[n].op for n in g.programs[0].nodes]
    tr = [g.nodes[n].op for n in g.programs[2].nodes]
    # eval: conv1 (its input is not quantized: quantize_input=False) simulates in float, the
    # layers after it run the int8 kernels (tests/test_int8.py)
    assert ev.count("fake_quant") == 2 and "quant_observe" not in ev
    assert ev.count("qconv2d") == 1 and ev.count("qlinear") == 2 and ev.count("qprep") == 3
    assert tr.count("quant_observe") == 8 and tr.count("fake_quant_bwd") >= 6


def test_qat_checkpoint_resumes_bit_identically(tmp_path):
    x, y = mnist_arrays(True)
    steps = [(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]) for i in range(8)]
    sess = lenet_session(LeNet(), quant.QConfig(observer="ema", observe_until_step=6))
    sess.Train()
    for xb, yb in steps[:4]:
        sess.RunGraph({"x": xb, "y": yb})
    path = tmp_path / "qat.etm"
    sess.SaveToFile(path)
    resumed = et.TrainSession.load(path, threads=2)
    resumed.Train()
    assert resumed.step == sess.step == 4
    for xb, yb in steps[4:]:
        a = sess.RunGraph({"x": xb, "y": yb})
        b = resumed.RunGraph({"x": xb, "y": yb})
        bits_equal(a["loss"], b["loss"], "loss")
    pa, pb = sess.get_parameters(), resumed.get_parameters()
    assert set(pa) == set(pb)
    for k in pa:
        bits_equal(pa[k], pb[k], k)
    assert resumed.step == 8


def _accuracy(sess, x, y):
    sess.Eval()
    pred = sess.predict(x, batch_size=1000)
    return 100.0 * float((np.argmax(pred, 1) == y).mean())


def _train(sess, x, y, start, steps, batch=64):
    sess.Train()
    for i in range(steps):
        j = (start + i * batch) % (len(x) - batch)
        sess.RunGraph({"x": x[j:j + batch], "y": y[j:j + batch]})


BASE_STEPS, EXTRA_STEPS = 300, 150


def test_lenet_w8a8_qat_on_mnist_matches_the_float_control():
    """fp32 LeNet trained BASE_STEPS steps (batch 64); then EXTRA_STEPS more on the same batches
    either in fp32 (the control) or as W8A8 QAT initialised from it. Accuracy on the 10k test
    images within 0.3 points (the issue's full protocol, an extra epoch, comes later)."""
    x, y = mnist_arrays(True)
    xt, yt = mnist_arrays(False)
    et.manual_seed(0)
    model = LeNet()
    base = lenet_session(model, None)
    _train(base, x, y, 0, BASE_STEPS)
    trained = base.get_parameters()
    base_acc = _accuracy(base, xt, yt)
    _train(base, x, y, BASE_STEPS * 64, EXTRA_STEPS)
    control = _accuracy(base, xt, yt)
    qat = lenet_session(model, quant.QConfig(weight_bits=8, act_bits=8))
    qat.set_parameters(trained)
    _train(qat, x, y, BASE_STEPS * 64, EXTRA_STEPS)
    qat_acc = _accuracy(qat, xt, yt)
    print(f"\nLeNet MNIST: fp32 after {BASE_STEPS} steps {base_acc:.2f} %, control "
          f"+{EXTRA_STEPS} fp32 {control:.2f} %, +{EXTRA_STEPS} QAT W8A8 {qat_acc:.2f} %")
    assert base_acc > 95.0
    assert qat_acc >= control - 0.3, (qat_acc, control)


# ---------------------------------------------------------------------------------------------
# bad arguments
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,text", [
    ({"weight_bits": 1}, "weight_bits must be an integer from 2 to 8"),
    ({"weight_bits": 9}, "weight_bits"),
    ({"act_bits": 0}, "act_bits must be an integer from 2 to 8"),
    ({"act_bits": 16}, "act_bits"),
    ({"act_bits": 8.0}, "act_bits"),
    ({"weight_bits": True}, "weight_bits"),
    ({"observer": "histogram"}, "observer must be one of"),
    ({"averaging_constant": 0.0}, "averaging_constant"),
    ({"averaging_constant": 1.5}, "averaging_constant"),
    ({"observe_until_step": -1}, "observe_until_step"),
    ({"freeze_bn_step": -1}, "freeze_bn_step"),
])
def test_bad_qconfig(kw, text):
    with pytest.raises(quant.QuantConfigError, match=text) as e:
        quant.QConfig(**kw)
    assert isinstance(e.value, ValueError) and isinstance(e.value, et.errors.EdgetrainError)


def test_bad_quantize_argument():
    with pytest.raises(TypeError, match="QConfig"):
        lenet_session(LeNet(), {"weight_bits": 8})


class Raw(nn.Module):
    def __init__(self, fn, scale_shape=(1,)):
        super().__init__()
        self.fn = fn
        self.scale = nn.Buffer(np.ones(scale_shape, np.float32))
        self.zero_point = nn.Buffer(np.zeros(scale_shape, np.float32))

    def forward(self, x):
        return self.fn(self, x)


@pytest.mark.parametrize("fn,shape,exc,text", [
    (lambda m, x: quant.fake_quantize_per_tensor_affine(x, m.scale, m.zero_point, 5, 5), (1,),
     quant.QuantConfigError, "quant_min 5 must be < quant_max 5"),
    (lambda m, x: quant.fake_quantize_per_tensor_affine(x, m.scale, m.zero_point, 0, 1.5), (1,),
     quant.QuantConfigError, "integers"),
    (lambda m, x: quant.fake_quantize_per_tensor_affine(x, m.scale, m.zero_point, 0, 255), (3,),
     et.errors.ShapeError, "scale of a per-tensor quantization must be"),
    (lambda m, x: quant.fake_quantize_per_channel_affine(x, m.scale, m.zero_point, 1, -7, 7),
     (4,), et.errors.ShapeError, r"layer '<root>'.*scale must be \[5\]"),
    (lambda m, x: quant.fake_quantize_per_channel_affine(x, m.scale, m.zero_point, 2, -7, 7),
     (3,), quant.QuantConfigError, "axis 2 out of range"),
    (lambda m, x: quant.fake_quantize_per_tensor_affine(x, m.scale, m.zero_point, 0, 70000),
     (1,), et.errors.ShapeError, "qmax 70000"),
])
def test_bad_fake_quant_arguments(fn, shape, exc, text):
    with pytest.raises(exc, match=text):
        et.TrainSession.from_module(Raw(fn, shape), inputs={"x": (3, 5)})


def test_bad_fake_quantize_module():
    with pytest.raises(quant.QuantConfigError, match="must contain 0"):
        quant.FakeQuantize(1, 7, symmetric=True)
    with pytest.raises(quant.QuantConfigError, match="observer"):
        quant.FakeQuantize(0, 7, observer="max")


def test_mobilenetv2_qat_folds_bn_and_quantizes_residual_adds():
    from edgetrain.models import MobileNetV2

    model = MobileNetV2(num_classes=10, in_channels=1)
    kw = dict(inputs={"x": (2, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
              labels={"y": ((2,), "int64")}, threads=2)
    qat = et.TrainSession.from_module(model, optimizer=optim.SGD(model.parameters(), lr=0.01),
                                      quantize=quant.QConfig(weight_bits=4, act_bits=8), **kw)
    fp = et.TrainSession.from_module(model, **kw)
    assert set(qat.get_parameters(include_buffers=False)) == \
        set(fp.get_parameters(include_buffers=False))
    g = qat.to_graph()
    train_ops = [g.nodes[n].op for n in g.programs[2].nodes]
    n_conv, n_res = train_ops.count("conv2d"), 10     # MobileNetV2 has 10 residual blocks
    assert train_ops.count("quant_observe") == 2 * n_conv + 2 + n_res   # + the classifier
    assert train_ops.count("batchnorm_train") == n_conv                # every conv folds a BN
    x = RNG.standard_normal((2, 1, 28, 28)).astype(np.float32)
    qat.Train()
    loss = qat.RunGraph({"x": x, "y": np.array([3, 7])})["loss"]
    assert np.isfinite(loss)
    assert "features.1.conv.1.weight_fake_quant.scale" in qat.get_parameters()


# ---------------------------------------------------------------------------------------------
# CLI: --qat-bits W[,A] --init fp32.etm
# ---------------------------------------------------------------------------------------------
def _cli(capsys, *args):
    from edgetrain import cli

    code = cli.main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_qat_from_a_float_model(tmp_path, capsys):
    from conftest import mnist_dir

    common = ["--data", mnist_dir(), "--limit", 128, "--batch-size", 32, "--threads", 2,
              "--no-eval", "--iterations", 2]
    fp = tmp_path / "fp.etm"
    code, out, err = _cli(capsys, "train", "lenet", *common, "--out", fp)
    assert code == 0, err
    qat_path = tmp_path / "qat.etm"
    code, out, err = _cli(capsys, "train", "lenet", *common, "--qat-bits", "4,8", "--init", fp,
                          "--lr", 0, "--weight-decay", 0, "--out", qat_path)
    assert code == 0, err
    fp_p = et.TrainSession.load(fp).get_parameters()
    q = et.TrainSession.load(qat_path)
    qp = q.get_parameters()
    for k in fp_p:                      # lr 0: the float weights are still there
        bits_equal(qp[k], fp_p[k], k)
    g = q.to_graph()
    # the training program (the eval program of the default recipe runs integer kernels only)
    attrs = [g.nodes[n].iattr for n in g.programs[et.ir.TRAIN].nodes if g.nodes[n].op == "fake_quant"]
    assert [-7, 7] in [a[1:3] for a in attrs] and [0, 255] in [a[1:3] for a in attrs]
    assert np.isfinite(qp["conv1.weight_fake_quant.scale"]).all()   # observed in training
    with pytest.raises(SystemExit) as e:
        _cli(capsys, "train", "lenet", *common, "--qat-bits", "1")
    assert e.value.code == 2 and "bits from 2 to 8" in capsys.readouterr().err
    code, out, err = _cli(capsys, "train", fp, *common, "--qat-bits", "8")
    assert code == 2 and "--init" in err


# ---------------------------------------------------------------------------------------------
# Conv + BatchNorm fold simulation vs torch.ao.nn.intrinsic.qat.ConvBn2d
# ---------------------------------------------------------------------------------------------
def test_conv_bn_fold_step_matches_torch_convbn2d():
    import torch.ao.nn.intrinsic.qat as niq

    n, c, oc, hw = 3, 3, 5, 7
    x = RNG.standard_normal((n, c, hw, hw)).astype(np.float32)
    w = (RNG.standard_normal((oc, c, 3, 3)) * 0.3).astype(np.float32)
    b = (RNG.standard_normal(oc) * 0.1).astype(np.float32)
    gamma = RNG.uniform(0.5, 1.5, oc).astype(np.float32)
    beta = (RNG.standard_normal(oc) * 0.1).astype(np.float32)
    rmean = (RNG.standard_normal(oc) * 0.1).astype(np.float32)
    rvar = RNG.uniform(0.5, 2.0, oc).astype(np.float32)
    wout = RNG.standard_normal((n, oc, hw, hw)).astype(np.float32)

    model = nn.Sequential(nn.Conv2d(c, oc, 3, padding=1), nn.BatchNorm2d(oc))
    model[0].weight.data, model[0].bias.data = w, b
    model[1].weight.data, model[1].bias.data = gamma, beta
    model[1].running_mean.data, model[1].running_var.data = rmean, rvar
    sess = et.TrainSession.from_module(model, inputs={"x": x.shape},
                                       loss=lambda y: F.sum(F.mul(y, wout)),
                                       quantize=quant.QConfig(), threads=2)
    names = set(sess.get_parameters(include_buffers=False))
    assert names == {"0.weight", "0.bias", "1.weight", "1.bias"}
    sess.Grad()
    out = sess.RunGraph({"x": x})["output"]
    grads = sess.get_gradients()
    state = sess.get_parameters()

    wq = tq.FakeQuantize.with_args(observer=tq.MovingAveragePerChannelMinMaxObserver,
                                   quant_min=-127, quant_max=127, dtype=torch.qint8,
                                   qscheme=torch.per_channel_symmetric, ch_axis=0)
    aq = tq.FakeQuantize.with_args(observer=tq.MovingAverageMinMaxObserver, quant_min=0,
                                   quant_max=255, dtype=torch.quint8,
                                   qscheme=torch.per_tensor_affine)
    ref = niq.ConvBn2d(c, oc, 3, padding=1, bias=True, qconfig=tq.QConfig(activation=aq, weight=wq))
    act = aq()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(w))
        ref.bias.copy_(torch.tensor(b))
        ref.bn.weight.copy_(torch.tensor(gamma))
        ref.bn.bias.copy_(torch.tensor(beta))
        ref.bn.running_mean.copy_(torch.tensor(rmean))
        ref.bn.running_var.copy_(torch.tensor(rvar))
    ref.train()
    y = act(ref(torch.tensor(x)))
    (y * torch.tensor(wout)).sum().backward()
    y = y.detach().numpy()
    np.testing.assert_allclose(out, y, rtol=1e-6, atol=1e-6 * np.abs(y).max())
    # the conv bias's true gradient is 0 (batch statistics remove it): both sides are rounding
    # noise, compared on the scale of the BatchNorm bias gradient
    gscale = float(np.abs(ref.bn.bias.grad.numpy()).max())
    for ours, theirs in (("0.weight", ref.weight), ("0.bias", ref.bias),
                         ("1.weight", ref.bn.weight), ("1.bias", ref.bn.bias)):
        g = theirs.grad.numpy()
        np.testing.assert_allclose(grads[ours], g, rtol=1e-5,
                                   atol=1e-5 * max(np.abs(g).max(), gscale if ours == "0.bias"
                                                   else 0.0), err_msg=ours)
    np.testing.assert_allclose(state["1.running_mean"], ref.bn.running_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(state["1.running_var"], ref.bn.running_var.numpy(), rtol=1e-6)
    # The folded weights' scale, torch's formula in IEEE float32: gamma / sqrt(running_var + eps)
    # per channel, times w, per-channel absmax / 127. Ours must match it bit for bit. torch's
    # own sqrt is not always correctly rounded (1 ulp off on an AMD EPYC host, AVX-512), so it
    # is held to 2 ulps.
    factor = gamma / np.sqrt(rvar + np.float32(1e-5))
    absmax = np.abs(w * factor.reshape(-1, 1, 1, 1)).reshape(oc, -1).max(axis=1)
    bits_equal(state["0.weight_fake_quant.scale"], absmax / np.float32(127.0), "folded weight scale")
    np.testing.assert_array_max_ulp(state["0.weight_fake_quant.scale"],
                                    ref.weight_fake_quant.scale.numpy(), maxulp=2)
