"""Where the time goes, edgetrain vs onnxruntime, by conv kind (MobileNetV2 fp32 eval, the model
of test_bench_eval.py): per-node times from edgetrain's profiler and ORT's profiling JSON,
summed by kind (first conv, depthwise, pointwise, other), medians of per-run sums.
usage: .venv/bin/python benchmarks/prof_ort_kinds.py THREADS SIZE BATCH [RUNS]"""
import json
import os
import sys
import tempfile
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import test_bench_eval as tb  # noqa: E402

import edgetrain as et  # noqa: E402

th, size, b = (int(a) for a in sys.argv[1:4])
runs = int(sys.argv[4]) if len(sys.argv) > 4 else (40 if size < 100 else 8)
inch = 1 if size == 28 else 3
sess = et.TrainSession.from_module(tb._model(size, inch), inputs={"x": (None, inch, size, size)},
                                   threads=th, max_batch=b)
sess.Eval()
x = np.random.RandomState(0).randn(b, inch, size, size).astype(np.float32)
for _ in range(3):
    sess.RunGraph({"x": x})
sess.profiling = True
for _ in range(runs):
    sess.RunGraph({"x": x})
shapes = {k[:-len(".weight")]: v.shape for k, v in sess.get_parameters().items()
          if k.endswith(".weight") and v.ndim == 4}


def kind_of(w, first):
    if w is None:
        return "other"
    if first:
        return "first conv"
    return "depthwise" if w[1] == 1 and w[0] > 1 else "pointwise" if w[2] == w[3] == 1 else "kxk"


et_kinds = defaultdict(float)
for k, v in sess.profile(by="node").items():
    layer = k.split(" ", 2)[2] if k.count(" ") >= 2 else ""
    et_kinds[kind_of(shapes.get(layer), layer == "features.0.0") if "conv2d" in k else "other"] += \
        v["ms"] / runs

import onnxruntime as ort  # noqa: E402

d = tempfile.mkdtemp()
path = os.path.join(d, "m.onnx")
sess.export_onnx(path, inference_only=True)
so = tb._ort_session(path, th).get_session_options()
so.enable_profiling = True
so.profile_file_prefix = os.path.join(d, "ortprof")
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
for _ in range(3 + runs):
    s.run(None, {"x": x})
events = json.load(open(s.end_profiling()))
per_run = defaultdict(list)   # kind -> list of per-node durations (us), all runs
seen_runs = 0
for e in events:
    if e.get("cat") == "Session" and e.get("name") == "model_run":
        seen_runs += 1
    if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or seen_runs <= 3:
        continue
    a = e.get("args", {})
    shp = a.get("input_type_shape", [])
    kind = "other"
    if a.get("op_name") == "Conv" and len(shp) > 1:   # ORT's NCHWc Conv (+ fused activation)
        xs, w = list(shp[0].values())[0], tuple(list(shp[1].values())[0])
        kind = kind_of(w, len(xs) == 4 and xs[1] == inch and xs[2] == size) if len(w) == 4 else "other"
    per_run[kind].append(e["dur"] / 1e3)
ort_kinds = {k: sum(v) / runs for k, v in per_run.items()}
print(f"{size}x{size} b{b} t{th}, ms per run (profilers' per-node sums; host shared and noisy)")
print(f"{'kind':12s} {'edgetrain':>10s} {'ort':>10s} {'ort/et':>7s}")
for k in sorted(set(et_kinds) | set(ort_kinds), key=lambda k: -et_kinds.get(k, 0)):
    e, o = et_kinds.get(k, 0.0), ort_kinds.get(k, 0.0)
    print(f"{k:12s} {e:10.3f} {o:10.3f} {o / e if e else float('nan'):7.3f}")
te, to = sum(et_kinds.values()), sum(ort_kinds.values())
print(f"{'total':12s} {te:10.3f} {to:10.3f} {to / te:7.3f}")
