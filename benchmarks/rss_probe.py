"""Run one workload for a few steps in a fresh process and print its peak RSS in bytes.

Usage: python rss_probe.py edgetrain|torch|mnn|onnxruntime lenet|mobilenetv2 BATCH THREADS STEPS
                           [MEMORY_BUDGET]   (edgetrain only: bytes, "auto" (the default)
                                              or "none": recomputation)
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
    import functools

    import workloads
    builder = workloads.torch_step
    if impl == "edgetrain":
        budget = sys.argv[6] if len(sys.argv) > 6 else "auto"   # bytes, "auto" or "none"
        budget = None if budget == "none" else (budget if budget == "auto" else int(budget))
        builder = functools.partial(workloads.edgetrain_step, memory_budget=budget)
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
