"""MNIST from its IDX files (gzipped or raw), checked byte for byte before use.

Accepted layouts (first match wins), for ``train`` and ``t10k`` files alike::

    root/train-images-idx3-ubyte[.gz]        (the original distribution, flat)
    root/train/train-images-idx3-ubyte[.gz]  (MindSpore's MNIST_Data/train, MNIST_Data/test)
    root/MNIST/raw/train-images-idx3-ubyte   (torchvision)

The ``-idx3-ubyte`` / ``.idx3-ubyte`` spellings are both accepted. Images stay uint8 in memory and
are converted per batch through a 256-entry lookup table (scale to [0, 1], then normalise); a
batch is gathered and converted in one pass (``_batch.lut_gather_u8``, without the GIL).
"""
from __future__ import annotations

import gzip
import os
import zlib
from typing import Optional, Tuple

import numpy as np

from .dataset import DataError, Dataset, check_index, check_indices, check_regular_file

try:
    from ._batch import lut_gather_u8
except ImportError:  # extensions not built (a data-prep machine): numpy's path, the same values
    lut_gather_u8 = None

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dims
LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dim

# IDX element type byte -> big-endian numpy dtype
_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


# Refuse IDX files whose header announces more data than this (MNIST's largest file is 47 MB).
MAX_IDX_BYTES = 1 << 31


def _open_idx(path: str):
    """Open ``path`` for reading, through gzip if it starts with the gzip magic."""
    check_regular_file(path, "IDX file")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if f.read(2) == b"\x1f\x8b":  # gzip magic: decompress whatever the file is called
        f.seek(0)
        return gzip.GzipFile(fileobj=f, mode="rb"), f
    f.seek(0)
    return f, f


def _read_at_most(stream, n: int, path: str) -> bytes:
    """Up to ``n`` bytes; a gzip stream is decompressed no further than that."""
    try:
        return stream.read(n)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None


def read_idx(path: str, expect_magic: Optional[int] = None,
             max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read one IDX file (gzipped or raw) into an array, checking the header against the length.

    The header is read first; no more than the data size it declares (plus one byte, to detect
    trailing data) is ever read or decompressed, so a gzip bomb costs nothing. Raises
    :class:`DataError` naming ``path`` for a missing file, a bad magic number, a short header, a
    declared size above ``max_bytes``, or a data length that does not match the header.
    """
    stream, raw = _open_idx(path)
    with raw, stream:
        head = _read_at_most(stream, 4, path)
        if len(head) < 4:
            raise DataError(f"{path}: too short for an IDX header ({len(head)} bytes)")
        magic = int.from_bytes(head, "big")
        if expect_magic is not None and magic != expect_magic:
            raise DataError(f"{path}: bad magic number {magic} (0x{magic:08x}), expected "
                            f"{expect_magic} (0x{expect_magic:08x}); not an IDX file of this kind")
        zero, type_code, ndim = head[0:2], head[2], head[3]
        if zero != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
            raise DataError(f"{path}: bad magic number 0x{magic:08x}; not an IDX file")
        dim_bytes = _read_at_most(stream, 4 * ndim, path)
        if len(dim_bytes) < 4 * ndim:
            raise DataError(f"{path}: truncated header: {4 + len(dim_bytes)} bytes, an IDX file "
                            f"with {ndim} dimensions needs {4 + 4 * ndim}")
        dims = tuple(int.from_bytes(dim_bytes[4 * k:4 * k + 4], "big") for k in range(ndim))
        dtype = _IDX_DTYPES[type_code]
        expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
        shape = "x".join(map(str, dims))
        if expected > max_bytes:
            raise DataError(f"{path}: header announces {shape} ({expected} data bytes), more "
                            f"than the limit of {max_bytes}")
        data = _read_at_most(stream, expected + 1, path)
    got = len(data)
    if got < expected:
        raise DataError(f"{path}: truncated: header says {shape} ({expected} data bytes) but "
                        f"the file has {got}")
    if got > expected:
        raise DataError(f"{path}: unexpected bytes after the {shape} data the header announces")
    arr = np.frombuffer(data, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


_SUBDIR = {"train": "train", "t10k": "test"}


def find_mnist_file(root: str, prefix: str, kind: str) -> str:
    """Locate ``<prefix>-<kind>`` (prefix ``train``/``t10k``, kind ``images-idx3-ubyte`` or
    ``labels-idx1-ubyte``) under ``root``; raise :class:`DataError` listing where it looked."""
    if not os.path.isdir(root):
        raise DataError(f"{root}: MNIST data folder not found")
    dotted = kind.replace("-idx", ".idx")
    names = [f"{prefix}-{kind}", f"{prefix}-{dotted}"]
    folders = [root, os.path.join(root, _SUBDIR[prefix]), os.path.join(root, "MNIST", "raw")]
    tried = []
    for folder in folders:
        for name in names:
            for suffix in (".gz", ""):
                path = os.path.join(folder, name + suffix)
                if os.path.exists(path):
                    return path
            tried.append(os.path.join(folder, name + "[.gz]"))
    raise DataError(f"{os.path.join(root, names[0])}[.gz]: MNIST file not found (looked for "
                    f"{', '.join(tried[:4])}, ...)")


def load_mnist(root: str, train: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 [N, 28, 28], labels uint8 [N])`` of the train or test split."""
    prefix = "train" if train else "t10k"
    img_path = find_mnist_file(root, prefix, "images-idx3-ubyte")
    lbl_path = find_mnist_file(root, prefix, "labels-idx1-ubyte")
    images = read_idx(img_path, IMAGES_MAGIC)
    labels = read_idx(lbl_path, LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, "
                        f"MNIST images are 28x28")
    if len(images) != len(labels):
        raise DataError(f"{lbl_path}: {len(labels)} labels but {img_path} has {len(images)} images")
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{lbl_path}: label {int(labels[bad])} at index {bad} is not a digit 0-9")
    return images, labels


class MnistDataset(Dataset):
    """The MNIST train (60,000) or test (10,000) split.

    A sample is ``(float32 [1, S, S], int64 label)`` with ``S = 28 + 2 * pad``: pixels scaled to
    [0, 1] and, if ``normalize``, standardised with ``mean`` / ``std`` (default 0.1307 / 0.3081, the
    training-set statistics). ``pad`` adds background border pixels (``pad=2`` gives LeNet-5's
    32x32). ``limit`` keeps only the first ``limit`` samples. ``get_batch`` is the vectorised path
    the DataLoader uses.
    """

    num_classes = 10

    def __init__(self, root: str, train: bool = True, normalize: bool = True,
                 mean: float = MNIST_MEAN, std: float = MNIST_STD, pad: int = 0,
                 limit: Optional[int] = None):
        self.root = root
        self.train = train
        images, labels = load_mnist(root, train)
        if limit is not None:
            images, labels = images[:int(limit)], labels[:int(limit)]
        self.images = images  # uint8 [N, 28, 28]
        self.labels = labels  # uint8 [N]
        self.pad = int(pad)
        if self.pad < 0:
            raise ValueError(f"MnistDataset: pad must be >= 0, got {pad}")
        if std == 0:
            raise ValueError("MnistDataset: std must be non-zero")
        self.normalize = normalize
        self.mean, self.std = (float(mean), float(std)) if normalize else (0.0, 1.0)
        self._lut = ((np.arange(256, dtype=np.float64) / 255.0 - self.mean) / self.std
                     ).astype(np.float32)

    @property
    def image_size(self) -> int:
        return 28 + 2 * self.pad

    def __len__(self) -> int:
        return len(self.labels)

    def _convert(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [B, 28, 28] -> float32 [B, 1, S, S] through the lookup table."""
        if not self.pad:
            return self._lut[pixels].reshape(len(pixels), 1, 28, 28)
        p, s = self.pad, self.image_size
        out = np.empty((len(pixels), 1, s, s), dtype=np.float32)
        out.fill(self._lut[0])  # background
        out[:, 0, p:p + 28, p:p + 28] = self._lut[pixels]
        return out

    def __getitem__(self, index):
        i = check_index(index, len(self))
        return self._convert(self.images[i:i + 1])[0], np.int64(self.labels[i])

    def get_batch(self, indices):
        idx = check_indices(indices, len(self))
        if lut_gather_u8 is None or self.pad or not self.images.flags.c_contiguous:
            x = self._convert(self.images[idx])
        else:  # the same values as _convert, in one pass
            x = lut_gather_u8(self.images, np.ascontiguousarray(idx), self._lut,
                              np.empty((len(idx), 1, 28, 28), dtype=np.float32))
        return x, self.labels[idx].astype(np.int64)
