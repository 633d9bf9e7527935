"""What a federated client does with edgetrain alone (no Flower): the training program, the
local training of one round and the central evaluation.

A round's local work is a :class:`~edgetrain.TrainSession` loaded from the task's program
bytes (so every round starts with fresh optimizer state and step 0, as a new optimizer per
round would), given the global parameters and buffers by name, the FedProx anchor (the same
global weights) and the round's learning rate, then trained for some local epochs or steps on
the client's shard. The sample order is et_train's (seeded by seed, round and client), so a
round is reproducible and a phone running et_train computes the same update.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from ..errors import InvalidArgumentError, ShapeError

MODELS = {"lenet": 28, "lenet5": 32}  # model name -> image size
PROX_PREFIX = "prox_anchor:"


@dataclass(frozen=True)
class Task:
    """The model and the local optimizer every client of a federation uses."""
    model: str = "lenet"
    batch_size: int = 32
    optimizer: str = "sgd"      # "sgd" or "adam"
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    threads: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.model not in MODELS:
            raise InvalidArgumentError(f"unknown model {self.model!r}: federated training "
                                       f"supports {sorted(MODELS)}")
        if self.optimizer not in ("sgd", "adam"):
            raise InvalidArgumentError(f"optimizer must be 'sgd' or 'adam', got "
                                       f"{self.optimizer!r}")
        if self.batch_size < 1:
            raise InvalidArgumentError(f"batch size must be >= 1, got {self.batch_size}")

    @property
    def image_size(self) -> int:
        return MODELS[self.model]

    def to_dict(self) -> dict:
        return asdict(self)


_PROGRAMS: Dict[Tuple[Task, float], bytes] = {}


def program_bytes(task: Task, prox_mu: float = 0.0) -> bytes:
    """The task's trainable program (an ``.etm`` image) with FedProx weight ``prox_mu`` baked
    into its update nodes; traced once per process and (task, mu)."""
    key = (task, float(prox_mu))
    if key not in _PROGRAMS:
        from .. import fileformat, nn, optim
        from ..export import build_graph
        from ..models import LeNet, LeNet5

        nn.init.manual_seed(task.seed)
        model = LeNet() if task.model == "lenet" else LeNet5()
        params = model.parameters()
        if task.optimizer == "sgd":
            opt = optim.SGD(params, lr=task.lr, momentum=task.momentum,
                            weight_decay=task.weight_decay, prox_mu=prox_mu)
        else:
            opt = optim.Adam(params, lr=task.lr, weight_decay=task.weight_decay,
                             prox_mu=prox_mu)
        s = task.image_size
        graph = build_graph(model, inputs={"data": (task.batch_size, 1, s, s)},
                            loss=nn.CrossEntropyLoss(),
                            labels={"label": ((task.batch_size,), "int64")}, optimizer=opt)
        graph.state.seed = int(task.seed)
        _PROGRAMS[key] = fileformat.dumps(graph)
    return _PROGRAMS[key]


def new_session(task: Task, prox_mu: float = 0.0):
    from ..session import TrainSession

    return TrainSession.from_bytes(program_bytes(task, prox_mu), threads=task.threads)


def initial_parameters(task: Task) -> Dict[str, np.ndarray]:
    """The global model of round 0: the model's seeded initialisation, by name."""
    return new_session(task).get_parameters()


def check_parameters(expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray],
                     who: str) -> None:
    """Raise ShapeError naming the first mismatch between two parameter sets."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        raise ShapeError(f"{who}: model does not match (missing {missing}, unexpected {extra})")
    for k, v in expected.items():
        if tuple(np.shape(got[k])) != tuple(np.shape(v)):
            raise ShapeError(f"{who}: parameter {k!r} has shape {tuple(np.shape(got[k]))}, "
                             f"expected {tuple(np.shape(v))}")


def load_global(sess, params: Mapping[str, np.ndarray], prox_mu: float) -> None:
    """Set the global parameters (and, with FedProx, the anchors) into a fresh session."""
    check_parameters(sess.get_parameters(), params, "client")
    sess.set_parameters({k: np.ascontiguousarray(v, np.float32) for k, v in params.items()})
    if prox_mu:
        for name in sess.trainable_parameters():
            sess.set_tensor(PROX_PREFIX + name, np.ascontiguousarray(params[name], np.float32))


class LocalData:
    """One client's shard: float32 images [N, 1, S, S] and int64 labels [N]."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        if len(x) != len(y) or len(x) == 0:
            raise InvalidArgumentError(f"a client's data needs as many labels as images and at "
                                       f"least one sample (got {len(x)} images, {len(y)} labels)")
        self.x, self.y = x, np.asarray(y, np.int64)

    def __len__(self) -> int:
        return len(self.y)


def train_round(task: Task, data: LocalData, params: Mapping[str, np.ndarray], *, lr: float,
                prox_mu: float = 0.0, epochs: int = 1, steps: int = 0, server_round: int = 0,
                client: int = 0) -> Tuple[Dict[str, np.ndarray], Dict[str, float]]:
    """One round of local training; returns (new parameters, metrics).

    ``steps > 0`` trains that many batches (wrapping around the shard), else ``epochs`` full
    passes. Metrics: ``loss`` and ``accuracy`` (mean over the round's batches, on the
    training batches), ``num-examples`` (shard size, FedAvg's weight), ``steps``.
    """
    if epochs < 1 and steps < 1:
        raise InvalidArgumentError("local training needs epochs >= 1 or steps >= 1")
    sess = new_session(task, prox_mu)
    load_global(sess, params, prox_mu)
    sess.learning_rate = float(lr)
    seed = shuffle_seed(task, server_round, client)
    sess.seed = seed  # dropout masks: fresh each round, the same on a device client
    sess.Train()
    b = min(task.batch_size, len(data))
    s = task.image_size
    if b != task.batch_size:
        sess.Resize({"data": (b, 1, s, s), "label": (b,)})
    per_epoch = len(data) // b
    total = steps if steps > 0 else epochs * per_epoch
    loss_sum, correct, seen, order = 0.0, 0, 0, None
    for k in range(total):
        if k % per_epoch == 0:
            order = et_train_order(len(data), seed, k // per_epoch)
        idx = order[(k % per_epoch) * b:(k % per_epoch + 1) * b]
        out = sess.RunGraph({"data": data.x[idx], "label": data.y[idx]})
        loss_sum += float(out["loss"])
        correct += int((out["output"].argmax(1) == data.y[idx]).sum())
        seen += len(idx)
    metrics = {"loss": loss_sum / total, "accuracy": correct / seen,
               "num-examples": int(len(data)), "steps": int(total)}
    return sess.get_parameters(), metrics


def shuffle_seed(task: Task, server_round: int, client: int) -> int:
    """The seed of a client's sample order and dropout in a round (the same for et_train
    clients)."""
    return (task.seed * 1000003 + server_round * 7919 + client) & 0x7FFFFFFF


_GAMMA, _MASK = 0x9E3779B97F4A7C15, (1 << 64) - 1


def et_train_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of epoch ``epoch`` as ``et_train --seed`` draws it (android/mnist_idx.c:
    Fisher-Yates driven by splitmix64), so a Python client and a device client given the same
    shard, seed and global model produce the same update, bit for bit."""
    state = (seed + epoch * (n - 1) * _GAMMA) & _MASK
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        state = (state + _GAMMA) & _MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        z ^= z >> 31
        j = z % (i + 1)
        order[i], order[j] = order[j], order[i]
    return np.array(order, dtype=np.int64)


class Evaluator:
    """Central evaluation of global parameters on a held-out set (eval program, batches)."""

    def __init__(self, task: Task, data: LocalData, batch_size: int = 500):
        self.task, self.data = task, data
        self.sess = new_session(task)
        self.b = min(batch_size, len(data))
        s = task.image_size
        self.sess.Resize({"data": (self.b, 1, s, s), "label": (self.b,)})

    def __call__(self, params: Mapping[str, np.ndarray]) -> Dict[str, float]:
        sess, data = self.sess, self.data
        check_parameters(sess.get_parameters(), params, "server")
        sess.set_parameters({k: np.ascontiguousarray(v, np.float32) for k, v in params.items()})
        sess.Eval()
        correct, nll, n = 0, 0.0, len(data)
        s = self.task.image_size
        for start in range(0, n, self.b):
            x, y = data.x[start:start + self.b], data.y[start:start + self.b]
            if len(y) != self.b:
                sess.Resize({"data": (len(y), 1, s, s), "label": (len(y),)})
            logits = sess.RunGraph({"data": x})["output"].astype(np.float64)
            if len(y) != self.b:
                sess.Resize({"data": (self.b, 1, s, s), "label": (self.b,)})
            z = logits - logits.max(1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(1, keepdims=True))
            nll -= float(logp[np.arange(len(y)), y].sum())
            correct += int((logits.argmax(1) == y).sum())
        return {"accuracy": correct / n, "loss": nll / n}


def mnist_arrays(root: str, train: bool, task: Task, limit: Optional[int] = None):
    """(uint8 images [N, 28, 28], float32 images [N, 1, S, S], int64 labels) of a split."""
    from ..data import MnistDataset

    ds = MnistDataset(root, train=train, pad=(task.image_size - 28) // 2, limit=limit)
    x, y = ds.get_batch(np.arange(len(ds)))
    return ds.images, x, y
