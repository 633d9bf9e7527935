"""Kernel workspaces in the activation arena (issue 15): a node's workspace lies in the arena
wherever no activation alive at that node does, and the separate scratch block holds only the
workspaces with no such room (kernels/runtime/plan.c). The kernels are the same, so are the
bits; the block shrinks, most with several threads (each thread's share of a workspace grows
it while the arena stays the same)."""
import hashlib

import numpy as np
import pytest

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.models import MobileNetV2


def _session(threads, batch=32, width=0.5):
    et.manual_seed(0)
    m = MobileNetV2(num_classes=10, width_mult=width, input_size=32)
    return et.TrainSession.from_module(
        m, inputs={"x": (batch, 3, 32, 32)}, loss=nn.CrossEntropyLoss(),
        labels={"y": ((batch,), "int64")},
        optimizer=optim.SGD(m.parameters(), lr=0.05, momentum=0.9), threads=threads,
        memory_budget=None)   # recomputation ("auto") leaves the workspaces little room


def _digest(sess, batch=32):
    rng = np.random.default_rng(0)
    h = hashlib.sha256()
    sess.Train()
    for b in (batch, batch, batch // 2):   # the last one re-plans for another batch
        x = rng.standard_normal((b, 3, 32, 32), dtype=np.float32)
        y = rng.integers(0, 10, b)
        h.update(np.float32(sess.RunGraph({"x": x, "y": y})["loss"]).tobytes())
    for _, v in sorted(sess.get_parameters().items()):
        h.update(np.ascontiguousarray(v).tobytes())
    for _, v in sorted(sess.get_gradients().items()):
        h.update(np.ascontiguousarray(v).tobytes())
    sess.Eval()
    h.update(sess.RunGraph({"x": x})[sess.output_names[0]].tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_workspace_block_is_what_has_no_room_in_the_arena(threads, monkeypatch):
    monkeypatch.setenv("EDGETRAIN_GRADS_IN_ARENA", "0")   # the gradients in their own block
    mi = _session(threads, width=1.0).memory_info()   # the benchmarks' MobileNetV2, batch 32
    assert 0 < mi["workspace"] <= mi["workspace_without_reuse"]
    if threads > 1:   # measured: 0.53 (2 threads) and 0.47 (4) of the largest workspace
        assert mi["workspace"] < 0.75 * mi["workspace_without_reuse"], mi
    # With the gradients in the arena (the default) they fill the backward's tail, where the
    # largest workspaces are: at 2 and 4 threads the ws block is the largest workspace again
    # (+1.7 / +2.5 MiB), but the total still drops (measured -4.1 / -2.4 / -1.6 MiB at 1 / 2 / 4).
    monkeypatch.delenv("EDGETRAIN_GRADS_IN_ARENA")
    inside = _session(threads, width=1.0).memory_info()
    assert inside["grads"] == inside["grads_in_arena"] == mi["grads"] and mi["grads_in_arena"] == 0
    assert inside["total"] < mi["total"] - 2 ** 20, (inside, mi)


def test_same_bits_for_every_thread_count_and_after_a_thread_change(monkeypatch):
    ref = _digest(_session(1))
    monkeypatch.setenv("EDGETRAIN_GRADS_IN_ARENA", "0")   # more room for workspaces in the arena
    two = _session(2)   # width 0.5, batch 32: 1.14 of 2.40 MiB, the rest in the arena
    assert two.memory_info()["workspace"] < two.memory_info()["workspace_without_reuse"]
    assert _digest(two) == ref
    monkeypatch.delenv("EDGETRAIN_GRADS_IN_ARENA")
    assert _digest(_session(2)) == ref
    assert _digest(_session(3)) == ref
    changed = _session(1)
    changed.threads = 4        # re-places every workspace for 4 threads
    assert changed.memory_info()["workspace_without_reuse"] == \
        _session(4).memory_info()["workspace_without_reuse"]
    assert _digest(changed) == ref
    back = _session(4)
    back.threads = 1
    assert _digest(back) == ref
