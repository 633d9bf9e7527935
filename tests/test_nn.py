"""edgetrain.nn structure: modules, state_dict vs PyTorch, initialisation, tracing, export."""
import math

import numpy as np
import pytest
import torch

import edgetrain as et
from edgetrain import ir, nn, optim
from edgetrain.errors import ShapeError
from edgetrain.export import build_graph, graph_summary, inference_graph
from edgetrain.models.lenet import LeNet


# ---------------------------------------------------------------------------------------------
# a model and its PyTorch twin with the same names
# ---------------------------------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.features(x))))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        tnn = torch.nn
        self.features = tnn.Sequential(
            tnn.Conv2d(3, 8, 3, padding=1, bias=False), tnn.BatchNorm2d(8), tnn.ReLU6(),
            tnn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), tnn.BatchNorm2d(8), tnn.ReLU(),
            tnn.MaxPool2d(2), tnn.Dropout(0.2))
        self.pool = tnn.AdaptiveAvgPool2d(1)
        self.flat = tnn.Flatten()
        self.fc = tnn.Linear(8, 5)


def test_state_dict_names_and_shapes_match_torch():
    ours, theirs = Net().state_dict(), TorchNet().state_dict()
    assert list(ours) == list(theirs)
    for k in ours:
        assert ours[k].shape == tuple(theirs[k].shape), k
    assert ours["features.1.num_batches_tracked"].dtype == np.int64


def test_lenet_state_dict_matches_torch_twin():
    tm = torch.nn.ModuleDict(dict(conv1=torch.nn.Conv2d(1, 20, 5), conv2=torch.nn.Conv2d(20, 50, 5),
                                  fc1=torch.nn.Linear(800, 500), fc2=torch.nn.Linear(500, 10)))
    ours = LeNet().state_dict()
    assert {k: v.shape for k, v in ours.items()} == \
        {k: tuple(v.shape) for k, v in tm.state_dict().items()}


def test_load_state_dict_from_torch_tensors():
    tm = TorchNet()
    with torch.no_grad():
        tm.features[1].running_mean.uniform_()
        tm.features[1].num_batches_tracked.fill_(7)
    m = Net()
    m.load_state_dict(tm.state_dict())
    sd = m.state_dict()
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(sd[k], v.numpy())
    assert m.features[0].weight.data.dtype == np.float32
    assert int(m.features[1].num_batches_tracked.data) == 7


def test_load_state_dict_errors():
    m = Net()
    sd = m.state_dict()
    del sd["fc.bias"]
    sd["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match="missing keys: fc.bias.*unexpected keys: extra"):
        m.load_state_dict(sd)
    res = m.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["fc.bias"] and res.unexpected_keys == ["extra"]
    bad = Net().state_dict()
    bad["fc.weight"] = np.zeros((5, 9))
    with pytest.raises(ValueError, match=r"fc.weight.*\(5, 9\).*\(5, 8\)"):
        m.load_state_dict(bad)


def test_module_traversal_and_modes():
    m = Net()
    names = [n for n, _ in m.named_modules()]
    assert names[:3] == ["", "features", "features.0"]
    assert [n for n, _ in m.named_children()] == ["features", "pool", "flat", "fc"]
    assert [n for n, _ in m.named_buffers()][:2] == ["features.1.running_mean",
                                                     "features.1.running_var"]
    assert len(list(m.parameters())) == 2 + 2 + 2 + 2 + 1
    m.eval()
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    m.features.requires_grad_(False)
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]


def test_parameters_are_float32_and_shared_parameters_counted_once():
    lin = nn.Linear(3, 3)
    m = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(m.parameters())) == 2
    assert lin.weight.data.dtype == np.float32


def test_default_init_bounds_and_seed():
    et.manual_seed(3)
    a = nn.Conv2d(4, 6, 3).weight.data.copy()
    et.manual_seed(3)
    conv = nn.Conv2d(4, 6, 3)
    np.testing.assert_array_equal(conv.weight.data, a)
    bound = 1 / math.sqrt(4 * 9)
    assert np.abs(conv.weight.data).max() <= bound
    assert np.abs(conv.bias.data).max() <= bound
    assert conv.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.2)
    lin = nn.Linear(100, 50)
    assert np.abs(lin.weight.data).max() <= 0.1 and np.abs(lin.bias.data).max() <= 0.1


def test_unsupported_options_raise_clearly():
    with pytest.raises(NotImplementedError, match="padding_mode='reflect'"):
        nn.ConvTranspose2d(4, 4, 3, padding_mode="reflect")
    with pytest.raises(NotImplementedError, match="momentum=None"):
        nn.BatchNorm2d(3, momentum=None)
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)


def test_modules_only_run_while_tracing():
    with pytest.raises(RuntimeError, match="only while tracing"):
        nn.Linear(2, 2)(np.zeros((1, 2), np.float32))


# ---------------------------------------------------------------------------------------------
# tracing and export structure
# ---------------------------------------------------------------------------------------------
def _graph(model=None, optimizer=True, **kw):
    model = model or Net()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if optimizer else None
    return build_graph(model, {"data": (4, 3, 8, 8)}, loss=nn.CrossEntropyLoss(),
                       labels={"label": ((4,), "int64")}, optimizer=opt, **kw)


def _ops(g, kind):
    return [g.nodes[n].op for n in g.programs[kind].nodes]


def test_programs_and_tensors():
    g = _graph()
    assert set(g.programs) == {ir.EVAL, ir.GRAD_PROGRAM, ir.TRAIN}
    names = {t.name: t for t in g.tensors if t.name}
    assert names["data"].kind == ir.INPUT and names["data"].dtype == ir.F32
    assert names["label"].kind == ir.INPUT and names["label"].dtype == ir.I32
    assert names["features.0.weight"].kind == ir.PARAM
    assert names["features.1.running_mean"].kind == ir.BUFFER
    assert "features.1.num_batches_tracked" not in names
    assert names["grad:fc.weight"].kind == ir.GRAD
    assert names["grad:fc.weight"].owner == names["fc.weight"].index
    assert names["momentum:fc.weight"].kind == ir.OPTSTATE
    assert names["momentum:fc.weight"].owner == names["fc.weight"].index
    ev, gr, tr = (g.programs[k] for k in (ir.EVAL, ir.GRAD_PROGRAM, ir.TRAIN))
    assert [g.tensors[t].name for t in ev.inputs] == ["data"]
    assert [g.tensors[t].name for t in gr.inputs] == ["data", "label"]
    assert set(ev.outputs) == {"output"} and set(gr.outputs) == {"loss", "output"}
    assert tr.nodes[:len(gr.nodes)] == gr.nodes
    assert _ops(g, ir.TRAIN)[len(gr.nodes):] == ["sgd_update"] * 9
    assert g.state.opt_kind == 1 and g.state.base_lr == pytest.approx(0.1)


def test_eval_and_train_traces_share_parameters():
    g = _graph()
    ev = set(t for n in g.programs[ir.EVAL].nodes for t in g.nodes[n].inputs)
    gr = set(t for n in g.programs[ir.GRAD_PROGRAM].nodes for t in g.nodes[n].inputs)
    params = {t.index for t in g.tensors if t.kind in (ir.PARAM, ir.BUFFER)}
    assert params <= ev and params <= gr
    assert len([t for t in g.tensors if t.name == "fc.weight"]) == 1


def test_batchnorm_and_dropout_modes():
    g = _graph()
    ev, gr = _ops(g, ir.EVAL), _ops(g, ir.GRAD_PROGRAM)
    # eval: each BatchNorm is fused into its conv2d (export.fuse_conv_batchnorm)
    assert "batchnorm_infer" not in ev and "batchnorm_train" not in ev
    assert sum(1 for n in g.programs[ir.EVAL].nodes if g.nodes[n].op == "conv2d"
               and len(g.nodes[n].inputs) == 7 and g.nodes[n].inputs[5] >= 0) == 2
    assert gr.count("batchnorm_train") == 2 and "batchnorm_infer" not in gr
    assert "dropout" not in ev and gr.count("dropout") == 1
    assert gr.count("dropout_bwd") == 1


def test_dropout_streams_are_distinct():
    m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 4), nn.Dropout(0.3))
    g = build_graph(m, {"x": (2, 4)}, loss=nn.MSELoss(), labels={"y": ((2, 4), "float32")})
    streams = [g.nodes[n].iattr[0] for n in g.programs[ir.GRAD_PROGRAM].nodes
               if g.nodes[n].op == "dropout"]
    assert len(streams) == 2 and len(set(streams)) == 2
    bwd = {g.nodes[n].iattr[0] for n in g.programs[ir.GRAD_PROGRAM].nodes
           if g.nodes[n].op == "dropout_bwd"}
    assert bwd == set(streams)


def test_nodes_record_layer_paths():
    g = _graph()
    layers = {g.nodes[n].op: g.nodes[n].layer for n in g.programs[ir.EVAL].nodes}
    assert layers["conv2d"] in ("features.0", "features.3")
    assert layers["matmul"] == "fc"
    assert layers["global_avgpool"] == "pool"
    gr = {g.nodes[n].op: g.nodes[n].layer for n in g.programs[ir.GRAD_PROGRAM].nodes}
    assert gr["softmax_xent"] == "loss"


def test_shape_error_names_the_layer():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(10, 2))
    with pytest.raises(ShapeError, match=r"layer '2'.*matmul"):
        build_graph(m, {"x": (1, 3, 5, 5)})
    m2 = nn.Sequential(nn.Conv2d(3, 4, 7))
    with pytest.raises(ShapeError, match=r"layer '0'.*too small"):
        build_graph(m2, {"x": (1, 3, 5, 5)})
    m3 = nn.Sequential(nn.Conv2d(2, 4, 3))
    with pytest.raises(ShapeError, match=r"layer '0'.*3 channels"):
        build_graph(m3, {"x": (1, 3, 5, 5)})


def test_asymmetric_and_same_padding_shapes():
    m = nn.Conv2d(1, 2, 3, padding=(0, 1, 2, 1))
    g = build_graph(m, {"x": (1, 1, 5, 5)})
    out = g.programs[ir.EVAL].outputs["output"]
    assert g.tensors[out].shape == (1, 2, 5, 5)
    g = build_graph(nn.Conv2d(1, 2, 4, padding="same"), {"x": (1, 1, 6, 7)})
    assert g.tensors[g.programs[ir.EVAL].outputs["output"]].shape == (1, 2, 6, 7)


def test_reshape_keeps_batch_dynamic():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 2)

        def forward(self, x):
            return self.fc(x.view(x.size(0), -1))

    g = build_graph(M(), {"x": (5, 3, 2, 2)})
    rs = [g.nodes[n] for n in g.programs[ir.EVAL].nodes if g.nodes[n].op == "reshape"][0]
    assert rs.iattr[:3] == [2, 0, -1]


def test_residual_add_and_add_module():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.add = nn.Add()

        def forward(self, x):
            return self.add(x, self.conv(x)) + x

    g = build_graph(Block(), {"x": (1, 4, 5, 5)})
    assert _ops(g, ir.EVAL).count("add") == 2


def test_parameter_and_buffer_operands_trace_by_kind():
    """Parameters and Buffers (tracing.Holder) take part in arithmetic and tensor methods and
    become PARAM / BUFFER tensors; an unregistered one is named as a parameter or buffer."""
    class M(nn.Module):
        def __init__(self, stray=None):
            super().__init__()
            self.scale = nn.Parameter(np.full((1, 3), 2.0, np.float32))
            self.register_buffer("shift", np.ones((1, 3), np.float32))
            self.stray = stray

        def forward(self, x):
            y = 1.0 - self.scale * x / 2.0 + self.shift.sigmoid() + (-self.scale)
            return y + self.stray if self.stray is not None else y

    assert nn.Parameter(np.zeros(1)).kind == ir.PARAM and nn.Buffer(np.zeros(1)).kind == ir.BUFFER
    g = build_graph(M(), {"x": (2, 3)})
    kinds = {t.name: t.kind for t in g.tensors if t.name in ("scale", "shift")}
    assert kinds == {"scale": ir.PARAM, "shift": ir.BUFFER}
    assert _ops(g, ir.EVAL) == ["mul", "affine", "affine", "act", "add", "affine", "add"]
    m = M()
    object.__setattr__(m, "stray", nn.Buffer(np.zeros((1, 3), np.float32)))
    with pytest.raises(ValueError, match="a buffer of shape \\(1, 3\\) is used in forward"):
        build_graph(m, {"x": (2, 3)})
    object.__setattr__(m, "stray", nn.Parameter(np.zeros((1, 3), np.float32)))
    with pytest.raises(ValueError, match="a parameter of shape"):
        build_graph(m, {"x": (2, 3)})


def test_distill_loss_traces_with_teacher_input():
    model = nn.Linear(6, 5)
    g = build_graph(model, {"x": (4, 6)}, loss=nn.DistillLoss(4.0, 0.7),
                    labels={"teacher": ((4, 5), "float32"), "label": ((4,), "int64")},
                    optimizer=optim.Adam(model.parameters()))
    ops_ = _ops(g, ir.GRAD_PROGRAM)
    for op in ("kldiv", "softmax_xent", "softmax", "kldiv_bwd", "softmax_xent_bwd"):
        assert op in ops_
    assert [g.tensors[t].name for t in g.programs[ir.GRAD_PROGRAM].inputs] == \
        ["x", "teacher", "label"]


def test_cross_entropy_with_probability_targets():
    g = build_graph(nn.Linear(3, 4), {"x": (2, 3)}, loss=nn.CrossEntropyLoss(),
                    labels={"t": ((2, 4), "float32")})
    assert "softmax_xent_prob" in _ops(g, ir.GRAD_PROGRAM)


def test_loss_must_be_scalar():
    with pytest.raises(ShapeError, match="scalar"):
        build_graph(nn.Linear(3, 4), {"x": (2, 3)}, loss=lambda out: out)


# ---------------------------------------------------------------------------------------------
# optimizers and schedules (structure; numerics in test_ops_vs_torch.py)
# ---------------------------------------------------------------------------------------------
def test_param_groups_lr_scale_and_state():
    m = Net()
    opt = optim.Adam([{"params": m.features.parameters(), "lr": 1e-4},
                      {"params": m.fc.parameters()}], lr=1e-3, weight_decay=0.1)
    g = build_graph(m, {"data": (4, 3, 8, 8)}, loss=nn.CrossEntropyLoss(),
                    labels={"label": ((4,), "int64")}, optimizer=opt)
    upd = [g.nodes[n] for n in g.programs[ir.TRAIN].nodes if g.nodes[n].op == "adam_update"]
    by_param = {g.tensors[n.inputs[0]].name: n for n in upd}
    assert by_param["fc.weight"].fattr[0] == pytest.approx(1.0)
    assert by_param["features.0.weight"].fattr[0] == pytest.approx(0.1)
    assert by_param["fc.weight"].fattr[4] == pytest.approx(0.1)
    m_t = g.find("adam_m:fc.weight")
    assert m_t.kind == ir.OPTSTATE and not m_t.data.any()
    assert g.find("adam_v:fc.weight") is not None
    assert g.state.opt_kind == 2 and g.state.base_lr == pytest.approx(1e-3)
    g2 = build_graph(m, {"data": (4, 3, 8, 8)}, loss=nn.CrossEntropyLoss(),
                     labels={"label": ((4,), "int64")}, optimizer=optim.AdamW(m.parameters()))
    assert g2.state.opt_kind == 3
    assert all(g2.nodes[n].iattr == [1] for n in g2.programs[ir.TRAIN].nodes
               if g2.nodes[n].op == "adam_update")


def test_sgd_without_momentum_has_no_state_and_l1_flag():
    m = nn.Linear(3, 2)
    g = build_graph(m, {"x": (2, 3)}, loss=nn.MSELoss(), labels={"y": ((2, 2), "float32")},
                    optimizer=optim.SGD(m.parameters(), lr=0.1, weight_decay=1e-3,
                                        regularization="l1"))
    upd = [g.nodes[n] for n in g.programs[ir.TRAIN].nodes if g.nodes[n].op == "sgd_update"]
    assert len(upd) == 2 and all(n.inputs[2] == -1 and n.iattr == [0, 1] for n in upd)
    assert not g.of_kind(ir.OPTSTATE)


@pytest.mark.parametrize("make,kind,f,i,warm", [
    (lambda o: optim.StepLR(o, 10, 0.5), 1, [0.5], [10], 0),
    (lambda o: optim.MultiStepLR(o, [30, 10], 0.1), 2, [0.1], [10, 30], 0),
    (lambda o: optim.ExponentialLR(o, 0.99), 3, [0.99], [], 0),
    (lambda o: optim.CosineAnnealingLR(o, 100, 1e-4), 4, [1e-4], [100], 0),
    (lambda o: optim.InvLR(o, 1e-4, 0.75), 5, [1e-4, 0.75], [], 0),
    (lambda o: optim.LinearWarmup(o, 5), 0, [], [], 5),
    (lambda o: optim.LinearWarmup(o, 5, optim.StepLR(o, 3, 0.1)), 1, [0.1], [3], 5),
])
def test_scheduler_state(make, kind, f, i, warm):
    m = nn.Linear(3, 2)
    o = optim.SGD(m.parameters(), lr=0.5)
    g = build_graph(m, {"x": (2, 3)}, loss=nn.MSELoss(), labels={"y": ((2, 2), "float32")},
                    optimizer=o, scheduler=make(o))
    st = g.state
    assert st.sched_kind == kind and st.warmup == warm and st.base_lr == pytest.approx(0.5)
    np.testing.assert_allclose(st.sched_f[:len(f)], f, rtol=1e-6)
    assert st.sched_i[:len(i)] == i


def test_lr_at_formulas():
    o = optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    assert optim.StepLR(o, 2, 0.5).lr_at(5) == pytest.approx(0.25)
    assert optim.MultiStepLR(o, [2, 4], 0.1).lr_at(4) == pytest.approx(0.01)
    assert optim.ExponentialLR(o, 0.5).lr_at(3) == pytest.approx(0.125)
    c = optim.CosineAnnealingLR(o, 10, 0.0)
    assert c.lr_at(5) == pytest.approx(0.5) and c.lr_at(20) == pytest.approx(0.0)
    assert optim.InvLR(o, 0.1, 1.0).lr_at(10) == pytest.approx(0.5)
    w = optim.LinearWarmup(o, 4)
    assert [w.lr_at(t) for t in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


# ---------------------------------------------------------------------------------------------
# inference graph and summary
# ---------------------------------------------------------------------------------------------
def test_inference_graph_folds_batchnorm():
    m = Net()
    for b in (m.features[1], m.features[4]):
        b.running_mean.data = np.random.default_rng(0).normal(size=8)
        b.running_var.data = np.random.default_rng(1).uniform(0.5, 2, size=8)
    g = _graph(m)
    ig = inference_graph(g)
    assert set(ig.programs) == {ir.EVAL}
    ops_ = _ops(ig, ir.EVAL)
    assert "batchnorm_infer" not in ops_ and "dropout" not in ops_
    assert not ig.of_kind(ir.GRAD) and not ig.of_kind(ir.OPTSTATE) and not ig.of_kind(ir.BUFFER)
    w = ig.find("features.0.weight").data
    bn = m.features[1]
    scale = bn.weight.data / np.sqrt(bn.running_var.data + 1e-5)
    np.testing.assert_allclose(w, m.features[0].weight.data * scale[:, None, None, None],
                               rtol=1e-6)
    b = ig.find("features.0.bias").data
    np.testing.assert_allclose(b, bn.bias.data - bn.running_mean.data * scale, rtol=1e-5,
                               atol=1e-6)
    # the relu6 / relu after the folded conv are fused into it
    convs = [ig.nodes[n] for n in ig.programs[ir.EVAL].nodes if ig.nodes[n].op == "conv2d"]
    assert [c.iattr[9] for c in convs] == [2, 1]


def test_graph_summary_lists_layers_and_programs():
    s = graph_summary(_graph())
    for text in ("features.0", "fc", "program eval", "program train", "parameters:", "sgd"):
        assert text in s


# ---------------------------------------------------------------------------------------------
# numerics through the runtime
# ---------------------------------------------------------------------------------------------
def test_inference_only_file_matches_eval_program(tmp_path):
    m = Net()
    rng = np.random.default_rng(0)
    for b in (m.features[1], m.features[4]):
        b.running_mean.data = rng.normal(size=8)
        b.running_var.data = rng.uniform(0.5, 2, size=8)
    sess = et.TrainSession.from_module(m, inputs={"data": (4, 3, 8, 8)},
                                       loss=nn.CrossEntropyLoss(),
                                       labels={"label": ((4,), "int64")},
                                       optimizer=optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
                                       threads=1)
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    sess.Train()
    for _ in range(2):  # move weights and running statistics away from their start
        sess.RunGraph({"data": x, "label": np.array([0, 1, 2, 3])})
    sess.Eval()
    ref = sess.RunGraph({"data": x})["output"]
    path = tmp_path / "m.etm"
    sess.SaveToFile(path, inference_only=True)
    folded = et.TrainSession.load(path, threads=1)
    folded.Eval()
    np.testing.assert_allclose(folded.RunGraph({"data": x})["output"], ref, rtol=1e-5,
                               atol=1e-6)


def test_mean_gradient_follows_resize():
    model = nn.Linear(3, 2)
    w, b = model.weight.data.copy(), model.bias.data.copy()
    sess = et.TrainSession.from_module(model, inputs={"x": (4, 3)},
                                       loss=lambda out: (out * out).mean(), threads=1)
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    sess.Resize({"x": (2, 3)})
    sess.Grad()
    sess.RunGraph({"x": x[:2]})
    tw = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    out = torch.tensor(x[:2], dtype=torch.float64) @ tw.T + tb
    (out * out).mean().backward()
    np.testing.assert_allclose(sess.get_gradients()["weight"], tw.grad.numpy(), rtol=1e-5,
                               atol=1e-6)
