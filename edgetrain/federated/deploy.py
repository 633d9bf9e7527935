"""The edgetrain apps for Flower's deployment runtime (a SuperLink and SuperNodes).

``flwr run`` ships the app project ``flwr_app/`` (pyproject.toml + ``etapp.py``) to the
SuperLink; its components are :data:`server` and :data:`client` below. Both are built from
the run config (``[tool.flwr.app.config]`` in ``flwr_app/pyproject.toml``, overridden with
``flwr run --run-config``) with the same :func:`apps.server_app` / :func:`apps.client_app` as
the simulation, so a deployment trains what a simulation with the same seed trains. Each
SuperNode picks its shard with ``--node-config 'partition-id=I num-partitions=N'`` (on a real
device, ``data`` names that device's own MNIST folder and the shard is still chosen by
``partition-id``; ``partition="iid"`` with one client per folder uses the whole folder).
"""
from __future__ import annotations

import os
from typing import Dict

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from ..errors import InvalidArgumentError
from . import task as T

APP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flwr_app")
_CLIENTS: Dict[tuple, object] = {}


def task_from_config(cfg) -> T.Task:
    return T.Task(model=str(cfg.get("model", "lenet")), batch_size=int(cfg.get("batch-size", 32)),
                  optimizer=str(cfg.get("optimizer", "sgd")), lr=float(cfg.get("lr", 0.05)),
                  momentum=float(cfg.get("momentum", 0.0)), seed=int(cfg.get("seed", 0)))


def _limit(cfg, key):
    v = int(cfg.get(key, 0))
    return v if v > 0 else None


def _data(cfg) -> str:
    data = str(cfg.get("data", ""))
    if not data or not os.path.isdir(data):
        raise InvalidArgumentError(f"run config 'data' = {data!r}: no such MNIST folder on this "
                                   "node (give an absolute path with flwr run --run-config)")
    return data


def _client_for(cfg):
    from .apps import client_app
    from .simulation import MnistShards

    key = tuple(sorted((k, str(v)) for k, v in cfg.items()))
    if key not in _CLIENTS:
        task = task_from_config(cfg)
        shards = MnistShards(_data(cfg), task, str(cfg.get("partition", "iid")),
                             int(cfg.get("num-clients", 2)), task.seed, _limit(cfg, "train-limit"))
        _CLIENTS[key] = client_app(task, shards, mods=mods_from_config(cfg))
    return _CLIENTS[key]


def mods_from_config(cfg) -> list:
    from .apps import client_mods

    return client_mods(secagg=bool(cfg.get("secagg", False)),
                       dp=float(cfg.get("dp-clip", 0.0)) > 0)


client = ClientApp()


@client.train()
def _train(msg, context):
    return _client_for(context.run_config)(msg, context)


server = ServerApp()


@server.main()
def _main(grid, context) -> None:
    from .apps import server_app
    from .simulation import MnistTest

    cfg = context.run_config
    task = task_from_config(cfg)
    out = str(cfg.get("out", "out/federated"))
    app = server_app(task, MnistTest(_data(cfg), task, _limit(cfg, "test-limit")),
                     num_clients=int(cfg.get("num-clients", 2)), rounds=int(cfg.get("rounds", 2)),
                     out_dir=out, strategy=str(cfg.get("strategy", "fedavg")),
                     proximal_mu=float(cfg.get("mu", 0.0)),
                     local_epochs=int(cfg.get("local-epochs", 1)),
                     local_steps=int(cfg.get("local-steps", 0)),
                     server_lr=float(cfg.get("server-lr", 0.01)),
                     resume=bool(cfg.get("resume", False)),
                     secagg=bool(cfg.get("secagg", False)),
                     dp_clip=float(cfg.get("dp-clip", 0.0)),
                     dp_noise=float(cfg.get("dp-noise", 0.0)),
                     stream=_LogStream(os.path.join(out, "federate.log")))
    app(grid, context)


class _LogStream:
    """The progress lines of a deployed ServerApp go to ``<out>/federate.log`` (and stdout)."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.f = open(path, "a")

    def write(self, s: str) -> None:
        self.f.write(s)
        print(s, end="", flush=True)

    def flush(self) -> None:
        self.f.flush()
