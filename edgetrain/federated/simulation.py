"""Run a federation on this machine: Flower's simulation runtime (``backend="ray"``, each
ClientApp in a Ray actor) or the in-process grid (``backend="inprocess"``), with MNIST split
among the clients by :mod:`edgetrain.federated.partition`.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Optional, Tuple

import numpy as np

from ..errors import InvalidArgumentError
from . import task as T
from .partition import parse_partition, partition

BACKENDS = ("ray", "inprocess")
_CACHE: Dict[tuple, tuple] = {}


def _mnist(root: str, train: bool, task: T.Task, limit: Optional[int]):
    key = (os.path.abspath(root), train, task.image_size, limit)
    if key not in _CACHE:
        _CACHE[key] = T.mnist_arrays(root, train, task, limit)
    return _CACHE[key]


class MnistShards:
    """``shards(pid, n)`` -> the LocalData of client ``pid``; loads MNIST once per process
    (a Ray actor or this one) and splits it the same way everywhere (seeded)."""

    def __init__(self, root: str, task: T.Task, spec: str, num_clients: int, seed: int = 0,
                 limit: Optional[int] = None):
        parse_partition(spec)
        self.root, self.task, self.spec = root, task, spec
        self.num_clients, self.seed, self.limit = int(num_clients), int(seed), limit

    def indices(self):
        _, _, y = _mnist(self.root, True, self.task, self.limit)
        return partition(y, self.num_clients, self.spec, self.seed)

    def raw(self, pid: int) -> Tuple[np.ndarray, np.ndarray]:
        """uint8 images [n, 28, 28] and labels of client ``pid`` (for et_train's IDX files)."""
        raw, _, y = _mnist(self.root, True, self.task, self.limit)
        idx = self.indices()[pid]
        return raw[idx], y[idx]

    def __call__(self, pid: int, num_partitions: int) -> T.LocalData:
        if num_partitions != self.num_clients or not 0 <= pid < self.num_clients:
            raise InvalidArgumentError(f"partition {pid} of {num_partitions}: this federation "
                                       f"has {self.num_clients} clients")
        _, x, y = _mnist(self.root, True, self.task, self.limit)
        idx = self.indices()[pid]
        return T.LocalData(x[idx], y[idx])


class MnistTest:
    """The central evaluator on the MNIST test split (first ``limit`` samples)."""

    def __init__(self, root: str, task: T.Task, limit: Optional[int] = None):
        self.root, self.task, self.limit = root, task, limit

    def __call__(self) -> T.Evaluator:
        _, x, y = _mnist(self.root, False, self.task, self.limit)
        return T.Evaluator(self.task, T.LocalData(x, y))


class VariableLocalWork:
    """Systems heterogeneity, as the FedProx paper's stragglers: in round ``r`` client ``c``
    trains a number of local steps drawn uniformly from ``[min_steps, max_steps]``, seeded by
    (task seed, r, c), so a FedAvg and a FedProx run with the same seed give every client the
    same amount of work. A trainer for :func:`run_federation` / :func:`apps.client_app`
    (wrapping ``trainer``, default :func:`task.train_round`); it replaces the server's
    ``local-epochs`` / ``local-steps``."""

    def __init__(self, min_steps: int, max_steps: int, trainer=None):
        if not 1 <= int(min_steps) <= int(max_steps):
            raise InvalidArgumentError(f"local steps range needs 1 <= min <= max, got "
                                       f"[{min_steps}, {max_steps}]")
        self.min_steps, self.max_steps, self.trainer = int(min_steps), int(max_steps), trainer

    def steps(self, task: T.Task, server_round: int, client: int) -> int:
        rng = np.random.default_rng([int(task.seed), int(server_round), int(client)])
        return int(rng.integers(self.min_steps, self.max_steps + 1))

    def __call__(self, task, data, params, **kw):
        kw["steps"] = self.steps(task, kw.get("server_round", 0), kw.get("client", 0))
        return (self.trainer or T.train_round)(task, data, params, **kw)


class StragglerDropped(RuntimeError):
    """A straggler's partial work, dropped by FedAvg's deadline rule (:class:`Stragglers`)."""


class Stragglers:
    """The FedProx paper's systems heterogeneity (Li et al., MLSys 2020, section 5.1): every
    client is asked for ``steps`` local steps; in each round each client is, with probability
    ``fraction`` (seeded by task seed, round and client, so every strategy sees the same
    stragglers), a straggler that finishes only a uniform random number of them in
    ``[1, steps - 1]`` by the round's deadline. ``drop=True`` is FedAvg's rule there: a
    straggler's update is dropped (its client answers with :class:`StragglerDropped`, which
    the server counts as a failure and leaves out of the aggregate); ``drop=False`` is
    FedProx's: the partial work is aggregated. A trainer for :func:`run_federation`; it
    replaces the server's ``local-epochs`` / ``local-steps``."""

    def __init__(self, steps: int, fraction: float, drop: bool, trainer=None):
        if int(steps) < 2:
            raise InvalidArgumentError(f"stragglers need at least 2 local steps, got {steps}")
        if not 0.0 <= float(fraction) <= 1.0:
            raise InvalidArgumentError(f"the straggler fraction must be in [0, 1], got {fraction}")
        self.full, self.fraction, self.drop = int(steps), float(fraction), bool(drop)
        self.trainer = trainer

    def steps(self, task: T.Task, server_round: int, client: int) -> int:
        """The steps client ``client`` finishes in round ``server_round`` (``full`` unless it
        is a straggler)."""
        rng = np.random.default_rng([int(task.seed), int(server_round), int(client), 1])
        if rng.random() >= self.fraction:
            return self.full
        return int(rng.integers(1, self.full))

    def __call__(self, task, data, params, **kw):
        done = self.steps(task, kw.get("server_round", 0), kw.get("client", 0))
        if done < self.full and self.drop:
            raise StragglerDropped(f"straggler: {done} of {self.full} local steps by the "
                                   f"deadline, dropped (FedAvg)")
        kw["steps"] = done
        return (self.trainer or T.train_round)(task, data, params, **kw)


def run_federation(task: T.Task, data_dir: str, *, clients: int, rounds: int, out_dir: str,
                   partition_spec: str = "iid", strategy: str = "fedavg", mu: float = 0.0,
                   local_epochs: int = 1, local_steps: int = 0, server_lr: float = 1e-2,
                   fraction: float = 1.0, resume: bool = False, backend: str = "ray",
                   train_limit: Optional[int] = None, test_limit: Optional[int] = None,
                   cpus: Optional[int] = None, stream=None, trainer=None,
                   secagg: bool = False, dp_clip: float = 0.0, dp_noise: float = 0.0) -> dict:
    """Run the federation; returns ``{"history": [(round, accuracy, loss)], "arrays": ...}``.

    ``secagg=True``: Flower's SecAgg+ (the server sees only the masked sum of the updates);
    ``dp_clip > 0``: central DP with client-side clipping of each update to that L2 norm and
    server-side Gaussian noise of multiplier ``dp_noise`` (see :func:`apps.server_app`).
    """
    from .apps import client_app, client_mods, server_app

    if backend not in BACKENDS:
        raise InvalidArgumentError(f"unknown backend {backend!r}: use one of {BACKENDS}")
    if clients < 1 or rounds < 1:
        raise InvalidArgumentError("a federation needs at least 1 client and 1 round")
    shards = MnistShards(data_dir, task, partition_spec, clients, task.seed, train_limit)
    results: list = []
    server = server_app(task, MnistTest(data_dir, task, test_limit), num_clients=clients,
                        rounds=rounds, out_dir=out_dir, strategy=strategy, proximal_mu=mu,
                        local_epochs=local_epochs, local_steps=local_steps, server_lr=server_lr,
                        fraction=fraction, resume=resume, secagg=secagg, dp_clip=dp_clip,
                        dp_noise=dp_noise, stream=stream, results=results)
    client = client_app(task, shards, trainer, mods=client_mods(secagg, dp_clip > 0))
    logging.getLogger("flwr").setLevel(logging.WARNING)
    if backend == "inprocess":
        from flwr.app import Context, RecordDict

        from .grid import InProcessGrid

        ctx = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
        server(InProcessGrid(client, clients), ctx)
    else:
        from flwr.simulation import run_simulation

        ncpu = int(cpus or os.cpu_count() or 1)
        run_simulation(server, client, num_supernodes=clients, backend_name="ray",
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"num_cpus": ncpu, "num_gpus": 0,
                                                     "include_dashboard": False,
                                                     "log_to_driver": False}})
    if not results:
        raise RuntimeError("the federation did not finish (see the log above)")
    return results[0]
