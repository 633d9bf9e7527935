import sys; sys.path.insert(0,'benchmarks')
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
