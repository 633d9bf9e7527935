"""Stacking samples into batches with the loader's dtypes (below both datasets and the
loader; imports neither)."""
from __future__ import annotations

from typing import Any

import numpy as np


def describe(x: Any) -> str:
    """A short description of a sample component for error messages."""
    if isinstance(x, np.ndarray):
        return f"array{list(x.shape)} {x.dtype}"
    return type(x).__name__


def _stack(items, where: str) -> np.ndarray:
    first = np.asarray(items[0])
    for k, it in enumerate(items[1:], 1):
        if np.shape(it) != first.shape:
            raise ValueError(f"DataLoader: cannot stack {where}: sample 0 is {describe(first)}, "
                             f"sample {k} is {describe(np.asarray(it))}")
    return np.stack([np.asarray(it) for it in items])


def _collate_part(items, where: str):
    first = items[0]
    if isinstance(first, (tuple, list)):
        return tuple(_collate_part([it[k] for it in items], f"{where}[{k}]")
                     for k in range(len(first)))
    return _stack(items, where)


def _as_inputs(x):
    if isinstance(x, tuple):
        return tuple(_as_inputs(v) for v in x)
    if x.dtype == np.float32:
        return np.ascontiguousarray(x)
    if x.dtype.kind in "fub":
        return np.ascontiguousarray(x, dtype=np.float32)
    return np.ascontiguousarray(x)


def _as_targets(y):
    if isinstance(y, tuple):
        return tuple(_as_targets(v) for v in y)
    if y.dtype.kind in "iub":
        return np.ascontiguousarray(y, dtype=np.int64)
    if y.dtype.kind == "f":
        return np.ascontiguousarray(y, dtype=np.float32)
    return np.ascontiguousarray(y)


def to_batch_arrays(batch):
    """Give a stacked batch the loader's dtypes: inputs float32 (from floating, unsigned or bool
    data; signed integer inputs such as token ids are kept), integer targets int64, float targets
    float32; all C-contiguous."""
    if isinstance(batch, tuple) and len(batch) == 2:
        return _as_inputs(batch[0]), _as_targets(batch[1])
    if isinstance(batch, tuple):
        return tuple(_as_inputs(v) for v in batch)
    return _as_inputs(batch)


def collate(samples):
    """Stack a list of samples (each an array, or a tuple of arrays / nested tuples) into one
    batch with the loader's dtypes."""
    if not samples:
        raise ValueError("DataLoader: empty batch")
    return to_batch_arrays(_collate_part(list(samples), "sample"))
