"""RMSprop, Adagrad, clip_grad_norm and gradient accumulation (issue 12) against torch.optim,
with resume (save after step 5, load, continue) bit-identical to an uninterrupted run."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.nn import functional as F

RNG = np.random.default_rng(12)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 9)
        self.fc2 = nn.Linear(9, 3)

    def forward(self, x):
        return self.fc2(F.tanh(self.fc1(x)))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 9)
        self.fc2 = torch.nn.Linear(9, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def _data(steps, n=8):
    return [(RNG.standard_normal((n, 6)).astype(np.float32),
             RNG.standard_normal((n, 3)).astype(np.float32)) for _ in range(steps)]


DATA = _data(12)
DATA32 = _data(3, 32)

OPTIMIZERS = {
    "rmsprop": (lambda p, **k: optim.RMSprop(p, lr=0.01, **k),
                lambda p: torch.optim.RMSprop(p, lr=0.01)),
    "rmsprop_all": (
        lambda p, **k: optim.RMSprop(p, lr=0.005, alpha=0.9, eps=1e-6, weight_decay=0.01,
                                     momentum=0.8, centered=True, **k),
        lambda p: torch.optim.RMSprop(p, lr=0.005, alpha=0.9, eps=1e-6, weight_decay=0.01,
                                      momentum=0.8, centered=True)),
    "rmsprop_centered": (
        lambda p, **k: optim.RMSprop(p, lr=0.01, alpha=0.95, centered=True, **k),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.95, centered=True)),
    "rmsprop_momentum": (
        lambda p, **k: optim.RMSprop(p, lr=0.01, momentum=0.9, weight_decay=1e-3, **k),
        lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.9, weight_decay=1e-3)),
    "adagrad": (lambda p, **k: optim.Adagrad(p, lr=0.05, **k),
                lambda p: torch.optim.Adagrad(p, lr=0.05)),
    "adagrad_all": (
        lambda p, **k: optim.Adagrad(p, lr=0.05, lr_decay=0.1, weight_decay=0.01,
                                     initial_accumulator_value=0.3, eps=1e-8, **k),
        lambda p: torch.optim.Adagrad(p, lr=0.05, lr_decay=0.1, weight_decay=0.01,
                                      initial_accumulator_value=0.3, eps=1e-8)),
}


def _models():
    torch.manual_seed(0)
    tm = TorchNet()
    model = Net()
    model.load_state_dict({k: v.detach().numpy().copy() for k, v in tm.state_dict().items()})
    return model, tm


def _session(model, opt, batch=8, threads=2, scheduler=None):
    s = et.TrainSession.from_module(model, inputs={"x": (batch, 6)}, loss=nn.MSELoss(),
                                    labels={"y": ((batch, 3), "float32")}, optimizer=opt,
                                    scheduler=scheduler, threads=threads)
    s.Train()
    return s


def _torch_step(tm, to, x, y, clip=None):
    to.zero_grad()
    loss = TF.mse_loss(tm(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    norm = None
    if clip is not None:
        norm = float(torch.nn.utils.clip_grad_norm_(tm.parameters(), clip))
    to.step()
    return loss.item(), norm


def _compare(sess, tm, rtol, atol):
    params = sess.get_parameters()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(params[k], v.detach().numpy(), rtol=rtol, atol=atol, err_msg=k)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_vs_torch_float32(name):
    """10 steps in float32 against torch float32: weights within rtol 1e-5 (atol 1e-6)."""
    make_et, make_torch = OPTIMIZERS[name]
    model, tm = _models()
    sess = _session(model, make_et(model.parameters()))
    to = make_torch(tm.parameters())
    for x, y in DATA[:10]:
        loss = sess.RunGraph({"x": x, "y": y})["loss"]
        tl, _ = _torch_step(tm, to, x, y)
        np.testing.assert_allclose(loss, tl, rtol=1e-5)
    assert sess.step == 10
    _compare(sess, tm, 1e-5, 1e-6)


@pytest.mark.parametrize("name", ["rmsprop_all", "adagrad_all"])
def test_optimizer_resume_bit_identical(name, tmp_path):
    """Save after step 5, load, continue: the same bits as an uninterrupted run."""
    make_et = OPTIMIZERS[name][0]
    model, _ = _models()
    full = _session(model, make_et(model.parameters()))
    model2, _ = _models()
    part = _session(model2, make_et(model2.parameters()))
    for x, y in DATA[:5]:
        full.RunGraph({"x": x, "y": y})
        part.RunGraph({"x": x, "y": y})
    path = tmp_path / "five.etm"
    part.SaveToFile(str(path))
    resumed = et.TrainSession.load(str(path), threads=1)
    resumed.Train()
    assert resumed.step == 5
    for x, y in DATA[5:10]:
        a = full.RunGraph({"x": x, "y": y})["loss"]
        b = resumed.RunGraph({"x": x, "y": y})["loss"]
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    pa, pb = full.get_parameters(), resumed.get_parameters()
    for k in pa:
        assert pa[k].tobytes() == pb[k].tobytes(), k


@pytest.mark.parametrize("max_norm", [0.05, 100.0])
def test_clip_grad_norm_vs_torch(max_norm):
    """clip_grad_norm on the optimizer = torch.nn.utils.clip_grad_norm_ before step(); 0.05
    clips every step, 100 never does (scale 1)."""
    model, tm = _models()
    sess = _session(model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                                     clip_grad_norm=max_norm))
    to = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    clipped = 0
    for x, y in DATA[:10]:
        out = sess.RunGraph({"x": x, "y": y})
        tl, tnorm = _torch_step(tm, to, x, y, clip=max_norm)
        np.testing.assert_allclose(out["loss"], tl, rtol=1e-5)
        np.testing.assert_allclose(out["grad_norm"], tnorm, rtol=1e-5)
        clipped += tnorm > max_norm
    assert clipped == (10 if max_norm < 1 else 0)
    _compare(sess, tm, 1e-5, 1e-6)


def test_clip_grad_norm_many_parameters_and_threads():
    """More than 8 gradients (a two-level grad_norm tree); the norm and the weights are the
    same bits for 1 and 3 threads."""
    layers = [nn.Linear(5, 5) for _ in range(6)]
    model = nn.Sequential(*layers)
    assert len(list(model.parameters())) == 12

    def run(threads):
        m = nn.Sequential(*[nn.Linear(5, 5) for _ in range(6)])
        m.load_state_dict(model.state_dict())
        s = et.TrainSession.from_module(m, inputs={"x": (4, 5)}, loss=nn.MSELoss(),
                                        labels={"y": ((4, 5), "float32")},
                                        optimizer=optim.Adam(m.parameters(), lr=0.01,
                                                             clip_grad_norm=0.5),
                                        threads=threads)
        s.Train()
        rng = np.random.default_rng(3)
        norms = []
        for _ in range(3):
            out = s.RunGraph({"x": rng.standard_normal((4, 5)).astype(np.float32),
                              "y": rng.standard_normal((4, 5)).astype(np.float32)})
            norms.append(np.asarray(out["grad_norm"]).tobytes())
        return norms, s.get_parameters(), s.get_gradients()

    n1, p1, g1 = run(1)
    n3, p3, _ = run(3)
    assert n1 == n3
    assert all(p1[k].tobytes() == p3[k].tobytes() for k in p1)
    # the norm of the last step is the global L2 norm of the gradients
    want = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in g1.values()))
    np.testing.assert_allclose(np.frombuffer(n1[-1], np.float32)[0], want, rtol=1e-6)


def _overflow_session(k=1):
    """Linear(1000, 1), L1 loss, inputs 3e37: every gradient (x / N) and the loss are finite,
    but the gradients' L2 norm (about 9.5e38) overflows float."""
    model = nn.Linear(1000, 1)
    opt = optim.SGD(model.parameters(), lr=0.1, clip_grad_norm=1.0, accumulate=k)
    s = et.TrainSession.from_module(model, inputs={"x": (1, 1000)}, loss=nn.L1Loss(),
                                    labels={"y": ((1, 1), "float32")}, optimizer=opt)
    s.Train()
    return s, {"x": np.full((1, 1000), 3e37, np.float32), "y": np.zeros((1, 1), np.float32)}


def test_clip_nonfinite_norm_is_guarded():
    """A non-finite norm of finite gradients is a non-finite step: raise (nothing changes),
    skip (counted), off (torch's behaviour: scale 0, the update runs)."""
    sess, feed = _overflow_session()
    before = sess.get_parameters()
    with pytest.raises(et.errors.NonFiniteError, match="gradient norm .* is \\+Inf"):
        sess.RunGraph(feed)
    assert np.isfinite(sess.get_gradients()["weight"]).all()
    assert sess.step == 0
    after = sess.get_parameters()
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)
    sess.nonfinite = "skip"
    sess.RunGraph(feed)
    assert sess.step == 0 and sess.skipped_steps == 1
    sess.nonfinite = "off"
    sess.RunGraph(feed)
    assert sess.step == 1


def test_clip_nonfinite_norm_with_accumulation():
    """With accumulate=2 the norm is of the accumulated gradient, checked after the accumulation:
    the accumulated update is dropped, weights and step unchanged."""
    sess, feed = _overflow_session(k=2)
    before = sess.get_parameters()
    sess.RunGraph(feed)
    assert sess.micro_step == 1
    with pytest.raises(et.errors.NonFiniteError, match="accumulated update was dropped"):
        sess.RunGraph(feed)
    assert sess.step == 0 and sess.micro_step == 0
    after = sess.get_parameters()
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)


def _accum_session(k, model, lr=0.1, scheduler=None, clip=None):
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, accumulate=k, clip_grad_norm=clip)
    sch = scheduler(opt) if scheduler else None
    return _session(model, opt, batch=32 // k, scheduler=sch)


def test_accumulate_equals_big_batch():
    """k=4 micro-batches of 8 = one batch of 32 (within float rounding: the sums of the
    per-sample gradients are added in another order; rtol 1e-5), and the step counter and
    the schedule advance once per update."""
    model, _ = _models()
    acc = _accum_session(4, model, scheduler=lambda o: optim.StepLR(o, 1, 0.5))
    model2, _ = _models()
    big = _accum_session(1, model2, scheduler=lambda o: optim.StepLR(o, 1, 0.5))
    for step, (x, y) in enumerate(DATA32):
        for j in range(4):
            assert acc.step == step and acc.micro_step == j
            acc.RunGraph({"x": x[8 * j:8 * j + 8], "y": y[8 * j:8 * j + 8]})
        big.RunGraph({"x": x, "y": y})
        assert acc.step == big.step == step + 1 and acc.micro_step == 0
        assert acc._s.lr == big._s.lr == pytest.approx(0.1 * 0.5 ** (step + 1))
    pa, pb = acc.get_parameters(), big.get_parameters()
    for k in pa:
        np.testing.assert_allclose(pa[k], pb[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_accumulate_vs_torch_pattern():
    """PyTorch's pattern: k backward passes of loss / k, clip, one step()."""
    model, tm = _models()
    sess = _accum_session(4, model, clip=0.1)
    to = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    for x, y in DATA32:
        to.zero_grad()
        for j in range(4):
            out = sess.RunGraph({"x": x[8 * j:8 * j + 8], "y": y[8 * j:8 * j + 8]})
            tl = TF.mse_loss(tm(torch.from_numpy(x[8 * j:8 * j + 8])),
                             torch.from_numpy(y[8 * j:8 * j + 8]))
            np.testing.assert_allclose(out["loss"], tl.item(), rtol=1e-5)
            (tl / 4).backward()
        tnorm = float(torch.nn.utils.clip_grad_norm_(tm.parameters(), 0.1))
        np.testing.assert_allclose(out["grad_norm"], tnorm, rtol=1e-5)
        to.step()
    _compare(sess, tm, 1e-5, 1e-6)


def test_accumulate_resume_mid_accumulation(tmp_path):
    """Saved after 2 of 4 micro-batches, loaded and continued: bit-identical."""
    model, _ = _models()
    full = _accum_session(4, model)
    model2, _ = _models()
    part = _accum_session(4, model2)
    micro = [(x[8 * j:8 * j + 8], y[8 * j:8 * j + 8]) for x, y in DATA32 for j in range(4)]
    for x, y in micro[:6]:
        full.RunGraph({"x": x, "y": y})
        part.RunGraph({"x": x, "y": y})
    assert part.micro_step == 2 and part.step == 1
    part.SaveToFile(str(tmp_path / "mid.etm"))
    resumed = et.TrainSession.load(str(tmp_path / "mid.etm"), threads=1)
    resumed.Train()
    assert resumed.micro_step == 2 and resumed.step == 1
    for x, y in micro[6:]:
        full.RunGraph({"x": x, "y": y})
        resumed.RunGraph({"x": x, "y": y})
    assert resumed.step == full.step == 3
    pa, pb = full.get_parameters(), resumed.get_parameters()
    assert all(pa[k].tobytes() == pb[k].tobytes() for k in pa)
    assert "accum_count" not in resumed.state_dict()


@pytest.mark.parametrize("make, text", [
    (lambda p: optim.RMSprop(p, lr=-0.1), "learning rate"),
    (lambda p: optim.RMSprop(p, alpha=-0.5), "alpha"),
    (lambda p: optim.RMSprop(p, eps=-1e-8), "eps"),
    (lambda p: optim.RMSprop(p, momentum=-0.1), "momentum"),
    (lambda p: optim.RMSprop(p, weight_decay=float("nan")), "weight_decay"),
    (lambda p: optim.Adagrad(p, lr=-1.0), "learning rate"),
    (lambda p: optim.Adagrad(p, eps=-1.0), "eps"),
    (lambda p: optim.Adagrad(p, lr_decay=-1.0), "lr_decay"),
    (lambda p: optim.Adagrad(p, initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (lambda p: optim.SGD(p, lr=0.1, accumulate=0), "accumulate"),
    (lambda p: optim.SGD(p, lr=0.1, accumulate=-3), "accumulate"),
    (lambda p: optim.Adam(p, clip_grad_norm=0.0), "clip_grad_norm"),
    (lambda p: optim.Adam(p, clip_grad_norm=-1.0), "clip_grad_norm"),
    (lambda p: optim.Adam(p, clip_grad_norm=float("inf")), "clip_grad_norm"),
])
def test_bad_arguments(make, text):
    with pytest.raises(ValueError, match=text):
        make(Net().parameters())


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, accumulate=2.0),
                                  lambda p: optim.SGD(p, clip_grad_norm="big")])
def test_bad_argument_types(make):
    with pytest.raises(TypeError):
        make(Net().parameters())


# --------------------------------------------------------------------------- CLI
def _cli_train(tmp_path, capsys, out, *extra, iterations=4):
    import os

    from edgetrain import cli

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    mnist = os.path.join(repo, "data", "mnist")
    argv = ["train", "lenet", "--data", mnist, "--limit", 160, "--batch-size", 8,
            "--iterations", iterations, "--threads", 1, "--num-workers", 0, "--seed", 3,
            "--no-eval", "--out", tmp_path / out, *extra]
    code = cli.main([str(a) for a in argv])
    o, e = capsys.readouterr()
    assert code == 0, e
    return et.TrainSession.load(str(tmp_path / out))


@pytest.mark.parametrize("name", ["rmsprop", "adagrad"])
def test_cli_optimizer_clip_accumulate_and_resume(name, tmp_path, capsys):
    """--optimizer rmsprop|adagrad --clip-grad-norm --accumulate: steps count updates, and a
    resume from the step-3 checkpoint ends bit-identical to the uninterrupted run."""
    flags = ["--optimizer", name, "--clip-grad-norm", "1.0", "--accumulate", "2"]
    full = _cli_train(tmp_path, capsys, "m.etm", *flags, "--checkpoint-every", 3,
                      iterations=5)
    assert full.step == 5 and full.micro_step == 0
    assert et.TrainSession.load(str(tmp_path / "m.ckpt.etm")).step == 3
    kinds = {n.op for n in full.to_graph().nodes}
    assert {f"{name}_update", "grad_norm", "grad_accumulate", "accum_step"} <= kinds
    resumed = _cli_train(tmp_path, capsys, "r.etm", *flags[:2], "--resume",
                         tmp_path / "m.ckpt.etm", iterations=5)
    assert resumed.step == 5
    a, b = full.get_parameters(), resumed.get_parameters()
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_cli_bad_step_flags(capsys):
    from edgetrain import cli

    for flags in (["--clip-grad-norm", "0"], ["--clip-grad-norm", "-1"], ["--accumulate", "0"]):
        with pytest.raises(SystemExit):
            cli.main(["train", "lenet", *flags])
        assert "expected" in capsys.readouterr().err


# --------------------------------------------------------------------------- C trainer
def _et_train_setup(tmp_path, make_opt):
    """Tiny MNIST-shaped IDX data and a LeNet file (batch 8) with the optimizer of make_opt."""
    import test_android as ta
    from edgetrain.models import LeNet

    rng = np.random.default_rng(0)
    d = tmp_path / "tiny"
    d.mkdir()
    for prefix, n in (("train", 96), ("t10k", 16)):
        ta._write_idx(d / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        ta._write_idx(d / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    et.manual_seed(0)
    model = LeNet()
    sess = et.TrainSession.from_module(
        model, inputs={"data": (8, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((8,), "int64")}, optimizer=make_opt(model.parameters()), threads=1)
    etm = tmp_path / "lenet.etm"
    sess.SaveToFile(str(etm))
    return ta, ["-f", etm, "-d", d, "-i", 10, "-t", 1, "-p", 1, "--seed", 5, "--test-limit", 0]


def test_et_train_accumulation_resume(tmp_path):
    """The C trainer (host build of android/et_train) runs a program with RMSprop,
    clip_grad_norm and accumulate=4: after 10 batches the step is 2; a run checkpointed after 6
    batches (in the middle of an accumulation) and resumed ends with the same file."""
    ta, common = _et_train_setup(tmp_path, lambda p: optim.RMSprop(
        p, lr=1e-3, momentum=0.5, clip_grad_norm=1.0, accumulate=4))
    binary = ta._make("host")
    full = ta._run([binary, *common, "-s", tmp_path / "full.etm"])
    assert full.returncode == 0, full.stderr
    assert "one update per 4 batches" in full.stdout
    done = et.TrainSession.load(str(tmp_path / "full.etm"))
    assert done.step == 2 and done.micro_step == 2
    part = ta._run([binary, *common, "-c", 6, "-s", tmp_path / "part.etm"])
    assert part.returncode == 0, part.stderr
    ckpt = et.TrainSession.load(str(tmp_path / "part.etm.ckpt"))
    assert ckpt.step == 1 and ckpt.micro_step == 2
    resumed = ta._run([binary, *common, "-r", tmp_path / "part.etm.ckpt",
                       "-s", tmp_path / "resumed.etm"])
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "resumed.etm").read_bytes() == (tmp_path / "full.etm").read_bytes()


@pytest.mark.parametrize("name", ["rmsprop_all", "adagrad_all"])
def test_fedprox_term_vs_torch(name):
    """prox_mu (FedProx): the update adds the gradient of mu/2 * ||w - w0||^2, w0 the exported
    weights, as torch does with that term added to the loss."""
    make_et, make_torch = OPTIMIZERS[name]
    model, tm = _models()
    sess = _session(model, make_et(model.parameters(), prox_mu=0.3))
    to = make_torch(tm.parameters())
    anchor = [p.detach().clone() for p in tm.parameters()]
    for x, y in DATA[:6]:
        sess.RunGraph({"x": x, "y": y})
        to.zero_grad()
        loss = TF.mse_loss(tm(torch.from_numpy(x)), torch.from_numpy(y))
        (loss + 0.15 * sum(((p - a) ** 2).sum() for p, a in zip(tm.parameters(), anchor))).backward()
        to.step()
    _compare(sess, tm, 1e-5, 1e-6)


def _infer(op_name, shapes, iattr, fattr):
    from edgetrain import ir, ops

    g = ir.Graph()
    idx = [g.add_tensor(f"t{i}", dt, ir.OPTSTATE if dt == ir.F32 else ir.BUFFER, s).index
           if s is not None else -1 for i, (dt, s) in enumerate(shapes)]
    return ops.infer_shapes(g, ops.OP_BY_NAME[op_name], idx, iattr, fattr)


F32, I32 = "f32", "i32"
P = (F32, (3, 4))


@pytest.mark.parametrize("op, shapes, iattr, fattr, text", [
    ("rmsprop_update", [P, P, P], [0], [1, -0.5, 1e-8, 0, 0], "alpha must be >= 0"),
    ("rmsprop_update", [P, P, P], [0], [1, 0.9, -1e-8, 0, 0], "eps must be >= 0"),
    ("rmsprop_update", [P, P, P], [1], [1, 0.9, 1e-8, 0, 0], "centered needs a grad_avg"),
    ("rmsprop_update", [P, P, P, (F32, None), (F32, None)], [0], [1, 0.9, 1e-8, 0, 0.5],
     "momentum 0.5 needs a momentum_buf"),
    ("rmsprop_update", [P, P, (F32, (4, 3))], [0], [1, 0.9, 1e-8, 0, 0], "same shape"),
    ("adagrad_update", [P, P, P], [], [1, -1, 1e-10, 0], "lr_decay must be >= 0"),
    ("adagrad_update", [P, P, P], [], [1, 0, 1e-10, float("nan")], "weight_decay"),
    ("grad_norm", [P, P], [], [0.0], "max_norm must be > 0"),
    ("grad_norm", [P, (I32, ())], [], [1.0], "must be"),
    ("grad_accumulate", [P, P, (F32, ())], [], [0.25], "count must be one i32"),
    ("accum_step", [(I32, ())], [0], [], "k must be in 1"),
])
def test_step_ops_shape_rules(op, shapes, iattr, fattr, text):
    """The C rules (et_op_infer) reject bad update/clip/accumulate nodes with a message."""
    with pytest.raises(et.errors.ShapeError, match=text):
        _infer(op, shapes, iattr, fattr)


def test_accumulate_nonfinite_micro_batch_changes_nothing():
    """A NaN micro-batch is stopped before it reaches the accumulators: raise leaves the
    counter and accumulators as they were; the next micro-batches complete the update."""
    model, _ = _models()
    sess = _accum_session(2, model)
    (x, y), (x2, y2) = DATA[0], DATA[1]
    sess.RunGraph({"x": x, "y": y})
    acc = sess.get_tensor("grad_acc:fc1.weight").copy()
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(et.errors.NonFiniteError):
        sess.RunGraph({"x": bad, "y": y})
    assert sess.micro_step == 1 and sess.step == 0
    assert sess.get_tensor("grad_acc:fc1.weight").tobytes() == acc.tobytes()
    sess.RunGraph({"x": x2, "y": y2})
    assert sess.micro_step == 0 and sess.step == 1


@pytest.mark.parametrize("make_opt", [
    lambda p: optim.RMSprop(p, lr=1e-3, momentum=0.5, centered=True, weight_decay=1e-3,
                            clip_grad_norm=0.5, accumulate=2),
    lambda p: optim.Adagrad(p, lr=1e-2, lr_decay=1e-2, weight_decay=1e-3,
                            initial_accumulator_value=0.1, clip_grad_norm=0.5, accumulate=3),
], ids=["rmsprop", "adagrad"])
def test_et_train_arm64_matches_x86(make_opt, tmp_path):
    """The static arm64 et_train under qemu writes the same bytes as the x86 build after 10
    batches of RMSprop / Adagrad with clipping and accumulation (and prints the same losses)."""
    ta, common = _et_train_setup(tmp_path, make_opt)
    ta._arm64_tools()
    host, arm = ta._make("host"), ta._make("aarch64")
    a = ta._run([host, *common, "-s", tmp_path / "x86.etm"])
    b = ta._run(["qemu-aarch64-static", arm, *common, "-s", tmp_path / "arm64.etm"])
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert ta._losses(a.stdout) == ta._losses(b.stdout)
    assert (tmp_path / "x86.etm").read_bytes() == (tmp_path / "arm64.etm").read_bytes()
