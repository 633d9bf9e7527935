"""ImageDataset: an image folder plus a list file, as MNN's ImageDataset reads them.

The list file has one sample per line, ``relative/path.jpg label[,label...]`` (the path may
contain spaces; the labels are the last whitespace-separated field). Blank lines and lines
starting with ``#`` are skipped. Every problem is reported as a :class:`DataError` naming the list
file, the line number and the image path.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .dataset import DataError, Dataset, check_index

_CHANNELS = {"gray": 1, "rgb": 3, "bgr": 3}


def _per_channel(v, channels: int, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, channels)
    if a.size != channels:
        raise ValueError(f"ImageDataset: {name} has {a.size} values for {channels} channels")
    return a.reshape(channels, 1, 1)


class ImageDataset(Dataset):
    """Images under ``root`` listed in ``list_file``.

    A sample is ``(float32 [C, H, W], label)``: C is 1 for ``color="gray"``, 3 for ``"rgb"`` and
    ``"bgr"``; images are resized to ``size=(h, w)`` (bilinear) unless ``size`` is None. Pixel
    values become ``(pixel - mean) * scale`` per channel (defaults: mean 0, scale 1/255). The label
    is an int64 scalar for a one-label line and an int64 vector for a multi-label line. Labels are
    checked against ``num_classes`` if given. ``in_memory=True`` decodes every image once at
    construction (and reports unreadable images then); otherwise images are read when needed.
    """

    def __init__(self, root: str, list_file: str, color: str = "rgb",
                 size: Optional[Tuple[int, int]] = None, scale: Sequence[float] = (1 / 255.0,),
                 mean: Sequence[float] = (0.0,), in_memory: bool = False,
                 num_classes: Optional[int] = None):
        try:
            from PIL import Image  # noqa: F401
        except ImportError:  # pragma: no cover - Pillow is a dependency
            raise ImportError("ImageDataset needs Pillow (pip install Pillow)") from None
        if color not in _CHANNELS:
            raise ValueError(f"ImageDataset: color must be one of {sorted(_CHANNELS)}, got {color!r}")
        self.root = root
        self.list_file = list_file
        self.color = color
        self.channels = _CHANNELS[color]
        if size is not None:
            size = (int(size[0]), int(size[1]))
            if min(size) < 1:
                raise ValueError(f"ImageDataset: bad size {size}")
        self.size = size
        self._scale = _per_channel(scale, self.channels, "scale")
        self._mean = _per_channel(mean, self.channels, "mean")
        self.num_classes = num_classes
        self.entries: List[Tuple[str, int, np.ndarray]] = self._parse_list()
        self._cache: Optional[List[np.ndarray]] = None
        if in_memory:
            self._cache = [self._decode(k) for k in range(len(self.entries))]

    def _where(self, lineno: int, path: Optional[str] = None) -> str:
        where = f"{self.list_file}:{lineno}"
        return f"{where}: {path}" if path is not None else where

    def _parse_list(self):
        try:
            with open(self.list_file, "r", encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            raise DataError(f"{self.list_file}: list file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{self.list_file}: cannot read list file ({e})") from None
        if not os.path.isdir(self.root):
            raise DataError(f"{self.root}: image folder not found (list file {self.list_file})")
        entries = []
        for lineno, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.rsplit(None, 1)
            if len(parts) != 2:
                raise DataError(f"{self._where(lineno, text)}: missing label "
                                f"(expected 'path label[,label...]')")
            rel, label_text = parts
            labels = []
            for tok in label_text.split(","):
                try:
                    value = int(tok)
                except ValueError:
                    raise DataError(f"{self._where(lineno, rel)}: bad label {label_text!r} "
                                    f"(expected integers separated by commas)") from None
                if value < 0 or (self.num_classes is not None and value >= self.num_classes):
                    limit = f"0..{self.num_classes - 1}" if self.num_classes else ">= 0"
                    raise DataError(f"{self._where(lineno, rel)}: label {value} out of range "
                                    f"({limit})")
                labels.append(value)
            path = os.path.join(self.root, rel)
            if not os.path.isfile(path):
                raise DataError(f"{self._where(lineno, rel)}: image not found ({path})")
            label = np.int64(labels[0]) if len(labels) == 1 else np.asarray(labels, np.int64)
            entries.append((path, lineno, label))
        if not entries:
            raise DataError(f"{self.list_file}: no samples listed")
        return entries

    def _decode(self, k: int) -> np.ndarray:
        """Read, convert and resize image ``k``; return uint8 [C, H, W] in the output channel
        order."""
        from PIL import Image, UnidentifiedImageError
        path, lineno, _ = self.entries[k]
        try:
            with Image.open(path) as im:
                im = im.convert("L" if self.color == "gray" else "RGB")
                if self.size is not None and im.size != (self.size[1], self.size[0]):
                    im = im.resize((self.size[1], self.size[0]), Image.BILINEAR)
                pixels = np.asarray(im, dtype=np.uint8)
        except FileNotFoundError:
            raise DataError(f"{self._where(lineno, path)}: image not found") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise DataError(f"{self._where(lineno, path)}: unreadable image ({e})") from None
        if pixels.ndim == 2:
            return pixels[None]
        chw = pixels.transpose(2, 0, 1)
        return np.ascontiguousarray(chw[::-1] if self.color == "bgr" else chw)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index):
        k = check_index(index, len(self))
        pixels = self._cache[k] if self._cache is not None else self._decode(k)
        x = (pixels.astype(np.float32) - self._mean) * self._scale
        return x.astype(np.float32, copy=False), self.entries[k][2]
