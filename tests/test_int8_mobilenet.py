"""MobileNetV2's int8 path (issue 14): with ``QConfig(quantize_input=True)`` the QAT session's
eval program runs every layer on the integer kernels — the Conv+BatchNorm folds (qprep of the
folded weights and biases, computed from the running statistics), depthwise convolutions
(qconv2d with groups = channels), ReLU6 (the convolution's own clamp, or qclamp), the residual adds (qadd), global average
pooling (qglobal_avgpool) and the classifier (qlinear) — and the int8 file is that program with
the weight quantization folded to constants: its logits equal ``Eval()`` bit for bit for every
batch, thread count and ISA. At 28x28 the last feature map is 1x1, so the integer rewrites are
exact there too: the program without them gives the same bits.
"""
import os

import numpy as np
import pytest

import edgetrain as et
from edgetrain import fileformat, ir, nn, optim, quant
from edgetrain.models import MobileNetV2
from conftest import mnist_arrays

QC = quant.QConfig(weight_bits=8, act_bits=8, quantize_input=True)
WIDTH = 0.5
INT8_OPS = {"quantize", "qconv2d", "qadd", "qglobal_avgpool", "reshape", "qlinear", "dequantize"}


def _model():
    et.manual_seed(5)
    return MobileNetV2(num_classes=10, in_channels=1, width_mult=WIDTH, input_size=28)


def _session(model, qconfig=QC, threads=2):
    return et.TrainSession.from_module(
        model, inputs={"x": (None, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"y": ((None,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        quantize=qconfig, threads=threads, seed=7, max_batch=256)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = _model()
    sess = _session(model)
    x, y = mnist_arrays(True)
    sess.Train()
    for i in range(30):
        sess.RunGraph({"x": x[i * 32:(i + 1) * 32], "y": y[i * 32:(i + 1) * 32]})
    sess.Eval()
    d = tmp_path_factory.mktemp("int8_mnv2")
    sess.SaveToFile(d / "int8.etm", inference_only=True, int8=True)
    sess.SaveToFile(d / "fp32.etm", inference_only=True)
    return model, sess, d


def test_every_layer_runs_on_the_integer_kernels(trained):
    _, sess, d = trained
    g = fileformat.load(d / "int8.etm")
    ops = [n.op for n in g.nodes]
    assert set(ops) == INT8_OPS, sorted(set(ops) ^ INT8_OPS)
    assert ops.count("qadd") == 10                 # MobileNetV2's residual blocks
    assert ops.count("qconv2d") == 52
    # every ReLU6 is its convolution's own clamp (y_scale input, (lo, hi) = (0, 6))
    relu6 = [n for n in g.nodes if n.op == "qconv2d" and len(n.inputs) > 6 and n.inputs[6] >= 0]
    assert len(relu6) == 35 and all(list(n.fattr) == [0.0, 6.0] for n in relu6)
    assert ops.count("quantize") == 1 and ops.count("dequantize") == 1
    depthwise = [n for n in g.nodes if n.op == "qconv2d" and n.iattr[-3] > 1]
    assert len(depthwise) == 17
    # no float weights left: only per-channel multipliers and the input / output grids
    big_f32 = [t.name for t in g.tensors if t.kind == ir.CONST and t.dtype == ir.F32
               and t.numel > 1 and not t.name.endswith(".multiplier")]
    assert not big_f32
    ev = sess.to_graph()
    assert set(ev.nodes[n].op for n in ev.programs[ir.EVAL].nodes) >= INT8_OPS | {"qprep"}


def test_relu6_as_qclamp_or_as_the_layers_clamp_same_bits(trained, monkeypatch):
    """The fused clamp against the separate qclamp op (the rewrite without the fusion)."""
    model, sess, _ = trained
    monkeypatch.setattr(quant, "_fuse_clamp", lambda *a: False)
    plain = _session(model)
    plain.set_parameters(sess.get_parameters())
    plain.Eval()
    ops = [plain.to_graph().nodes[n].op for n in plain.to_graph().programs[ir.EVAL].nodes]
    assert ops.count("qclamp") == 35
    x, _ = mnist_arrays(False)
    np.testing.assert_array_equal(plain.RunGraph({"x": x[:64]})["output"].view(np.uint32),
                                  sess.RunGraph({"x": x[:64]})["output"].view(np.uint32))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 17, 64])
def test_int8_file_is_bit_identical_to_eval(trained, batch, threads):
    _, sess, d = trained
    x, _ = mnist_arrays(False)
    xb = x[300:300 + batch]
    sess.threads = threads
    want = sess.RunGraph({"x": xb})["output"]
    got = et.TrainSession.load(d / "int8.etm", threads=threads).RunGraph({"x": xb})["output"]
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    # not a trivial output: the 30-step QAT model's logits sit on a coarse int8 grid, so one
    # image's 10 logits may share a few levels; across a batch they spread out
    assert len(np.unique(got)) > (5 if batch > 1 else 1)


def test_int8_file_and_eval_identical_under_every_isa(trained):
    from edgetrain import _native
    from test_int8 import _isas

    _, sess, d = trained
    x, _ = mnist_arrays(False)
    before, outs = _native.isa(), {}
    try:
        for name in _isas():
            _native.set_isa(name)
            f = et.TrainSession.load(d / "int8.etm", threads=2)
            outs[name] = (sess.RunGraph({"x": x[:33]})["output"],
                          f.RunGraph({"x": x[:33]})["output"])
    finally:
        _native.set_isa(before)
    ref = outs["ref"][0].view(np.uint32)
    for name, (a, b) in outs.items():
        np.testing.assert_array_equal(a.view(np.uint32), ref, err_msg=f"Eval under {name}")
        np.testing.assert_array_equal(b.view(np.uint32), ref, err_msg=f"file under {name}")


def test_integer_rewrites_equal_the_float_chains_they_replace(trained, monkeypatch):
    """qclamp (ReLU6), qadd and (on MNIST's 1x1 last map) qglobal_avgpool against the same
    session without the rewrite: dequantize -> relu6 / add + fake_quant / mean -> quantize in
    float. Same bits."""
    model, sess, _ = trained
    params = sess.get_parameters()
    monkeypatch.setattr(quant, "integer_chains", lambda g, nodes, outs: list(nodes))
    plain = _session(model)
    plain.set_parameters(params)
    plain.Eval()
    ops = {plain.to_graph().nodes[n].op for n in plain.to_graph().programs[ir.EVAL].nodes}
    assert not ops & {"qclamp", "qadd", "qglobal_avgpool"} and "qconv2d" in ops
    x, _ = mnist_arrays(False)
    a = plain.RunGraph({"x": x[:100]})["output"]
    b = sess.RunGraph({"x": x[:100]})["output"]
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_int8_eval_close_to_the_fake_quant_simulation(trained, monkeypatch):
    """The integer program against the float simulation of the same QAT weights and observers
    (the training program's arithmetic in eval mode): argmax agreement on MNIST test images."""
    model, sess, d = trained
    x, _ = mnist_arrays(False)
    xs = x[:1000]
    got = et.TrainSession.load(d / "int8.etm").predict(xs, batch_size=250)
    params = sess.get_parameters()
    monkeypatch.setattr(quant, "_int_layer", lambda *a, **k: None)
    fq = _session(model)
    assert "qconv2d" not in [n.op for n in fq.to_graph().nodes]
    fq.set_parameters(params)
    fq.Eval()
    want = fq.predict(xs, batch_size=250)
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    print(f"\nMobileNetV2 int8 vs fake-quant argmax agreement: {agree:.4f}")
    assert agree >= 0.97


def test_int8_file_size(trained):
    _, _, d = trained
    i8, f32 = os.path.getsize(d / "int8.etm"), os.path.getsize(d / "fp32.etm")
    print(f"\nMobileNetV2 x{WIDTH}: int8 file {i8} B, fp32 {f32} B, ratio {i8 / f32:.3f}")
    assert i8 / f32 <= 0.27
