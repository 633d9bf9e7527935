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
  ``resume=True`` continues from them (FedAdam's server moments too: ``federate_opt.npz``).
  A client that fails in a round is counted as a failure by the strategy and the round goes on
  with the others.
- Privacy options: SecAgg+ (``secaggplus_mod`` + ``SecAggPlusWorkflow``) and central DP with
  client-side fixed clipping (``fixedclipping_mod`` +
  ``DifferentialPrivacyClientSideFixedClipping``); :func:`client_mods` gives the client side.
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
PLOT_EVERY_S = 30.0  # the longest a run's federate.png lags behind its federate.csv
STATE_FILE, MODEL_FILE, CSV_FILE, PNG_FILE = ("federate.json", "global.etm", "federate.csv",
                                              "federate.png")
OPT_FILE = "federate_opt.npz"  # FedAdam's server moments m_t / v_t of the saved round


def to_record(params: Mapping[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in params.items()})


def from_record(rec: ArrayRecord) -> Dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in rec.items()}


# ---- client ---------------------------------------------------------------------------------
def client_app(task: T.Task, data_fn: Callable[[int, int], "T.LocalData"],
               trainer: Optional[Callable] = None, mods: Optional[list] = None) -> ClientApp:
    """A ClientApp training ``task`` on ``data_fn(partition_id, num_partitions)``.

    ``trainer`` (default :func:`task.train_round`) is called as
    ``trainer(task, data, params, lr=, prox_mu=, epochs=, steps=, server_round=, client=)``;
    a device client passes its own. The partition comes from the node config
    (``partition-id``, ``num-partitions``: set by the simulation runtime, or
    ``--node-config`` of a SuperNode). ``mods`` are Flower mods (:func:`client_mods`: SecAgg+,
    DP clipping). Under SecAgg+ the messages are Flower's legacy fit messages (parameters as a
    list in :func:`param_order`); the handler answers both kinds.
    """
    app = ClientApp(mods=list(mods or []))
    run = trainer or T.train_round

    def local(cfg, params, context):
        pid = int(context.node_config["partition-id"])
        parts = int(context.node_config.get("num-partitions", pid + 1))
        data = data_fn(pid, parts)
        return run(task, data, params, lr=float(cfg.get("lr", task.lr)),
                   prox_mu=float(cfg.get("proximal-mu", cfg.get("proximal_mu", 0.0))),
                   epochs=int(cfg.get("local-epochs", 1)), steps=int(cfg.get("local-steps", 0)),
                   server_round=int(cfg.get("round", cfg.get("server-round", 0))), client=pid)

    @app.train()
    def train(msg: Message, context) -> Message:
        if "fitins.parameters" in msg.content.array_records:  # legacy fit (SecAgg+ workflow)
            from flwr.common import (Code, FitRes, Status, ndarrays_to_parameters,
                                     parameters_to_ndarrays)
            from flwr.compat.common import recorddict_compat as compat

            ins = compat.recorddict_to_fitins(msg.content, keep_input=True)
            order = param_order(task)
            arrays = parameters_to_ndarrays(ins.parameters)
            params, metrics = local(ins.config, dict(zip(order, arrays)), context)
            res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([params[k] for k in order]),
                         int(metrics["num-examples"]), dict(metrics))
            return Message(compat.fitres_to_recorddict(res, keep_input=True), reply_to=msg)
        cfg = msg.content["config"]
        sent = msg.content["arrays"]
        params, metrics = local(cfg, from_record(sent), context)
        params = {k: params[k] for k in sent.keys()} if set(sent.keys()) == set(params) \
            else params  # the server's key order (DP clipping compares it)
        return Message(RecordDict({"arrays": to_record(params),
                                   "metrics": MetricRecord(metrics)}), reply_to=msg)

    return app


def param_order(task: T.Task) -> list:
    """The fixed order of the parameter names in Flower's legacy (list) messages."""
    return list(T.initial_parameters(task))


def client_mods(secagg: bool = False, dp: bool = False) -> list:
    """The Flower mods of a client: ``secaggplus_mod`` (SecAgg+) and/or ``fixedclipping_mod``
    (clips the update to the norm the server's DP wrapper sends)."""
    if secagg and dp:
        raise InvalidArgumentError("SecAgg+ and DP clipping together are not supported: "
                                   "choose one")
    mods = []
    if secagg:
        from flwr.client.mod import secaggplus_mod

        mods.append(secaggplus_mod)
    if dp:
        from flwr.clientapp.mod import fixedclipping_mod

        mods.append(fixedclipping_mod)
    return mods


# ---- server ---------------------------------------------------------------------------------
def make_strategy(name: str, num_clients: int, proximal_mu: float = 0.0, eta: float = 1e-2,
                  fraction: float = 1.0):
    """Flower's strategy ``name`` (clients sampled with ``fraction``; no client-side evaluation:
    the server evaluates centrally). The instance records the last round's aggregated train
    metrics, its failures and their reasons in ``last_train`` / ``last_failures`` /
    ``last_errors``."""
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
        last_errors: tuple = ()
        round_offset: int = 0  # rounds done before a resume (FedAdam's bias correction)

        def aggregate_train(self, server_round, replies):
            replies = sorted(replies, key=_reply_key)  # not arrival order: a fixed sum order
            self.last_failures = sum(1 for r in replies if r.has_error())
            self.last_errors = tuple(_error_text(r) for r in replies if r.has_error())
            arrays, metrics = super().aggregate_train(server_round + self.round_offset, replies)
            if arrays is not None:  # the global model is float32, as global.etm stores it
                arrays = to_record({k: np.asarray(v, np.float32)
                                    for k, v in from_record(arrays).items()})
                if getattr(self, "current_arrays", None) is not None:  # FedAdam's x_t
                    self.current_arrays = from_record(arrays)
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


def _error_text(msg, limit: int = 300) -> str:
    """The reason of a failed client's reply, on one line (the runtimes may add a traceback)."""
    reason = " ".join(str(msg.error.reason or f"error code {msg.error.code}").split())
    return reason if len(reason) <= limit else reason[:limit - 3] + "..."


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
        self.plotted = None  # when the PNG was last drawn (perf_counter), None: never
        self.strategy = None  # a FedAdam strategy whose moments are saved with each round
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
        self.saved_opt = None
        if state.get("opt-state"):
            if not os.path.exists(self.path(OPT_FILE)):
                raise InvalidArgumentError(f"cannot resume {self.out_dir}: {STATE_FILE} says "
                                           f"the server optimizer's state is in {OPT_FILE}, "
                                           "which is missing")
            with np.load(self.path(OPT_FILE)) as z:
                self.saved_opt = {k: z[k] for k in z.files}
            if int(self.saved_opt.pop("__round__")) != self.start_round:
                raise InvalidArgumentError(f"{self.path(OPT_FILE)} is not of round "
                                           f"{self.start_round} (a half-saved round?)")
        return params

    def restore_optimizer(self, strat) -> None:
        """Give a resumed FedAdam its server moments (saved by :meth:`end_round`)."""
        saved = getattr(self, "saved_opt", None)
        if saved is None or not hasattr(strat, "v_t"):
            return
        strat.m_t = {k[2:]: v for k, v in saved.items() if k.startswith("m:")}
        strat.v_t = {k[2:]: v for k, v in saved.items() if k.startswith("v:")}

    def _save_optimizer(self, r: int) -> bool:
        st = self.strategy
        if st is None or not getattr(st, "m_t", None) or not getattr(st, "v_t", None):
            return False
        arrays = {"__round__": np.array(r)}
        arrays.update({f"m:{k}": v for k, v in st.m_t.items()})
        arrays.update({f"v:{k}": v for k, v in st.v_t.items()})
        tmp = self.path(OPT_FILE + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, self.path(OPT_FILE))
        return True

    def end_round(self, rnd: int, params: Mapping[str, np.ndarray], result: Dict[str, float],
                  train: Optional[Mapping[str, float]], failures: int,
                  errors: tuple = ()) -> None:
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
            opt = self._save_optimizer(r)
            tmp = self.path(STATE_FILE + ".tmp")
            with open(tmp, "w") as f:  # written last: the round is saved once this is
                json.dump({"round": r, "accuracy": result["accuracy"],
                           "task": self.task.to_dict(), "opt-state": opt}, f)
            os.replace(tmp, self.path(STATE_FILE))
        elif not os.path.exists(self.path(MODEL_FILE)):
            self.sess.set_parameters({k: np.ascontiguousarray(v, np.float32)
                                      for k, v in params.items()})
            self.sess.SaveToFile(self.path(MODEL_FILE))
        write_csv(self.path(CSV_FILE), self.curve)
        # The CSV is written each round; the PNG (a matplotlib figure, ~0.3 s, the largest fixed
        # cost of a short round) after the first and last round and at most every PLOT_EVERY_S.
        now = time.perf_counter()
        if rnd in (0, self.rounds) or self.plotted is None or now - self.plotted >= PLOT_EVERY_S:
            plot_curve(self.path(PNG_FILE), self.curve, title=self.title)
            self.plotted = now
        fail = f", {failures} client(s) failed" if failures else ""
        if errors:  # why, once per distinct reason (a mismatching model names the parameter)
            fail += " (" + "; ".join(dict.fromkeys(errors)) + ")"
        train_txt = f"train loss {loss:.4f}, " if rnd > 0 and loss == loss else ""  # not NaN
        self.stream.write(f"round {r}/{self.start_round + self.rounds}: {train_txt}"
                          f"test accuracy {100 * result['accuracy']:.2f}%, test loss "
                          f"{result['loss']:.4f}{fail} ({time.perf_counter() - self.t0:.1f} s)\n")
        self.stream.flush()


def server_app(task: T.Task, evaluator: Callable[[], "T.Evaluator"], *, num_clients: int,
               rounds: int, out_dir: str, strategy: str = "fedavg", proximal_mu: float = 0.0,
               local_epochs: int = 1, local_steps: int = 0, lr: Optional[float] = None,
               server_lr: float = 1e-2, fraction: float = 1.0, resume: bool = False,
               secagg: bool = False, dp_clip: float = 0.0, dp_noise: float = 0.0,
               stream=None, results: Optional[list] = None) -> ServerApp:
    """A ServerApp for ``rounds`` rounds of ``strategy`` with central evaluation.

    ``secagg=True`` aggregates with Flower's SecAgg+ (``SecAggPlusWorkflow``; the clients need
    ``client_mods(secagg=True)``; FedAvg or FedProx, all clients every round). ``dp_clip > 0``
    wraps the strategy in ``DifferentialPrivacyClientSideFixedClipping`` (clients need
    ``client_mods(dp=True)``): every update is clipped to L2 norm ``dp_clip`` on the client and
    the server adds Gaussian noise of multiplier ``dp_noise`` to the aggregate.
    """
    check_privacy_options(strategy, num_clients, fraction, secagg, dp_clip, dp_noise)
    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        log = RoundLog(task, out_dir, rounds, stream,
                       title=f"{strategy}, {num_clients} clients: test accuracy per round")
        params = log.resume() if resume else T.initial_parameters(task)
        ev = evaluator()
        history = []
        last = {}
        strat = None if secagg else make_strategy(strategy, num_clients, proximal_mu, server_lr,
                                                  fraction)

        def evaluate_cb(rnd: int, p: Dict[str, np.ndarray]) -> Dict[str, float]:
            res = ev(p)
            log.end_round(rnd, p, res, strat.last_train if rnd and strat else None,
                          strat.last_failures if rnd and strat else 0,
                          strat.last_errors if rnd and strat else ())
            history.append((log.start_round + rnd, res["accuracy"], res["loss"]))
            last["arrays"] = p
            return res

        cfg = {"lr": float(task.lr if lr is None else lr), "local-epochs": int(local_epochs),
               "local-steps": int(local_steps)}
        if secagg:
            log.stream.write(f"secure aggregation: SecAgg+ among {num_clients} clients\n")
            _run_secagg(grid, context, task, params, rounds, cfg, evaluate_cb, log.start_round,
                        strategy, proximal_mu, num_clients)
            final = last["arrays"]
        else:
            log.strategy = strat
            strat.round_offset = log.start_round
            log.restore_optimizer(strat)
            outer = strat
            if dp_clip > 0:
                from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping

                n = max(1, int(round(fraction * num_clients)))
                outer = DifferentialPrivacyClientSideFixedClipping(strat, dp_noise, dp_clip, n)
                log.stream.write(f"differential privacy: client-side fixed clipping of each "
                                 f"update to L2 norm {dp_clip:g}, Gaussian noise multiplier "
                                 f"{dp_noise:g} (std {dp_noise * dp_clip / n:g} on the "
                                 f"aggregate of {n} clients)\n")

            def evaluate_fn(rnd: int, arrays: ArrayRecord) -> MetricRecord:
                return MetricRecord(evaluate_cb(rnd, from_record(arrays)))

            res = _start(outer, grid, to_record(params), rounds, ConfigRecord(cfg), evaluate_fn,
                         log.start_round)
            final = from_record(res.arrays)
        if results is not None:
            results.append({"history": history, "arrays": final})

    return app


def check_privacy_options(strategy: str, num_clients: int, fraction: float, secagg: bool,
                          dp_clip: float, dp_noise: float) -> None:
    if dp_clip < 0 or dp_noise < 0:
        raise InvalidArgumentError(f"DP clipping norm and noise multiplier must be >= 0 "
                                   f"(got {dp_clip}, {dp_noise})")
    if dp_noise > 0 and dp_clip <= 0:
        raise InvalidArgumentError("DP noise needs a clipping norm (--dp-clip > 0)")
    if secagg and dp_clip > 0:
        raise InvalidArgumentError("SecAgg+ and DP clipping together are not supported: "
                                   "choose one")
    if secagg and strategy.lower() not in ("fedavg", "fedprox"):
        raise InvalidArgumentError(f"SecAgg+ works with fedavg or fedprox, not {strategy!r}")
    if secagg and (num_clients < 2 or fraction != 1.0):
        raise InvalidArgumentError("SecAgg+ needs at least 2 clients, all sampled each round "
                                   "(--fraction 1)")


def _run_secagg(grid, context, task, params, rounds, cfg, evaluate_cb, offset, strategy, mu,
                num_clients) -> None:
    """Flower's SecAgg+ workflow around a legacy FedAvg/FedProx strategy (the workflow API
    SecAgg+ is offered in): the server only ever sees the masked sum of the clients' weighted
    updates."""
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg as LegacyFedAvg, FedProx as LegacyFedProx
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    order = param_order(task)

    def fit_config(rnd: int) -> dict:
        return dict(cfg, round=offset + rnd)

    def evaluate_fn(rnd, ndarrays, config):
        res = evaluate_cb(rnd, dict(zip(order, ndarrays)))
        return res["loss"], {"accuracy": res["accuracy"]}

    kw = dict(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=num_clients,
              min_evaluate_clients=0, min_available_clients=num_clients,
              evaluate_fn=evaluate_fn, on_fit_config_fn=fit_config,
              initial_parameters=ndarrays_to_parameters([np.asarray(params[k], np.float32)
                                                         for k in order]))
    legacy = LegacyFedProx(proximal_mu=mu, **kw) if strategy == "fedprox" else \
        LegacyFedAvg(**kw)
    lctx = LegacyContext(context, config=ServerConfig(num_rounds=rounds), strategy=legacy)
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares=1.0,
                                                        reconstruction_threshold=0.7))(grid, lctx)
    finally:
        logger.setLevel(level)


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
