"""Data pipeline throughput: one MNIST epoch through the DataLoader (batch 64), and how much
loading adds to a training epoch (issue: <= 10 % with num_workers >= 1)."""
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import QUICK, median_seconds, record

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_mnist_loader_epoch(benchmark, workers):
    from edgetrain.data import DataLoader, MnistDataset

    ds = MnistDataset(str(ROOT / "data" / "mnist"), train=True, limit=6400 if QUICK else None)
    loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=workers, seed=0)
    benchmark.pedantic(lambda: sum(len(y) for _, y in loader), rounds=1 if QUICK else 5,
                       iterations=1)
    s = median_seconds(benchmark)
    if s:
        record(f"mnist loader epoch b64 w{workers}", "edgetrain", s)


def test_loading_overhead_in_a_training_epoch(benchmark):
    """Epoch time with the loader (1 worker) vs the same steps on pre-made batches."""
    import edgetrain as et
    from edgetrain import nn, optim
    from edgetrain.data import DataLoader, MnistDataset
    from edgetrain.models import LeNet

    ds = MnistDataset(str(ROOT / "data" / "mnist"), train=True, limit=1280 if QUICK else None)
    loader = DataLoader(ds, batch_size=64, shuffle=True, drop_last=True, num_workers=1, seed=0)
    et.manual_seed(0)
    model = LeNet()
    sess = et.TrainSession.from_module(
        model, inputs={"data": (64, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((64,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4),
        threads=2)
    sess.Train()
    batches = list(loader)

    def with_loader():
        for x, y in loader:
            sess.RunGraph({"data": x, "label": y})

    def premade():
        for x, y in batches:
            sess.RunGraph({"data": x, "label": y})

    premade()  # warm up
    t = []
    for fn in (premade, with_loader, premade, with_loader):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    base, loaded = min(t[0], t[2]), min(t[1], t[3])
    benchmark.extra_info["loading_overhead_pct"] = 100 * (loaded / base - 1)
    record("mnist epoch: loader overhead %", "edgetrain_pct", round(100 * (loaded / base - 1), 1))
    benchmark.pedantic(with_loader, rounds=1, iterations=1)
