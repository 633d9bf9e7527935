"""FedAvg against FedProx on k-classes-per-client MNIST shards with heterogeneous local work
(not a pytest file: ``python benchmarks/fedprox_vs_fedavg.py --help``). Both strategies get the
same seed, clients, shards, rounds and learning rate, and either the same per-client, per-round
number of local steps (``VariableLocalWork``, only the proximal weight differs) or, with
``--stragglers``, the FedProx paper's protocol (``Stragglers``: FedAvg drops the stragglers'
partial work, FedProx keeps it). Writes one CSV row per (seed, strategy, mu, round) with the
central test accuracy and loss (docs/federated.md, docs/federated_fedprox.csv)."""
import argparse
import csv
import os
import sys
import time

from edgetrain.federated import task as T
from edgetrain.federated.simulation import Stragglers, VariableLocalWork, run_federation


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="data/mnist")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--partition", default="classes:2")
    p.add_argument("--train-limit", type=int, default=5000)
    p.add_argument("--test-limit", type=int, default=2000)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", default="5:60", help="MIN:MAX local steps per client and round")
    p.add_argument("--stragglers", type=float, default=None, metavar="FRACTION",
                   help="the FedProx paper's protocol instead of MIN:MAX: every client is asked "
                        "for MAX steps, a FRACTION of them (per round, seeded) are stragglers "
                        "that finish fewer; FedAvg drops their work, FedProx keeps it")
    p.add_argument("--keep-mu0", action="store_true",
                   help="with --stragglers: also run mu = 0 keeping the partial work (FedProx "
                        "without its proximal term)")
    p.add_argument("--mus", default="0,0.01,0.1,0.3,1", help="0 is FedAvg")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--out", default="out/fedprox")
    p.add_argument("--csv", default="out/fedprox/curves.csv")
    a = p.parse_args(argv)
    lo, hi = (int(v) for v in a.steps.split(":"))
    setting = a.steps if a.stragglers is None else f"{hi} steps, {a.stragglers:g} stragglers"
    os.makedirs(os.path.dirname(a.csv) or ".", exist_ok=True)
    new = not os.path.exists(a.csv)
    with open(a.csv, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["seed", "strategy", "mu", "round", "test_accuracy", "test_loss",
                        "clients", "partition", "train_limit", "test_limit", "lr", "steps"])
        for seed in (int(s) for s in a.seeds.split(",")):
            task = T.Task(batch_size=a.batch_size, lr=a.lr, threads=1, seed=seed)
            # (label, Flower strategy, mu); FedProx with mu = 0 is FedAvg keeping partial work
            runs = [("fedprox" if float(m) > 0 else "fedavg", float(m)) for m in a.mus.split(",")]
            if a.stragglers is not None and a.keep_mu0:
                runs.insert(1, ("fedprox", 0.0))
            for strat, mu in runs:
                if a.stragglers is None:
                    work = VariableLocalWork(lo, hi)
                else:
                    work = Stragglers(hi, a.stragglers, drop=strat == "fedavg")
                flower = "fedprox" if mu > 0 else "fedavg"
                t0 = time.perf_counter()
                res = run_federation(task, a.data, clients=a.clients, rounds=a.rounds,
                                     out_dir=f"{a.out}/s{seed}_{strat}_{mu:g}",
                                     partition_spec=a.partition, strategy=flower, mu=mu,
                                     backend="inprocess", train_limit=a.train_limit,
                                     test_limit=a.test_limit, stream=open(os.devnull, "w"),
                                     trainer=work)
                for r, acc, loss in res["history"]:
                    w.writerow([seed, strat, mu, r, f"{acc:.4f}", f"{loss:.4f}", a.clients,
                                a.partition, a.train_limit, a.test_limit, a.lr, setting])
                f.flush()
                accs = " ".join(f"{100 * acc:.1f}" for _, acc, _ in res["history"])
                print(f"seed {seed} {strat} mu={mu:g}: {accs} ({time.perf_counter() - t0:.0f} s)",
                      flush=True)


if __name__ == "__main__":
    sys.exit(main())
