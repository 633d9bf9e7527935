"""How far a step's 1 -> 2 thread scaling is from what the host gives two cores at that moment.

Issue 15 asks a MobileNetV2 b32 (and LeNet b64) training step to run >= 1.8x faster on 2
threads than on 1. On a shared VM the host itself moves: two vCPUs may share one physical
core's FMA units for a while (two register-only FMA loops then run at about half speed each),
and memory bandwidth scales by less than 2. This script measures, in rounds that alternate the
three so that each round's numbers are neighbours in time:

- ``t1``: the step at threads=1 (one process);
- ``t2``: the step at threads=2 (one process);
- ``pair``: two processes at once, each running the step at threads=1 (each on its own core,
  with its own copy of the data; no sharing between them).

and prints the step's scaling t1 / t2 beside the host's ceiling for this workload,
2 * t1 / pair (the throughput two independent single-thread copies reach). A scaling well below
the ceiling is the framework's loss (hand-outs, imbalance, data moving between cores); a ceiling
well below 2 is the host's.

usage: .venv/bin/python benchmarks/scaling_ceiling.py [--model mobilenetv2|lenet] [--rounds 5]
       [--seconds 3]
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def child(model, threads, seconds):
    """One process: warm up, then steps for `seconds`; prints ms per step."""
    sys.path.insert(0, HERE)
    import workloads

    step, _ = workloads.edgetrain_step(model, 32 if model == "mobilenetv2" else 64, threads)
    for _ in range(10):
        step()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    print((time.perf_counter() - t0) / n * 1e3)


def spawn(model, threads, seconds, copies=1):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", str(threads), "--model", model,
           "--seconds", str(seconds)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a child failed: {cmd}")
    return [float(o.split()[-1]) for o in outs]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["mobilenetv2", "lenet"], default="mobilenetv2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.model, a.child, a.seconds)
        return
    t1, t2, pair = [], [], []
    for r in range(a.rounds):
        t1 += spawn(a.model, 1, a.seconds)
        t2 += spawn(a.model, 2, a.seconds)
        pair.append(float(np.mean(spawn(a.model, 1, a.seconds, copies=2))))
        print(f"round {r + 1}: t1 {t1[-1]:.2f} ms, t2 {t2[-1]:.2f} ms, two 1-thread copies "
              f"{pair[-1]:.2f} ms each: scaling {t1[-1] / t2[-1]:.2f}x, ceiling "
              f"{2 * t1[-1] / pair[-1]:.2f}x", flush=True)
    s, c = np.array(t1) / np.array(t2), 2 * np.array(t1) / np.array(pair)
    print(f"{a.model}: scaling t1/t2 median {np.median(s):.2f}x "
          f"(range {s.min():.2f}-{s.max():.2f}), host ceiling 2*t1/pair median "
          f"{np.median(c):.2f}x (range {c.min():.2f}-{c.max():.2f}), scaling / ceiling "
          f"{np.median(s / c):.2f}")


if __name__ == "__main__":
    main()
