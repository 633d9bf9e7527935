"""One TrainSession shared by several threads, and several writers of one file (issue 17).

Calls on one session are serialised by its lock (``sess.lock``, re-entrant); a group of calls
that must see one state (Resize + RunGraph, SaveToFile + step) holds it with ``with sess.lock``.
The stress tests run in a child process so that a crash (the bug they reproduce: a use after
free when Resize runs during RunGraph) fails the test instead of killing pytest.
"""
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.errors import EdgetrainError, NotFoundError, SessionStateError, ShapeError

F = nn.functional
ROOT = Path(__file__).resolve().parents[1]
TRAIN_B = 8
EVAL_BATCHES = (1, 3, 8, 13)


class TinyNet(nn.Module):
    """Conv + pool + linear on 1x12x12: small, but runs the GEMM and conv paths."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(F.flatten(F.max_pool2d(F.relu(self.conv(x)), 2), 1))


def write_model(path, batch=TRAIN_B, seed=3):
    et.manual_seed(seed)
    model = TinyNet()
    sess = et.TrainSession.from_module(
        model, inputs={"data": (batch, 1, 12, 12)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((batch,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.05, momentum=0.9), threads=1)
    sess.SaveToFile(path)
    return path


def train_feeds(seed=11):
    rng = np.random.default_rng(seed)
    return {"data": rng.standard_normal((TRAIN_B, 1, 12, 12), dtype=np.float32),
            "label": rng.integers(0, 5, TRAIN_B).astype(np.int64)}


def eval_inputs(seed=12):
    rng = np.random.default_rng(seed)
    return {b: rng.standard_normal((b, 1, 12, 12), dtype=np.float32) for b in EVAL_BATCHES}


def shapes(b):
    return {"data": (b, 1, 12, 12), "label": (b,)}


# ---- the stress workload (runs in a child process) ------------------------------------------
def stress_one_session(workdir, rounds=250, nthreads=4):
    """``nthreads`` threads x ``rounds`` random operations on one session.

    Every train step uses the same batch, so the state after k steps does not depend on which
    thread ran them: eval outputs and saved files are compared bit for bit with a sequential
    reference at the step they observed. "Chaos" operations are single, ungrouped calls
    (Resize to a random batch, RunGraph with whatever shape the caller has) that may fail only
    with the shape/mode errors an interleaving legitimately causes.
    """
    workdir = Path(workdir)
    model = write_model(workdir / "start.etm")
    sess = et.TrainSession.load(model, threads=1)
    tf, ev = train_feeds(), eval_inputs()
    records, errors, failures = [], [], []

    def op_train():
        with sess.lock:
            sess.Train()
            sess.Resize(shapes(TRAIN_B))
            loss = float(sess.RunGraph(tf)["loss"])
            records.append(("train", sess.step, loss))

    def op_eval(rnd):
        b = rnd.choice(EVAL_BATCHES)
        with sess.lock:
            sess.Eval()
            sess.Resize(shapes(b))
            out = sess.RunGraph({"data": ev[b]})["output"]
            records.append(("eval", sess.step, b, out))

    def op_save(rnd, t, i):
        p = workdir / f"save-{t}-{i}.etm"
        with sess.lock:
            sess.SaveToFile(p)
            records.append(("save", sess.step, str(p)))

    def op_chaos(rnd, t):
        try:
            if rnd.random() < 0.4:
                sess.Resize(shapes(rnd.choice(EVAL_BATCHES)))
            elif rnd.random() < 0.5:
                sess.RunGraph({"data": ev[rnd.choice(EVAL_BATCHES)]})
            else:
                sess.SaveToFile(workdir / f"chaos-{t}.etm")
                et.TrainSession.load(workdir / f"chaos-{t}.etm", threads=1)
        except (ShapeError, NotFoundError, SessionStateError) as e:
            errors.append(type(e).__name__)

    def worker(t):
        rnd = random.Random(1000 + t)
        try:
            for i in range(rounds):
                r = rnd.random()
                if r < 0.35:
                    op_train()
                elif r < 0.7:
                    op_eval(rnd)
                elif r < 0.75:
                    op_save(rnd, t, i)
                else:
                    op_chaos(rnd, t)
        except BaseException as e:  # reported by the main thread
            failures.append(f"thread {t}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not failures, failures

    # sequential reference: the same file, the same batch, one step at a time
    steps = max(r[1] for r in records)
    ref = et.TrainSession.load(model, threads=1)
    want_loss, want_eval, want_params = {}, {}, {0: ref.get_parameters()}
    need_eval = {}
    for r in records:
        if r[0] == "eval":
            need_eval.setdefault(r[1], set()).add(r[2])
    for k in range(steps + 1):
        if k > 0:
            ref.Train()
            ref.Resize(shapes(TRAIN_B))
            want_loss[k] = float(ref.RunGraph(tf)["loss"])
            want_params[k] = ref.get_parameters()
        ref.Eval()
        for b in sorted(need_eval.get(k, ())):
            ref.Resize(shapes(b))
            want_eval[(k, b)] = ref.RunGraph({"data": ev[b]})["output"]

    trains = [r for r in records if r[0] == "train"]
    assert sorted(r[1] for r in trains) == list(range(1, steps + 1)), "every step ran exactly once"
    chaos_steps = steps - len(trains)  # ungrouped RunGraph in train mode also trains (same batch)
    assert chaos_steps >= 0
    for _, k, loss in trains:
        assert loss == want_loss[k], f"train step {k}: loss {loss} != reference {want_loss[k]}"
    n_eval = 0
    for r in records:
        if r[0] == "eval":
            _, k, b, out = r
            np.testing.assert_array_equal(out, want_eval[(k, b)], err_msg=f"eval at step {k}, batch {b}")
            n_eval += 1
    n_save = 0
    for r in records:
        if r[0] == "save":
            _, k, p = r
            loaded = et.TrainSession.load(p, threads=1)
            assert loaded.step == k
            got = loaded.get_parameters()
            for name, v in want_params[k].items():
                np.testing.assert_array_equal(got[name], v, err_msg=f"{p}: {name} at step {k}")
            n_save += 1
    print(f"steps={steps} evals={n_eval} saves={n_save} chaos_errors={len(errors)}")


def stress_resize_during_run(workdir, seconds=1.5):
    """The issue's crash: ungrouped Resize in one thread while others run."""
    model = write_model(Path(workdir) / "start.etm")
    sess = et.TrainSession.load(model, threads=1)
    ev = eval_inputs()
    sess.Eval()
    stop = time.monotonic() + seconds
    failures = []

    def resizer():
        rnd = random.Random(1)
        while time.monotonic() < stop:
            sess.Resize(shapes(rnd.choice(EVAL_BATCHES)))

    def runner(seed):
        rnd = random.Random(seed)
        runs = 0
        while time.monotonic() < stop:
            b = rnd.choice(EVAL_BATCHES)
            try:
                out = sess.RunGraph({"data": ev[b]})["output"]
                if out.shape != (b, 5):
                    failures.append(f"batch {b}: output shape {out.shape}")
                runs += 1
            except ShapeError:
                pass
        return runs

    ths = [threading.Thread(target=resizer)] + [threading.Thread(target=runner, args=(s,)) for s in (2, 3)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert not failures, failures
    print("ok")


def _in_child(func, tmp_path, timeout=120):
    """Run ``func(tmp_path)`` of this file in a fresh interpreter; its asserts become the result."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import test_concurrency as t; t.{func}({str(tmp_path)!r})")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                       cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, (f"{func} exited with {r.returncode} (a negative code is a signal: "
                               f"-11 is a segfault)\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r.stdout


def test_resize_during_rungraph_does_not_crash(tmp_path):
    assert "ok" in _in_child("stress_resize_during_run", tmp_path)


def test_four_threads_on_one_session_match_a_sequential_run(tmp_path):
    out = _in_child("stress_one_session", tmp_path)
    print(out)
    stats = dict(kv.split("=") for kv in out.split())
    assert int(stats["steps"]) > 50 and int(stats["evals"]) > 50 and int(stats["saves"]) > 5


def test_session_lock_is_reentrant_and_shared(tmp_path):
    sess = et.TrainSession.load(write_model(tmp_path / "m.etm"), threads=1)
    with sess.lock:
        with sess.lock:
            sess.Eval()
            assert sess.RunGraph({"data": eval_inputs()[TRAIN_B]})["output"].shape == (TRAIN_B, 5)
    # while one thread holds the lock, another's call waits (and does not hold the GIL)
    entered = threading.Event()
    done = []
    with sess.lock:
        t = threading.Thread(target=lambda: (entered.set(), done.append(sess.step)))
        t.start()
        entered.wait(5)
        time.sleep(0.05)
        assert not done, "a call ran while another thread held the session lock"
    t.join(5)
    assert done == [0]


# ---- many writers of one path ----------------------------------------------------------------
def _reader(path, stop, seen, bad):
    while not stop.is_set():
        try:
            et.TrainSession.load(path, threads=1)
            seen.append(1)
        except EdgetrainError as e:
            if os.path.exists(path):
                bad.append(str(e))
        time.sleep(0.001)


def test_two_threads_save_one_path(tmp_path):
    """Two sessions, one thread each, 120 saves each to one path; a reader loads it throughout."""
    model = write_model(tmp_path / "start.etm")
    a, b = et.TrainSession.load(model, threads=1), et.TrainSession.load(model, threads=1)
    b.Train()
    b.RunGraph(train_feeds())
    target = tmp_path / "shared.etm"
    a.SaveToFile(target)
    stop, seen, bad, failures = threading.Event(), [], [], []

    def saver(sess, n):
        try:
            for i in range(n):
                sess.SaveToFile(target, inference_only=(i % 10 == 9))
        except BaseException as e:
            failures.append(repr(e))

    reader = threading.Thread(target=_reader, args=(target, stop, seen, bad))
    reader.start()
    ths = [threading.Thread(target=saver, args=(s, 120)) for s in (a, b)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    stop.set()
    reader.join()
    assert not failures, failures
    assert not bad, bad[:3]
    assert seen, "the reader never loaded the file"
    et.TrainSession.load(target, threads=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.etm", "start.etm"], "temporaries left"


SAVER = """
import sys
import edgetrain as et
sess = et.TrainSession.load(sys.argv[1], threads=1)
sess.step = int(sys.argv[3])
for i in range(int(sys.argv[4])):
    sess.SaveToFile(sys.argv[2])
print("saved")
"""


def test_two_processes_save_one_path(tmp_path):
    model = write_model(tmp_path / "start.etm")
    target = tmp_path / "shared.etm"
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, str(model), str(target), str(step), "120"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for step in (111, 222)]
    stop, seen, bad = threading.Event(), [], []
    reader = threading.Thread(target=_reader, args=(target, stop, seen, bad))
    reader.start()
    outs = [p.communicate(timeout=120) for p in procs]
    stop.set()
    reader.join()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and "saved" in out, err
    assert not bad, bad[:3]
    assert et.TrainSession.load(target, threads=1).step in (111, 222)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.etm", "start.etm"], "temporaries left"
