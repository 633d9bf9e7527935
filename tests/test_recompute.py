"""memory_budget: recomputation chosen at export (edgetrain/recompute.py).

The budgeted program must fit its arena in the budget and train to the same bits as the
unconstrained one (losses every step, parameters and running statistics after the steps); a
budget no recomputation reaches, or an invalid one, is a clear error."""
import numpy as np
import pytest

import edgetrain as et
from edgetrain import cli, fileformat, ir, nn, optim
from edgetrain.errors import InvalidArgumentError, ResourceLimitError
from edgetrain.export import build_graph
from edgetrain.models import LeNet, MobileNetV2
from edgetrain.recompute import measure_arena


def _model(kind):
    et.manual_seed(0)
    if kind == "lenet":
        return LeNet(), (1, 28, 28)
    return MobileNetV2(num_classes=10, input_size=32, width_mult=0.25), (3, 32, 32)


def _session(kind, batch, budget=None, opt="sgd"):
    model, shape = _model(kind)
    o = (optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if opt == "sgd"
         else optim.Adam(model.parameters(), lr=1e-3))
    sess = et.TrainSession.from_module(
        model, inputs={"data": (batch,) + shape}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((batch,), "int64")}, optimizer=o, threads=1, memory_budget=budget)
    sess.Train()
    return sess, shape


def _same_training(a, b, shape, batch, steps=3):
    rng = np.random.default_rng(1)
    for _ in range(steps):
        feeds = {"data": rng.standard_normal((batch,) + shape, dtype=np.float32),
                 "label": rng.integers(0, 10, batch)}
        la, lb = a.RunGraph(feeds)["loss"], b.RunGraph(feeds)["loss"]
        assert np.asarray(la).tobytes() == np.asarray(lb).tobytes(), (la, lb)
    pa, pb = a.state_dict(), b.state_dict()   # parameters and BatchNorm running statistics
    assert pa.keys() == pb.keys()
    for k in pa:
        assert pa[k].tobytes() == pb[k].tobytes(), k


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_mobilenet_half_budget_same_bits(opt):
    batch = 8
    free, shape = _session("mnv2", batch, opt=opt)
    arena = free.memory_info()["activations"]
    # 0.65: this small MobileNetV2's gradients (in the arena, not in "activations", never
    # recomputed) fill the backward's tail with the first layers' activations (reachable 0.59)
    budget = int(arena * 0.65)
    tight, _ = _session("mnv2", batch, budget, opt=opt)
    info = tight.memory_info()
    assert info["activations"] <= budget < arena
    assert info["memory_budget"] == budget and info["arena_unconstrained"] == arena
    assert info["recomputed_tensors"] > 0 and info["recomputed_bytes"] > 0
    assert info["recompute_nodes"] > 0
    _same_training(free, tight, shape, batch)


def test_copies_are_side_effect_free():
    model, shape = _model("mnv2")
    kw = dict(inputs={"data": (4,) + shape}, loss=nn.CrossEntropyLoss(),
              labels={"label": ((4,), "int64")},
              optimizer=optim.SGD(model.parameters(), lr=0.1))
    free = build_graph(model, memory_budget=None, **kw)
    g = build_graph(model, memory_budget=int(measure_arena(free) * 0.7), **kw)   # batch 4: 0.63 reachable
    plan = g.meta["recompute"]
    train = g.programs[ir.TRAIN].nodes
    assert len(train) == len(free.programs[ir.TRAIN].nodes) + plan["recompute_nodes"]
    grad = g.programs[ir.GRAD_PROGRAM].nodes
    assert train[:len(grad)] == grad      # the train program is the grad program + updates
    copied = [g.nodes[n] for n in train
              if g.nodes[n].outputs and g.nodes[n].outputs[0] >= len(free.tensors)]
    assert len(copied) == plan["recompute_nodes"]
    ops_seen = {nd.op for nd in copied}
    assert ops_seen <= {"act", "add", "sub", "mul", "affine", "batchnorm_train", "conv2d",
                        "maxpool2d"}
    assert "batchnorm_train" in ops_seen
    for nd in copied:
        if nd.op == "batchnorm_train":   # the recompute form: no running statistics
            assert nd.inputs[3] == nd.inputs[4] == -1
    assert "dropout" not in ops_seen


def test_saved_file_keeps_plan_and_bits(tmp_path, capsys):
    batch = 4
    free, shape = _session("mnv2", batch)
    budget = int(free.memory_info()["activations"] * 0.7)
    tight, _ = _session("mnv2", batch, budget)
    path = tmp_path / "m.etm"
    tight.SaveToFile(str(path))
    loaded = et.TrainSession.load(str(path), threads=1)
    loaded.Train()
    info = loaded.memory_info()
    assert info["activations"] <= budget and info["memory_budget"] == budget
    assert info["recomputed_tensors"] == tight.memory_info()["recomputed_tensors"] > 0
    assert fileformat.load(str(path)).meta["recompute"]["memory_budget"] == budget
    _same_training(free, loaded, shape, batch, steps=2)
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "recompute plan (memory_budget" in out and "activations" in out


def test_lenet_budget_at_arena_keeps_program_and_bits():
    batch = 8
    free, shape = _session("lenet", batch)
    arena = free.memory_info()["activations"]
    same, _ = _session("lenet", batch, arena)
    info = same.memory_info()
    assert info["activations"] == arena and info["recomputed_tensors"] == 0
    assert info["memory_budget"] == arena
    _same_training(free, same, shape, batch)


def test_unreachable_budget_names_the_minimum():
    free, _ = _session("lenet", 8)
    arena = free.memory_info()["activations"]
    with pytest.raises(ResourceLimitError) as e:   # LeNet's peak is conv1's backward
        _session("lenet", 8, arena - 4096)
    msg = str(e.value)
    assert f"memory_budget={arena - 4096:,} bytes cannot be met" in msg
    assert "give memory_budget >= " in msg
    with pytest.raises(ResourceLimitError) as e:
        _session("mnv2", 4, 1)
    least = int(str(e.value).rsplit(">= ", 1)[1].replace(",", ""))
    ok, _ = _session("mnv2", 4, least)   # the minimum it names is reachable
    assert ok.memory_info()["activations"] <= least


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "1M", "Auto", 2 ** 64])
def test_invalid_budget(bad):
    with pytest.raises(InvalidArgumentError, match="memory_budget"):
        _session("lenet", 2, bad)


def test_budget_needs_a_loss():
    model, shape = _model("lenet")
    with pytest.raises(ValueError, match="memory_budget needs a loss"):
        build_graph(model, {"data": (2,) + shape}, memory_budget=10 ** 6)


def test_bn_recompute_form_rejects_one_running_stat():
    model, shape = _model("mnv2")
    g = build_graph(model, {"data": (2,) + shape}, loss=nn.CrossEntropyLoss(),
                    labels={"label": ((2,), "int64")})
    bn = next(nd for nd in g.nodes if nd.op == "batchnorm_train")
    bn.inputs[4] = -1
    with pytest.raises(Exception, match="running_mean and running_var"):
        et.TrainSession.from_graph(g, threads=1)


def _cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_memory_budget(tmp_path, capsys):
    import os
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    mnist = os.path.join(repo, "data", "mnist")
    if not os.path.isdir(mnist):
        mnist = os.path.join(os.path.dirname(repo), "shared", "data", "mnist")
    base = ["train", "lenet", "--data", mnist, "--limit", 32, "--batch-size", 16,
            "--iterations", 1, "--threads", 1, "--num-workers", 0, "--no-eval"]
    code, out, err = _cli(capsys, *base, "--memory-budget", 1, "--out", tmp_path / "a.etm")
    assert code == 2 and "Traceback" not in err
    assert "memory_budget=1 bytes cannot be met" in err and "give memory_budget >=" in err
    least = int(err.rsplit(">= ", 1)[1].split()[0].replace(",", ""))
    code, out, err = _cli(capsys, *base, "--memory-budget", least, "--out", tmp_path / "b.etm")
    assert code == 0, err
    code, out, err = _cli(capsys, "info", tmp_path / "b.etm")
    assert code == 0, err
    assert "recompute plan (memory_budget" in out and "0 activations" in out
    code, out, err = _cli(capsys, "train", tmp_path / "b.etm", "--data", mnist, "--limit", 32,
                          "--iterations", 1, "--num-workers", 0, "--no-eval",
                          "--memory-budget", least, "--out", tmp_path / "c.etm")
    assert code == 2 and "--memory-budget applies when a model is traced" in err


def test_what_may_be_copied():
    from edgetrain.recompute import _copyable
    model, shape = _model("mnv2")   # its classifier has dropout
    g = build_graph(model, {"data": (2,) + shape}, loss=nn.CrossEntropyLoss(),
                    labels={"label": ((2,), "int64")})
    bn = next(nd for nd in g.nodes if nd.op == "batchnorm_train")
    assert _copyable(bn)
    bn.iattr[0] = 3   # freeze_step: normalises with the running statistics from step 3
    assert not _copyable(bn)
    from edgetrain import export   # unfused BatchNorm + act: act_bwd nodes too
    export.FUSE_BATCHNORM_ACT = False
    try:
        plain = build_graph(model, {"data": (2,) + shape}, loss=nn.CrossEntropyLoss(),
                            labels={"label": ((2,), "int64")})
    finally:
        export.FUSE_BATCHNORM_ACT = True
    for op in ("dropout", "batchnorm_bwd", "act_bwd", "softmax_xent"):
        nodes = [nd for nd in g.nodes + plain.nodes if nd.op == op]
        assert nodes and not any(_copyable(nd) for nd in nodes), op
    assert all(_copyable(nd) for nd in g.nodes if nd.op in ("act", "add", "conv2d"))


def test_other_batch_and_eval_keep_bits():
    free, shape = _session("mnv2", 4)
    tight, _ = _session("mnv2", 4, int(free.memory_info()["activations"] * 0.7))
    for s in (free, tight):
        s.Resize({"data": (3,) + shape, "label": (3,)})
    _same_training(free, tight, shape, 3, steps=2)
    x = np.random.default_rng(2).standard_normal((3,) + shape, dtype=np.float32)
    for s in (free, tight):
        s.Eval()
    a, b = free.RunGraph({"data": x}), tight.RunGraph({"data": x})
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)


# -- memory_budget="auto" (the default) ----------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2])
def test_auto_is_the_default_and_keeps_bits(threads):
    batch, shape = 8, (3, 32, 32)

    def _model(_):   # the full-width MobileNetV2 (the 0.25 one's convolutions are cheap)
        et.manual_seed(0)
        return MobileNetV2(num_classes=10, input_size=32), shape
    model, _ = _model("mnv2")
    kw = dict(inputs={"data": (batch,) + shape}, loss=nn.CrossEntropyLoss(),
              labels={"label": ((batch,), "int64")}, threads=threads)
    free = et.TrainSession.from_module(model, memory_budget=None,
                                       optimizer=optim.SGD(model.parameters(), lr=0.05,
                                                           momentum=0.9), **kw)
    model, _ = _model("mnv2")
    auto = et.TrainSession.from_module(model, optimizer=optim.SGD(model.parameters(), lr=0.05,
                                                                  momentum=0.9), **kw)
    free.Train()
    auto.Train()
    a, f = auto.memory_info(), free.memory_info()
    assert "auto" not in f and "recomputed_tensors" not in f
    assert a["auto"] == 1 and a["recomputed_tensors"] > 0
    # BatchNorm segments alone halve MobileNetV2's saved activations (the plan's liveness
    # estimate); in the runtime's arena they share the backward's end with the gradients
    assert a["memory_budget"] <= 0.55 * a["arena_unconstrained"]
    assert a["activations"] <= 0.65 * f["activations"]
    assert a["total"] < f["total"]
    _same_training(free, auto, shape, batch)


def test_auto_copies_only_cheap_ops_within_its_work_share():
    from edgetrain import recompute
    model, shape = _model("mnv2")
    kw = dict(inputs={"data": (4,) + shape}, loss=nn.CrossEntropyLoss(),
              labels={"label": ((4,), "int64")},
              optimizer=optim.SGD(model.parameters(), lr=0.1))
    free = build_graph(model, memory_budget=None, **kw)
    g = build_graph(model, **kw)
    plan = g.meta["recompute"]
    copied = [g.nodes[n] for n in g.programs[ir.TRAIN].nodes
              if g.nodes[n].outputs and g.nodes[n].outputs[0] >= len(free.tensors)]
    assert len(copied) == plan["recompute_nodes"] > 0
    assert {nd.op for nd in copied} <= set(recompute._AUTO_OPS)
    train = free.programs[ir.TRAIN].nodes   # the forward ends with the loss node
    n_forward = 1 + next(i for i, n in enumerate(train) if free.nodes[n].op == "softmax_xent")
    prog = recompute._Program(free, n_forward)
    work = sum(recompute._Program(g, 0).cost([g.nodes.index(nd)]) for nd in copied)
    assert work <= recompute._AUTO_WORK * prog.step_work()


@pytest.mark.parametrize("fraction", ["auto", 0.7])
def test_one_copy_serves_all_outputs_of_a_node(fraction):
    # batchnorm_bwd reads y, the saved mean and the saved inverse std: all three from one
    # node, the forward one or one copy. Recomputed one tensor at a time, each came from a
    # copy of its own (BatchNorm computed three times per step for MobileNetV2).
    model, shape = _model("mnv2")
    kw = dict(inputs={"data": (4,) + shape}, loss=nn.CrossEntropyLoss(),
              labels={"label": ((4,), "int64")},
              optimizer=optim.SGD(model.parameters(), lr=0.1))
    free = build_graph(model, memory_budget=None, **kw)
    budget = fraction if fraction == "auto" else int(measure_arena(free) * fraction)
    g = build_graph(model, memory_budget=budget, **kw)
    producer = {t: i for i, nd in enumerate(g.nodes) for t in nd.outputs if t >= 0}
    train = g.programs[ir.TRAIN].nodes
    bwd = [g.nodes[n] for n in train if g.nodes[n].op == "batchnorm_bwd"]
    assert bwd
    for nd in bwd:
        saved = [t for t in nd.inputs[3:6] if t >= 0]
        assert len({producer[t] for t in saved}) == 1, nd.layer
    copies = [n for n in train if g.nodes[n].outputs and g.nodes[n].outputs[0] >= len(free.tensors)]
    assert len(copies) == g.meta["recompute"]["recompute_nodes"]
    assert len(copies) < g.meta["recompute"]["recomputed_tensors"]


def test_auto_leaves_a_model_without_cheap_segments_alone():
    # LeNet's saved activations are conv / pool / matmul inputs: nothing for "auto" to copy,
    # so the program is the unconstrained one, byte for byte
    model, shape = _model("lenet")
    kw = dict(inputs={"data": (8,) + shape}, loss=nn.CrossEntropyLoss(),
              labels={"label": ((8,), "int64")},
              optimizer=optim.SGD(model.parameters(), lr=0.1))
    auto = build_graph(model, **kw)
    assert "recompute" not in auto.meta
    assert fileformat.dumps(auto) == fileformat.dumps(build_graph(model, memory_budget=None,
                                                                  **kw))
    # no loss: nothing to bound, and "auto" is not an error there (an explicit budget is)
    assert "recompute" not in build_graph(model, {"data": (2,) + shape}).meta


def test_cli_memory_budget_auto_and_none(tmp_path, capsys):
    import os
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    mnist = os.path.join(repo, "data", "mnist")
    if not os.path.isdir(mnist):
        mnist = os.path.join(os.path.dirname(repo), "shared", "data", "mnist")
    base = ["train", "mobilenetv2", "--data", mnist, "--limit", 16, "--batch-size", 8,
            "--iterations", 1, "--threads", 1, "--num-workers", 0, "--no-eval"]
    infos = {}
    for flag in ([], ["--memory-budget", "none"], ["--memory-budget", "auto"]):
        path = tmp_path / f"m{len(infos)}.etm"
        code, out, err = _cli(capsys, *base, *flag, "--out", path)
        assert code == 0, err
        code, out, err = _cli(capsys, "info", path)
        assert code == 0, err
        infos[" ".join(flag)] = out
    assert "recompute plan (memory_budget auto" in infos[""]
    assert "recompute plan (memory_budget auto" in infos["--memory-budget auto"]
    assert "recompute plan" not in infos["--memory-budget none"]
    with pytest.raises(SystemExit) as e:
        _cli(capsys, *base, "--memory-budget", "lots", "--out", tmp_path / "x")
    assert e.value.code == 2
    assert "expected a byte count (a positive integer), 'auto' or 'none', got lots" in \
        capsys.readouterr().err
