"""Samplers: the order in which a loader visits a dataset, one epoch at a time.

``sampler.indices(epoch)`` returns that epoch's order as an int64 array; it depends only on the
sampler's seed and ``epoch``, so a run can be resumed at any epoch. Iterating a sampler yields the
order of its current ``epoch`` (``set_epoch``), as PyTorch's samplers do.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    """The generator for (seed, epoch, stream): independent streams, stable across runs."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(stream)])


class Sampler:
    epoch = 0

    def __len__(self) -> int:
        raise NotImplementedError

    def indices(self, epoch: int = 0) -> np.ndarray:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices(self.epoch).tolist())


class SequentialSampler(Sampler):
    """0, 1, ..., n-1 every epoch."""

    def __init__(self, n: int):
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def indices(self, epoch: int = 0) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64)


class RandomSampler(Sampler):
    """A permutation of range(n), different each epoch, fixed by (seed, epoch)."""

    def __init__(self, n: int, seed: int = 0):
        self.n = int(n)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.n

    def indices(self, epoch: int = 0) -> np.ndarray:
        return epoch_rng(self.seed, epoch).permutation(self.n).astype(np.int64)


class SubsetRandomSampler(Sampler):
    """A permutation of the given indices, different each epoch, fixed by (seed, epoch)."""

    def __init__(self, indices: Sequence[int], seed: int = 0):
        self.subset = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.subset)

    def indices(self, epoch: int = 0) -> np.ndarray:
        return self.subset[epoch_rng(self.seed, epoch).permutation(len(self.subset))]
