"""Run one workload for a few steps in a fresh process and print its peak RSS in bytes.

Usage: python rss_probe.py edgetrain|torch|mnn|onnxruntime lenet|mobilenetv2 BATCH THREADS STEPS
Exits with status 3 (reason on stderr) when the framework cannot run the workload.
"""
import sys

impl, model, batch, threads, steps = sys.argv[1:6]
if impl == "onnxruntime":
    import others
    others.ort_lean_import()  # keep torch (imported by the ORT wheel itself) out of the measure
    builder = others.ort_step
elif impl == "mnn":
    import others
    builder = others.mnn_step
else:
    import workloads
    builder = workloads.edgetrain_step if impl == "edgetrain" else workloads.torch_step
try:
    step, _ = builder(model, int(batch), int(threads))
except Exception as e:  # others.Unsupported
    if type(e).__name__ != "Unsupported":
        raise
    print(e, file=sys.stderr)
    sys.exit(3)
for _ in range(int(steps)):
    step()
# VmHWM is this address space's peak; ru_maxrss would include the parent's RSS, which Linux
# carries over fork + exec.
with open("/proc/self/status") as f:
    hwm_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(hwm_kib * 1024)
