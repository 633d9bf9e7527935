"""Split a labelled data set among simulated clients (pure numpy, deterministic for a seed).

Three schemes, each returning one sorted index array per client; together they are disjoint
and cover every sample:

- ``iid``: a seeded shuffle cut into near-equal parts;
- ``dirichlet:ALPHA``: for every class, the class's samples are split among the clients in
  proportions drawn from Dirichlet(ALPHA) (small ALPHA = strong label skew), the usual
  non-IID benchmark of the federated learning literature;
- ``classes:K``: every client holds samples of exactly K distinct classes; class ``c`` is cut
  into near-equal shards among the clients whose slots name it. Slots are assigned round-robin
  over a seeded permutation of the classes, so every class is used when
  ``clients * K >= classes``; otherwise the classes left over go to the clients with the
  fewest samples (which then hold more than K), so the split still covers the set.

:func:`parse_partition` reads the command line's ``iid`` / ``dirichlet:0.5`` / ``classes:2``.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from ..errors import InvalidArgumentError

SCHEMES = ("iid", "dirichlet", "classes")


def parse_partition(spec: str) -> Tuple[str, float]:
    """``"iid"``, ``"dirichlet:0.5"`` or ``"classes:2"`` -> (scheme, parameter)."""
    name, _, arg = str(spec).partition(":")
    name = name.strip().lower()
    if name not in SCHEMES:
        raise InvalidArgumentError(f"unknown partition {spec!r}: use iid, dirichlet:ALPHA "
                                   "or classes:K")
    if name == "iid":
        if arg:
            raise InvalidArgumentError(f"partition 'iid' takes no parameter, got {spec!r}")
        return name, 0.0
    try:
        value = float(arg)
    except ValueError:
        raise InvalidArgumentError(f"partition {spec!r}: {name} needs a number after ':'") \
            from None
    if name == "dirichlet" and not (np.isfinite(value) and value > 0):
        raise InvalidArgumentError(f"partition {spec!r}: alpha must be a number > 0")
    if name == "classes" and (value != int(value) or value < 1):
        raise InvalidArgumentError(f"partition {spec!r}: K must be an integer >= 1")
    return name, value


def partition(labels: Sequence[int], num_clients: int, spec: str = "iid",
              seed: int = 0) -> List[np.ndarray]:
    """Indices of each client's samples under ``spec`` (see the module note)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InvalidArgumentError(f"labels must be one-dimensional, got shape {labels.shape}")
    num_clients = int(num_clients)
    if num_clients < 1:
        raise InvalidArgumentError(f"the number of clients must be >= 1, got {num_clients}")
    if len(labels) < num_clients:
        raise InvalidArgumentError(f"{len(labels)} samples cannot be split among "
                                   f"{num_clients} clients")
    name, value = parse_partition(spec)
    rng = np.random.default_rng(seed)
    if name == "iid":
        parts = np.array_split(rng.permutation(len(labels)), num_clients)
    elif name == "dirichlet":
        parts = _dirichlet(labels, num_clients, value, rng)
    else:
        parts = _k_classes(labels, num_clients, int(value), rng)
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _dirichlet(labels, n, alpha, rng) -> List[np.ndarray]:
    parts: List[list] = [[] for _ in range(n)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        share = rng.dirichlet(np.full(n, alpha))
        cuts = (np.cumsum(share)[:-1] * len(idx)).astype(np.int64)
        for k, piece in enumerate(np.split(idx, cuts)):
            parts[k].extend(piece.tolist())
    # a client left without samples takes one from the largest client (every client trains)
    for k in range(n):
        if not parts[k]:
            donor = max(range(n), key=lambda j: len(parts[j]))
            parts[k].append(parts[donor].pop())
    return [np.array(p, dtype=np.int64) for p in parts]


def _k_classes(labels, n, k, rng) -> List[np.ndarray]:
    classes = np.unique(labels)
    if k > len(classes):
        raise InvalidArgumentError(f"classes:{k}: the data has only {len(classes)} classes")
    # slot j of client i gets class order[(i * k + j) % C]: round-robin over a permutation,
    # so a client's K classes are distinct and every class is used when n * k >= C
    order = rng.permutation(classes)
    owners = {c: [] for c in classes}
    for i in range(n):
        for j in range(k):
            owners[order[(i * k + j) % len(classes)]].append(i)
    parts: List[list] = [[] for _ in range(n)]
    for c in classes:
        idx = rng.permutation(np.flatnonzero(labels == c))
        if not owners[c]:  # fewer slots than classes: the class goes to the client with least data
            owners[c] = [min(range(n), key=lambda i: len(parts[i]))]
        for client, piece in zip(owners[c], np.array_split(idx, len(owners[c]))):
            parts[client].extend(piece.tolist())
    return [np.array(p, dtype=np.int64) for p in parts]
