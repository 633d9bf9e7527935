"""DataLoader: batches from a dataset, in order, optionally prefetched by worker threads.

Determinism: an epoch's order comes from the sampler's ``indices(epoch)`` and each batch's random
transforms from a generator seeded by ``(seed, epoch, batch number)``. Neither depends on which
thread builds a batch, so a seed gives the same batches with 0, 1 or 8 workers.

Workers are threads (numpy releases the GIL in its copies and arithmetic; the training step itself
runs in C without the GIL). They fetch up to ``num_workers * prefetch`` batches ahead; batches are
delivered in order. Stopping iteration early (``break``) cancels what is queued and joins the
threads; an exception in a worker is re-raised in the iterating thread.
"""
from __future__ import annotations

import collections
import concurrent.futures
from typing import Any, Iterator, Optional

import numpy as np

from .collate import collate, to_batch_arrays
from .dataset import accepts_rng
from .sampler import RandomSampler, Sampler, SequentialSampler, epoch_rng


class DataLoader:
    """Iterate ``dataset`` in batches of ``batch_size``.

    Each batch is ``(inputs, targets)`` stacked along a new first axis (inputs float32 ``[B, ...]``,
    integer labels int64 ``[B]``). The last partial batch is kept unless ``drop_last``. With
    ``shuffle`` (or a random ``sampler``) every epoch has a new order fixed by ``seed`` and the
    epoch number; iterating the loader again starts the next epoch (``epoch`` can be set to resume).
    If the dataset has ``get_batch(indices)`` it is used instead of one ``__getitem__`` per sample.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 num_workers: int = 0, seed: int = 0, sampler: Optional[Sampler] = None,
                 prefetch: int = 2):
        if int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if int(num_workers) < 0:
            raise ValueError(f"DataLoader: num_workers must be >= 0, got {num_workers}")
        if int(prefetch) < 1:
            raise ValueError(f"DataLoader: prefetch must be >= 1, got {prefetch}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: give either shuffle=True or a sampler, not both")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.prefetch = int(prefetch)
        if sampler is None:
            sampler = RandomSampler(len(dataset), seed) if shuffle else SequentialSampler(len(dataset))
        self.sampler = sampler
        self.epoch = 0
        get_batch = getattr(dataset, "get_batch", None)
        self._get_batch = get_batch
        self._batch_takes_rng = get_batch is not None and accepts_rng(get_batch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Samples per epoch (those in dropped partial batches included)."""
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter(loader)`` produce epoch ``epoch``."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        self.epoch += 1
        return self.iter_epoch(epoch)

    def batch_indices(self, epoch: int):
        """The list of index arrays, one per batch, of ``epoch``."""
        order = np.asarray(self.sampler.indices(epoch), dtype=np.int64)
        n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        return [order[i:i + self.batch_size] for i in range(0, stop, self.batch_size)]

    def load_batch(self, indices: np.ndarray, rng: Optional[np.random.Generator]):
        """Build one batch (runs in a worker thread when ``num_workers > 0``); ``rng`` is the
        batch's generator when the dataset's ``get_batch`` takes one, else None (unused)."""
        if self._get_batch is not None:
            if self._batch_takes_rng:
                batch = self._get_batch(indices, rng=rng)
            else:
                batch = self._get_batch(indices)
            return to_batch_arrays(batch)
        return collate([self.dataset[int(i)] for i in indices])

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Any]:
        """Batches of ``epoch`` from batch number ``start`` on (to resume inside an epoch); does
        not touch ``self.epoch``."""
        batches = self.batch_indices(epoch)
        jobs = [(b, batches[b]) for b in range(int(start), len(batches))]

        def rng_for(b):  # only a get_batch that takes one gets a generator (costly to make)
            return epoch_rng(self.seed, epoch, 1 + b) if self._batch_takes_rng else None

        if self.num_workers == 0:
            return (self.load_batch(idx, rng_for(b)) for b, idx in jobs)
        return self._threaded(jobs, rng_for)

    def _threaded(self, jobs, rng_for):
        pool = concurrent.futures.ThreadPoolExecutor(self.num_workers,
                                                     thread_name_prefix="edgetrain-loader")
        pending = collections.deque()
        depth = self.num_workers * self.prefetch
        todo = iter(jobs)

        def submit_next():
            job = next(todo, None)
            if job is not None:
                b, idx = job
                pending.append((b, pool.submit(self.load_batch, idx, rng_for(b))))

        try:
            for _ in range(depth):
                submit_next()
            while pending:
                b, fut = pending.popleft()
                try:
                    batch = fut.result()
                except BaseException as e:
                    e.add_note(f"(raised in a DataLoader worker thread while loading batch {b})")
                    raise
                submit_next()
                yield batch
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
