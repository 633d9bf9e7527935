"""Datasets: the ``(inputs, targets)`` contract, in-memory arrays, subsets and transformed views.

A dataset answers ``len(ds)`` and ``ds[i] -> (inputs, targets)``; each side is one array (or
scalar) or a tuple of them. A dataset may also implement the batch fast path
``get_batch(indices, rng=None) -> (inputs, targets)`` returning arrays already stacked along a new
first axis; :class:`~edgetrain.data.DataLoader` then calls it once per batch instead of calling
``__getitem__`` once per sample. ``rng`` is the loader's per-batch :class:`numpy.random.Generator`
for random transforms (accepting it is optional).
"""
from __future__ import annotations

import inspect
import os
import stat
from typing import Callable, Optional, Sequence

import numpy as np

from .collate import collate


class DataError(ValueError):
    """A data file or folder is missing, truncated or malformed. The message names the path."""


def check_regular_file(path: str, what: str = "file") -> None:
    """Raise :class:`DataError` unless ``path`` is a regular file (or a link to one): a FIFO or a
    device would block or never end when read."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except (OSError, ValueError) as e:  # ValueError: an embedded NUL
        raise DataError(f"{path!r}: cannot open {what} ({getattr(e, 'strerror', None) or e})") \
            from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: not a regular file (a FIFO, socket or device); "
                        f"refusing to read it as a {what}")


class Dataset:
    """Base class: implement ``__len__`` and ``__getitem__`` (and optionally ``get_batch``)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int):
        raise NotImplementedError


def check_index(index, n: int) -> int:
    """Return ``index`` as a non-negative int in ``[0, n)`` (negative counts from the end)."""
    i = int(index)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"index {index} out of range for a dataset of {n} samples")
    return i


def check_indices(indices, n: int) -> np.ndarray:
    """Return ``indices`` as an int64 array, each in ``[0, n)``."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if not idx.size:
        return idx
    lo, hi = idx.min(), idx.max()
    if lo < -n or hi >= n:
        raise IndexError(f"batch indices out of range for a dataset of {n} samples")
    return np.where(idx < 0, idx + n, idx) if lo < 0 else idx.copy()


def accepts_rng(get_batch: Callable) -> bool:
    """True if a ``get_batch`` callable takes an ``rng`` argument."""
    try:
        params = inspect.signature(get_batch).parameters
    except (TypeError, ValueError):
        return False
    return "rng" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def call_get_batch(dataset, indices, rng):
    """Call ``dataset.get_batch`` with ``rng`` if it takes one."""
    if accepts_rng(dataset.get_batch):
        return dataset.get_batch(indices, rng=rng)
    return dataset.get_batch(indices)


class TensorDataset(Dataset):
    """Samples are rows of equally long arrays: ``TensorDataset(x, y)[i] == (x[i], y[i])``.

    With one array the sample is that array's row alone; with more than two, inputs are all but the
    last array (a tuple) and the target is the last.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = tuple(np.asarray(a) for a in arrays)
        n = len(self.arrays[0])
        for k, a in enumerate(self.arrays):
            if a.ndim == 0 or len(a) != n:
                raise ValueError(f"TensorDataset: array {k} has {len(a) if a.ndim else 0} rows, "
                                 f"array 0 has {n}")

    def __len__(self) -> int:
        return len(self.arrays[0])

    def _pack(self, parts):
        if len(parts) == 1:
            return parts[0]
        if len(parts) == 2:
            return parts[0], parts[1]
        return tuple(parts[:-1]), parts[-1]

    def __getitem__(self, index):
        i = check_index(index, len(self))
        return self._pack([a[i] for a in self.arrays])

    def get_batch(self, indices):
        idx = check_indices(indices, len(self))
        return self._pack([np.ascontiguousarray(a[idx]) for a in self.arrays])


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order (keeps the batch fast path)."""

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = check_indices(indices, len(dataset))
        if hasattr(dataset, "get_batch"):  # keep the fast path only when the wrapped one has it
            self.get_batch = self._get_batch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[check_index(index, len(self))])]

    def _get_batch(self, indices, rng=None):
        return call_get_batch(self.dataset, self.indices[check_indices(indices, len(self))], rng)


class TransformDataset(Dataset):
    """``dataset`` with ``transform`` applied to each sample's inputs (and ``target_transform`` to
    its target).

    Transforms are called as ``t(x, rng)`` (see :mod:`edgetrain.data.transforms`). Through a
    :class:`DataLoader` the ``rng`` is the loader's per-batch generator, so random augmentation is
    reproducible for a seed whatever the number of workers; indexing the dataset directly uses the
    dataset's own generator (``seed``).
    """

    def __init__(self, dataset, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None, seed: Optional[int] = None):
        self.dataset = dataset
        self.transform = transform
        self.target_transform = target_transform
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        x, y = self.dataset[index]
        if self.transform is not None:
            x = _apply(self.transform, x, self._rng)
        if self.target_transform is not None:
            y = _apply(self.target_transform, y, self._rng)
        return x, y

    def get_batch(self, indices, rng=None):
        rng = self._rng if rng is None else rng
        if hasattr(self.dataset, "get_batch"):
            x, y = call_get_batch(self.dataset, indices, rng)
        else:
            x, y = collate([self.dataset[int(i)] for i in np.asarray(indices).reshape(-1)])
        if self.transform is not None:
            x = _apply_batch(self.transform, x, rng)
        if self.target_transform is not None:
            y = _apply_batch(self.target_transform, y, rng)
        return x, y


def _apply(transform, x, rng):
    from .transforms import Transform
    if isinstance(transform, Transform):
        return transform(x, rng)
    return transform(x)


def _apply_batch(transform, xb, rng):
    from .transforms import Transform
    if isinstance(transform, Transform):
        return transform.apply_batch(xb, rng)
    return np.stack([np.asarray(transform(x)) for x in xb])
