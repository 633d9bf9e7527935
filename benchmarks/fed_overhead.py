"""The simulation overhead of federated training (issue 16): the wall time of R rounds of an
in-process federation (K clients, 1 local epoch each, FedAvg, central evaluation after every
round) against training the same number of samples centrally in one session with the same
task (model, batch size, optimizer, lr, threads).

Not a pytest file: ``python benchmarks/fed_overhead.py --help``. The central side is timed
twice: training only, and training plus the same central evaluation after every R-th of the
samples (what the federation does after each round). Each side runs ``--repeats`` times,
alternating (central, federation, central, ...), and the minimum counts, so both sides see the
same machine. Prints one line per run and the two ratios; ``--csv`` appends them.
"""
import argparse
import csv
import os
import sys
import tempfile
import time

import numpy as np

from edgetrain.federated import task as T
from edgetrain.federated.simulation import MnistShards, MnistTest, run_federation


def central(task, shards, clients, rounds, evaluate):
    """Train, in one session, the batches the federation's clients train over ``rounds``
    rounds (each client's epoch is len(shard) // batch batches), on all their samples
    shuffled together; optionally evaluate after each round's worth of batches."""
    data = [shards(c, clients) for c in range(clients)]
    x = np.concatenate([d.x for d in data])
    y = np.concatenate([d.y for d in data])
    b = task.batch_size
    per_round = sum(len(d) // b for d in data)
    sess = T.new_session(task)
    sess.learning_rate = task.lr
    sess.Train()
    evaluator = evaluate() if evaluate else None
    per_epoch = len(y) // b
    t0 = time.perf_counter()
    k = 0
    for r in range(rounds):
        for _ in range(per_round):
            if k % per_epoch == 0:
                order = T.et_train_order(len(y), task.seed + r, k // per_epoch)
            idx = order[(k % per_epoch) * b:(k % per_epoch + 1) * b]
            sess.RunGraph({"data": x[idx], "label": y[idx]})
            k += 1
        if evaluator:
            evaluator(sess.get_parameters())
            sess.Train()
    return time.perf_counter() - t0, k * b


def federation(task, data_dir, clients, rounds, partition, train_limit, test_limit):
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        res = run_federation(task, data_dir, clients=clients, rounds=rounds, out_dir=out,
                             partition_spec=partition, local_epochs=1, backend="inprocess",
                             train_limit=train_limit, test_limit=test_limit,
                             stream=open(os.devnull, "w"))
        return time.perf_counter() - t0, res["history"][-1][1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/mnist")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--partition", default="dirichlet:0.5")
    p.add_argument("--train-limit", type=int, default=None, help="default: all 60,000")
    p.add_argument("--test-limit", type=int, default=None, help="default: all 10,000")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--skip-central-eval", action="store_true",
                   help="time the central side without evaluations only (saves a run)")
    p.add_argument("--csv", default=None)
    a = p.parse_args(argv)
    task = T.Task()
    shards = MnistShards(a.data, task, a.partition, a.clients, task.seed, a.train_limit)
    test = MnistTest(a.data, task, a.test_limit)
    best = {"central": np.inf, "central+eval": np.inf, "federation": np.inf}
    for rep in range(a.repeats):
        t, n = central(task, shards, a.clients, a.rounds, None)
        best["central"] = min(best["central"], t)
        print(f"[{rep}] central, training only: {t:.1f} s for {n} samples", flush=True)
        if not a.skip_central_eval:
            t, _ = central(task, shards, a.clients, a.rounds, test)
            best["central+eval"] = min(best["central+eval"], t)
            print(f"[{rep}] central + evaluation each round: {t:.1f} s", flush=True)
        t, acc = federation(task, a.data, a.clients, a.rounds, a.partition, a.train_limit,
                            a.test_limit)
        best["federation"] = min(best["federation"], t)
        print(f"[{rep}] federation, {a.rounds} rounds: {t:.1f} s (final accuracy {acc:.4f})",
              flush=True)
    r1 = best["federation"] / best["central"]
    r2 = best["federation"] / best["central+eval"]
    print(f"overhead: federation / central training = {r1:.3f}"
          + ("" if a.skip_central_eval else
             f"; federation / (central training + the same evaluations) = {r2:.3f}"))
    if a.csv:
        new = not os.path.exists(a.csv)
        with open(a.csv, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["clients", "rounds", "partition", "train_limit", "central_s",
                            "central_eval_s", "federation_s", "ratio", "ratio_with_eval"])
            skip = a.skip_central_eval
            w.writerow([a.clients, a.rounds, a.partition, a.train_limit or 60000,
                        round(best["central"], 2), "" if skip else round(best["central+eval"], 2),
                        round(best["federation"], 2), round(r1, 3), "" if skip else round(r2, 3)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
