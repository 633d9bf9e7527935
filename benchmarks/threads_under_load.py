"""Threads under background load (issue 15): LeNet b64 (or MobileNetV2 b32, 32x32) training
step time at threads=1 and threads=2 in the same run, with and without another process keeping one core busy, and the CPU
a session uses while it waits between steps.

    python benchmarks/threads_under_load.py [--model lenet|mobilenetv2] [--steps 100]
                                            [--rounds 3] [--no-busy] [--eval]

``--eval`` times the eval program (a forward pass) instead of a training step.

Prints median ms/step per (load, threads), the ratio threads=2 / threads=1 (the issue's goal:
<= 1.05 under load) and the idle CPU in % of one core (goal: < 1 %). The busy process is a
plain Python loop at normal priority; it is always stopped at the end. Rounds alternate the
thread counts so a change of the machine's load hits both alike.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.models.lenet import LeNet
from edgetrain.models.mobilenet import MobileNetV2

SHAPES = {"lenet": (64, 1, 28, 28), "mobilenetv2": (32, 3, 32, 32)}


def make_session(threads, model_name="lenet"):
    shape = SHAPES[model_name]
    model = LeNet(dropout=0.0) if model_name == "lenet" else MobileNetV2(num_classes=10,
                                                                         input_size=32)
    return et.TrainSession.from_module(
        model, inputs={"data": shape}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((shape[0],), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.01, momentum=0.9), threads=threads)


def step_ms(sess, feeds, steps):
    for _ in range(3):  # warm-up
        sess.RunGraph(feeds)
    t0 = time.perf_counter()
    for _ in range(steps):
        sess.RunGraph(feeds)
    return (time.perf_counter() - t0) * 1e3 / steps


def idle_cpu_percent(sess, feeds, seconds=0.5):
    """CPU of this process (all threads) from the end of a step through `seconds` of waiting
    (any spinning of idle workers included), % of a core."""
    sess.RunGraph(feeds)
    c0, t0 = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    return 100.0 * (time.process_time() - c0) / (time.perf_counter() - t0)


def measure(sessions, feeds, steps, rounds):
    times = {t: [] for t in sessions}
    for _ in range(rounds):
        for t, sess in sessions.items():
            times[t].append(step_ms(sess, feeds, steps))
    return {t: statistics.median(v) for t, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(SHAPES), default="lenet")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-busy", action="store_true", help="skip the loaded measurement")
    ap.add_argument("--eval", action="store_true", help="time Eval() runs, not training steps")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    shape = SHAPES[args.model]
    feeds = {"data": rng.standard_normal(shape).astype(np.float32),
             "label": rng.integers(0, 10, shape[0]).astype(np.int64)}
    sessions = {t: make_session(t, args.model) for t in (1, 2)}
    for sess in sessions.values():
        sess.Eval() if args.eval else sess.Train()
    if args.eval:
        feeds = {"data": feeds["data"]}
    what = "eval" if args.eval else "step"
    print(f"edgetrain {os.path.dirname(et.__file__)}; cores {os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    loads = [("idle", False)] + ([] if args.no_busy else [("busy core", True)])
    for name, busy in loads:
        proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            ms = measure(sessions, feeds, args.steps, args.rounds)
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
        print(f"{name:>10}: {args.model} b{shape[0]} {what}  threads=1 {ms[1]:7.2f} ms   threads=2 "
              f"{ms[2]:7.2f} ms   ratio t2/t1 {ms[2] / ms[1]:.2f}")
    for t, sess in sessions.items():
        print(f"idle between runs, threads={t}: {idle_cpu_percent(sess, feeds):.2f} % of a core")


if __name__ == "__main__":
    main()
