"""BatchNorm + relu/relu6 fused in training programs (issue 15): MobileNetV2 b32 (32x32x3)
training step with export.FUSE_BATCHNORM_ACT on and off, at threads=1 and threads=2, A/B
interleaved in one process (the four sessions take turns, one block of steps each per round),
and the time of the BatchNorm and activation ops per step (the runtime's per-node profile).

    python benchmarks/bn_act_fusion.py [--steps 10] [--rounds 15] [--batch 32]

Prints the median (and best) ms/step per (fuse, threads), the fused / unfused ratio per thread
count, the 1 -> 2 thread scaling of each, and the median ms/step of batchnorm_train + act +
batchnorm_bwd + act_bwd (profiled rounds, separate from the timed ones). On a loaded machine
the best block is the steadier figure. The two programs
train to the same bits (tests/test_bn_act_fusion.py); this checks the first losses agree.
"""
import argparse
import statistics
import time

import numpy as np

import edgetrain as et
from edgetrain import export, nn, optim
from edgetrain.models.mobilenet import MobileNetV2

BN_ACT_OPS = ("batchnorm_train", "act", "batchnorm_bwd", "act_bwd")


def make_session(fuse, threads, batch):
    et.nn.init.manual_seed(0)
    model = MobileNetV2(num_classes=10, input_size=32)
    old = export.FUSE_BATCHNORM_ACT
    export.FUSE_BATCHNORM_ACT = fuse
    try:
        sess = et.TrainSession.from_module(
            model, inputs={"data": (batch, 3, 32, 32)}, loss=nn.CrossEntropyLoss(),
            labels={"label": ((batch,), "int64")},
            optimizer=optim.SGD(model.parameters(), lr=0.01, momentum=0.9), threads=threads)
    finally:
        export.FUSE_BATCHNORM_ACT = old
    sess.Train()
    return sess


def block_ms(sess, feeds, steps):
    sess.RunGraph(feeds)   # warm: the other sessions ran in between
    t0 = time.perf_counter()
    for _ in range(steps):
        sess.RunGraph(feeds)
    return (time.perf_counter() - t0) * 1e3 / steps


def bn_act_ms(sess, feeds, steps):
    sess.profiling = True
    for _ in range(steps):
        sess.RunGraph(feeds)
    prof = sess.profile()
    sess.profiling = False
    return sum(prof[k]["ms"] for k in BN_ACT_OPS if k in prof) / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    feeds = {"data": rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32),
             "label": rng.integers(0, 10, args.batch)}
    keys = [(fuse, t) for t in (1, 2) for fuse in (True, False)]
    sessions = {k: make_session(k[0], k[1], args.batch) for k in keys}
    first = {k: s.RunGraph(feeds)["loss"].tobytes() for k, s in sessions.items()}
    assert len(set(first.values())) == 1, "fused and unfused losses differ"
    times = {k: [] for k in keys}
    prof = {k: [] for k in keys}
    for r in range(args.rounds):
        order = keys if r % 2 == 0 else keys[::-1]
        for k in order:
            times[k].append(block_ms(sessions[k], feeds, args.steps))
        for k in order:
            prof[k].append(bn_act_ms(sessions[k], feeds, 2))
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    pmed = {k: statistics.median(v) for k, v in prof.items()}
    print(f"MobileNetV2 b{args.batch} 32x32 training step, median of {args.rounds} rounds x "
          f"{args.steps} steps (interleaved)")
    for k in keys:
        print(f"  fuse={int(k[0])} threads={k[1]}: {med[k]:7.2f} ms/step (best {best[k]:7.2f})  "
              f"BN+act ops {pmed[k]:6.2f} ms/step")
    for t in (1, 2):
        print(f"  threads={t}: fused / unfused step {med[(True, t)] / med[(False, t)]:.3f} "
              f"(best {best[(True, t)] / best[(False, t)]:.3f}), "
              f"BN+act {pmed[(True, t)] / pmed[(False, t)]:.3f}")
    for fuse in (True, False):
        print(f"  fuse={int(fuse)}: 1 -> 2 threads x{med[(fuse, 1)] / med[(fuse, 2)]:.2f} step "
              f"(best x{best[(fuse, 1)] / best[(fuse, 2)]:.2f}), "
              f"x{pmed[(fuse, 1)] / pmed[(fuse, 2)]:.2f} BN+act")


if __name__ == "__main__":
    main()
