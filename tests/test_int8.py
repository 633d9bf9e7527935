"""Int8 inference (issue 14, second half): the int8 kernels (kernels/src/qgemm.c, ops quantize,
dequantize, qprep, qconv2d, qlinear, qmaxpool2d, qrelu) bit for bit against a numpy integer
reference; the QAT session's eval program runs them, and its int8 file
(``SaveToFile(inference_only=True, int8=True)``) is that program with the weight quantization
folded to constants, so the file's logits equal ``Eval()`` bit for bit (LeNet on real MNIST,
batches 1, 17, 64, threads 1 and 2); the integer relu / max-pool chains equal the float ones
they replace; file size; int8 vs fake-quant accuracy; bad int8 files rejected at load.
"""
import os

import numpy as np
import pytest

import edgetrain as et
from edgetrain import errors, fileformat, ir, nn, optim, quant
from edgetrain.models import LeNet
from conftest import mnist_arrays

RNG = np.random.default_rng(14)


# ---------------------------------------------------------------------------------------------
# numpy integer reference
# ---------------------------------------------------------------------------------------------
def np_quantize(x, s, zp, qmin, qmax):
    r = np.rint(x * (np.float32(1) / np.float32(s))).astype(np.float32)
    return np.clip(r.astype(np.int64) + zp, qmin, qmax).astype(np.uint8)


def np_requant(acc, mult, zp, qmin, qmax):
    """acc int64 [..., C] or [N, C, ...] with mult along the given axis (broadcast by caller)."""
    r = np.rint(acc.astype(np.float32) * mult.astype(np.float32))
    return np.clip(r.astype(np.int64) + zp, qmin, qmax).astype(np.uint8)


def np_qconv(x, xz, w, b, mult, yz, qmin, qmax, stride, pad, dil, groups):
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    xp = np.full((n, c, h + 2 * pad, wd + 2 * pad), xz, np.int64)
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    xp -= xz
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    acc = np.zeros((n, oc, oh, ow), np.int64)
    ocg = oc // groups
    for o in range(oc):
        g = o // ocg
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dil:i * dil + stride * (oh - 1) + 1:stride,
                           j * dil:j * dil + stride * (ow - 1) + 1:stride]
                acc[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j].astype(np.int64))
    if b is not None:
        acc += b[None, :, None, None]
    return np_requant(acc, mult[None, :, None, None], yz, qmin, qmax)


def np_qlinear(x, xz, w, b, mult, yz, qmin, qmax):
    acc = (x.astype(np.int64) - xz) @ w.astype(np.int64).T
    if b is not None:
        acc += b[None, :]
    return np_requant(acc, mult[None, :], yz, qmin, qmax)


def np_qmaxpool(x, k, s):
    n, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, c, oh, ow), np.uint8)
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = x[:, :, i * s:i * s + k, j * s:j * s + k].max(axis=(2, 3))
    return out


# ---------------------------------------------------------------------------------------------
# a hand-built int8 graph: quantize -> qconv2d -> qrelu -> qmaxpool2d -> reshape -> qlinear
# -> dequantize
# ---------------------------------------------------------------------------------------------
def int8_chain_graph(xshape, oc, k, stride, pad, dil, groups, nout, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    n, c, h, w = xshape
    g = ir.Graph()
    const = lambda name, arr, dt: g.add_tensor(name, dt, ir.CONST, arr.shape, data=arr).index
    p = dict(s_in=np.float32(0.05), zp_in=np.float32(rng.integers(0, 256)),
             zp_c=np.float32(rng.integers(10, 240)), zp_l=np.float32(rng.integers(0, 256)),
             s_out=np.float32(0.0371))
    p["w"] = rng.integers(-127, 128, (oc, c // groups, k, k)).astype(np.int8)
    p["b"] = rng.integers(-5000, 5000, oc).astype(np.int32) if bias else None
    p["m"] = (rng.uniform(1e-4, 3e-3, oc)).astype(np.float32)
    x = g.add_tensor("x", ir.F32, ir.INPUT, xshape).index
    s_in, zp_in = const("s_in", np.array([p["s_in"]]), ir.F32), const("zp_in", np.array([p["zp_in"]]), ir.F32)
    zp_c, zp_l = const("zp_c", np.array([p["zp_c"]]), ir.F32), const("zp_l", np.array([p["zp_l"]]), ir.F32)
    s_out = const("s_out", np.array([p["s_out"]]), ir.F32)
    from edgetrain import ops as O

    def emit(op, ins, **a):
        return O.emit(g, op, ins, **a)

    q = emit("quantize", [x, s_in, zp_in], qmin=0, qmax=255)[0]
    y = emit("qconv2d", [q, const("w", p["w"], ir.I8), const("b", p["b"], ir.I32) if bias else -1,
                         const("m", p["m"], ir.F32), zp_in, zp_c],
             stride_h=stride, stride_w=stride, pad_t=pad, pad_l=pad, pad_b=pad, pad_r=pad,
             dil_h=dil, dil_w=dil, groups=groups, qmin=3, qmax=250)[0]
    y = emit("qrelu", [y, zp_c])[0]
    y = emit("qmaxpool2d", [y], kh=2, kw=2, stride_h=2, stride_w=2, dil_h=1, dil_w=1)[0]
    feat = int(np.prod(g.tensors[y].shape[1:]))
    y = emit("reshape", [y], ndim=2, d0=-1, d1=feat)[0]
    p["w2"] = rng.integers(-127, 128, (nout, feat)).astype(np.int8)
    p["b2"] = rng.integers(-3000, 3000, nout).astype(np.int32)
    p["m2"] = rng.uniform(1e-4, 2e-3, nout).astype(np.float32)
    y = emit("qlinear", [y, const("w2", p["w2"], ir.I8), const("b2", p["b2"], ir.I32),
                         const("m2", p["m2"], ir.F32), zp_c, zp_l], qmin=0, qmax=255)[0]
    out = emit("dequantize", [y, s_out, zp_l])[0]
    g.tensors[out].is_output = True
    g.programs[ir.EVAL] = ir.Program(ir.EVAL, list(range(len(g.nodes))), [x], {"output": out})
    g.state.max_batch = n
    return g, p


def np_chain(x, p, stride, pad, dil, groups):
    zi, zc, zl = int(p["zp_in"]), int(p["zp_c"]), int(p["zp_l"])
    q = np_quantize(x, p["s_in"], zi, 0, 255)
    y = np_qconv(q, zi, p["w"], p["b"], p["m"], zc, 3, 250, stride, pad, dil, groups)
    y = np.maximum(y, zc).astype(np.uint8)
    y = np_qmaxpool(y, 2, 2).reshape(len(x), -1)
    y = np_qlinear(y, zc, p["w2"], p["b2"], p["m2"], zl, 0, 255)
    return (y.astype(np.int64) - zl).astype(np.float32) * p["s_out"]


CHAINS = [  # xshape, oc, k, stride, pad, dil, groups, nout, bias
    ((2, 1, 12, 12), 4, 5, 1, 0, 1, 1, 10, True),
    ((3, 3, 9, 7), 5, 3, 1, 1, 1, 1, 7, False),
    ((1, 4, 11, 11), 6, 3, 2, 2, 2, 2, 1, True),
    ((5, 2, 6, 6), 1, 1, 1, 0, 1, 1, 3, True),
]


@pytest.mark.parametrize("spec", CHAINS, ids=[f"chain{i}" for i in range(len(CHAINS))])
@pytest.mark.parametrize("threads", [1, 2])
def test_int8_ops_match_numpy_integer_reference(spec, threads):
    xshape, oc, k, stride, pad, dil, groups, nout, bias = spec
    g, p = int8_chain_graph(xshape, oc, k, stride, pad, dil, groups, nout, bias)
    x = (RNG.standard_normal(xshape) * 4).astype(np.float32)
    x.flat[0] = np.float32(0.025) * 3  # an exact tie of x / s_in (1.5 -> 2)
    sess = et.TrainSession.from_graph(g, threads=threads)
    got = sess.RunGraph({"x": x})["output"]
    want = np_chain(x, p, stride, pad, dil, groups)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_qprep_matches_numpy():
    oc, kk = 7, 13
    w = (RNG.standard_normal((oc, kk)) * 0.3).astype(np.float32)
    ws = RNG.uniform(0.001, 0.02, oc).astype(np.float32)
    w[0, :3] = ws[0] * np.float32([0.5, 1.5, -2.5])      # ties
    b = RNG.standard_normal(oc).astype(np.float32)
    s_in, s_out = np.float32(0.031), np.float32(0.27)
    g = ir.Graph()
    c = lambda a: g.add_tensor("", ir.F32, ir.CONST, a.shape, data=a).index
    from edgetrain import ops as O
    outs = O.emit(g, "qprep", [c(w), c(ws), c(b), c(np.array([s_in])), c(np.array([s_out]))],
                  wqmin=-127, wqmax=127)
    for k, t in enumerate(outs):
        g.tensors[t].is_output = True
    g.programs[ir.EVAL] = ir.Program(ir.EVAL, [0], [], {"wq": outs[0], "bq": outs[1], "m": outs[2]})
    r = et.TrainSession.from_graph(g).RunGraph({})
    inv = np.float32(1) / ws
    want_w = np.clip(np.rint(w * inv[:, None]), -127, 127).astype(np.int8)
    bs = (s_in * ws).astype(np.float32)
    np.testing.assert_array_equal(r["wq"], want_w)
    np.testing.assert_array_equal(r["bq"], np.rint(b / bs).astype(np.int32))
    np.testing.assert_array_equal(r["m"].view(np.uint32), (bs / s_out).astype(np.float32).view(np.uint32))
    assert list(want_w[0, :3]) == [0, 2, -2]


# ---------------------------------------------------------------------------------------------
# LeNet: QAT session Eval() == int8 file, bit for bit
# ---------------------------------------------------------------------------------------------
QC = quant.QConfig(quantize_input=True)


def lenet_qat(seed=3, threads=2):
    et.manual_seed(seed)
    model = LeNet()
    return model, et.TrainSession.from_module(
        model, inputs={"x": (None, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"y": ((None,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.02, momentum=0.9),
        quantize=QC, threads=threads, seed=7, max_batch=1000)


def train(sess, steps, batch=64, start=0):
    x, y = mnist_arrays(True)
    sess.Train()
    for i in range(start, start + steps):
        j = (i * batch) % (len(x) - batch)
        sess.RunGraph({"x": x[j:j + batch], "y": y[j:j + batch]})
    sess.Eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model, sess = lenet_qat()
    train(sess, 100)
    d = tmp_path_factory.mktemp("int8")
    sess.SaveToFile(d / "int8.etm", inference_only=True, int8=True)
    sess.SaveToFile(d / "fp32.etm", inference_only=True)
    return model, sess, d


def test_lenet_eval_program_is_all_integer(trained):
    _, sess, d = trained
    g = fileformat.load(d / "int8.etm")
    ops = [n.op for n in g.nodes]
    # each relu became its layer's own clamp (input y_scale, (lo, hi) = (0, inf))
    assert ops == ["quantize", "qconv2d", "qmaxpool2d", "qconv2d", "qmaxpool2d",
                   "reshape", "qlinear", "qlinear", "dequantize"]
    fused = [n for n in g.nodes if n.op in ("qconv2d", "qlinear") and len(n.inputs) > 6
             and n.inputs[6] >= 0]
    assert len(fused) == 3 and all(list(n.fattr) == [0.0, float("inf")] for n in fused)
    dt = {t.name: t.dtype for t in g.tensors if t.kind == ir.CONST}
    assert dt["conv1.weight_int8"] == "i8" and dt["fc2.bias_int32"] == "i32"
    assert dt["fc1.multiplier"] == "f32"
    assert not [t for t in g.tensors if t.dtype == ir.F32 and t.kind == ir.CONST and t.numel > 1
                and not t.name.endswith(".multiplier")]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 17, 64])
def test_lenet_int8_file_is_bit_identical_to_eval(trained, batch, threads):
    _, sess, d = trained
    x, _ = mnist_arrays(False)
    xb = x[100:100 + batch]
    sess.threads = threads
    want = sess.RunGraph({"x": xb})["output"]
    f = et.TrainSession.load(d / "int8.etm", threads=threads)
    got = f.RunGraph({"x": xb})["output"]
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    assert len(np.unique(got)) > 5    # real logits, not a saturated constant


def _isas():
    from edgetrain import _native
    out = []
    for name in ("ref", "avx2", "avx512", "neon", "avxvnni", "avx512vnni", "neondot"):
        try:
            _native.set_isa(name)
            out.append(name)
        except Exception:
            pass
    return out


def test_int8_file_and_eval_identical_under_every_isa(trained):
    """The int8 GEMM has ref / avx2 / avx512 / avxvnni / avx512vnni (/ neon / neondot) rows:
    Eval() and the file give the same bits under each ISA the CPU runs (and the same as
    under 'ref')."""
    from edgetrain import _native

    _, sess, d = trained
    x, _ = mnist_arrays(False)
    before = _native.isa()
    outs = {}
    try:
        for name in _isas():
            _native.set_isa(name)
            f = et.TrainSession.load(d / "int8.etm", threads=2)
            outs[name] = (sess.RunGraph({"x": x[:64]})["output"], f.RunGraph({"x": x[:64]})["output"])
    finally:
        _native.set_isa(before)
    ref = outs["ref"][0].view(np.uint32)
    for name, (a, b) in outs.items():
        np.testing.assert_array_equal(a.view(np.uint32), ref, err_msg=f"Eval under {name}")
        np.testing.assert_array_equal(b.view(np.uint32), ref, err_msg=f"file under {name}")
    print(f"\nISAs compared: {sorted(outs)}")


def test_eval_same_bits_for_every_thread_count_and_batch(trained):
    _, sess, d = trained
    x, _ = mnist_arrays(False)
    outs = []
    for threads in (1, 2):
        sess.threads = threads
        outs.append(sess.RunGraph({"x": x[:64]})["output"])
        single = np.concatenate([sess.RunGraph({"x": x[i:i + 1]})["output"] for i in range(5)])
        np.testing.assert_array_equal(single.view(np.uint32), outs[-1][:5].view(np.uint32))
    np.testing.assert_array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32))


def test_integer_chains_equal_the_float_chains_they_replace(trained, monkeypatch):
    """relu / max pool on the u8 grid (qrelu, qmaxpool2d) == dequantize, float relu / max pool,
    quantize: the same session without the rewrite gives the same bits."""
    model, sess, _ = trained
    params = sess.get_parameters()
    monkeypatch.setattr(quant, "integer_chains", lambda g, nodes, outs: list(nodes))
    plain = et.TrainSession.from_module(model, inputs={"x": (None, 1, 28, 28)}, quantize=QC,
                                        max_batch=1000)
    plain.set_parameters({k: v for k, v in params.items() if k in plain.get_parameters()})
    g = plain.to_graph()
    assert "qrelu" not in [n.op for n in g.nodes] and "dequantize" in [n.op for n in g.nodes]
    x, _ = mnist_arrays(False)
    a = plain.RunGraph({"x": x[:200]})["output"]
    b = sess.RunGraph({"x": x[:200]})["output"]
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_int8_file_size(trained):
    _, _, d = trained
    ratio = os.path.getsize(d / "int8.etm") / os.path.getsize(d / "fp32.etm")
    print(f"\nint8 file {os.path.getsize(d / 'int8.etm')} B, fp32 {os.path.getsize(d / 'fp32.etm')} B, "
          f"ratio {ratio:.3f}")
    assert ratio <= 0.27


def test_int8_accuracy_vs_fake_quant_after_short_qat(trained, monkeypatch):
    """MNIST test accuracy of the int8 path (Eval == file) against the float fake-quant
    simulation of the same QAT weights and observers."""
    model, sess, d = trained
    x, y = mnist_arrays(False)
    acc_int8 = float((et.TrainSession.load(d / "int8.etm").predict(x, batch_size=1000)
                      .argmax(1) == y).mean())
    params = sess.get_parameters()
    monkeypatch.setattr(quant, "_int_layer", lambda *a, **k: None)
    fq = et.TrainSession.from_module(model, inputs={"x": (None, 1, 28, 28)}, quantize=QC,
                                     max_batch=1000)
    assert "qconv2d" not in [n.op for n in fq.to_graph().nodes]
    fq.set_parameters({k: v for k, v in params.items() if k in fq.get_parameters()})
    acc_fq = float((fq.predict(x, batch_size=1000).argmax(1) == y).mean())
    print(f"\nMNIST test after 100 QAT steps: int8 {acc_int8:.4f}, fake-quant float {acc_fq:.4f}")
    assert acc_int8 > 0.9 and abs(acc_int8 - acc_fq) <= 0.005


def test_int8_needs_a_qat_session_and_inference_only(trained):
    _, sess, d = trained
    with pytest.raises(ValueError, match="inference_only=True"):
        sess.SaveToFile(d / "x.etm", int8=True)
    model = LeNet()
    fp = et.TrainSession.from_module(model, inputs={"x": (None, 1, 28, 28)})
    with pytest.raises(quant.QuantConfigError, match="QAT model"):
        fp.SaveToFile(d / "y.etm", inference_only=True, int8=True)


# ---------------------------------------------------------------------------------------------
# bad int8 files
# ---------------------------------------------------------------------------------------------
def _mutated(d, fn):
    g = fileformat.load(d / "int8.etm")
    fn(g)
    return fileformat.dumps(g, inference_only=True)


def _set(name, value):
    def fn(g):
        t = g.find(name)
        t.data = np.array(t.data).copy()
        t.data.flat[0] = value
    return fn


def _retype(name, dtype):
    def fn(g):
        t = g.find(name)
        t.dtype, t.data = dtype, t.data.astype(ir.NUMPY_DTYPE[dtype])
    return fn


BAD = [
    ("zp_out_of_range", _set("fc1.activation_post_process.zero_point", 300.0),
     "zero point must be an integer inside the quantization range 0..255"),
    ("zp_not_integer", _set("conv2.activation_post_process.zero_point", 3.5), "zero point"),
    ("input_zp_negative", _set("conv1.input_fake_quant.zero_point", -1.0), "zero point"),
    ("multiplier_zero", _set("fc2.multiplier", 0.0), "multipliers must be finite and > 0"),
    ("multiplier_negative", _set("conv1.multiplier", -0.5), "multipliers must be finite and > 0"),
    ("multiplier_nan", _set("conv2.multiplier", np.nan), "holds nan"),
    ("scale_inf", _set("fc2.activation_post_process.scale", np.inf), "finite and > 0"),
    ("weight_f32", _retype("conv2.weight_int8", ir.F32), "weight w must be i8"),
    ("bias_f32", _retype("fc1.bias_int32", ir.F32), "bias b must be .* i32"),
    ("weight_u8", _retype("fc2.weight_int8", ir.U8), "weight w must be i8"),
]


@pytest.mark.parametrize("name,fn,text", BAD, ids=[b[0] for b in BAD])
def test_bad_int8_files_are_rejected_at_load(trained, name, fn, text):
    _, _, d = trained
    with pytest.raises(errors.ModelFormatError, match=text):
        et.TrainSession.from_bytes(_mutated(d, fn))


def test_observer_state_gone_bad_still_saves_loads_and_names_the_value(tmp_path):
    # An inf weight makes its observer's scale inf during a GRAD run (PyTorch's observers do
    # the same). The session saved that state, so its own file must load again (a lost model
    # otherwise); the int8 eval then fails naming the tensor and the value.
    _, sess = lenet_qat()
    w = sess.get_tensor("fc2.weight").copy()
    w[0, 0] = np.inf
    sess.set_tensor("fc2.weight", w)
    sess.Grad()
    x, y = np.zeros((4, 1, 28, 28), np.float32), np.zeros(4, np.int64)
    sess.RunGraph({"x": x, "y": y})
    assert np.isinf(sess.get_tensor("fc2.weight_fake_quant.scale")[0])
    sess.SaveToFile(tmp_path / "qat.etm")
    back = et.TrainSession.load(tmp_path / "qat.etm")
    back.Eval()
    with pytest.raises(errors.InvalidArgumentError,
                       match=r"qprep in layer 'fc2'.*'fc2.weight_fake_quant.scale'\) holds inf at 0"):
        back.RunGraph({"x": x})


def test_layers_without_bias_quantize(tmp_path):
    # qprep without a bias has no bq output (was refused at load: "output 1 is required");
    # LeNet5 and MobileNetV1 have such layers.
    class NoBias(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, bias=False)
            self.fc = nn.Linear(4 * 6 * 6, 10, bias=False)

        def forward(self, x):
            return self.fc(nn.functional.max_pool2d(nn.functional.relu(self.conv(x)), 2).flatten(1))

    et.manual_seed(0)
    model = NoBias()
    sess = et.TrainSession.from_module(
        model, inputs={"x": (None, 1, 14, 14)}, loss=nn.CrossEntropyLoss(),
        labels={"y": ((None,), "int64")}, optimizer=optim.SGD(model.parameters(), lr=0.05),
        quantize=QC, threads=2, max_batch=16)
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 1, 14, 14), np.float32), np.arange(16) % 10
    sess.Train()
    for _ in range(3):
        sess.RunGraph({"x": x, "y": y})
    sess.Eval()
    want = sess.RunGraph({"x": x})["output"]
    sess.SaveToFile(tmp_path / "nb.etm", inference_only=True, int8=True)
    assert not [t for t in fileformat.load(tmp_path / "nb.etm").tensors if "bias" in t.name]
    got = et.TrainSession.load(tmp_path / "nb.etm").RunGraph({"x": x})["output"]
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_cli_export_int8(trained, tmp_path, capsys):
    from edgetrain.cli import main

    _, sess, _ = trained
    ckpt, out = tmp_path / "qat.etm", tmp_path / "q8.etm"
    sess.SaveToFile(ckpt)
    assert main(["export", str(ckpt), "--inference-only", "--int8", "-o", str(out)]) == 0
    assert "int8 inference-only" in capsys.readouterr().out
    x, _ = mnist_arrays(False)
    resumed = et.TrainSession.load(ckpt)
    resumed.Eval()
    want = resumed.RunGraph({"x": x[:17]})["output"]
    got = et.TrainSession.load(out).RunGraph({"x": x[:17]})["output"]
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    assert main(["export", str(ckpt), "--int8", "-o", str(tmp_path / "z.etm")]) != 0
    assert "--inference-only" in capsys.readouterr().err


@pytest.mark.parametrize("wb,ab", [(4, 4), (2, 8), (8, 3)])
def test_low_bit_int8_file_is_bit_identical_to_eval(tmp_path, wb, ab):
    et.manual_seed(5)
    model = LeNet()
    sess = et.TrainSession.from_module(
        model, inputs={"x": (None, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"y": ((None,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.02, momentum=0.9),
        quantize=quant.QConfig(weight_bits=wb, act_bits=ab, quantize_input=True), threads=2,
        max_batch=64)
    train(sess, 5)
    sess.SaveToFile(tmp_path / "q.etm", inference_only=True, int8=True)
    x, _ = mnist_arrays(False)
    want = sess.RunGraph({"x": x[:17]})["output"]
    got = et.TrainSession.load(tmp_path / "q.etm").RunGraph({"x": x[:17]})["output"]
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    g = fileformat.load(tmp_path / "q.etm")
    w = g.find("fc1.weight_int8").data
    assert np.abs(w).max() <= 2 ** (wb - 1) - 1


def test_output_bits_puts_the_logits_on_their_own_grid(tmp_path):
    """QConfig(output_bits=8) with 4-bit activations: the last layer's output (the logits) on
    0..255, every other activation on 0..15; the int8 file is still Eval() bit for bit."""
    with pytest.raises(quant.QuantConfigError, match="output_bits"):
        quant.QConfig(output_bits=9)
    et.manual_seed(5)
    model = LeNet()
    qc = quant.QConfig(weight_bits=4, act_bits=4, quantize_input=True, output_bits=8)
    qat = quant.prepare_qat(model, qc)
    assert (qat.fc2.activation_post_process.quant_max, qat.fc1.activation_post_process.quant_max,
            qat.conv1.input_fake_quant.quant_max) == (255, 15, 15)
    assert quant.prepare_qat(model, quant.QConfig(act_bits=4)).fc2.activation_post_process \
        .quant_max == 15
    sess = et.TrainSession.from_module(
        model, inputs={"x": (None, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"y": ((None,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.02, momentum=0.9), quantize=qc, threads=2,
        max_batch=64)
    train(sess, 5)
    sess.SaveToFile(tmp_path / "q.etm", inference_only=True, int8=True)
    x, _ = mnist_arrays(False)
    want = sess.RunGraph({"x": x[:17]})["output"]
    got = et.TrainSession.load(tmp_path / "q.etm").RunGraph({"x": x[:17]})["output"]
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    assert len(np.unique(want)) > 16       # more logit levels than a 4-bit grid has
    g = fileformat.load(tmp_path / "q.etm")
    assert [n.iattr[-2:] for n in g.nodes if n.op == "qlinear"] == [[0, 15], [0, 255]]


def test_isa_levels_dot_product_rows():
    """The dot-product levels are named ISAs: set_isa accepts exactly the supported ones
    (refusing the others), and EDGETRAIN_ISA chooses one at start-up."""
    import os
    import subprocess
    import sys

    from edgetrain import _native

    before = _native.isa()
    names = ("ref", "avx2", "avx512", "neon", "avxvnni", "avx512vnni", "neondot")
    ok = []
    try:
        for name in names:
            try:
                _native.set_isa(name)
            except Exception as e:
                assert not isinstance(e, ValueError), e   # a known name: unsupported, not unknown
                assert _native.isa() != name
                continue
            assert _native.isa() == name
            ok.append(name)
        with pytest.raises(ValueError):
            _native.set_isa("avx512vnnx")
    finally:
        _native.set_isa(before)
    assert "ref" in ok and not ({"neon", "neondot"} & set(ok) and {"avx2", "avx512"} & set(ok))
    best = _native.best_isa()
    assert best in ok
    if "avx512vnni" in ok:
        assert best == "avx512vnni"
    for name in ok:
        env = dict(os.environ, EDGETRAIN_ISA=name)
        out = subprocess.run([sys.executable, "-c", "from edgetrain import _native; print(_native.isa())"],
                             env=env, capture_output=True, text=True, check=True).stdout.strip()
        assert out == name
