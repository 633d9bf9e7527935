"""Per-node profile of MobileNetV2 fp32 eval (the model of test_bench_eval.py).
usage: .venv/bin/python benchmarks/prof_eval.py THREADS SIZE BATCH
Prints ms per run, the top ops and nodes, and the conv time by kind (depthwise, pointwise,
other) with its share of the run."""
import sys; sys.path.insert(0, 'benchmarks')
import test_bench_eval as tb, time, numpy as np
import edgetrain as et
size=int(sys.argv[2]); b=int(sys.argv[3]); th=int(sys.argv[1]); inch=1 if size==28 else 3
sess = et.TrainSession.from_module(tb._model(size, inch), inputs={"x": (None, inch, size, size)}, threads=th, max_batch=b)
sess.Eval()
x = np.random.RandomState(0).randn(b, inch, size, size).astype(np.float32)
run=lambda: sess.RunGraph({"x": x})
for _ in range(5): run()
n=100 if size<100 else 10
t=time.perf_counter()
for _ in range(n): run()
print("ms/run", (time.perf_counter()-t)/n*1e3)
sess.profiling=True
for _ in range(n): run()
rows=sess.profile(by="op")
for k,v in list(rows.items())[:12]:
    print(f"{v['ms']/n:7.3f} {k}")
rows=sess.profile(by="node")
for k,v in list(rows.items())[:15]:
    print(f"{v['ms']/n:7.3f} {k}")
shapes = {k[:-len(".weight")]: v.shape for k, v in sess.get_parameters().items()
          if k.endswith(".weight") and v.ndim == 4}
kinds, total = {}, sum(v["ms"] for v in rows.values()) / n
for k, v in rows.items():
    layer = k.split(" ", 2)[2] if k.count(" ") >= 2 else ""
    w = shapes.get(layer)
    kind = ("other" if w is None else "first conv" if layer == "features.0.0" else
            "depthwise" if w[1] == 1 and w[0] > 1 else
            "pointwise" if w[2] == w[3] == 1 else "conv kxk") if "conv2d" in k else "not conv"
    kinds[kind] = kinds.get(kind, 0.0) + v["ms"] / n
for kind, ms in sorted(kinds.items(), key=lambda r: -r[1]):
    print(f"{ms:8.3f} ms {100 * ms / total:5.1f} %  {kind}")
