"""A/B of the eval cache (kernels/runtime/eval_cache.c) on MobileNetV2 eval, in one process.

Two sessions of the same model: one loaded with EDGETRAIN_EVAL_CACHE=0 (packs the conv weights
and computes the BatchNorm factors on every run, as before the cache), one with it. Runs
alternate between them (blocks of BLOCK runs, the first one of each block not counted);
medians in ms. Also checks that both give the same bits and prints the cache's bytes.
usage: .venv/bin/python benchmarks/ab_eval_cache.py THREADS SIZE BATCH [ROUNDS]"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import test_bench_eval as tb  # noqa: E402

import edgetrain as et  # noqa: E402

th, size, b = (int(a) for a in sys.argv[1:4])
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else (30 if size < 100 else 8)
BLOCK = 4
inch = 1 if size == 28 else 3
m = tb._model(size, inch)
sess = {}
for name, flag in (("before", "0"), ("after", "1")):
    os.environ["EDGETRAIN_EVAL_CACHE"] = flag
    s = et.TrainSession.from_module(m, inputs={"x": (None, inch, size, size)}, threads=th,
                                    max_batch=b)
    s.Eval()
    sess[name] = s
x = np.random.RandomState(0).randn(b, inch, size, size).astype(np.float32)
outs = {k: s.RunGraph({"x": x})["output"] for k, s in sess.items()}
assert np.array_equal(outs["before"], outs["after"]), "cache changed the bits"
times = {k: [] for k in sess}
for _ in range(rounds):
    for k, s in sess.items():
        for i in range(BLOCK):
            t = time.perf_counter()
            s.RunGraph({"x": x})
            if i:
                times[k].append(time.perf_counter() - t)
med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
print(f"{size}x{size} b{b} t{th}: before {med['before']:.3f} ms, after {med['after']:.3f} ms, "
      f"speedup {med['before'] / med['after']:.3f}x, eval_cache "
      f"{sess['after'].memory_info()['eval_cache']} bytes, bits equal")
