"""conv2d -> batchnorm_infer -> relu / relu6 fused into one conv2d in eval programs (issue 15).

The fused conv's epilogue (kernels/src/conv_internal.h et_conv_epilogue_) must give the bits of
the separate ops: every test compares the eval output of the fused program with the program
built with export.FUSE_CONV_BATCHNORM off, bit for bit, at 1 and 2 threads, on models whose
BatchNorms have non-trivial statistics (so the affine is not the identity)."""
import re
from collections import Counter

import numpy as np
import pytest

import edgetrain as et
from edgetrain import export, ir, nn, ops
from edgetrain.errors import ModelFormatError, NotDifferentiableError, ShapeError
from edgetrain.export import build_graph
from edgetrain.models import MobileNetV2


def randomize_bn(m, seed=1):
    """Random BatchNorm statistics and affine parameters (a fresh BN is almost the identity)."""
    r = np.random.RandomState(seed)
    sd = m.state_dict()
    for k, v in sd.items():
        if k.endswith("running_mean"):
            sd[k] = (r.randn(*v.shape) * 0.5).astype(np.float32)
        elif k.endswith("running_var"):
            sd[k] = r.uniform(0.2, 2.0, v.shape).astype(np.float32)
        elif v.ndim == 1 and k.endswith(".weight"):
            sd[k] = r.uniform(0.5, 1.5, v.shape).astype(np.float32)
        elif v.ndim == 1 and k.endswith(".bias"):
            sd[k] = (r.randn(*v.shape) * 0.3).astype(np.float32)
    m.load_state_dict(sd)


def eval_ops(model, shape, fuse):
    """The op names of the eval program built with / without the fusion."""
    old = export.FUSE_CONV_BATCHNORM
    export.FUSE_CONV_BATCHNORM = fuse
    try:
        g = build_graph(model, inputs={"x": (None,) + shape})
    finally:
        export.FUSE_CONV_BATCHNORM = old
    return Counter(g.nodes[n].op for n in g.programs[ir.EVAL].nodes)


def eval_output(model, shape, x, fuse, threads):
    old = export.FUSE_CONV_BATCHNORM
    export.FUSE_CONV_BATCHNORM = fuse
    try:
        sess = et.TrainSession.from_module(model, inputs={"x": (None,) + shape}, threads=threads)
    finally:
        export.FUSE_CONV_BATCHNORM = old
    sess.Eval()
    return sess.RunGraph({"x": x})["output"]


class ConvBnAct(nn.Module):
    """Every flavour of the fused conv: bias / no bias, relu / relu6 / none, grouped, depthwise
    (multiplier 1 and 2), pointwise (the batched 1x1 path), strided, odd sizes."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=True)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False)   # depthwise
        self.b2 = nn.BatchNorm2d(8)
        self.c3 = nn.Conv2d(8, 12, 1, bias=False)                                 # pointwise
        self.b3 = nn.BatchNorm2d(12)
        self.c4 = nn.Conv2d(12, 12, 3, padding=1, groups=4, bias=True)            # grouped
        self.b4 = nn.BatchNorm2d(12)
        self.c5 = nn.Conv2d(12, 24, 3, padding=1, groups=12, bias=True)           # depthwise x2
        self.b5 = nn.BatchNorm2d(24)
        self.c6 = nn.Conv2d(24, 5, 1, bias=True)                                  # pointwise
        self.b6 = nn.BatchNorm2d(5)

    def forward(self, x):
        x = nn.functional.relu(self.b1(self.c1(x)))
        x = nn.functional.relu6(self.b2(self.c2(x)))
        x = self.b3(self.c3(x))                      # no activation
        x = nn.functional.relu6(self.b4(self.c4(x)))
        x = nn.functional.relu(self.b5(self.c5(x)))
        return self.b6(self.c6(x))


def small_model():
    et.nn.init.manual_seed(0)
    m = ConvBnAct()
    randomize_bn(m)
    return m


def mobilenet(size, in_channels):
    et.nn.init.manual_seed(0)
    m = MobileNetV2(num_classes=10, width_mult=1.0, input_size=size, in_channels=in_channels)
    randomize_bn(m)
    return m


@pytest.mark.parametrize("threads", [1, 2])
def test_small_model_fused_equals_unfused_bitwise(threads):
    m = small_model()
    x = np.random.RandomState(0).randn(3, 3, 13, 11).astype(np.float32)
    fused = eval_output(m, (3, 13, 11), x, True, threads)
    plain = eval_output(m, (3, 13, 11), x, False, threads)
    assert np.abs(plain).max() > 0.1
    assert np.array_equal(fused.view(np.uint32), plain.view(np.uint32))


@pytest.mark.parametrize("threads", [1, 2])
def test_mobilenetv2_fused_equals_unfused_bitwise(threads):
    m = mobilenet(28, 1)
    x = np.random.RandomState(0).randn(5, 1, 28, 28).astype(np.float32)
    fused = eval_output(m, (1, 28, 28), x, True, threads)
    plain = eval_output(m, (1, 28, 28), x, False, threads)
    assert np.array_equal(fused.view(np.uint32), plain.view(np.uint32))


def test_mobilenetv2_224_fused_equals_unfused_bitwise():
    m = mobilenet(224, 3)
    x = np.random.RandomState(0).randn(1, 3, 224, 224).astype(np.float32)
    fused = eval_output(m, (3, 224, 224), x, True, 2)
    plain = eval_output(m, (3, 224, 224), x, False, 2)
    assert np.array_equal(fused.view(np.uint32), plain.view(np.uint32))


def test_fused_program_has_no_batchnorm_or_act_nodes():
    fused = eval_ops(small_model(), (3, 13, 11), True)
    plain = eval_ops(small_model(), (3, 13, 11), False)
    assert plain["batchnorm_infer"] == 6 and plain["act"] == 4
    assert fused["batchnorm_infer"] == 0 and fused["act"] == 0 and fused["conv2d"] == 6
    fused = eval_ops(mobilenet(28, 1), (1, 28, 28), True)
    assert fused["batchnorm_infer"] == 0 and fused["act"] == 0 and fused["conv2d"] == 52


def test_training_programs_keep_their_batchnorms():
    """Only the eval program fuses: the gradient program still trains the BatchNorms."""
    m = small_model()
    g = build_graph(m, inputs={"x": (None, 3, 13, 11)}, loss=nn.functional.mse_loss,
                    labels={"y": ((None, 5, 7, 6), "float32")},
                    optimizer=et.optim.SGD(m.parameters(), lr=0.1))
    # (recompute copies, memory_budget="auto", are batchnorm_train without running statistics)
    train_ops = Counter(g.nodes[n].op for n in g.programs[ir.TRAIN].nodes
                        if g.nodes[n].op != "batchnorm_train" or g.nodes[n].inputs[3] >= 0)
    assert train_ops["batchnorm_train"] == 6
    for n in g.programs[ir.TRAIN].nodes:
        nd = g.nodes[n]
        assert nd.op != "conv2d" or all(t < 0 for t in nd.inputs[3:])


def fused_conv_graph():
    """A graph with one conv2d of 4 output channels and f32 vectors of 4 and 3 values."""
    g = ir.Graph()
    x = g.add_tensor("x", ir.F32, ir.INPUT, (2, 3, 5, 5)).index
    w = g.add_tensor("w", ir.F32, ir.PARAM, (4, 3, 3, 3),
                     data=np.ones((4, 3, 3, 3), np.float32)).index
    v4 = [g.add_tensor(f"v{k}", ir.F32, ir.PARAM, (4,), data=np.ones(4, np.float32)).index
          for k in range(4)]
    v3 = g.add_tensor("v3", ir.F32, ir.PARAM, (3,), data=np.ones(3, np.float32)).index
    return g, x, w, v4, v3


def test_bad_batchnorm_inputs_are_rejected_with_a_clear_message():
    g, x, w, (a, b, m, v), v3 = fused_conv_graph()
    ops.emit(g, "conv2d", [x, w, -1, a, b, m, v], stride_h=1, stride_w=1, dil_h=1, dil_w=1,
             groups=1, bn_eps=1e-5)                                       # fine
    ops.emit(g, "conv2d", [x, w, -1, -1, -1, m, v], stride_h=1, stride_w=1, dil_h=1, dil_w=1,
             groups=1, bn_eps=1e-5)                                       # no affine: fine
    cases = [([x, w, -1, a, b, v3, v], "bn_mean must be [4] f32"),
             ([x, w, -1, v3, b, m, v], "bn_weight must be [4] f32"),
             ([x, w, -1, a, b, m, -1], "needs both bn_mean and bn_var"),
             ([x, w, -1, a, -1], "needs both bn_mean and bn_var")]
    for ins, msg in cases:
        with pytest.raises(ShapeError, match=re.escape(msg)):
            ops.emit(g, "conv2d", ins, stride_h=1, stride_w=1, dil_h=1, dil_w=1, groups=1,
                     bn_eps=1e-5)
    with pytest.raises(ShapeError, match="eps must be finite and >= 0"):
        ops.emit(g, "conv2d", [x, w, -1, a, b, m, v], stride_h=1, stride_w=1, dil_h=1, dil_w=1,
                 groups=1, bn_eps=-1.0)


def test_loader_rejects_a_file_with_a_bad_fused_batchnorm():
    g = build_graph(small_model(), inputs={"x": (None, 3, 13, 11)})
    conv = next(g.nodes[n] for n in g.programs[ir.EVAL].nodes if g.nodes[n].op == "conv2d")
    conv.inputs[5] = conv.inputs[1]   # bn_mean := the 4-D weight
    with pytest.raises(ModelFormatError, match=re.escape("layer 'c1'): BatchNorm running mean "
                                                         "bn_mean must be [8] f32, got [8,3,3,3]")):
        et.TrainSession.from_graph(g)


def test_backward_of_a_fused_batchnorm_conv_is_an_error():
    g, x, w, (a, b, m, v), _ = fused_conv_graph()
    y = ops.emit(g, "conv2d", [x, w, -1, a, b, m, v], stride_h=1, stride_w=1, dil_h=1, dil_w=1,
                 groups=1, bn_eps=1e-5)[0]
    node = g.nodes[-1]
    ctx = ops.GradContext(g, ops.OP_BY_NAME["conv2d"], node, [True, True, False, False, False,
                                                              False, False])
    with pytest.raises(NotDifferentiableError, match="fused BatchNorm"):
        ops._bw_conv2d(ctx, node, [y])


def test_onnx_export_of_the_fused_eval_program_matches_eval(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    m = small_model()
    sess = et.TrainSession.from_module(m, inputs={"x": (None, 3, 13, 11)})
    sess.Eval()
    x = np.random.RandomState(3).randn(4, 3, 13, 11).astype(np.float32)
    want = sess.RunGraph({"x": x})["output"]
    for inference_only in (False, True):
        path = tmp_path / f"m{int(inference_only)}.onnx"
        sess.export_onnx(path, inference_only=inference_only)
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        used = Counter(n.op_type for n in model.graph.node)
        if inference_only:   # folded into the Conv weights
            assert used["BatchNormalization"] == 0
        else:                # Conv + BatchNormalization + Relu / Clip
            assert used["BatchNormalization"] == 6 and used["Relu"] == 2 and used["Clip"] == 2
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_saved_file_with_fused_convs_reloads_with_the_same_bits(tmp_path):
    m = small_model()
    sess = et.TrainSession.from_module(m, inputs={"x": (None, 3, 13, 11)})
    sess.Eval()
    x = np.random.RandomState(4).randn(2, 3, 13, 11).astype(np.float32)
    want = sess.RunGraph({"x": x})["output"]
    sess.SaveToFile(tmp_path / "m.etm")
    back = et.TrainSession.load(tmp_path / "m.etm")
    back.Eval()
    got = back.RunGraph({"x": x})["output"]
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
