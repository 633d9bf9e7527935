"""Run one workload for a few steps in a fresh process and print its peak RSS in bytes.

Usage: python rss_probe.py edgetrain|torch lenet|mobilenetv2 BATCH THREADS STEPS
"""
import resource
import sys

import workloads

impl, model, batch, threads, steps = sys.argv[1:6]
builder = workloads.edgetrain_step if impl == "edgetrain" else workloads.torch_step
step, _ = builder(model, int(batch), int(threads))
for _ in range(int(steps)):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
