"""The elementary traced operations behind the traced ``Tensor``'s operators and methods.

``x + y``, ``x @ w``, ``x.reshape(...)``, ``x.sum()``, ``x.relu()``... emit nodes through these
functions; :mod:`edgetrain.nn.functional` exposes the same ones under PyTorch's names. They sit
below :mod:`edgetrain.tracing` (which imports this module) and never import it: each takes the
tracer to emit into as its first argument (anything with ``as_tensor``, ``const`` and
``emit1``). Scalar operands of ``+ - * /`` become one ``affine`` node.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from . import ir
from .errors import InvalidArgumentError, UnsupportedError
from .ops import (ACT_RELU, ACT_SIGMOID, ACT_TANH, REDUCE_MEAN, REDUCE_SUM, RESHAPE_DIMS, UN_ABS,
                  UN_CLAMP, UN_ERF, UN_EXP, UN_LOG, UN_POW, UN_RSQRT, UN_SQRT)


class Dim(int):
    """A dimension read from a traced shape; remembers its position so that
    ``x.reshape(x.size(0), -1)`` keeps the batch dimension dynamic."""

    def __new__(cls, value: int, pos: int):
        obj = super().__new__(cls, value)
        obj.pos = pos
        return obj


def is_scalar(v) -> bool:
    if isinstance(v, (numbers.Number, np.generic)):
        return True
    return isinstance(v, np.ndarray) and v.ndim == 0


def axis(d: int, ndim: int, what: str = "dim") -> int:
    if not -ndim <= d < ndim:
        raise IndexError(f"{what} {d} out of range for a tensor of rank {ndim}")
    return d % ndim


# ------------------------------------------------------------------------------------
# elementwise arithmetic and matmul
# ------------------------------------------------------------------------------------
def affine(tr, input, alpha: float = 1.0, beta: float = 0.0):
    """alpha * x + beta."""
    return tr.emit1("affine", [input], alpha=float(alpha), beta=float(beta))


def add(tr, a, b):
    if is_scalar(b):
        return affine(tr, a, 1.0, float(b))
    if is_scalar(a):
        return affine(tr, b, 1.0, float(a))
    return tr.emit1("add", [a, b])


def sub(tr, a, b):
    if is_scalar(b):
        return affine(tr, a, 1.0, -float(b))
    if is_scalar(a):
        return affine(tr, b, -1.0, float(a))
    return tr.emit1("sub", [a, b])


def mul(tr, a, b):
    if is_scalar(b):
        return affine(tr, a, float(b), 0.0)
    if is_scalar(a):
        return affine(tr, b, float(a), 0.0)
    return tr.emit1("mul", [a, b])


def div(tr, a, b):
    if is_scalar(b):
        return affine(tr, a, 1.0 / float(b), 0.0)
    if is_scalar(a):
        a = tr.const(np.float32(a))
    return tr.emit1("div", [a, b])


def matmul(tr, a, b):
    """Matrix product of two 2-D tensors (matmul op), or batched [..., M, K] @ [..., K, N]
    with broadcast batch dims (bmm op)."""
    a, b = tr.as_tensor(a), tr.as_tensor(b)
    if a.ndim < 2 or b.ndim < 2:
        raise UnsupportedError(f"matmul of 1-D operands (shapes {tuple(a.shape)} and "
                               f"{tuple(b.shape)}) is not supported; reshape to 2-D")
    if a.ndim == 2 and b.ndim == 2:
        return tr.emit1("matmul", [a, b], trans_a=0, trans_b=0)
    return tr.emit1("bmm", [a, b], trans_a=0, trans_b=0)


# ------------------------------------------------------------------------------------
# shapes
# ------------------------------------------------------------------------------------
def reshape(tr, input, shape: Sequence[int]):
    """Reshape; one dim may be -1. Dims read from ``x.shape`` / ``x.size(d)`` at the same
    position stay dynamic (they follow the batch size after ``Resize``)."""
    x = tr.as_tensor(input)
    shape = tuple(shape)
    if len(shape) > ir.MAX_DIMS:
        raise ValueError(f"reshape to rank {len(shape)} > {ir.MAX_DIMS}")
    dims = []
    for i, d in enumerate(shape):
        if isinstance(d, Dim) and d.pos == i and i < x.ndim and x.shape[i] == d:
            dims.append(0)
        else:
            dims.append(int(d))
    kw = dict(zip(RESHAPE_DIMS, dims))
    return tr.emit1("reshape", [x], ndim=len(dims), **kw)


def flatten(tr, input, start_dim: int = 0, end_dim: int = -1):
    x = tr.as_tensor(input)
    nd = max(x.ndim, 1)
    s, e = axis(start_dim, nd, "start_dim"), axis(end_dim, nd, "end_dim")
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} > end_dim {end_dim}")
    if x.ndim == 0:
        return reshape(tr, x, [1])
    if s == e:
        return x
    dims = [0] * s + [-1] + [int(n) for n in x.shape[e + 1:]]
    kw = dict(zip(RESHAPE_DIMS, dims))
    return tr.emit1("reshape", [x], ndim=len(dims), **kw)


# ------------------------------------------------------------------------------------
# reductions
# ------------------------------------------------------------------------------------
def _axis_mask(x, dim) -> int:
    if dim is None:
        return 0
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    mask = 0
    for d in dims:
        mask |= 1 << axis(d, x.ndim)
    if mask == (1 << x.ndim) - 1:
        return 0
    return mask


def _reduce(tr, input, dim, keepdim: bool, mode: int):
    x = tr.as_tensor(input)
    if isinstance(dim, (tuple, list)) and len(dim) == 0:
        dim = None
    if x.ndim == 0:
        return x
    mask = _axis_mask(x, dim)
    return tr.emit1("reduce", [x], mode=mode, keepdims=int(keepdim), axis_mask=mask)


def sum(tr, input, dim=None, keepdim: bool = False):  # noqa: A001 - PyTorch's name
    return _reduce(tr, input, dim, keepdim, REDUCE_SUM)


def mean(tr, input, dim=None, keepdim: bool = False):
    return _reduce(tr, input, dim, keepdim, REDUCE_MEAN)


# ------------------------------------------------------------------------------------
# elementwise math (one ``unary`` node each; neg is ``affine``)
# ------------------------------------------------------------------------------------
def unary(tr, input, fn: int, a: float = 0.0, b: float = 0.0):
    """One ``unary`` node computing ``fn`` (an ``ops.UN_*`` value)."""
    return tr.emit1("unary", [input], fn=fn, a=float(a), b=float(b))


def exp(tr, input):
    return unary(tr, input, UN_EXP)


def log(tr, input):
    return unary(tr, input, UN_LOG)


def sqrt(tr, input):
    return unary(tr, input, UN_SQRT)


def rsqrt(tr, input):
    return unary(tr, input, UN_RSQRT)


def abs(tr, input):  # noqa: A001 - PyTorch's name
    return unary(tr, input, UN_ABS)


def neg(tr, input):
    return affine(tr, input, -1.0, 0.0)


def erf(tr, input):
    return unary(tr, input, UN_ERF)


def pow(tr, input, exponent):  # noqa: A001 - PyTorch's name
    if not is_scalar(exponent):
        raise UnsupportedError("pow: only a scalar (Python number) exponent is supported")
    e = float(exponent)
    if e == 1.0:
        return affine(tr, input, 1.0, 0.0)
    return unary(tr, input, UN_POW, e)


def clamp(tr, input, min=None, max=None):  # noqa: A002 - PyTorch's names
    if min is None and max is None:
        raise InvalidArgumentError("clamp: at least one of min and max must be given")
    for v, name in ((min, "min"), (max, "max")):
        if v is not None and not is_scalar(v):
            raise UnsupportedError(f"clamp: {name} must be a Python number (tensor bounds are "
                                    "not supported)")
    lo = float("-inf") if min is None else float(min)
    hi = float("inf") if max is None else float(max)
    if lo != lo or hi != hi:
        raise InvalidArgumentError("clamp: min and max must not be NaN")
    if lo > hi:
        raise InvalidArgumentError(f"clamp: min {lo} > max {hi}")
    return unary(tr, input, UN_CLAMP, lo, hi)


# ------------------------------------------------------------------------------------
# activations and softmax
# ------------------------------------------------------------------------------------
def act(tr, input, kind: int, alpha: float = 0.0):
    """One ``act`` node of kind ``kind`` (an ``ops.ACT_*`` value)."""
    return tr.emit1("act", [input], act=kind, alpha=alpha)


def relu(tr, input):
    return act(tr, input, ACT_RELU)


def sigmoid(tr, input):
    return act(tr, input, ACT_SIGMOID)


def tanh(tr, input):
    return act(tr, input, ACT_TANH)


def softmax(tr, input, dim: int = None, log: bool = False):
    x = tr.as_tensor(input)
    if dim is None:
        raise ValueError("softmax needs an explicit dim")
    return tr.emit1("softmax", [x], axis=axis(dim, x.ndim), log=int(log))


def log_softmax(tr, input, dim: int = None):
    return softmax(tr, input, dim, log=True)
