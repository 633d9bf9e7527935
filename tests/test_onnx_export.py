"""ONNX export of the eval program: every zoo model, full and inference-only (BatchNorm folded),
after 20 training steps, passes onnx.checker's full check, and onnxruntime's outputs are within
1e-5 of the session's Eval at several batch sizes (the batch stays symbolic)."""
import subprocess
import sys

import numpy as np
import pytest

import edgetrain as et
from edgetrain import ir, onnx_export
from edgetrain.errors import ModelIOError, UnsupportedError
from edgetrain.models import get_model
from edgetrain.nn import functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ZOO = [("lenet", {}, (1, 28, 28)), ("lenet5", {}, (1, 32, 32)),
       ("mobilenetv1", {"num_classes": 10, "input_size": 32, "width_mult": 0.25}, (3, 32, 32)),
       ("mobilenetv2", {"num_classes": 10, "input_size": 32, "width_mult": 0.35}, (3, 32, 32))]


def trained_session(name, kw, shape, steps=20, batch=8):
    et.nn.init.manual_seed(0)
    m = get_model(name, **kw)
    sess = et.TrainSession.from_module(
        m, inputs={"x": (None,) + shape}, loss=F.cross_entropy, labels={"y": ((None,), "int64")},
        optimizer=et.optim.SGD(m.parameters(), lr=0.02, momentum=0.9), max_batch=batch, seed=3)
    rng = np.random.default_rng(1)
    sess.Train()
    for _ in range(steps):
        sess.RunGraph({"x": rng.standard_normal((batch,) + shape).astype(np.float32),
                       "y": rng.integers(0, 10, batch)})
    return sess


def ort_run(model_bytes, x):
    s = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


@pytest.mark.parametrize("name,kw,shape", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_exports_match_onnxruntime(tmp_path, name, kw, shape):
    sess = trained_session(name, kw, shape)
    rng = np.random.default_rng(2)
    sess.Eval()
    for inference_only in (False, True):
        path = tmp_path / f"{name}_{int(inference_only)}.onnx"
        sess.export_onnx(path, inference_only=inference_only)
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        ops_used = {n.op_type for n in model.graph.node}
        if inference_only:
            assert "BatchNormalization" not in ops_used
        for batch in (1, 5, 8):  # symbolic batch: any size runs
            x = rng.standard_normal((batch,) + shape).astype(np.float32)
            want = sess.RunGraph({"x": x})["output"]
            got = ort_run(path.read_bytes(), x)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    names = {i.name for i in model.graph.initializer}
    params = sess.get_parameters(include_buffers=False)
    assert any(k in names for k in params)  # weights keep their (PyTorch) names


def test_batchnorm_eval_form_and_dropout_are_exported():
    sess = trained_session("mobilenetv2", ZOO[3][1], (3, 32, 32), steps=3)
    model = onnx_export.to_onnx(sess.to_graph())
    ops_used = [n.op_type for n in model.graph.node]
    assert "BatchNormalization" in ops_used and "Clip" in ops_used  # ReLU6 = Clip(0, 6)
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    # eval form: one output, running statistics as initializers
    assert len(bn.output) == 1
    inits = {i.name: i for i in model.graph.initializer}
    assert bn.input[3] in inits and bn.input[4] in inits
    rm = onnx.numpy_helper.to_array(inits[bn.input[3]])
    assert np.array_equal(rm, sess.get_parameters()[bn.input[3]])  # the trained statistics


def test_elementwise_composites_export():
    class Net(et.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = et.nn.Linear(6, 5)

        def forward(self, x):
            h = self.fc(x)
            h = F.gelu(h) + F.silu(h) * 0.5 - F.softplus(h) / 3.0
            h = F.elu(h) + F.clamp(h, -0.5, 0.7) + F.rsqrt(F.abs(h) + 1.0) + F.pow(F.abs(h), 1.5)
            return F.log_softmax(h + F.exp(-F.abs(h)) + F.mean(h, dim=1, keepdim=True), dim=1)

    et.nn.init.manual_seed(0)
    m = Net()
    sess = et.TrainSession.from_module(m, inputs={"x": (4, 6)}, loss=F.mse_loss,
                                       labels={"y": ((4, 5), "float32")},
                                       optimizer=et.optim.SGD(m.parameters(), lr=0.1))
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32) * 2
    sess.Eval()
    want = sess.RunGraph({"x": x})["output"]
    got = ort_run(onnx_export.to_onnx(sess.to_graph()).SerializeToString(), x)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_unsupported_ops_are_listed_with_counts():
    sess = trained_session("lenet", {}, (1, 28, 28), steps=0)
    g = sess.to_graph()
    ev = g.programs[ir.EVAL]
    acts = [i for i in ev.nodes if g.nodes[i].op == "act"]
    for i in acts:
        g.nodes[i].op = "hinge"  # no ONNX mapping (a loss)
    with pytest.raises(UnsupportedError, match=rf"hinge \({len(acts)}×\)"):
        onnx_export.to_onnx(g)


def test_bad_opset_and_unwritable_path(tmp_path):
    sess = trained_session("lenet", {}, (1, 28, 28), steps=0)
    with pytest.raises(ValueError, match="opset"):
        sess.export_onnx(tmp_path / "m.onnx", opset=7)
    with pytest.raises(ModelIOError):
        sess.export_onnx(tmp_path / "missing" / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export_onnx(tmp_path):
    sess = trained_session("lenet", {}, (1, 28, 28), steps=2)
    etm = tmp_path / "lenet.etm"
    sess.SaveToFile(etm)
    out = tmp_path / "lenet.onnx"
    r = subprocess.run([sys.executable, "-m", "edgetrain", "export", str(etm), "--onnx",
                        "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ONNX opset 17" in r.stdout
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    sess.Eval()
    np.testing.assert_allclose(ort_run(out.read_bytes(), x), sess.RunGraph({"x": x})["output"],
                               rtol=0, atol=1e-5)


def test_tensor_and_resampling_ops_export():
    """pad (3 modes), gather / index_select, expand, amax / amin, argmax, maximum / minimum,
    bilinear interpolate (both corner rules, by size), adaptive pools, layer norm, bmm with a
    transposed operand: onnxruntime within 1e-5 of Eval."""
    class Net(et.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = et.nn.Conv2d(3, 4, 3, padding=1)
            self.norm = et.nn.LayerNorm(6)

        def forward(self, x):
            h = self.conv(x)                                            # [N, 4, 6, 6]
            h = F.pad(h, (1, 0, 0, 2), mode="reflect") + 0.5
            h = F.pad(h, (1, 1, 1, 1), mode="replicate")
            h = F.pad(h, (0, 1, 2, 0), value=-0.25)                     # [N, 4, 11, 10]
            h = F.interpolate(h, size=(7, 9), mode="bilinear", align_corners=True) + \
                F.interpolate(h, size=(7, 9), mode="bilinear")
            a = F.adaptive_avg_pool2d(h, (7, 3)) + F.adaptive_max_pool2d(h, (1, 3))
            g = et.index_select(a, 1, [3, 0, 0]) * et.gather(a, 2, np.zeros((1, 4, 2, 3),
                                                                            np.int64))[:, :3, :1]
            m = F.maximum(g, F.amax(g, dim=(2,), keepdim=True) * 0.5)
            m = F.minimum(m, F.amin(a, dim=1, keepdim=True)[:, :, :, :1].expand(-1, 3, 7, 3))
            t = self.norm(m.reshape(m.shape[0], 3, 7, 3).permute(0, 1, 3, 2)[:, :, :, :6])
            s = F.bmm(t, t, transpose_b=True)                          # [N, 3, 3, 3]
            idx = F.argmax(s, dim=3)
            return s.reshape(s.shape[0], -1), idx

    et.nn.init.manual_seed(0)
    m = Net()
    sess = et.TrainSession.from_module(m, inputs={"x": (None, 3, 6, 6)})
    onnx_model = onnx_export.to_onnx(sess.to_graph())
    rt = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    sess.Eval()
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n, 3, 6, 6)).astype(np.float32)
        want = sess.RunGraph({"x": x})
        got = rt.run(None, {"x": x})
        outs = [o.name for o in onnx_model.graph.output]
        for name, g in zip(outs, got):
            np.testing.assert_allclose(g, want[name], rtol=1e-5, atol=1e-5, err_msg=name)
