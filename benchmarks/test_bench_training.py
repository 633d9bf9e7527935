"""Training workloads: edgetrain vs PyTorch (and MNN / ONNX Runtime when installed), same run.

Ratios (baseline time / edgetrain time) are printed at the end of the run.
"""
import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import others
import workloads
from conftest import QUICK, median_seconds, record

HERE = Path(__file__).resolve().parent
# MNN and onnxruntime-training are optional baselines (`make bench` tries to install them);
# when they are missing their cases skip.
IMPLS = ["edgetrain", "torch", "mnn", "onnxruntime"]
CASES = [("lenet", 64, 1), ("lenet", 64, 2), ("lenet", 32, 1), ("lenet", 32, 2),
         ("mobilenetv2", 32, 1), ("mobilenetv2", 32, 2)]
if QUICK:
    CASES = [("lenet", 8, 1), ("mobilenetv2", 2, 1)]


def _require(impl):
    """Skip (with the reason) when an optional baseline is not installed."""
    if impl == "torch":
        pytest.importorskip("torch")  # a benchmark dependency; `make bench` installs it
    elif impl == "mnn":
        if not others.mnn_available():
            pytest.skip("MNN not installed (optional baseline: `make bench-deps` puts it in "
                        ".venv/bench-optional, on PYTHONPATH for this file in `make bench`)")
    elif impl == "onnxruntime":
        if not others.ort_available():
            pytest.skip("onnxruntime-training not installed (optional baseline: `make "
                        "bench-deps` puts it in .venv/bench-optional, on PYTHONPATH for this "
                        "file in `make bench`; it replaces onnxruntime if installed in the venv)")
        if not others.ort_export_available():
            pytest.skip("onnxruntime-training baseline needs onnx and torch to export the "
                        "model and generate the training artifacts")


def _builder(impl):
    _require(impl)
    if impl == "torch":
        return workloads.torch_step
    if impl in ("mnn", "onnxruntime"):
        build = others.mnn_step if impl == "mnn" else others.ort_step

        def builder(*args, **kwargs):
            try:
                return build(*args, **kwargs)
            except others.Unsupported as e:  # installed, but this workload cannot run on it
                pytest.skip(str(e))
        return builder
    return workloads.edgetrain_step


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-b{c[1]}-t{c[2]}")
@pytest.mark.parametrize("impl", IMPLS)
def test_train_step(benchmark, impl, case):
    model, batch, threads = case
    step, handle = _builder(impl)(model, batch, threads)
    step()  # warm up (first-touch of the arena, torch's allocator)
    benchmark.pedantic(step, rounds=3 if QUICK else 30, iterations=1, warmup_rounds=1)
    _release(handle)
    s = median_seconds(benchmark)
    if s:
        record(f"train {model} b{batch} t{threads}", impl, s)
        benchmark.extra_info["images_per_s"] = batch / s


def _release(handle):
    """Free a baseline's session now (see others.Live), not at the end of the run."""
    if isinstance(handle, others.Live):
        handle.close()
    gc.collect()


def _available_steps(model, batch, threads, train, impls=IMPLS):
    """{impl: step} for every framework in impls that can run the workload here."""
    steps, handles = {}, []
    for impl in impls:
        try:
            step, handle = _builder(impl)(model, batch, threads, train=train)
        except pytest.skip.Exception:
            continue
        steps[impl] = step
        handles.append(handle)
    return steps, handles


PAIRED = [("lenet", 64, 1, True), ("lenet", 32, 1, True), ("lenet", 64, 1, False),
          ("mobilenetv2", 32, 1, True), ("lenet", 64, 2, True), ("lenet", 64, 2, False)]
if QUICK:
    PAIRED = [("lenet", 8, 1, True), ("lenet", 8, 2, True)]
# With 2 threads a framework's idle worker threads spin for a while after its step and take a
# core from whatever runs next, so the frameworks take turns in blocks of BLOCK steps and the
# first SETTLE steps of each block are not counted. onnxruntime's pool spins for as long as its
# session lives, so it is left out of the 2-thread rounds (test_train_step / test_lenet_eval
# run it on its own).
BLOCK, SETTLE = 8, 3


@pytest.mark.parametrize("case", PAIRED,
                         ids=lambda c: f"{'train' if c[3] else 'eval'}-{c[0]}-b{c[1]}-t{c[2]}")
def test_paired_rounds(benchmark, case):
    """The same workload for every framework, interleaved, so all see the same machine (its
    speed drifts on a shared host by up to 1.5x within minutes): at 1 thread each round runs one
    step of each framework in turn; at 2 threads each takes a block of steps in turn. The ratios
    of the per-framework medians are the figures to quote; pytest-benchmark times whole rounds."""
    model, batch, threads, train = case
    impls = IMPLS if threads == 1 else [i for i in IMPLS if i != "onnxruntime"]
    steps, handles = _available_steps(model, batch, threads, train, impls)
    times = {impl: [] for impl in steps}
    per_round = {impl: [] for impl in steps}   # each round's median: the same-round ratios
    block, settle = (1, 0) if threads == 1 else (BLOCK, SETTLE)

    def one_round():
        for impl, step in steps.items():
            mine = []
            for k in range(block):
                t0 = time.perf_counter()
                step()
                if k >= settle:
                    mine.append(time.perf_counter() - t0)
            times[impl] += mine
            per_round[impl].append(float(np.median(mine)))

    for _ in range(2 if threads == 1 else 1):
        one_round()  # warm up
    for t in (*times.values(), *per_round.values()):
        t.clear()
    # 30 rounds of blocks at 2 threads (8 gave ratios from 2.5x to 3.7x run to run on a
    # drifting host); the quartiles of the per-round ratios show the spread of each figure
    rounds = 3 if QUICK else (40 if threads == 1 else 30)
    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    label = f"paired {'train' if train else 'eval'} {model} b{batch} t{threads}"
    et_rounds = np.array(per_round.get("edgetrain", []))
    for impl, t in times.items():
        extra = {}
        if impl != "edgetrain" and len(et_rounds):
            q = np.percentile(np.array(per_round[impl]) / et_rounds, [25, 50, 75])
            extra[f"{impl} per-round ratio"] = f"q25 {q[0]:.2f} median {q[1]:.2f} q75 {q[2]:.2f}"
        record(label, impl, float(np.median(t)), **extra)
        benchmark.extra_info[f"{impl}_median_ms"] = float(np.median(t)) * 1e3
    for h in handles:
        _release(h)


@pytest.mark.parametrize("threads", [1] if QUICK else [1, 2])
@pytest.mark.parametrize("impl", IMPLS)
def test_lenet_eval(benchmark, impl, threads):
    batch = 8 if QUICK else 64
    step, handle = _builder(impl)("lenet", batch, threads, train=False)
    step()
    benchmark.pedantic(step, rounds=3 if QUICK else 50, iterations=1, warmup_rounds=1)
    _release(handle)
    s = median_seconds(benchmark)
    if s:
        record(f"eval lenet b{batch} t{threads}", impl, s)


RSS_CASES = CASES[:1] if QUICK else [("lenet", 64, 1), ("lenet", 64, 2), ("mobilenetv2", 32, 1)]
# With a memory budget: MobileNetV2 only (LeNet's peak is conv1's backward, which must read
# conv1's output, so recomputation cannot lower it; tests/test_recompute.py).
RSS_RUNS = [(impl, case) for case in RSS_CASES for impl in IMPLS] + \
    [(impl, case) for case in RSS_CASES if case[0] == "mobilenetv2"
     for impl in ("edgetrain_unconstrained", "edgetrain_half_budget")]


@pytest.mark.parametrize("impl, case", RSS_RUNS,
                         ids=lambda v: v if isinstance(v, str) else f"{v[0]}-b{v[1]}-t{v[2]}")
def test_peak_rss(benchmark, impl, case):
    """Peak resident memory of a fresh process training the workload (bytes).
    ``edgetrain``: its default, ``memory_budget="auto"`` (BatchNorm / elementwise segments
    recomputed); ``edgetrain_unconstrained``: ``memory_budget=None`` (no recomputation);
    ``edgetrain_half_budget``: ``memory_budget`` at half of the unconstrained activation arena
    (recomputation, the same bits)."""
    budget = []
    if impl == "edgetrain_unconstrained":
        budget = ["none"]
    elif impl == "edgetrain_half_budget":
        _, sess = workloads.edgetrain_step(*case, memory_budget=None)
        budget = [str(sess.memory_info()["activations"] // 2)]
        del sess
        gc.collect()
    else:
        _require(impl)
    model, batch, threads = case
    steps = 2 if QUICK else 10

    # The child imports the same edgetrain as this process (an in-place build is not on the
    # child's path otherwise: its sys.path[0] is benchmarks/).
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parent), env.get("PYTHONPATH"))
                                        if p)

    def probe():
        out = subprocess.run([sys.executable, str(HERE / "rss_probe.py"), impl.split("_")[0],
                              model, str(batch), str(threads), str(steps)] + budget,
                             capture_output=True,
                             text=True, cwd=HERE, env=env)
        if out.returncode == 3:  # rss_probe: this framework cannot run the workload
            return out.stderr.strip().splitlines()[-1]
        if out.returncode:
            raise subprocess.CalledProcessError(out.returncode, out.args, out.stdout,
                                                out.stderr)
        return int(out.stdout.strip().splitlines()[-1])

    rss = benchmark.pedantic(probe, rounds=1, iterations=1)
    if isinstance(rss, str):
        pytest.skip(rss)
    benchmark.extra_info["peak_rss_mib"] = rss / 2**20
    record(f"peak RSS MiB {model} b{batch} t{threads}", impl + "_MiB", round(rss / 2**20, 1))
    if impl == "edgetrain":
        _, sess = workloads.edgetrain_step(model, batch, threads)
        arena = sess.memory_info()["total"]
        benchmark.extra_info["arena_mib"] = arena / 2**20
        record(f"peak RSS MiB {model} b{batch} t{threads}", "arena_MiB", round(arena / 2**20, 1))


@pytest.mark.parametrize("threads", [1] if QUICK else [1, 2])
def test_memory_budget_step(benchmark, threads):
    """MobileNetV2 b32 training with ``memory_budget`` at half of the unconstrained
    activation arena, and with the default ``"auto"``, vs without, interleaved: the time
    ratios (issue 15: <= 1.35) and the same loss bits at every step."""
    import edgetrain as et
    from edgetrain import nn, optim
    from edgetrain.models import MobileNetV2

    batch = 4 if QUICK else 32
    x, y = workloads._data(batch, (3, 32, 32))
    sessions = {}
    for name in ("unconstrained", "auto", "half_budget"):
        if name == "half_budget":   # (the quick run's batch 4 reaches 0.502 of its arena)
            budget = int(sessions["unconstrained"].memory_info()["activations"] *
                         (0.55 if QUICK else 0.5))
        else:
            budget = None if name == "unconstrained" else "auto"
        et.manual_seed(0)
        model = MobileNetV2(num_classes=10, input_size=32)
        sess = et.TrainSession.from_module(
            model, inputs={"data": x.shape}, loss=nn.CrossEntropyLoss(),
            labels={"label": ((batch,), "int64")},
            optimizer=optim.SGD(model.parameters(), **workloads.STEP_SGD), threads=threads,
            memory_budget=budget)
        sess.Train()
        sessions[name] = sess
    info = sessions["half_budget"].memory_info()
    assert info["activations"] <= info["memory_budget"]
    times = {name: [] for name in sessions}
    losses = {name: [] for name in sessions}

    def one_round():
        for name, sess in sessions.items():
            t0 = time.perf_counter()
            out = sess.RunGraph({"data": x, "label": y})
            times[name].append(time.perf_counter() - t0)
            losses[name].append(np.asarray(out["loss"]).tobytes())

    one_round()
    benchmark.pedantic(one_round, rounds=3 if QUICK else 20, iterations=1)
    for name in ("auto", "half_budget"):
        assert losses[name] == losses["unconstrained"], f"recomputation ({name}) changed the " \
                                                        f"loss bits"
    label = f"train mobilenetv2 b{batch} t{threads}, memory_budget auto / arena/2"
    for name, t in times.items():
        record(label, name, float(np.median(t[1:])))
    benchmark.extra_info["arena_mib"] = {n: s.memory_info()["activations"] / 2**20
                                         for n, s in sessions.items()}


def _mnist_arrays():
    """MNIST train images (float32 [N, 1, 28, 28], normalised as edgetrain's dataset does) and
    labels; the first 640 in quick mode."""
    from edgetrain.data import MnistDataset

    ds = MnistDataset(str(HERE.parent / "data" / "mnist"), train=True)
    n = 640 if QUICK else len(ds)
    return ds, ds.get_batch(np.arange(n))


def _edgetrain_epoch():
    import edgetrain as et
    from edgetrain import nn, optim
    from edgetrain.data import DataLoader, TensorDataset
    from edgetrain.models import LeNet

    ds, (xs, ys) = _mnist_arrays()
    if QUICK:
        ds = TensorDataset(xs, ys)
    loader = DataLoader(ds, batch_size=64, shuffle=True, drop_last=True, num_workers=1, seed=0)
    et.manual_seed(0)
    model = LeNet()
    sess = et.TrainSession.from_module(
        model, inputs={"data": (64, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((64,), "int64")},
        optimizer=optim.SGD(model.parameters(), **workloads.LENET_SGD), threads=2)
    sess.Train()

    def epoch():
        for x, y in loader:
            sess.RunGraph({"data": x, "label": y})
    return epoch


def _torch_epoch():
    """PyTorch's best case: the whole set already a tensor in memory, torch's own DataLoader
    (shuffle, batch 64, in-process), the same LeNet and SGD."""
    import torch
    import torch.nn.functional as F

    _, (xs, ys) = _mnist_arrays()
    step_model, model = workloads.torch_step("lenet", 64, 2)
    opt = torch.optim.SGD(model.parameters(), **workloads.LENET_SGD)
    data = torch.utils.data.TensorDataset(torch.from_numpy(xs), torch.from_numpy(ys))
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    model.train()

    def epoch():
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return epoch


@pytest.mark.parametrize("impl", ["edgetrain", "torch"])
def test_mnist_epoch(benchmark, impl):
    """One MNIST epoch at batch 64 on 2 threads, data loading included."""
    _require(impl)
    epoch = _edgetrain_epoch() if impl == "edgetrain" else _torch_epoch()
    benchmark.pedantic(epoch, rounds=1, iterations=1)
    s = median_seconds(benchmark)
    if s:
        record("mnist epoch b64 t2 (with loading)", impl, s)
