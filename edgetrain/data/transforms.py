"""Sample transforms, vectorised over a batch.

A transform is called on one sample's inputs, ``t(x, rng)``, and on a stacked batch,
``t.apply_batch(xb, rng)`` (the path :class:`~edgetrain.data.DataLoader` uses through
:class:`~edgetrain.data.TransformDataset`). Image samples are ``[C, H, W]``, batches
``[B, C, H, W]``. Random transforms draw only from the ``rng`` they are given — the loader's
per-batch :class:`numpy.random.Generator` — so a seed fixes the augmentation whatever the number of
worker threads. ``rng=None`` uses a fresh unseeded generator.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _rng(rng: Optional[np.random.Generator]) -> np.random.Generator:
    return np.random.default_rng() if rng is None else rng


def _pair(v: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def _channel_vector(v, name: str) -> np.ndarray:
    """Per-channel constants shaped to broadcast over ``[..., C, H, W]`` (a scalar stays 0-d)."""
    a = np.asarray(v, dtype=np.float32)
    if a.ndim > 1:
        raise ValueError(f"{name} must be a number or a per-channel sequence, got shape {a.shape}")
    return a.reshape(-1, 1, 1) if a.ndim == 1 and a.size > 1 else a.reshape(())


class Transform:
    """Base class. Subclasses implement ``__call__(x, rng=None)``; ``apply_batch`` defaults to
    calling it sample by sample and should be overridden with a vectorised version."""

    def __call__(self, x: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        raise NotImplementedError

    def apply_batch(self, xb: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        rng = _rng(rng)
        return np.stack([np.asarray(self(x, rng)) for x in xb])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply ``transforms`` in order."""

    def __init__(self, transforms: Iterable[Callable]):
        self.transforms = [t if isinstance(t, Transform) else Lambda(t) for t in transforms]

    def __call__(self, x, rng=None):
        rng = _rng(rng)
        for t in self.transforms:
            x = t(x, rng)
        return x

    def apply_batch(self, xb, rng=None):
        rng = _rng(rng)
        for t in self.transforms:
            xb = t.apply_batch(xb, rng)
        return xb


class Lambda(Transform):
    """Wrap a function ``fn(x) -> x``. With ``batched=True`` ``fn`` is applied to a whole batch at
    once (it must then work on ``[B, ...]``); otherwise sample by sample."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], batched: bool = False):
        self.fn = fn
        self.batched = batched

    def __call__(self, x, rng=None):
        return self.fn(x)

    def apply_batch(self, xb, rng=None):
        if self.batched:
            return self.fn(xb)
        return np.stack([np.asarray(self.fn(x)) for x in xb])


class ToFloat(Transform):
    """Convert to float32 and multiply by ``scale``. ``scale=None`` divides uint8 input by 255 (to
    [0, 1]) and leaves other dtypes unscaled."""

    def __init__(self, scale: Optional[float] = None):
        self.scale = scale

    def __call__(self, x, rng=None):
        x = np.asarray(x)
        scale = self.scale
        if scale is None:
            scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
        out = x.astype(np.float32)
        if scale != 1.0:
            out *= np.float32(scale)
        return out

    apply_batch = __call__  # elementwise


class Normalize(Transform):
    """``(x - mean) / std`` per channel (channel axis -3: ``[C, H, W]`` or ``[B, C, H, W]``)."""

    def __init__(self, mean, std):
        self.mean = mean
        self.std = std
        self._mean = _channel_vector(mean, "mean")
        std_v = _channel_vector(std, "std")
        if np.any(std_v == 0):
            raise ValueError("Normalize: std must be non-zero")
        self._inv_std = (1.0 / std_v).astype(np.float32)

    def __call__(self, x, rng=None):
        x = np.asarray(x, dtype=np.float32)
        return ((x - self._mean) * self._inv_std).astype(np.float32, copy=False)

    apply_batch = __call__


class Pad(Transform):
    """Pad the last two axes by ``padding`` (int, (ph, pw), or (top, left, bottom, right)) with
    ``fill``."""

    def __init__(self, padding, fill: float = 0):
        if isinstance(padding, (int, np.integer)):
            padding = (padding,) * 4
        elif len(padding) == 2:
            padding = (padding[0], padding[1], padding[0], padding[1])
        self.padding = tuple(int(p) for p in padding)
        if len(self.padding) != 4 or min(self.padding) < 0:
            raise ValueError(f"Pad: bad padding {padding!r}")
        self.fill = fill

    def __call__(self, x, rng=None):
        x = np.asarray(x)
        t, l, b, r = self.padding
        widths = [(0, 0)] * (x.ndim - 2) + [(t, b), (l, r)]
        return np.pad(x, widths, mode="constant", constant_values=self.fill)

    apply_batch = __call__


class RandomCrop(Transform):
    """Pad by ``padding`` (filled with ``fill``) and crop a random ``size`` window."""

    def __init__(self, size, padding=0, fill: float = 0):
        self.size = _pair(size)
        self.padding = padding
        self.fill = fill
        self._pad = Pad(padding, fill) if padding else None

    def _offsets(self, h, w, n, rng):
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"RandomCrop: crop {ch}x{cw} larger than padded input {h}x{w}")
        return rng.integers(0, h - ch + 1, size=n), rng.integers(0, w - cw + 1, size=n)

    def __call__(self, x, rng=None):
        x = self._pad(x) if self._pad else np.asarray(x)
        oy, ox = self._offsets(x.shape[-2], x.shape[-1], 1, _rng(rng))
        ch, cw = self.size
        return np.ascontiguousarray(x[..., oy[0]:oy[0] + ch, ox[0]:ox[0] + cw])

    def apply_batch(self, xb, rng=None):
        xb = self._pad(xb) if self._pad else np.asarray(xb)
        n = xb.shape[0]
        oy, ox = self._offsets(xb.shape[-2], xb.shape[-1], n, _rng(rng))
        flat = xb.reshape(n, -1, xb.shape[-2], xb.shape[-1])  # [B, C', H, W]
        windows = sliding_window_view(flat, self.size, axis=(2, 3))  # [B, C', H', W', ch, cw]
        out = windows[np.arange(n), :, oy, ox]  # advanced indices first: [B, C', ch, cw]
        return np.ascontiguousarray(out.reshape(xb.shape[:-2] + self.size))


class RandomHorizontalFlip(Transform):
    """Mirror the last axis with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, x, rng=None):
        x = np.asarray(x)
        if _rng(rng).random() < self.p:
            return np.ascontiguousarray(x[..., ::-1])
        return x

    def apply_batch(self, xb, rng=None):
        xb = np.asarray(xb)
        flip = _rng(rng).random(xb.shape[0]) < self.p
        flip = flip.reshape((-1,) + (1,) * (xb.ndim - 1))
        return np.where(flip, xb[..., ::-1], xb)
