"""Autodiff structure: pruning, frozen parameters, gradient accumulation, clear errors."""
import numpy as np
import pytest

from edgetrain import autodiff, ir, nn, ops, optim
from edgetrain.errors import NotDifferentiableError
from edgetrain.export import build_graph
from edgetrain.nn import functional as F


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.conv2(x))
        return self.fc(F.flatten(x, 1))


def _build(model, optimizer=None):
    return build_graph(model, {"x": (2, 1, 8, 8)}, loss=nn.CrossEntropyLoss(),
                       labels={"y": ((2,), "int64")}, optimizer=optimizer)


def _bwd_nodes(g):
    gr = g.programs[ir.GRAD_PROGRAM].nodes
    n_fwd = next(i for i, n in enumerate(gr) if g.nodes[n].op == "softmax_xent") + 1
    return [g.nodes[n] for n in gr[n_fwd:]]


def test_seed_is_const_one_and_grads_are_named():
    g = _build(Small())
    seeds = [t for t in g.tensors if t.kind == ir.CONST and t.shape == () and t.data == 1.0]
    assert len(seeds) == 1
    grads = {t.name: t for t in g.of_kind(ir.GRAD)}
    params = {t.name: t for t in g.of_kind(ir.PARAM)}
    assert set(grads) == {f"grad:{n}" for n in params}
    for name, t in grads.items():
        p = params[name[5:]]
        assert t.owner == p.index and t.shape == p.shape and t.data is None


def test_inputs_and_labels_get_no_gradient():
    g = _build(Small())
    bwd = _bwd_nodes(g)
    # no conv2d_bwd_input for the first conv (its input is the data)
    assert [n.layer for n in bwd if n.op == "conv2d_bwd_input"] == ["conv2"]
    x = g.find("x").index
    produced = {t for n in bwd for t in n.outputs}
    assert all(g.tensors[t].kind in (ir.ACT, ir.GRAD) for t in produced if t >= 0)
    assert x not in produced


def test_frozen_parameters_get_no_gradient_nodes():
    m = Small()
    m.conv1.requires_grad_(False)
    m.bn1.requires_grad_(False)
    g = _build(m, optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    names = {t.name for t in g.of_kind(ir.GRAD)}
    assert names == {"grad:conv2.weight", "grad:conv2.bias", "grad:fc.weight", "grad:fc.bias"}
    bwd = _bwd_nodes(g)
    assert not [n for n in bwd if n.layer in ("conv1", "bn1")]
    # nothing flows below conv2: no gradient w.r.t. its input either
    assert not [n for n in bwd if n.op == "conv2d_bwd_input"]
    upd = [g.tensors[g.nodes[n].inputs[0]].name for n in g.programs[ir.TRAIN].nodes
           if g.nodes[n].op == "sgd_update"]
    assert sorted(upd) == ["conv2.bias", "conv2.weight", "fc.bias", "fc.weight"]
    assert g.find("conv1.weight").trainable is False
    assert g.find("momentum:conv1.weight") is None


def test_frozen_batchnorm_affine_skips_dgamma():
    m = Small()
    m.bn1.weight.requires_grad = False
    m.bn1.bias.requires_grad = False
    g = _build(m)
    bn = [n for n in _bwd_nodes(g) if n.op == "batchnorm_bwd"]
    assert len(bn) == 1 and bn[0].outputs[1] == -1 and bn[0].outputs[2] == -1


def test_multiple_consumers_are_summed_with_add():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.fc = nn.Linear(2 * 4 * 4, 2)

        def forward(self, x):
            h = self.conv(x)
            return self.fc(F.flatten(h + F.relu(h), 1))

    g = build_graph(Res(), {"x": (1, 2, 4, 4)}, loss=nn.MSELoss(),
                    labels={"y": ((1, 2), "float32")})
    bwd = _bwd_nodes_generic(g)
    conv_out = [g.nodes[n] for n in g.programs[ir.GRAD_PROGRAM].nodes
                if g.nodes[n].op == "conv2d"][0].outputs[0]
    # the gradient of h has two contributions, summed by one add node
    adds = [n for n in bwd if n.op == "add"]
    assert len(adds) == 1
    dws = [n for n in bwd if n.op == "conv2d_bwd_weight"]
    assert dws[0].inputs[0] == adds[0].outputs[0]
    assert conv_out not in [t for n in bwd for t in n.outputs]


def _bwd_nodes_generic(g):
    seed = [t.index for t in g.tensors if t.kind == ir.CONST and t.shape == ()][0]
    gr = g.programs[ir.GRAD_PROGRAM].nodes
    start = next(i for i, n in enumerate(gr) if seed in g.nodes[n].inputs)
    return [g.nodes[n] for n in gr[start:]]


def test_parameter_used_twice_gets_one_grad_tensor():
    lin = nn.Linear(3, 3)
    m = nn.Sequential(lin, nn.Tanh(), lin)
    g = build_graph(m, {"x": (2, 3)}, loss=nn.MSELoss(), labels={"y": ((2, 3), "float32")})
    grads = [t.name for t in g.of_kind(ir.GRAD)]
    assert sorted(grads) == ["grad:0.bias", "grad:0.weight"]
    gw = g.find("grad:0.weight").index
    producers = [n for n in g.nodes if gw in n.outputs]
    assert len(producers) == 1 and producers[0].op == "add"


def test_not_differentiable_error_names_op_and_layer():
    class FrozenStatsBN(nn.Module):
        """Uses BN in inference mode on a trainable path: batchnorm_infer has no gradient."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x):
            b = self.bn
            return F.flatten(F.batch_norm(self.conv(x), b.running_mean, b.running_var,
                                          b.weight, b.bias, training=False), 1)

    with pytest.raises(NotDifferentiableError,
                       match=r"op 'batchnorm_infer' in layer '' has no gradient|"
                             r"op 'batchnorm_infer' in layer '<root>' has no gradient"):
        build_graph(FrozenStatsBN(), {"x": (2, 1, 5, 5)}, loss=nn.MSELoss(),
                    labels={"y": ((2, 18), "float32")})

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x):
            return F.batch_norm(x, self.bn.running_mean, self.bn.running_var, self.bn.weight,
                                self.bn.bias, training=False)

    m = nn.Sequential(nn.Conv2d(1, 2, 3), Inner(), nn.Flatten())
    with pytest.raises(NotDifferentiableError, match=r"op 'batchnorm_infer' in layer '1'"):
        build_graph(m, {"x": (2, 1, 5, 5)}, loss=nn.MSELoss(),
                    labels={"y": ((2, 18), "float32")})


def test_no_error_when_the_non_differentiable_op_is_not_on_a_trainable_path():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(1)
            self.bn.requires_grad_(False)
            self.fc = nn.Linear(25, 2)

        def forward(self, x):
            b = self.bn
            x = F.batch_norm(x, b.running_mean, b.running_var, b.weight, b.bias,
                             training=False)
            return self.fc(F.flatten(x, 1))

    g = build_graph(M(), {"x": (2, 1, 5, 5)}, loss=nn.MSELoss(),
                    labels={"y": ((2, 2), "float32")})
    assert {t.name for t in g.of_kind(ir.GRAD)} == {"grad:fc.weight", "grad:fc.bias"}


def test_kl_target_requiring_grad_is_an_error():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 4)
            self.b = nn.Linear(3, 4)

        def forward(self, x):
            return F.kl_div(F.log_softmax(self.a(x), 1), F.softmax(self.b(x), 1),
                            reduction="batchmean")

    with pytest.raises(NotDifferentiableError, match=r"op 'kldiv' in layer '<root>'.*target"):
        build_graph(M(), {"x": (2, 3)}, loss=lambda out: out)


def test_every_op_without_backward_rule_is_a_backward_or_update_op_or_listed():
    no_rule = {op.name for op in ops.OPS if op.backward is None and op.kind == "forward"}
    assert no_rule == {"batchnorm_infer", "argmax"}   # argmax: i32 positions, no gradient


def test_loss_without_trainable_parameters_has_no_backward():
    m = nn.Linear(3, 2).requires_grad_(False)
    g = build_graph(m, {"x": (2, 3)}, loss=nn.MSELoss(), labels={"y": ((2, 2), "float32")})
    assert not g.of_kind(ir.GRAD)
    ops_ = [g.nodes[n].op for n in g.programs[ir.GRAD_PROGRAM].nodes]
    assert ops_ == ["matmul", "add", "mse"]


def test_requires_grad_propagation():
    m = Small()
    m.conv1.weight.requires_grad = False
    m.conv1.bias.requires_grad = False
    g = _build(m)
    # the training forward (the eval program fuses conv1 with its BatchNorm, whose affine
    # parameters do require a gradient)
    gr = g.programs[ir.GRAD_PROGRAM].nodes
    fwd = gr[:next(i for i, n in enumerate(gr) if g.nodes[n].op == "softmax_xent") + 1]
    req = autodiff.requires_grad(g, fwd)
    conv1 = [g.nodes[n] for n in fwd if g.nodes[n].op == "conv2d"][0]
    assert conv1.outputs[0] not in req
    assert np.isin([g.find("conv2.weight").index], list(req)).all()


# ---- conv + activation folding ------------------------------------------------------------
def _acts_after_conv(g, kind):
    nodes = [g.nodes[n] for n in g.programs[kind].nodes]
    made_by_conv = {t for n in nodes if n.op == "conv2d" for t in n.outputs}
    return [n for n in nodes if n.op == "act" and n.inputs[0] in made_by_conv]


def test_relu_after_conv_is_folded_into_the_conv():
    g = _build(Small(), optim.SGD(Small().parameters(), lr=0.1))
    act_pos = ops.OP_BY_NAME["conv2d"].iattrs.index("act")
    for kind in (ir.EVAL, ir.GRAD_PROGRAM, ir.TRAIN):
        convs = [g.nodes[n] for n in g.programs[kind].nodes if g.nodes[n].op == "conv2d"]
        # training: conv1 feeds BatchNorm (not folded); conv2 feeds relu (folded). Eval: conv1,
        # its BatchNorm and the relu are one conv2d (export.fuse_conv_batchnorm)
        conv1_act = ops.ACT_RELU if kind == ir.EVAL else ops.ACT_NONE
        assert [c.iattr[act_pos] for c in convs] == [conv1_act, ops.ACT_RELU]
        assert (len(convs[0].inputs) > 3) == (kind == ir.EVAL)   # the fused BatchNorm inputs
        assert _acts_after_conv(g, kind) == []
    # the backward reads the relu derivative from the fused conv's output
    conv2 = [g.nodes[n] for n in g.programs[ir.GRAD_PROGRAM].nodes
             if g.nodes[n].op == "conv2d"][1]
    act_bwd = [n for n in _bwd_nodes(g) if n.op == "act_bwd"]
    assert any(n.inputs[1] == conv2.outputs[0] for n in act_bwd)
    # no node is left behind that no program runs
    used = {n for p in g.programs.values() for n in p.nodes}
    assert used == set(range(len(g.nodes)))


def test_conv_output_with_another_reader_is_not_folded():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            h = self.conv(x)
            return F.flatten(h + F.relu(h), 1)

    g = build_graph(Res(), {"x": (1, 2, 4, 4)}, loss=nn.MSELoss(),
                    labels={"y": ((1, 32), "float32")})
    for kind in (ir.EVAL, ir.GRAD_PROGRAM):
        assert len(_acts_after_conv(g, kind)) == 1


@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_folded_activation_gradients_match_torch(act):
    torch = pytest.importorskip("torch")
    import edgetrain as et

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3)
            self.fc = nn.Linear(3 * 4 * 4, 2)

        def forward(self, x):
            h = self.conv(x)
            h = F.relu(h) if act == "relu" else F.relu6(h)
            return self.fc(F.flatten(h, 1))

    et.manual_seed(1)
    model = Net()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 2, 6, 6)) * 4).astype(np.float32)  # values past 0 and 6
    y = rng.standard_normal((4, 2)).astype(np.float32)
    sess = et.TrainSession.from_module(model, inputs={"x": x.shape}, loss=nn.MSELoss(),
                                       labels={"y": (y.shape, "float32")})
    assert _acts_after_conv(sess.to_graph(), ir.GRAD_PROGRAM) == []
    sess.Grad()
    sess.RunGraph({"x": x, "y": y})
    grads = sess.get_gradients()

    tconv, tfc = torch.nn.Conv2d(2, 3, 3), torch.nn.Linear(48, 2)
    params = sess.get_parameters()
    with torch.no_grad():
        for mod, name in ((tconv, "conv"), (tfc, "fc")):
            mod.weight.copy_(torch.from_numpy(params[name + ".weight"]))
            mod.bias.copy_(torch.from_numpy(params[name + ".bias"]))
    h = tconv(torch.from_numpy(x))
    h = torch.relu(h) if act == "relu" else torch.nn.functional.relu6(h)
    loss = torch.nn.functional.mse_loss(tfc(h.flatten(1)), torch.from_numpy(y))
    loss.backward()
    for mod, name in ((tconv, "conv"), (tfc, "fc")):
        np.testing.assert_allclose(grads[name + ".weight"], mod.weight.grad.numpy(), rtol=1e-4,
                                   atol=1e-5)
        np.testing.assert_allclose(grads[name + ".bias"], mod.bias.grad.numpy(), rtol=1e-4,
                                   atol=1e-5)


# ---- relu derivative applied to the pooled gradient ---------------------------------------
class ConvPool(nn.Module):
    def __init__(self, act="relu", pool=(2, 2), pooled=3):
        super().__init__()
        self.act, self.pool = act, pool
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc = nn.Linear(4 * pooled * pooled, 3)

    def forward(self, x):
        h = self.conv(x)
        h = F.relu(h) if self.act == "relu" else F.relu6(h)
        return self.fc(F.flatten(F.max_pool2d(h, self.pool[0], self.pool[1]), 1))


def test_activation_derivative_moves_before_the_max_pool_backward(monkeypatch):
    from edgetrain import export

    monkeypatch.setattr(export, "FUSE_MAXPOOL_ACT_BWD", False)
    g = build_graph(ConvPool(), {"x": (2, 2, 8, 8)}, loss=nn.CrossEntropyLoss(),
                    labels={"y": ((2,), "int64")})
    nodes = [g.nodes[n] for n in g.programs[ir.GRAD_PROGRAM].nodes]
    pool = next(n for n in nodes if n.op == "maxpool2d")
    ops_in_order = [n.op for n in nodes]
    act_bwd = next(n for n in nodes if n.op == "act_bwd")
    pool_bwd = next(n for n in nodes if n.op == "maxpool2d_bwd")
    assert act_bwd.inputs[1] == pool.outputs[0]  # the mask is read from the pooled output
    assert pool_bwd.inputs[0] == act_bwd.outputs[0]
    assert ops_in_order.index("act_bwd") < ops_in_order.index("maxpool2d_bwd")
    assert g.tensors[act_bwd.outputs[0]].shape == (2, 4, 3, 3)


def test_activation_derivative_fuses_into_the_max_pool_backward():
    g = build_graph(ConvPool(), {"x": (2, 2, 8, 8)}, loss=nn.CrossEntropyLoss(),
                    labels={"y": ((2,), "int64")})
    nodes = [g.nodes[n] for n in g.programs[ir.GRAD_PROGRAM].nodes]
    assert not any(n.op == "act_bwd" for n in nodes)
    conv = next(n for n in nodes if n.op == "conv2d")
    pool_bwd = next(n for n in nodes if n.op == "maxpool2d_bwd")
    assert pool_bwd.iattr[-1] == ops.ACT_RELU and len(pool_bwd.iattr) == 10
    assert pool_bwd.inputs[1] == conv.outputs[0]  # the mask is read from the pool's input
    conv_bwd = next(n for n in nodes if n.op == "conv2d_bwd_weight")
    assert conv_bwd.inputs[0] == pool_bwd.outputs[0]


# (model args, input hw): LeNet's 2x2 pool at 3x3 and at 18x18 (SIMD paths; 33 and 32 wide with
# an uncovered column), an overlapping 3x3 / stride 2 pool (the general kernel, summed cells)
_POOL_CASES = [({}, 8), ({"pooled": 9}, 20), ({"pooled": 16}, 35),
               ({"pool": (3, 2), "pooled": 4}, 11)]


@pytest.mark.parametrize("case", range(len(_POOL_CASES)))
@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_pooled_activation_derivative_gives_the_same_bits(act, case, monkeypatch):
    import edgetrain as et
    from edgetrain import export

    kw, hw = _POOL_CASES[case]
    rng = np.random.default_rng(0)
    # wide range: values below 0 and above 6, windows whose max is 0, ties from rounding to a
    # coarse grid (conv of integer inputs with integer-rounded weights below)
    xs = [np.round(rng.standard_normal((4, 2, hw, hw)) * 4).astype(np.float32) for _ in range(4)]
    y = rng.integers(0, 3, 4)

    def train():
        et.manual_seed(3)
        model = ConvPool(act, **kw)
        sess = et.TrainSession.from_module(
            model, inputs={"x": (4, 2, hw, hw)}, loss=nn.CrossEntropyLoss(),
            labels={"y": ((4,), "int64")}, optimizer=optim.SGD(model.parameters(), lr=0.5))
        p = sess.get_parameters()
        sess.set_parameters({k: (np.round(v * 8) / 8 if k == "conv.weight" else v).astype(np.float32)
                             for k, v in p.items()})
        sess.Train()
        for x in xs:
            sess.RunGraph({"x": x, "y": y})
        return sess.get_parameters()

    fused = train()
    monkeypatch.setattr(export, "FUSE_MAXPOOL_ACT_BWD", False)
    moved = train()
    monkeypatch.setattr(export, "mask_before_maxpool_bwd", lambda g, f, b, k: b)
    plain = train()
    assert fused.keys() == moved.keys() == plain.keys()
    for k in fused:
        assert np.array_equal(fused[k], plain[k]), k
        assert np.array_equal(moved[k], plain[k]), k


def test_batch_one_parameter_broadcast_is_reduced_after_a_batch_change():
    """An open batch is traced at batch 1, where a [1, T, D] parameter (a ViT's learned position
    embedding) and the [N, T, D] activation it is added to have equal shapes: its gradient must
    still be summed over the batch once 8 samples are fed. Trained against PyTorch (float64)."""
    import torch

    import edgetrain as et

    def make(lib, param):
        class Pos(lib.Module):
            def __init__(self):
                super().__init__()
                self.pos = param(np.linspace(-0.5, 0.5, 4 * 6).reshape(1, 4, 6))
                self.scale = param(np.linspace(0.5, 1.5, 6).reshape(1, 1, 6))
                self.fc = lib.Linear(6, 3)

            def forward(self, x):
                return self.fc(((x + self.pos) * self.scale).mean(1))
        return Pos()

    model = make(nn, nn.Parameter)
    tm = make(torch.nn, lambda a: torch.nn.Parameter(torch.tensor(a))).double()
    tm.fc.load_state_dict({k: torch.tensor(v, dtype=torch.float64)
                           for k, v in model.fc.state_dict().items()})
    opt = optim.Adam(model.parameters(), lr=0.05)
    topt = torch.optim.Adam(tm.parameters(), lr=0.05)
    sess = et.TrainSession.from_module(model, inputs={"x": (None, 4, 6)},
                                       loss=nn.CrossEntropyLoss(),
                                       labels={"y": ((None,), "int64")}, optimizer=opt,
                                       max_batch=8)
    assert sess.input_shapes()["x"] == (1, 4, 6)
    sess.Train()
    rng = np.random.default_rng(1)
    for step in range(5):
        x = rng.standard_normal((8, 4, 6)).astype(np.float32)
        y = rng.integers(0, 3, 8).astype(np.int64)
        loss = float(sess.RunGraph({"x": x, "y": y})["loss"])
        topt.zero_grad()
        tl = torch.nn.functional.cross_entropy(tm(torch.tensor(x, dtype=torch.float64)),
                                               torch.tensor(y))
        tl.backward()
        topt.step()
        np.testing.assert_allclose(loss, tl.item(), rtol=1e-5, err_msg=f"step {step}")
    params = sess.get_parameters()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(params[k], v.numpy(), rtol=1e-4, atol=1e-6, err_msg=k)


def _pieces(lib):
    """Slices that tile a tensor (per step, with and without the dim; chunk) and slices that
    overlap (they keep the slice_bwd + add gradient). ``lib``: Module, Linear and cat of
    edgetrain or PyTorch."""

    class Pieces(lib.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = lib.Linear(3, 8), lib.Linear(3, 8)

        def forward(self, x):                                   # x [N, 6, 3]
            h1, h2 = self.fc1(x), self.fc2(x)                   # [N, 6, 8]
            out = h1[:, 0] * 1.0
            for t in range(1, 5):
                out = out + h1[:, t] * float(t + 1)             # dim dropped
            out = out + h1[:, 5:6].sum(1) * 0.5                 # dim kept
            a, b = h2.chunk(2, dim=2)                           # tiles dim 2 of h2
            out = out + lib.cat([b, a], 2)[:, 1]
            h3 = h2 * 2.0
            return out + (h3[:, :, :5].sum(2) - h3[:, :, 3:].sum(2)).sum(1, keepdim=True)

    return Pieces()


def test_tiling_slices_get_one_concat_gradient_equal_to_torch():
    import torch

    import edgetrain as et

    et.manual_seed(0)
    model = _pieces(type("Lib", (), {"Module": nn.Module, "Linear": nn.Linear,
                                     "cat": staticmethod(et.cat)}))
    sess = et.TrainSession.from_module(model, inputs={"x": (None, 6, 3)}, loss=nn.MSELoss(),
                                       labels={"y": ((None, 8), "float32")},
                                       optimizer=optim.SGD(model.parameters(), lr=0.1))
    g = sess.to_graph()
    used = [g.nodes[n].op for n in g.programs[ir.GRAD_PROGRAM].nodes]
    assert used.count("slice_bwd") == 3  # h3's overlapping slices; the lone [:, 1] of the cat
    assert used.count("concat") == 3     # the forward's cat; h1's 6 steps and h2's 2 chunks joined
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 6, 3), np.float32), rng.standard_normal((5, 8), np.float32)
    sess.Grad()
    sess.RunGraph({"x": x, "y": y})
    got = sess.get_gradients()

    ref = _pieces(type("Lib", (), {"Module": torch.nn.Module, "Linear": torch.nn.Linear,
                                   "cat": staticmethod(torch.cat)})).double()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.from_numpy(sess.get_tensor(name).astype(np.float64)))
    loss = torch.nn.functional.mse_loss(ref(torch.from_numpy(x).double()),
                                        torch.from_numpy(y).double())
    loss.backward()
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(got[name], p.grad.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
