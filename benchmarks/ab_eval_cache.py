"""A/B of the eval cache (kernels/runtime/eval_cache.c) on MobileNetV2 eval, in one process,
with onnxruntime beside it (the settings and model of test_bench_eval.py).

Rows: "before", a session loaded with EDGETRAIN_EVAL_CACHE=0 (packs the conv weights and
computes the BatchNorm factors on every run, as before the cache); "after", one with the cache;
"ort", onnxruntime on the session's export_onnx(inference_only=True). Each round runs a block of
BLOCK runs of each row in turn (the first SETTLE of a block not counted; PARK_S pause after a
block so ORT's spinning threads park); medians in ms. Checks that before and after give the
same bits and prints the cache's bytes.
usage: .venv/bin/python benchmarks/ab_eval_cache.py THREADS SIZE BATCH [ROUNDS] [noort]"""
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import test_bench_eval as tb  # noqa: E402

import edgetrain as et  # noqa: E402

th, size, b = (int(a) for a in sys.argv[1:4])
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else (30 if size < 100 else 8)
with_ort = "noort" not in sys.argv
BLOCK, SETTLE, PARK_S = 4, 1, 0.05
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
rows = {k: (lambda s=s: s.RunGraph({"x": x})["output"]) for k, s in sess.items()}
if with_ort:
    path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    sess["after"].export_onnx(path, inference_only=True)
    ort_s = tb._ort_session(path, th)
    rows["ort"] = lambda: ort_s.run(None, {"x": x})[0]
outs = {k: np.asarray(f()) for k, f in rows.items()}
assert np.array_equal(outs["before"], outs["after"]), "cache changed the bits"
times = {k: [] for k in rows}
cpu = {k: [] for k in rows}   # this thread's CPU time: at 1 thread, less hurt by a busy host
for r in range(rounds + 1):
    for k, f in rows.items():
        for i in range(BLOCK):
            t, c = time.perf_counter(), time.thread_time()
            f()
            if i >= SETTLE and r:   # round 0 is the warm-up
                times[k].append(time.perf_counter() - t)
                cpu[k].append(time.thread_time() - c)
        time.sleep(PARK_S)
med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
cmed = {k: float(np.median(v)) * 1e3 for k, v in cpu.items()}
line = (f"{size}x{size} b{b} t{th}: before {med['before']:.3f} ms, after {med['after']:.3f} ms, "
        f"speedup {med['before'] / med['after']:.3f}x")
if with_ort:
    line += (f"; ort {med['ort']:.3f} ms, ort/edgetrain before {med['ort'] / med['before']:.3f}"
             f" after {med['ort'] / med['after']:.3f}")
if th == 1:
    line += (f"\n  cpu time: before {cmed['before']:.3f} after {cmed['after']:.3f} speedup "
             f"{cmed['before'] / cmed['after']:.3f}x" +
             (f", ort/edgetrain before {cmed['ort'] / cmed['before']:.3f} after "
              f"{cmed['ort'] / cmed['after']:.3f}" if with_ort else ""))
print(line + f"; eval_cache {sess['after'].memory_info()['eval_cache']} bytes; bits equal")
