"""Per-op profile of a LeNet training step (the runtime's opt-in node timer).

Run: `cd benchmarks && PYTHONPATH=.. python -m pytest -q -s test_bench_profile.py`.
Prints ms/step per op type for batch 64 on 1 and 2 threads (best of a few profiled runs:
the machine is shared), and records the step time next to PyTorch's in the same run.
"""
import pytest

import workloads
from conftest import QUICK, median_seconds, record

STEPS = 3 if QUICK else 20


def _profiled(sess, step, rounds):
    """The per-op profile (ms/step) of the round with the least total node time."""
    best = None
    for _ in range(rounds):
        sess.profiling = True  # zeroes the counters
        for _ in range(STEPS):
            step()
        prof = {op: r["ms"] / STEPS for op, r in sess.profile().items()}
        if best is None or sum(prof.values()) < sum(best.values()):
            best = prof
    sess.profiling = False
    return best


@pytest.mark.parametrize("threads", [1] if QUICK else [1, 2])
def test_lenet_train_profile(benchmark, threads):
    batch = 8 if QUICK else 64
    step, sess = workloads.edgetrain_step("lenet", batch, threads)
    step()
    prof = _profiled(sess, step, 1 if QUICK else 5)
    print(f"\nLeNet train b{batch} t{threads}: {sum(prof.values()):.2f} ms/step in nodes")
    for op, ms in prof.items():
        print(f"  {op:24s} {ms:7.3f} ms/step")
    benchmark.extra_info["profile_ms_per_step"] = prof
    benchmark.pedantic(step, rounds=3 if QUICK else 30, iterations=1, warmup_rounds=1)
    s = median_seconds(benchmark)
    if s:
        record(f"profiled lenet b{batch} t{threads}", "edgetrain", s)
