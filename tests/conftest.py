"""Shared test helpers: MNIST location and small deterministic batches."""
import gzip
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIRS = [ROOT / "data" / "mnist", ROOT.parent / "shared" / "data" / "mnist"]


def mnist_dir() -> Path:
    for d in MNIST_DIRS:
        if (d / "train-images-idx3-ubyte.gz").exists():
            return d
    pytest.fail("MNIST not found in data/mnist (the repository's copy)")


def _idx(path):
    b = gzip.open(path).read()
    if int.from_bytes(b[:4], "big") == 2051:
        return np.frombuffer(b, np.uint8, offset=16).reshape(-1, 28, 28)
    return np.frombuffer(b, np.uint8, offset=8)


_CACHE = {}


def mnist_arrays(train=True):
    """(images float32 [N,1,28,28] normalised like MnistDataset, labels int64 [N])."""
    key = bool(train)
    if key not in _CACHE:
        d = mnist_dir()
        prefix = "train" if train else "t10k"
        x = _idx(d / f"{prefix}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
        x = ((x - 0.1307) / 0.3081)[:, None, :, :].astype(np.float32)
        y = _idx(d / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
        _CACHE[key] = (x, y)
    return _CACHE[key]


@pytest.fixture
def mnist_batches():
    """Function (batch, count) -> list of (x, y) consecutive real MNIST training batches."""
    def make(batch, count, start=0):
        x, y = mnist_arrays(True)
        return [(x[start + i * batch:start + (i + 1) * batch],
                 y[start + i * batch:start + (i + 1) * batch]) for i in range(count)]
    return make
