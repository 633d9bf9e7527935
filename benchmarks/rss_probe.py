"""Run one workload for a few steps in a fresh process and print its peak RSS in bytes.

Usage: python rss_probe.py edgetrain|torch lenet|mobilenetv2 BATCH THREADS STEPS
"""
import sys

import workloads

impl, model, batch, threads, steps = sys.argv[1:6]
builder = workloads.edgetrain_step if impl == "edgetrain" else workloads.torch_step
step, _ = builder(model, int(batch), int(threads))
for _ in range(int(steps)):
    step()
# VmHWM is this address space's peak; ru_maxrss would include the parent's RSS, which Linux
# carries over fork + exec.
with open("/proc/self/status") as f:
    hwm_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(hwm_kib * 1024)
