"""batchnorm_train -> relu / relu6 fused into one batchnorm_train in training programs (issue 15).

The fused kernels (kernels/src/batchnorm.c, batchnorm_simd*.c; C tests in
kernels/tests/test_bn_act.c) must give the bits of the separate ops, forward and backward: every
test here trains the fused program and the program built with export.FUSE_BATCHNORM_ACT off and
compares the losses of every step and the parameters and BatchNorm statistics after them, bit
for bit, at 1, 2 and 3 threads. Gradients against PyTorch: tests/test_ops_vs_torch.py cases
batchnorm_train-act_*."""
import re
from collections import Counter

import numpy as np
import pytest

import edgetrain as et
from edgetrain import export, ir, nn, ops, optim, tracing
from edgetrain.errors import ModelFormatError, ShapeError
from edgetrain.export import build_graph
from edgetrain.models import MobileNetV2

STEPS = 4


class ResBlock(nn.Module):
    """ResNet-style: conv -> BN -> relu -> max pool (the act's output feeds the pool and the
    masked backward), a residual block whose last BN has no act, relu after the add (not
    fused: it reads an add), a BN whose output is also read elsewhere (not fused)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(8)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.b3 = nn.BatchNorm2d(8)
        self.c4 = nn.Conv2d(8, 6, 1)
        self.b4 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(nn.functional.relu(self.b1(self.c1(x))), 2)
        y = nn.functional.relu6(self.b2(self.c2(x)))
        y = self.b3(self.c3(y))
        x = nn.functional.relu(x + y)
        z = self.b4(self.c4(x))
        z = nn.functional.relu(z) + z * 0.5          # the BN output has two readers
        z = nn.functional.adaptive_avg_pool2d(z, 1)
        return self.fc(nn.functional.flatten(z, 1))


def mobilenet():
    return MobileNetV2(num_classes=10, width_mult=0.5, input_size=32)


def build(make, shape, fuse, threads=1, budget=None, opt=optim.SGD, **opt_kw):
    et.nn.init.manual_seed(0)
    model = make()
    old = export.FUSE_BATCHNORM_ACT
    export.FUSE_BATCHNORM_ACT = fuse
    try:
        sess = et.TrainSession.from_module(
            model, inputs={"data": shape}, loss=nn.CrossEntropyLoss(),
            labels={"label": ((shape[0],), "int64")},
            optimizer=opt(model.parameters(), **(opt_kw or {"lr": 0.05, "momentum": 0.9})),
            threads=threads, seed=7, memory_budget=budget)
    finally:
        export.FUSE_BATCHNORM_ACT = old
    sess.Train()
    return sess


def train_bits(sess, shape, steps=STEPS):
    """(losses of each step, {state name: bytes}) of ``steps`` steps on fixed random data."""
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        x = rng.standard_normal(shape).astype(np.float32) * 2.0
        y = rng.integers(0, 10, size=shape[0]).astype(np.int64)
        losses.append(sess.RunGraph({"data": x, "label": y})["loss"].tobytes())
    return losses, {k: v.tobytes() for k, v in sess.state_dict().items()}


def train_ops(sess):
    g = sess.to_graph()
    return Counter(g.nodes[n].op for n in g.programs[ir.TRAIN].nodes), g


def assert_same_bits(a, b, what):
    la, pa = a
    lb, pb = b
    assert la == lb, f"{what}: losses differ"
    assert list(pa) == list(pb)
    differ = [k for k in pa if pa[k] != pb[k]]
    assert not differ, f"{what}: bits differ in {differ}"


@pytest.mark.parametrize("name,make,shape", [
    ("mobilenetv2", mobilenet, (8, 3, 32, 32)),
    ("resnet_block", ResBlock, (5, 3, 15, 13)),
])
def test_fused_training_equals_unfused_bitwise(name, make, shape):
    plain = build(make, shape, False)
    ref = train_bits(plain, shape)
    counts, _ = train_ops(plain)
    n_act = counts["act"]
    for threads in (1, 2, 3):
        fused = build(make, shape, True, threads)
        if threads == 1:
            got, g = train_ops(fused)
            assert got["act"] < n_act and got["act_bwd"] < counts["act_bwd"]
            assert got["batchnorm_train"] == counts["batchnorm_train"]
            with_act = [g.nodes[n] for n in g.programs[ir.TRAIN].nodes
                        if g.nodes[n].op in ("batchnorm_train", "batchnorm_bwd")
                        and len(g.nodes[n].iattr) > 1 and g.nodes[n].iattr[1]]
            fused_bn = sum(nd.op == "batchnorm_train" for nd in with_act)
            assert fused_bn == n_act - got["act"]
            assert sum(nd.op == "batchnorm_bwd" and len(nd.inputs) == 6
                       for nd in with_act) == fused_bn
        assert_same_bits(ref, train_bits(fused, shape), f"{name} threads={threads}")


def test_which_pairs_fuse():
    sess = build(ResBlock, (2, 3, 15, 13), True)
    g = sess.to_graph()
    prog = g.programs[ir.TRAIN].nodes
    acts = [g.nodes[n] for n in prog if g.nodes[n].op == "act"]
    bns = {g.nodes[n].layer: g.nodes[n] for n in prog if g.nodes[n].op == "batchnorm_train"}
    assert ops.OP_BY_NAME["batchnorm_train"].attrs(bns["b1"])["act"] == ops.ACT_RELU
    assert ops.OP_BY_NAME["batchnorm_train"].attrs(bns["b2"])["act"] == ops.ACT_RELU6
    # b3 (no act), b4 (two readers) unfused: written as before the attributes existed
    assert bns["b3"].iattr == [-1] and len(bns["b3"].fattr) == 2
    assert bns["b4"].iattr == [-1] and len(bns["b4"].fattr) == 2
    assert len(acts) == 2   # relu after the add, relu of b4's output
    # the eval program keeps its own (conv-fused) nodes
    ev = Counter(g.nodes[n].op for n in g.programs[ir.EVAL].nodes)
    assert ev["batchnorm_train"] == 0


def test_budget_recompute_keeps_the_bits():
    shape = (8, 3, 32, 32)
    ref = train_bits(build(mobilenet, shape, False), shape)
    free = build(mobilenet, shape, True)
    arena = free.memory_info()["activations"]
    tight = build(mobilenet, shape, True, budget=int(arena * 0.55))
    info = tight.memory_info()
    assert info["activations"] <= int(arena * 0.55) and info["recomputed_tensors"] > 0
    g = tight.to_graph()
    copies = [g.nodes[n] for n in g.programs[ir.TRAIN].nodes
              if g.nodes[n].op == "batchnorm_train" and g.nodes[n].inputs[3] < 0]
    assert any(len(nd.iattr) > 1 and nd.iattr[1] for nd in copies), \
        "no fused BatchNorm among the recompute copies"
    assert_same_bits(ref, train_bits(tight, shape), "memory_budget")
    assert_same_bits(ref, train_bits(free, shape), "fused")


def test_fused_file_saves_and_resumes_with_the_same_bits(tmp_path):
    shape = (4, 3, 15, 13)
    a = build(ResBlock, shape, True)
    train_bits(a, shape, 2)
    a.SaveToFile(tmp_path / "r.etm")
    b = et.TrainSession.load(tmp_path / "r.etm", threads=2)
    b.Train()
    assert_same_bits(train_bits(a, shape, 2), train_bits(b, shape, 2), "resumed")


def test_files_without_the_act_attributes_load_unchanged():
    """A training file written before the fused act (batchnorm nodes with freeze_step only, or
    no iattr at all; 2 fattr / none) loads and trains to the fused program's bits."""
    shape = (4, 3, 15, 13)
    ref = train_bits(build(ResBlock, shape, True), shape)
    for iattr in ([-1], []):
        _, g = train_ops(build(ResBlock, shape, False))
        for nd in g.nodes:
            if nd.op in ("batchnorm_train", "batchnorm_bwd"):
                assert nd.iattr == [-1] and len(nd.fattr) == (2 if nd.op == "batchnorm_train" else 0)
                assert len(nd.inputs) <= 5
                nd.iattr = list(iattr)
        old = et.TrainSession.from_graph(g, threads=2)
        old.Train()
        assert_same_bits(ref, train_bits(old, shape), f"old file iattr={iattr}")


def test_frozen_batchnorms_are_not_fused():
    """QAT's freeze_bn_step: batchnorm_train with freeze_step keeps its separate act."""
    g = ir.Graph()
    x = g.add_tensor("x", ir.F32, ir.INPUT, (2, 3, 4, 4)).index
    v = [g.add_tensor(f"v{k}", ir.F32, ir.BUFFER, (3,), data=np.ones(3, np.float32)).index
         for k in range(4)]
    for freeze, fuses in ((3, False), (0, False), (-1, True)):
        y = ops.emit(g, "batchnorm_train", [x] + v, freeze_step=freeze, momentum=0.1,
                     eps=1e-5)[0]
        z = ops.emit(g, "act", [y], act=ops.ACT_RELU6)[0]
        nodes = [len(g.nodes) - 2, len(g.nodes) - 1]
        kept = export.fuse_batchnorm_activations(g.nodes, nodes, [])
        assert (kept == nodes[:1]) == fuses, freeze
        if fuses:
            assert g.nodes[nodes[0]].outputs[0] == z
    # an act whose input is a program output, or another act kind, stays
    y = ops.emit(g, "batchnorm_train", [x] + v, momentum=0.1, eps=1e-5)[0]
    ops.emit(g, "act", [y], act=ops.ACT_RELU)
    nodes = [len(g.nodes) - 2, len(g.nodes) - 1]
    assert export.fuse_batchnorm_activations(g.nodes, nodes, [y]) == nodes
    y = ops.emit(g, "batchnorm_train", [x] + v, momentum=0.1, eps=1e-5)[0]
    ops.emit(g, "act", [y], act=ops.ACT_SIGMOID)
    nodes = [len(g.nodes) - 2, len(g.nodes) - 1]
    assert export.fuse_batchnorm_activations(g.nodes, nodes, []) == nodes


def bn_graph():
    g = ir.Graph()
    x = g.add_tensor("x", ir.F32, ir.INPUT, (2, 3, 4, 4)).index
    v = [g.add_tensor(f"v{k}", ir.F32, ir.PARAM, (3,), data=np.ones(3, np.float32)).index
         for k in range(4)]
    return g, x, v


def test_bad_act_attributes_are_rejected_with_a_clear_message():
    g, x, v = bn_graph()
    y = ops.emit(g, "batchnorm_train", [x] + v, act=ops.ACT_RELU6, alpha=0.0, momentum=0.1,
                 eps=1e-5)[0]
    cases = [({"act": ops.ACT_SIGMOID}, "act must be 0 (none), 1 (relu) or 2 (relu6), got 4"),
             ({"act": ops.ACT_RELU, "freeze_step": 2}, "cannot be combined with freeze_step 2"),
             ({"act": ops.ACT_RELU, "alpha": float("nan")}, "alpha must be finite")]
    for kw, msg in cases:
        with pytest.raises(ShapeError, match=re.escape(msg)):
            ops.emit(g, "batchnorm_train", [x] + v, momentum=0.1, eps=1e-5, **kw)
    sm, si = v[2], v[3]
    ops.emit(g, "batchnorm_bwd", [y, x, v[0], sm, si, y], act=ops.ACT_RELU6)   # fine
    bad = [([y, x, v[0], sm, si], {"act": ops.ACT_RELU}, "act 1 needs input y"),
           ([y, x, v[0], sm, si, y], {}, "input y (the fused act's output) needs act"),
           ([y, x, v[0], sm, si, v[1]], {"act": ops.ACT_RELU}, "y [3] f32 and x [2,3,4,4] f32 "
            "must have the same shape"),
           ([y, x, v[0], sm, si, y], {"act": 7}, "act must be 0 (none), 1 (relu) or 2")]
    for ins, kw, msg in bad:
        with pytest.raises(ShapeError, match=re.escape(msg)):
            ops.emit(g, "batchnorm_bwd", ins, **kw)


def test_loader_rejects_a_file_with_a_bad_fused_act():
    sess = build(ResBlock, (2, 3, 15, 13), True)
    g = sess.to_graph()
    bwd = next(g.nodes[n] for n in g.programs[ir.TRAIN].nodes
               if g.nodes[n].op == "batchnorm_bwd" and len(g.nodes[n].inputs) == 6)
    bwd.iattr[1] = ops.ACT_HARDSWISH
    with pytest.raises(ModelFormatError, match=re.escape("act must be 0 (none), 1 (relu) or 2 "
                                                         "(relu6), got 6")):
        et.TrainSession.from_graph(g)


def test_ops_vs_torch_cases_are_fused():
    """The batchnorm_train-act_* cases of tests/test_ops_vs_torch.py check the fused op's
    gradients against PyTorch: their training programs do fuse."""
    from test_ops_vs_torch import CASES, OpModule
    cases = [c for c in CASES["batchnorm_train"] if c.name.startswith("act_")]
    assert len(cases) >= 4
    for case in cases:
        g = build_graph(OpModule(case), inputs={}, loss=lambda out: nn.functional.sum(out))
        prog = [g.nodes[n] for n in g.programs[ir.GRAD_PROGRAM].nodes]
        assert not any(nd.op in ("act", "act_bwd") for nd in prog), case.name
        assert any(nd.op == "batchnorm_bwd" and len(nd.inputs) == 6 for nd in prog), case.name


def test_onnx_export_still_writes_batchnorm_and_activations(tmp_path):
    onnx = pytest.importorskip("onnx")
    used = []
    for fuse in (True, False):
        sess = build(ResBlock, (2, 3, 15, 13), fuse)
        path = tmp_path / f"r{int(fuse)}.onnx"
        sess.export_onnx(path)
        used.append(Counter(n.op_type for n in onnx.load(str(path)).graph.node))
    assert used[0] == used[1]
    assert used[0]["BatchNormalization"] == 4 and used[0]["Relu"] == 3 and used[0]["Clip"] == 1
