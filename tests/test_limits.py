"""Resource and value limits (issue 17, items 4, 7, 9 and 10's nested META).

Memory: every plan is compared with the session's limit before anything is allocated; the
memory-capped child processes below prove that no large allocation happens first. Threads are
bounded. Schedules are checked over their whole range at export and load, and a file is held
to the API's limits (learning rate >= 0, input dimensions >= 1).
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import edgetrain as et
from edgetrain import _native, fileformat, nn, optim
from edgetrain.errors import (InvalidArgumentError, ModelFormatError, ResourceLimitError,
                              EdgetrainError)
from edgetrain.export import build_graph
from edgetrain.optim import lr_scheduler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_graph(batch=4, optimizer=True, scheduler=None, lr=0.1):
    et.manual_seed(0)
    model = nn.Linear(8, 3)
    opt = optim.SGD(model.parameters(), lr=lr) if optimizer else None
    return build_graph(model, inputs={"data": (batch, 8)}, loss=nn.CrossEntropyLoss(),
                       labels={"label": ((batch,), "int64")}, optimizer=opt,
                       scheduler=scheduler(opt) if scheduler else None)


def padding_file(tmp_path):
    """A well-formed 1.5 KB file: a 1x1 conv with padding 20000 plans 6.4 GB."""
    g = build_graph(nn.Conv2d(1, 1, 1, padding=20000), inputs={"data": (1, 1, 1, 1)})
    path = tmp_path / "pad.etm"
    path.write_bytes(fileformat.dumps(g))
    assert path.stat().st_size < 4096
    return path


def run_capped(code, cap_bytes=1 << 30):
    """Runs `code` in a child whose address space is capped at cap_bytes; returns its stdout
    lines as JSON objects. Any allocation of the planned sizes would fail there."""
    prog = textwrap.dedent("""
        import json, resource, sys
        import numpy as np
        import edgetrain as et
        from edgetrain import errors
        resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
        def report(**kw):
            # VmHWM: this process's peak RSS since exec (ru_maxrss would include the
            # parent's size at fork)
            hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
            kw["maxrss_mib"] = int(hwm.split()[1]) / 1024
            print(json.dumps(kw), flush=True)
        def attempt(fn):
            try:
                fn()
                report(error=None)
            except Exception as e:
                report(error=type(e).__name__, mro=[c.__name__ for c in type(e).__mro__], msg=str(e))
    """).format(cap=cap_bytes) + textwrap.dedent(code)
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


# ---- memory ---------------------------------------------------------------------------------
def test_padding_file_refused_at_load_without_allocating(tmp_path):
    path = padding_file(tmp_path)
    # uncapped process, explicit limit: refused, with the total, the limit and the tensor
    with pytest.raises(ResourceLimitError) as e:
        et.TrainSession.load(path, threads=1, max_memory=1 << 30)
    msg = str(e.value)
    assert "6400320" in msg and "1073741824" in msg and "[1,1,40001,40001]" in msg and "conv2d" in msg
    assert isinstance(e.value, MemoryError) and isinstance(e.value, EdgetrainError)
    # capped child, default limit (derived from the cap): refused by the limit, not by a failed
    # allocation, within 100 MiB of RSS
    out = run_capped(f"""
        attempt(lambda: et.TrainSession.load({str(path)!r}, threads=1))
        attempt(lambda: et.TrainSession.from_bytes(open({str(path)!r}, "rb").read(), threads=1))
    """)
    assert len(out) == 2
    for r in out:
        assert r["error"] == "ResourceLimitError", r
        assert r["maxrss_mib"] < 100, r


def test_huge_consistent_batch_refused_at_load():
    """A consistent batch of 3e8 (tens of GB) is refused by the default limit in a capped child
    and by an explicit limit in from_module, before anything is allocated."""
    out = run_capped("""
        from edgetrain import nn, optim
        m = nn.Linear(8, 8)
        attempt(lambda: et.TrainSession.from_module(
            m, inputs={"data": (300_000_000, 8)}, loss=nn.CrossEntropyLoss(),
            labels={"label": ((300_000_000,), "int64")},
            optimizer=optim.SGD(m.parameters(), lr=0.1), threads=1))
        attempt(lambda: et.TrainSession.from_module(
            m, inputs={"data": (300_000_000, 8)}, threads=1, max_memory=64 << 20))
    """)
    assert [r["error"] for r in out] == ["ResourceLimitError"] * 2, out
    assert "300000000" in out[0]["msg"] and "memory limit" in out[0]["msg"]
    assert all(r["maxrss_mib"] < 100 for r in out), out


def test_mutated_shapes_rejected_before_the_arena_exists(tmp_path):
    """An input shape changed in the file (activation shapes left as they were): the graph
    computes tens of GB; the shape check must refuse the file before the planner allocates.
    The limit is set out of the way so only the order of checks is tested."""
    g = tiny_graph()
    g.find("data").shape = (1 << 30, 8)
    g.find("label").shape = (1 << 30,)
    path = tmp_path / "mutated.etm"
    path.write_bytes(fileformat.dumps(g))
    out = run_capped(f"""
        attempt(lambda: et.TrainSession.load({str(path)!r}, threads=1, max_memory=1 << 40))
    """)
    assert out[0]["error"] == "ModelFormatError", out
    assert "is stored as" in out[0]["msg"]
    assert out[0]["maxrss_mib"] < 100


def test_limit_is_exact_and_resize_is_atomic():
    g = tiny_graph(batch=16)
    sess = et.TrainSession.from_graph(g, threads=1)
    total = sess.memory_info()["total"]
    assert et.TrainSession.from_graph(g, threads=1, max_memory=total).max_memory == total
    with pytest.raises(ResourceLimitError):
        et.TrainSession.from_graph(g, threads=1, max_memory=total - 1)
    sess = et.TrainSession.from_graph(g, threads=1, max_memory=total + 4096)
    with pytest.raises(ResourceLimitError, match="memory limit"):
        sess.Resize({"data": (100_000, 8), "label": (100_000,)})
    assert sess.input_shapes()["data"] == (16, 8)  # unchanged, still runs
    x = np.zeros((16, 8), np.float32)
    y = np.zeros(16, np.int64)
    assert np.isfinite(sess.RunGraph({"data": x, "label": y})["loss"])
    with pytest.raises(ResourceLimitError):
        sess.max_memory = total - 1
    assert sess.max_memory == total + 4096
    sess.max_memory = None  # back to the default rule
    assert sess.max_memory == _native.default_max_memory()
    sess.Resize({"data": (1000, 8), "label": (1000,)})


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1G", True])
def test_max_memory_argument_checked(bad):
    with pytest.raises(InvalidArgumentError):
        et.TrainSession.from_graph(tiny_graph(), max_memory=bad)


# ---- threads --------------------------------------------------------------------------------
def test_threads_bounded():
    limit = _native.thread_limit()
    assert limit >= 4
    g = tiny_graph()
    data = fileformat.dumps(g)
    with pytest.raises(InvalidArgumentError, match="threads"):
        et.TrainSession.from_graph(g, threads=100000)
    # the C runtime refuses it too (the binding passes it through unchecked)
    with pytest.raises(InvalidArgumentError, match="per online core"):
        _native.Session.from_bytes(data, 100000)
    sess = et.TrainSession.from_graph(g, threads=limit)
    assert sess.threads == limit
    with pytest.raises(InvalidArgumentError):
        sess.threads = 100000
    assert sess.threads == limit
    sess.threads = 1
    x = np.zeros((4, 8), np.float32)
    assert np.isfinite(sess.RunGraph({"data": x, "label": np.zeros(4, np.int64)})["loss"])


# ---- learning rates -------------------------------------------------------------------------
BAD_SCHEDULES = [
    (lambda o: lr_scheduler.ExponentialLR(o, gamma=1e30), "exponential"),
    (lambda o: lr_scheduler.InvLR(o, gamma=-1.0, power=0.75), "inv"),
    (lambda o: lr_scheduler.StepLR(o, step_size=10, gamma=-0.5), "alternate in sign"),
    (lambda o: lr_scheduler.MultiStepLR(o, milestones=[5, 9], gamma=1e38), "at step 9"),
    (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=-0.1), "eta_min"),
    (lambda o: lr_scheduler.ExponentialLR(o, gamma=1.01), "exponential"),
]


@pytest.mark.parametrize("make,words", BAD_SCHEDULES)
def test_bad_schedules_refused_at_export(make, words):
    with pytest.raises(InvalidArgumentError, match=words):
        tiny_graph(scheduler=make)


@pytest.mark.parametrize("make", [
    lambda o: lr_scheduler.ExponentialLR(o, gamma=0.99),
    lambda o: lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    lambda o: lr_scheduler.MultiStepLR(o, milestones=[2, 4], gamma=10.0),  # finite range
    lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.2),
    lambda o: lr_scheduler.InvLR(o, gamma=0.1, power=0.75),
    lambda o: lr_scheduler.LinearWarmup(o, 5, lr_scheduler.ExponentialLR(o, gamma=0.9)),
])
def test_good_schedules_still_load(make):
    sess = et.TrainSession.from_graph(tiny_graph(scheduler=make), threads=1)
    assert np.isfinite(sess.learning_rate) and sess.learning_rate >= 0


def _file_with_state(**state):
    g = tiny_graph()
    for k, v in state.items():
        setattr(g.state, k, v)
    return fileformat.dumps(g)


@pytest.mark.parametrize("state,words", [
    ({"base_lr": -1.0}, "base learning rate -1"),
    ({"sched_kind": 3, "sched_f": [1e30, 0, 0, 0, 0, 0]}, "at step 2"),
    ({"sched_kind": 5, "sched_f": [-1.0, 0.75, 0, 0, 0, 0]}, "gamma = -1"),
    ({"sched_kind": 1, "sched_f": [2.0] + [0] * 5, "sched_i": [1000] + [0] * 5}, "step"),
])
def test_files_held_to_the_api_limits(state, words):
    """Schedules written by hand (no scheduler's check) are refused by the loader itself."""
    with pytest.raises(ModelFormatError, match=words) as e:
        et.TrainSession.from_bytes(_file_with_state(**state))
    assert "STATE" in str(e.value)


def test_batch_zero_file_refused():
    g = tiny_graph()
    g.find("data").shape = (0, 8)
    with pytest.raises(ModelFormatError, match="dimension 0 is 0"):
        et.TrainSession.from_bytes(fileformat.dumps(g))


def test_set_learning_rate_checked():
    sess = et.TrainSession.from_graph(tiny_graph(), threads=1)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidArgumentError):
            sess.learning_rate = bad
        with pytest.raises(InvalidArgumentError):  # the C call refuses it too
            sess._s.base_lr = bad
    assert sess.base_learning_rate == pytest.approx(0.1)


def test_rate_is_usable_at_every_step():
    """The schedule check covers steps 0..2^64-1, so a bad rate cannot be reached by the
    counters: the step counter set anywhere still gives a usable rate."""
    sess = et.TrainSession.from_graph(
        tiny_graph(scheduler=lambda o: lr_scheduler.InvLR(o, gamma=0.5, power=2.0)), threads=1)
    for step in (0, 1, 2 ** 40, 2 ** 64 - 1):
        sess.step = step
        assert 0 <= sess.learning_rate < np.inf


# ---- META -----------------------------------------------------------------------------------
def file_with_meta(meta_text: bytes) -> bytes:
    """A valid file whose META section is exactly `meta_text` (CRCs recomputed)."""
    import struct
    import zlib

    g = tiny_graph()
    pad = len(meta_text) - len(json.dumps({"pad": ""}))
    g.meta = {"pad": "x" * pad}
    raw = bytearray(fileformat.dumps(g))
    old = json.dumps(g.meta, sort_keys=True).encode()
    assert len(old) == len(meta_text) and raw.count(old) == 1
    at = raw.index(old)
    raw[at:at + len(old)] = meta_text
    n = struct.unpack_from("<I", raw, 24)[0]
    for k in range(n):
        e = 64 + 32 * k
        typ, off, size = struct.unpack_from("<I4xQQ", raw, e)
        if typ == fileformat.META:
            struct.pack_into("<I", raw, e + 24, zlib.crc32(raw[off:off + size]))
    struct.pack_into("<I", raw, 32, zlib.crc32(raw[64:64 + 32 * n]))
    struct.pack_into("<I", raw, 36, zlib.crc32(raw[:36]))
    return bytes(raw)


def test_nested_meta_is_a_format_error(tmp_path):
    deep = b"[" * 50000 + b"]" * 50000
    data = file_with_meta(deep)
    et.TrainSession.from_bytes(data, threads=1)  # the runtime ignores META
    with pytest.raises(ModelFormatError, match="nested 50000 levels"):
        fileformat.loads(data)
    path = tmp_path / "deep.etm"
    path.write_bytes(data)
    r = subprocess.run([sys.executable, "-m", "edgetrain", "info", str(path)], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "nested 50000 levels" in r.stderr + r.stdout
    # shallow META still reads; a META that is not an object is a format error
    ok = b'{"a": ["[[[[", {"b": 1}]}'
    assert fileformat.loads(file_with_meta(ok)).meta["a"] == ["[[[[", {"b": 1}]
    with pytest.raises(ModelFormatError, match="expected an object"):
        fileformat.loads(file_with_meta(b"[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]"))
