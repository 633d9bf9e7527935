"""Benchmark helpers: quick mode, thread control for numpy/torch, and a ratio report.

Every workload is benchmarked for edgetrain and for its baseline in the same run; the
session's end prints the ratios (baseline time / edgetrain time: > 1 means edgetrain is faster).
`make bench` runs with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset so numpy's OpenBLAS uses its
best kernel; `make bench-quick` (CI) runs every benchmark once at small sizes.
"""
import os
from collections import defaultdict

import pytest

QUICK = os.environ.get("EDGETRAIN_BENCH_QUICK") == "1"
_results = defaultdict(dict)  # workload -> {impl: seconds}


def record(workload, impl, seconds, **extra):
    _results[workload][impl] = seconds
    for k, v in extra.items():
        _results[workload][k] = v


@pytest.fixture
def quick():
    return QUICK


@pytest.fixture
def report():
    return record


def blas_threads(n):
    """Context manager limiting numpy's BLAS to n threads (threadpoolctl if available)."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=n, user_api="blas")
    except ImportError:  # pragma: no cover
        import contextlib
        return contextlib.nullcontext()


def median_seconds(benchmark):
    stats = getattr(benchmark, "stats", None)
    if stats is None or getattr(stats, "stats", None) is None:
        return None
    return stats.stats.median


def pytest_terminal_summary(terminalreporter):
    if not _results:
        return
    tr = terminalreporter
    tr.section("edgetrain vs baselines (same run; ratio = baseline time / edgetrain time)")
    for workload in sorted(_results):
        r = _results[workload]
        et = r.get("edgetrain")
        parts = []
        for impl, v in sorted(r.items()):
            if isinstance(v, float) and impl not in ("edgetrain",):
                if et and v and impl.startswith(("numpy", "torch", "mnn", "onnxruntime",
                                                  "edgetrain_")):
                    parts.append(f"{impl} {v * 1e3:.2f} ms (x{v / et:.2f})")
                else:
                    parts.append(f"{impl} {v:.4g}")
            elif not isinstance(v, float) and impl != "edgetrain":
                parts.append(f"{impl} {v}")
        et_s = f"edgetrain {et * 1e3:.2f} ms" if et else "edgetrain -"
        tr.write_line(f"{workload:40s} {et_s:24s} " + "  ".join(parts))


def pytest_collection_modifyitems(session, config, items):
    """Run every framework's version of a workload back to back (edgetrain, torch, mnn, ...
    for one case, then the next case) instead of all of edgetrain's cases first: a shared
    machine's speed drifts over minutes, and a ratio is only fair between neighbours in time."""
    def case_key(item):
        cs = getattr(item, "callspec", None)
        params = {} if cs is None else {k: v for k, v in cs.params.items() if k != "impl"}
        return (str(item.fspath), item.originalname, repr(sorted(params.items(), key=str)))

    first, order = {}, {}
    for i, item in enumerate(items):
        first.setdefault(case_key(item), i)
        order[id(item)] = i
    items[:] = sorted(items, key=lambda it: (first[case_key(it)], order[id(it)]))
