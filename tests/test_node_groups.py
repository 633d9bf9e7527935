"""Concurrent groups of the train program (issue 15, docs/threads.md): consecutive independent
small nodes -- a convolution's input and weight gradients at small planes, runs of small
optimizer updates -- run side by side, each on one thread. They must change no bit: every
tensor a group's node touches lives over the whole group in the memory plan, so a wrong plan or
a missed dependency shows as different bytes against the same training without groups
(EDGETRAIN_NODE_GROUPS=0 at load)."""
import numpy as np
import pytest

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.errors import InvalidArgumentError
from edgetrain.models.mobilenet import MobileNetV2

SHAPE = (8, 3, 32, 32)
STEPS = 4


def mobilenet():
    return MobileNetV2(num_classes=10, width_mult=0.5, input_size=32)


def train(monkeypatch, state, threads, groups, opt_cls, **opt_kw):
    if groups:
        monkeypatch.delenv("EDGETRAIN_NODE_GROUPS", raising=False)
    else:
        monkeypatch.setenv("EDGETRAIN_NODE_GROUPS", "0")
    model = mobilenet()
    model.load_state_dict(state)
    sess = et.TrainSession.from_module(
        model, inputs={"data": SHAPE}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((SHAPE[0],), "int64")},
        optimizer=opt_cls(model.parameters(), **opt_kw), threads=threads, seed=3)
    monkeypatch.delenv("EDGETRAIN_NODE_GROUPS", raising=False)
    sess.Train()
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(STEPS):
        x = rng.standard_normal(SHAPE).astype(np.float32)
        y = rng.integers(0, 10, size=SHAPE[0]).astype(np.int64)
        losses.append(sess.RunGraph({"data": x, "label": y})["loss"].tobytes())
    params = {k: v.tobytes() for k, v in sess.get_parameters().items()}
    return sess, losses, params


@pytest.mark.parametrize("opt_cls,opt_kw", [
    (optim.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}),
    (optim.Adam, {"lr": 1e-3}),
    # the guard's stops (accumulation, then the clip norm's check) fall inside update groups
    (optim.SGD, {"lr": 0.05, "momentum": 0.9, "accumulate": 2, "clip_grad_norm": 0.5}),
])
def test_groups_change_no_bit(monkeypatch, opt_cls, opt_kw):
    state = mobilenet().state_dict()
    ref_sess, ref_losses, ref_params = train(monkeypatch, state, 2, False, opt_cls, **opt_kw)
    assert ref_sess.node_groups() == []
    for threads in (2, 3, 1):
        sess, losses, params = train(monkeypatch, state, threads, True, opt_cls, **opt_kw)
        assert sess.node_groups(), "the train program should have concurrent groups"
        assert losses == ref_losses, f"threads={threads}: losses differ from the run without groups"
        differ = [k for k in params if params[k] != ref_params[k]]
        assert not differ, f"threads={threads}: groups change the bits of {differ}"


def test_which_nodes_are_grouped(monkeypatch):
    sess, _, _ = train(monkeypatch, mobilenet().state_dict(), 2, True, optim.SGD, lr=0.05)
    ops = [op for op, _, _, _ in sess._s.profile()]
    groups = sess.node_groups()
    assert all(g["count"] >= 2 for g in groups)
    first_ops = {(ops[g["first"]], ops[g["last"]]) for g in groups}
    # a convolution's input and weight gradients side by side ...
    assert ("conv2d_bwd_input", "conv2d_bwd_weight") in first_ops
    # ... and a run of the updates
    assert any(ops[g["first"]] == "sgd_update" and g["count"] > 10 for g in groups)
    # no group in the eval program's place, and only train/grad are asked for
    assert sess.node_groups("grad") == [] or all(g["count"] >= 2 for g in sess.node_groups("grad"))
    with pytest.raises(InvalidArgumentError):
        sess.node_groups("eval")


def test_groups_keep_the_memory_plan_small(monkeypatch):
    """Lifetimes stretched over a group must not grow the activation arena by much (each
    group's nodes are small by construction)."""
    with_groups, _, _ = train(monkeypatch, mobilenet().state_dict(), 2, True, optim.SGD, lr=0.05)
    without, _, _ = train(monkeypatch, mobilenet().state_dict(), 2, False, optim.SGD, lr=0.05)
    a, b = with_groups.memory_info(), without.memory_info()
    assert a["activations"] <= 1.05 * b["activations"]
    assert a["total"] <= 1.05 * b["total"]
