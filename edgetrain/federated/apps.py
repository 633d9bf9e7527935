"""The Flower apps (needs ``flwr``: ``pip install edgetrain[federated]``).

- :func:`client_app`: a ``ClientApp`` whose ``train`` runs :func:`task.train_round` (or a
  device client's round, :mod:`edgetrain.federated.device`) on the client's shard. It reads
  ``lr``, ``local-epochs``, ``local-steps``, ``round`` and ``proximal-mu`` (FedProx's key)
  from the round's config and replies with the parameters and BN buffers by name and the metrics
  ``loss``, ``accuracy``, ``num-examples``.
- :func:`server_app`: a ``ServerApp`` running Flower's FedAvg (weighted by ``num-examples``),
  FedProx or FedAdam with central evaluation every round; after each round the global model is
  saved atomically as ``global.etm`` (a complete, resumable training file) together with
  ``federate.json`` (the round) and the accuracy curve ``federate.csv`` / ``federate.png``.
  ``resume=True`` continues from them. A client that fails in a round is counted as a failure
  by the strategy and the round goes on with the others.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Callable, Dict, Mapping, Optional

import numpy as np

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.serverapp import strategy as fl_strategy

from ..errors import InvalidArgumentError
from . import task as T

STRATEGIES = ("fedavg", "fedprox", "fedadam")
STATE_FILE, MODEL_FILE, CSV_FILE, PNG_FILE = ("federate.json", "global.etm", "federate.csv",
                                              "federate.png")


def to_record(params: Mapping[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in params.items()})


def from_record(rec: ArrayRecord) -> Dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in rec.items()}


# ---- client ---------------------------------------------------------------------------------
def client_app(task: T.Task, data_fn: Callable[[int, int], "T.LocalData"],
               trainer: Optional[Callable] = None) -> ClientApp:
    """A ClientApp training ``task`` on ``data_fn(partition_id, num_partitions)``.

    ``trainer`` (default :func:`task.train_round`) is called as
    ``trainer(task, data, params, lr=, prox_mu=, epochs=, steps=, server_round=, client=)``;
    a device client passes its own. The partition comes from the node config
    (``partition-id``, ``num-partitions``: set by the simulation runtime, or
    ``--node-config`` of a SuperNode).
    """
    app = ClientApp()
    run = trainer or T.train_round

    @app.train()
    def train(msg: Message, context) -> Message:
        cfg = msg.content["config"]
        pid = int(context.node_config["partition-id"])
        parts = int(context.node_config.get("num-partitions", pid + 1))
        data = data_fn(pid, parts)
        params, metrics = run(task, data, from_record(msg.content["arrays"]),
                              lr=float(cfg.get("lr", task.lr)),
                              prox_mu=float(cfg.get("proximal-mu", 0.0)),
                              epochs=int(cfg.get("local-epochs", 1)),
                              steps=int(cfg.get("local-steps", 0)),
                              server_round=int(cfg.get("round", cfg.get("server-round", 0))),
                              client=pid)
        return Message(RecordDict({"arrays": to_record(params),
                                   "metrics": MetricRecord(metrics)}), reply_to=msg)

    return app


# ---- server ---------------------------------------------------------------------------------
def make_strategy(name: str, num_clients: int, proximal_mu: float = 0.0, eta: float = 1e-2,
                  fraction: float = 1.0):
    """Flower's strategy ``name`` (clients sampled with ``fraction``; no client-side evaluation:
    the server evaluates centrally). The instance records the last round's aggregated train
    metrics and its failures in ``last_train`` / ``last_failures``."""
    name = name.lower()
    if name not in STRATEGIES:
        raise InvalidArgumentError(f"unknown strategy {name!r}: use one of {STRATEGIES}")
    if name == "fedprox" and proximal_mu <= 0:
        raise InvalidArgumentError("fedprox needs a proximal mu > 0 (--mu)")
    n_train = max(1, int(round(fraction * num_clients)))
    common = dict(fraction_train=fraction, fraction_evaluate=0.0, min_train_nodes=n_train,
                  min_evaluate_nodes=0, min_available_nodes=num_clients)
    base = {"fedavg": fl_strategy.FedAvg, "fedprox": fl_strategy.FedProx,
            "fedadam": fl_strategy.FedAdam}[name]
    extra = {"fedprox": dict(proximal_mu=proximal_mu),
             "fedadam": dict(eta=eta, eta_l=eta, beta_1=0.9, beta_2=0.99, tau=1e-3)}.get(name, {})

    class Recording(base):
        last_train: Optional[MetricRecord] = None
        last_failures: int = 0

        def aggregate_train(self, server_round, replies):
            replies = sorted(replies, key=_reply_key)  # not arrival order: a fixed sum order
            self.last_failures = sum(1 for r in replies if r.has_error())
            arrays, metrics = super().aggregate_train(server_round, replies)
            self.last_train = metrics
            return arrays, metrics

    Recording.__name__ = base.__name__
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.ERROR)  # not the warning that client-side evaluation is off
    try:
        return Recording(**common, **extra)
    finally:
        logger.setLevel(level)


def _reply_key(msg):
    """Order replies by their content (examples, loss), so the float sums of the aggregation
    do not depend on the order the clients answered in: the same seed, the same model."""
    if msg.has_error():
        return (0, 0.0, 0.0)
    m = msg.content["metrics"]
    return (1, float(m.get("num-examples", 0)), float(m.get("loss", 0.0)))


class RoundLog:
    """The server's per-round bookkeeping: global.etm, federate.json, CSV/PNG, progress line."""

    def __init__(self, task: T.Task, out_dir: str, rounds: int, stream=None, title: str = ""):
        from ..plot import Curve

        self.task, self.out_dir, self.rounds = task, out_dir, rounds
        self.stream = stream if stream is not None else sys.stdout
        self.title = title
        self.curve = Curve()
        self.start_round = 0
        self.sess = T.new_session(task)
        self.t0 = time.perf_counter()
        os.makedirs(out_dir, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    def resume(self) -> Dict[str, np.ndarray]:
        """Parameters and round of the last saved global model."""
        from ..plot import read_csv
        from ..session import TrainSession

        if not os.path.exists(self.path(STATE_FILE)):
            raise InvalidArgumentError(f"nothing to resume in {self.out_dir}: no {STATE_FILE} "
                                       "(a run saves it after its first round)")
        with open(self.path(STATE_FILE)) as f:
            state = json.load(f)
        if state.get("task") != self.task.to_dict():
            raise InvalidArgumentError(f"{self.path(STATE_FILE)}: saved for task "
                                       f"{state.get('task')}, not {self.task.to_dict()}")
        self.start_round = int(state["round"])
        if os.path.exists(self.path(CSV_FILE)):
            self.curve = read_csv(self.path(CSV_FILE))
        params = TrainSession.load(self.path(MODEL_FILE), threads=1).get_parameters()
        T.check_parameters(self.sess.get_parameters(), params, self.path(MODEL_FILE))
        return params

    def end_round(self, rnd: int, params: Mapping[str, np.ndarray], result: Dict[str, float],
                  train: Optional[Mapping[str, float]], failures: int) -> None:
        from ..plot import plot_curve, write_csv

        r = self.start_round + rnd
        loss = float(train["loss"]) if train and "loss" in train else float("nan")
        tacc = float(train["accuracy"]) if train and "accuracy" in train else float("nan")
        if rnd > 0:
            self.curve.add_step(r, loss, tacc)
        if rnd > 0 or not self.curve.epochs:
            self.curve.add_epoch(r, float(r), result["accuracy"])
        if rnd > 0:  # the model of round 0 (or of the resumed round) is already on disk
            self.sess.set_parameters({k: np.ascontiguousarray(v, np.float32)
                                      for k, v in params.items()})
            self.sess.SaveToFile(self.path(MODEL_FILE))
            tmp = self.path(STATE_FILE + ".tmp")
            with open(tmp, "w") as f:
                json.dump({"round": r, "accuracy": result["accuracy"],
                           "task": self.task.to_dict()}, f)
            os.replace(tmp, self.path(STATE_FILE))
        elif not os.path.exists(self.path(MODEL_FILE)):
            self.sess.set_parameters({k: np.ascontiguousarray(v, np.float32)
                                      for k, v in params.items()})
            self.sess.SaveToFile(self.path(MODEL_FILE))
        write_csv(self.path(CSV_FILE), self.curve)
        plot_curve(self.path(PNG_FILE), self.curve, title=self.title)
        fail = f", {failures} client(s) failed" if failures else ""
        train_txt = f"train loss {loss:.4f}, " if rnd > 0 else ""
        self.stream.write(f"round {r}/{self.start_round + self.rounds}: {train_txt}"
                          f"test accuracy {100 * result['accuracy']:.2f}%, test loss "
                          f"{result['loss']:.4f}{fail} ({time.perf_counter() - self.t0:.1f} s)\n")
        self.stream.flush()


def server_app(task: T.Task, evaluator: Callable[[], "T.Evaluator"], *, num_clients: int,
               rounds: int, out_dir: str, strategy: str = "fedavg", proximal_mu: float = 0.0,
               local_epochs: int = 1, local_steps: int = 0, lr: Optional[float] = None,
               server_lr: float = 1e-2, fraction: float = 1.0, resume: bool = False,
               stream=None, results: Optional[list] = None) -> ServerApp:
    """A ServerApp for ``rounds`` rounds of ``strategy`` with central evaluation."""
    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        log = RoundLog(task, out_dir, rounds, stream,
                       title=f"{strategy}, {num_clients} clients: test accuracy per round")
        params = log.resume() if resume else T.initial_parameters(task)
        strat = make_strategy(strategy, num_clients, proximal_mu, server_lr, fraction)
        ev = evaluator()
        history = []

        def evaluate_fn(rnd: int, arrays: ArrayRecord) -> MetricRecord:
            p = from_record(arrays)
            res = ev(p)
            log.end_round(rnd, p, res, strat.last_train if rnd else None,
                          strat.last_failures if rnd else 0)
            history.append((log.start_round + rnd, res["accuracy"], res["loss"]))
            return MetricRecord(res)

        cfg = ConfigRecord({"lr": float(task.lr if lr is None else lr),
                            "local-epochs": int(local_epochs), "local-steps": int(local_steps)})
        res = _start(strat, grid, to_record(params), rounds, cfg, evaluate_fn, log.start_round)
        if results is not None:
            results.append({"history": history, "arrays": from_record(res.arrays)})

    return app


def _start(strat, grid, arrays, rounds, cfg, evaluate_fn, offset):
    """``strategy.start`` with the absolute round number in each round's config as ``round``
    (Flower's ``server-round`` restarts at 1 in a resumed run; clients seed their shuffles with
    ``round``, so a resumed run trains as the uninterrupted one would)."""
    base_configure = strat.configure_train

    def configure_train(server_round, arrays_, config, grid_):
        config = ConfigRecord(dict(config))
        config["round"] = offset + server_round
        return base_configure(server_round, arrays_, config, grid_)

    strat.configure_train = configure_train
    return strat.start(grid, arrays, num_rounds=rounds, train_config=cfg, evaluate_fn=evaluate_fn)
