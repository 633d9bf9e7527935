"""Parameter initialisation (PyTorch's defaults) with one seedable numpy Generator.

``manual_seed(s)`` makes model construction reproducible, like ``torch.manual_seed`` (the
values differ from PyTorch's: load a PyTorch ``state_dict`` to get identical weights).
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

_rng = None  # created on first use: importing numpy.random costs ~5 MiB (it loads OpenSSL)


def manual_seed(seed: int) -> None:
    """Seed the generator used by every initialiser (and by layer constructors)."""
    global _rng
    _rng = np.random.default_rng(int(seed))


def generator() -> "np.random.Generator":
    global _rng
    if _rng is None:
        _rng = np.random.default_rng()
    return _rng


def _array(t) -> np.ndarray:
    """The numpy array behind a Parameter/Buffer (or the array itself)."""
    return t.data if hasattr(t, "data") and isinstance(t.data, np.ndarray) else t


def _fill(t, values: np.ndarray):
    arr = _array(t)
    arr[...] = values.astype(arr.dtype, copy=False)
    return t


def calculate_fan_in_and_fan_out(t) -> Tuple[int, int]:
    shape = _array(t).shape
    if len(shape) < 2:
        raise ValueError("fan in and fan out need a tensor with at least 2 dimensions, "
                         f"got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param=None) -> float:
    if nonlinearity in ("linear", "conv2d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def uniform_(t, a: float = 0.0, b: float = 1.0):
    return _fill(t, generator().uniform(a, b, size=_array(t).shape))


def normal_(t, mean: float = 0.0, std: float = 1.0):
    return _fill(t, generator().normal(mean, std, size=_array(t).shape))


def constant_(t, value: float):
    _array(t)[...] = value
    return t


def zeros_(t):
    return constant_(t, 0.0)


def ones_(t):
    return constant_(t, 1.0)


def _fan(t, mode: str) -> int:
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return fan_in if mode == "fan_in" else fan_out


def kaiming_uniform_(t, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu"):
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(t, mode))
    return uniform_(t, -bound, bound)


def kaiming_normal_(t, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    return normal_(t, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(t, mode)))


def xavier_uniform_(t, gain: float = 1.0):
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound)


def xavier_normal_(t, gain: float = 1.0):
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def default_weight_and_bias_(weight, bias=None) -> None:
    """PyTorch's default for Conv2d/Linear: kaiming_uniform_(a=sqrt(5)) for the weight,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = calculate_fan_in_and_fan_out(weight)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound)
