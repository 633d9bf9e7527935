"""QDQ ONNX export of a QAT model (issue 14): ``export_onnx(path, inference_only=True,
int8=True)`` of a QAT LeNet trained 100 steps on real MNIST passes onnx.checker, holds the int8
file's int8 weights / int32 biases (a quarter of the fp32 ONNX), onnxruntime fuses it into its
integer kernels, and its logits on the 10,000 MNIST test images are within one quantization
step of the session's ``Eval()`` with and without ORT's graph optimizations; the errors for a
non-QAT session, a missing inference_only and 4-bit activations are clear; the CLI path."""
import os

import numpy as np
import pytest

import edgetrain as et
from edgetrain import errors, fileformat, nn, optim, quant
from edgetrain.models import LeNet, get_model
from conftest import mnist_arrays
from test_int8 import lenet_qat, train

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

LEVELS = {"optimized": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
          "unoptimized": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, sess = lenet_qat()
    train(sess, 100)
    d = tmp_path_factory.mktemp("qdq")
    sess.export_onnx(d / "q.onnx", inference_only=True, int8=True)
    sess.SaveToFile(d / "int8.etm", inference_only=True, int8=True)
    x, _ = mnist_arrays(False)
    want = sess.predict(x, batch_size=1000)
    return sess, d, want


def ort_session(path, level, optimized_path=None):
    so = ort.SessionOptions()
    so.graph_optimization_level = LEVELS[level]
    so.log_severity_level = 3
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_predict(s, x, batch=1000):
    return np.concatenate([s.run(None, {"x": x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def test_qdq_model_layout(exported):
    sess, d, _ = exported
    model = onnx.load(str(d / "q.onnx"))
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert {"Conv", "Gemm", "Relu", "MaxPool", "Reshape"} <= set(ops)
    # input, layers, the relus fused into three layers (written Q -> DQ -> Relu -> Q), pools
    assert ops.count("QuantizeLinear") == 1 + 4 + 3 + 2 and ops.count("Relu") == 3
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    etm = {t.name: np.asarray(t.data) for t in fileformat.load(d / "int8.etm").tensors
           if t.data is not None}
    for layer in ("conv1", "conv2", "fc1", "fc2"):
        w, b = inits[f"{layer}.weight_int8"], inits[f"{layer}.bias_int32"]
        assert w.dtype == np.int8 and b.dtype == np.int32
        np.testing.assert_array_equal(w, etm[f"{layer}.weight_int8"])   # the int8 file's bytes
        np.testing.assert_array_equal(b, etm[f"{layer}.bias_int32"])
        s_w = sess.get_tensor(f"{layer}.weight_fake_quant.scale")
        np.testing.assert_array_equal(inits[f"{layer}.weight_scale"], s_w)
        assert not inits[f"{layer}.weight_zp"].any()
    float_inits = [n for n, a in inits.items() if a.dtype == np.float32]
    assert all(n.endswith("scale") and inits[n].ndim <= 1 for n in float_inits), float_inits
    dq_w = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
            and n.input[0].endswith(".weight_int8")]
    assert len(dq_w) == 4 and all(a.name == "axis" and a.i == 0
                                  for n in dq_w for a in n.attribute)


def test_qdq_file_is_a_quarter_of_fp32_onnx(exported, tmp_path):
    sess, d, _ = exported
    fp = et.TrainSession.from_module(LeNet(), inputs={"x": (None, 1, 28, 28)})
    fp.set_parameters({k: v for k, v in sess.get_parameters().items()
                       if k in fp.get_parameters()})
    fp.export_onnx(tmp_path / "fp32.onnx", inference_only=True)
    q, f = os.path.getsize(d / "q.onnx"), os.path.getsize(tmp_path / "fp32.onnx")
    print(f"\nQDQ ONNX {q:,} B, fp32 ONNX {f:,} B, ratio {q / f:.3f}")
    assert q / f <= 0.27


def test_onnxruntime_fuses_qdq_into_integer_kernels(exported, tmp_path):
    _, d, _ = exported
    ort_session(d / "q.onnx", "optimized", tmp_path / "opt.onnx")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
    assert "QLinearConv" in ops and ({"QGemm", "QLinearMatMul"} & ops), ops
    assert "Conv" not in ops and "Gemm" not in ops


@pytest.mark.parametrize("level", list(LEVELS))
def test_onnxruntime_within_one_step_of_eval_on_mnist(exported, level):
    sess, d, want = exported
    x, y = mnist_arrays(False)
    got = ort_predict(ort_session(d / "q.onnx", level), x)
    step = float(sess.get_tensor("fc2.activation_post_process.scale")[0])
    steps = np.abs(got.astype(np.float64) - want) / step
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    print(f"\n{level}: max |ORT - Eval| = {steps.max():.3f} steps, logits differing "
          f"{(steps > 0.5).mean():.5%}, argmax agreement {agree:.4%}, accuracy ORT "
          f"{(got.argmax(1) == y).mean():.4f} / Eval {(want.argmax(1) == y).mean():.4f}")
    assert steps.max() <= 1.0 + 1e-3
    assert agree >= 0.999
    assert len(np.unique(got)) > 20                 # real logits, not a saturated constant


@pytest.mark.parametrize("batch", [1, 17])
def test_symbolic_batch(exported, batch):
    sess, d, want = exported
    x, _ = mnist_arrays(False)
    got = ort_session(d / "q.onnx", "optimized").run(None, {"x": x[30:30 + batch]})[0]
    step = float(sess.get_tensor("fc2.activation_post_process.scale")[0])
    assert got.shape == (batch, 10)
    assert np.abs(got - want[30:30 + batch]).max() <= step * (1 + 1e-3)


def test_first_layer_off_the_integer_path(tmp_path):
    """Without quantize_input the first conv stays a float fake-quant simulation: its weights
    are written as int8 levels under DequantizeLinear, its output fake_quant as Q -> DQ."""
    et.manual_seed(3)
    model = LeNet()
    sess = et.TrainSession.from_module(
        model, inputs={"x": (None, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"y": ((None,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.02, momentum=0.9),
        quantize=quant.QConfig(), threads=2, seed=7, max_batch=500)
    train(sess, 20)
    sess.export_onnx(tmp_path / "q.onnx", inference_only=True, int8=True)
    model = onnx.load(str(tmp_path / "q.onnx"))
    assert model.graph.node[0].op_type == "DequantizeLinear"      # conv1's weights
    assert model.graph.node[1].op_type == "Conv"
    x, _ = mnist_arrays(False)
    want = sess.predict(x[:1000], batch_size=500)
    step = float(sess.get_tensor("fc2.activation_post_process.scale")[0])
    for level in LEVELS:
        got = ort_predict(ort_session(tmp_path / "q.onnx", level), x[:1000], 500)
        assert np.abs(got - want).max() <= step * (1 + 1e-3)
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.999


def test_int8_onnx_needs_a_qat_session_and_inference_only(exported, tmp_path):
    sess, _, _ = exported
    with pytest.raises(ValueError, match="inference_only=True"):
        sess.export_onnx(tmp_path / "a.onnx", int8=True)
    fp = et.TrainSession.from_module(LeNet(), inputs={"x": (None, 1, 28, 28)})
    with pytest.raises(quant.QuantConfigError, match="QAT model"):
        fp.export_onnx(tmp_path / "b.onnx", inference_only=True, int8=True)
    with pytest.raises(errors.UnsupportedError, match="int8=True, inference_only=True"):
        sess.export_onnx(tmp_path / "c.onnx", inference_only=True)
    assert not any(tmp_path.iterdir())


def test_int8_onnx_rejects_activations_below_8_bits(tmp_path):
    et.manual_seed(5)
    sess = et.TrainSession.from_module(
        LeNet(), inputs={"x": (None, 1, 28, 28)},
        quantize=quant.QConfig(act_bits=4, quantize_input=True), max_batch=8)
    with pytest.raises(quant.QuantConfigError, match=r"uint8 activations.*0\.\.15"):
        sess.export_onnx(tmp_path / "q.onnx", inference_only=True, int8=True)


def test_cli_export_onnx_int8(exported, tmp_path, capsys):
    from edgetrain.cli import main

    sess, d, _ = exported
    ckpt, out = tmp_path / "qat.etm", tmp_path / "q.onnx"
    sess.SaveToFile(ckpt)
    assert main(["export", str(ckpt), "--onnx", "--int8", "--inference-only", "-o",
                 str(out)]) == 0
    assert "int8 QDQ ONNX" in capsys.readouterr().out
    assert out.read_bytes() == (d / "q.onnx").read_bytes()
    assert main(["export", str(ckpt), "--onnx", "--int8", "-o", str(tmp_path / "z.onnx")]) != 0
    assert "--inference-only" in capsys.readouterr().err


@pytest.mark.parametrize("opset", [13, 21])
def test_other_opsets(exported, tmp_path, opset):
    sess, _, want = exported
    sess.export_onnx(tmp_path / "q.onnx", opset=opset, inference_only=True, int8=True)
    assert onnx.load(str(tmp_path / "q.onnx")).opset_import[0].version == opset
    x, _ = mnist_arrays(False)
    step = float(sess.get_tensor("fc2.activation_post_process.scale")[0])
    for level in LEVELS:
        got = ort_predict(ort_session(tmp_path / "q.onnx", level), x[:1000])
        assert np.abs(got - want[:1000]).max() <= step * (1 + 1e-3)
    with pytest.raises(ValueError, match="opset 13..21"):
        sess.export_onnx(tmp_path / "old.onnx", opset=12, inference_only=True, int8=True)


def test_qat_mobilenetv2_conv_bn_folds_and_residual_adds(tmp_path):
    """MobileNetV2 on the integer path from input to logits (Conv+BatchNorm folds computed
    from the running statistics, depthwise convolutions, ReLU6 as Clip, residual adds as
    QDQ Add, global average pooling): the int8 file's weights under per-channel
    DequantizeLinear, no float weight in the file; onnxruntime within one step of Eval()."""
    et.manual_seed(0)
    m = get_model("mobilenetv2", num_classes=10, input_size=32, width_mult=0.35)
    sess = et.TrainSession.from_module(
        m, inputs={"x": (None, 3, 32, 32)}, loss=nn.CrossEntropyLoss(),
        labels={"y": ((None,), "int64")}, optimizer=optim.SGD(m.parameters(), lr=0.01),
        quantize=quant.QConfig(quantize_input=True), max_batch=8)
    rng = np.random.default_rng(0)
    sess.Train()
    for _ in range(5):
        sess.RunGraph({"x": rng.standard_normal((8, 3, 32, 32)).astype(np.float32),
                       "y": rng.integers(0, 10, 8)})
    sess.Eval()
    sess.export_onnx(tmp_path / "q.onnx", inference_only=True, int8=True)
    model = onnx.load(str(tmp_path / "q.onnx"))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert not [n for n, a in inits.items() if a.dtype == np.float32 and a.ndim == 4]
    assert sum(a.dtype == np.int8 and a.ndim == 4 for a in inits.values()) == 52
    x = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
    want = sess.RunGraph({"x": x})["output"]
    step = float(sess.get_tensor("classifier.1.activation_post_process.scale")[0])
    for level in LEVELS:
        got = ort_session(tmp_path / "q.onnx", level).run(None, {"x": x})[0]
        assert np.abs(got - want).max() <= step * (1 + 1e-3)
