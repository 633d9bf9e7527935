"""The elementary traced operations behind the traced ``Tensor``'s operators and methods.

``x + y``, ``x @ w``, ``x.reshape(...)``, ``x.sum()``, ``x.relu()``... emit nodes through these
functions; :mod:`edgetrain.nn.functional` exposes the same ones under PyTorch's names. They sit
below :mod:`edgetrain.tracing` (which imports this module) and never import it: each takes the
tracer to emit into as its first argument (anything with ``as_tensor``, ``const`` and
``emit1``). Scalar operands of ``+ - * /`` become one ``affine`` node.
"""
from __future__ import annotations

import builtins
import numbers
from typing import Sequence

import numpy as np

from . import ir
from .errors import InvalidArgumentError, NotSupportedError, ShapeError, UnsupportedError
from .ops import (ACT_RELU, ACT_SIGMOID, ACT_TANH, PAD_CONSTANT, PAD_REFLECT, PAD_REPLICATE,
                  PERM_DIMS, REDUCE_MEAN, REDUCE_SUM, RESHAPE_DIMS, SLICE_END, UN_ABS, UN_CLAMP,
                  UN_ERF, UN_EXP, UN_LOG, UN_POW, UN_RSQRT, UN_SQRT)


class Dim(int):
    """A dimension read from a traced shape; remembers its position (and the tensor it was
    read from, ``src``) so that ``x.reshape(x.size(0), -1)`` and ``w.expand(x.size(0), -1)``
    keep the batch dimension dynamic."""

    def __new__(cls, value: int, pos: int, src: int = -1):
        obj = super().__new__(cls, value)
        obj.pos = pos
        obj.src = src
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


def _of_one(emit, kind: int, name: str):
    """The PyTorch-named function of one tensor that is ``emit(tr, input, kind)``."""
    def fn(tr, input):
        return emit(tr, input, kind)
    fn.__name__ = fn.__qualname__ = name
    return fn


exp, log, sqrt, rsqrt, abs, erf = (  # noqa: A001 - PyTorch's names
    _of_one(unary, kind, name) for name, kind in (
        ("exp", UN_EXP), ("log", UN_LOG), ("sqrt", UN_SQRT), ("rsqrt", UN_RSQRT), ("abs", UN_ABS),
        ("erf", UN_ERF)))


def neg(tr, input):
    return affine(tr, input, -1.0, 0.0)


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


relu, sigmoid, tanh = (_of_one(act, kind, name) for name, kind in
                       (("relu", ACT_RELU), ("sigmoid", ACT_SIGMOID), ("tanh", ACT_TANH)))


def softmax(tr, input, dim: int = None, log: bool = False):
    x = tr.as_tensor(input)
    if dim is None:
        raise ValueError("softmax needs an explicit dim")
    return tr.emit1("softmax", [x], axis=axis(dim, x.ndim), log=int(log))


def log_softmax(tr, input, dim: int = None):
    return softmax(tr, input, dim, log=True)


# ------------------------------------------------------------------------------------
# tensor copies: cat/stack, slicing, transpose/permute, squeeze/unsqueeze, expand, pad,
# gather/index_select (ops concat, slice, transpose, pad, gather, expand; docs/ops.md)
# ------------------------------------------------------------------------------------
def _where(tr) -> str:
    return f"layer '{tr.layer or '<root>'}'"


def _tensor_arg(tr, v, what: str):
    """``v`` as a traced tensor; a non-tensor is a clear error (PyTorch would raise too)."""
    if tr.is_tensor(v):
        return tr.as_tensor(v)
    raise InvalidArgumentError(f"{_where(tr)}: {what} must be a tensor, got "
                               f"{type(v).__name__}")


def _int_arg(tr, v, what: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral, np.integer)):
        raise InvalidArgumentError(f"{_where(tr)}: {what} must be an int, got {v!r}")
    return int(v)


def _dims(x):
    return [int(n) for n in x.shape]


def reshape_moved(tr, x, dims: Sequence[int], src: Sequence[object]):
    """Reshape ``x`` to ``dims`` where new dim i comes from input dim ``src[i]`` (None: a new
    size-1 dim). Dims that stay in place are copied (0) and, when none is, the one fed by
    input dim 0 (else the first kept one) is inferred (-1), so the batch size stays dynamic
    after ``Resize``."""
    out = [0 if s == i else int(n) for i, (n, s) in enumerate(zip(dims, src))]
    kept = [i for i, s in enumerate(src) if s is not None]
    if 0 not in out and kept:   # infer the dim fed by input dim 0, else the first kept one
        out[list(src).index(0) if 0 in src else kept[0]] = -1
    if list(dims) == _dims(x) and list(src) == list(range(x.ndim)):
        return x
    return tr.emit1("reshape", [x], ndim=len(out), **dict(zip(RESHAPE_DIMS, out)))


def cat(tr, tensors, dim: int = 0):
    """Concatenate along ``dim`` (``torch.cat``); any number of tensors (nodes take 8 inputs,
    more are chained)."""
    if not isinstance(tensors, (list, tuple)):
        raise InvalidArgumentError(f"{_where(tr)}: cat expects a list or tuple of tensors, got "
                                   f"{type(tensors).__name__}")
    if not tensors:
        raise InvalidArgumentError(f"{_where(tr)}: cat of an empty list")
    xs = [_tensor_arg(tr, t, f"cat: element {i}") for i, t in enumerate(tensors)]
    dim = _int_arg(tr, dim, "cat: dim")
    def node(group):
        return tr.emit1("concat", group + [None] * (8 - len(group)), axis=dim)

    y, rest = node(xs[:8]), xs[8:]
    while rest:
        y, rest = node([y] + rest[:7]), rest[7:]
    return y


def unsqueeze(tr, input, dim: int):
    x = tr.as_tensor(input)
    d = axis(_int_arg(tr, dim, "unsqueeze: dim"), x.ndim + 1)
    dims, src = _dims(x), list(range(x.ndim))
    dims.insert(d, 1)
    src.insert(d, None)
    return reshape_moved(tr, x, dims, src)


def squeeze(tr, input, dim=None):
    """Drop size-1 dims (all, or those of ``dim`` (int or tuple) that have size 1)."""
    x = tr.as_tensor(input)
    if dim is None:
        drop = {d for d, n in enumerate(_dims(x)) if n == 1}
    else:
        ds = dim if isinstance(dim, (tuple, list)) else (dim,)
        drop = {axis(_int_arg(tr, d, "squeeze: dim"), max(x.ndim, 1)) for d in ds}
        drop = {d for d in drop if d < x.ndim and _dims(x)[d] == 1}
    # leading dims go with a dropping slice (a reshape's gradient could not tell which dim
    # is the batch), the others with one reshape that keeps dim 0 in place
    y, gone = x, 0
    while gone in drop:
        y, gone = slice_(tr, y, 0, 0, 1, drop=True), gone + 1
    keep = [d - gone for d in range(gone, x.ndim) if d not in drop]
    return reshape_moved(tr, y, [_dims(y)[d] for d in keep], keep)


def stack(tr, tensors, dim: int = 0):
    """Stack along a new ``dim`` (``torch.stack``)."""
    if not isinstance(tensors, (list, tuple)) or not tensors:
        raise InvalidArgumentError(f"{_where(tr)}: stack expects a non-empty list or tuple of "
                                   "tensors")
    xs = [_tensor_arg(tr, t, f"stack: element {i}") for i, t in enumerate(tensors)]
    shapes = {tuple(_dims(x)) for x in xs}
    if len(shapes) > 1:
        raise ShapeError(f"{_where(tr)}: stack expects tensors of one shape, got "
                         f"{sorted(shapes)}")
    d = axis(_int_arg(tr, dim, "stack: dim"), xs[0].ndim + 1)
    return cat(tr, [unsqueeze(tr, x, d) for x in xs], d)


def slice_(tr, input, dim: int, start, stop, step: int = 1, drop: bool = False):
    """One ``slice`` node: ``x[..., start:stop:step, ...]`` along ``dim`` (Python bounds;
    None = open end); ``drop`` removes the dim (an integer index, one element)."""
    start = 0 if start is None else _int_arg(tr, start, "slice start")
    stop = SLICE_END if stop is None else _int_arg(tr, stop, "slice stop")
    step = 1 if step is None else _int_arg(tr, step, "slice step")
    if step <= 0:
        raise InvalidArgumentError(f"{_where(tr)}: slice step must be greater than zero "
                                   f"(got {step}; PyTorch has no negative steps either)")
    return tr.emit1("slice", [input], axis=dim, start=start, stop=stop, step=step,
                    drop=int(drop))


def narrow(tr, input, dim: int, start: int, length: int):
    x = tr.as_tensor(input)
    d = axis(_int_arg(tr, dim, "narrow: dim"), x.ndim)
    n = _dims(x)[d]
    start, length = _int_arg(tr, start, "narrow: start"), _int_arg(tr, length, "narrow: length")
    if start < 0:
        start += n
    if not (0 <= start <= n and 0 < length and start + length <= n):
        raise IndexError(f"{_where(tr)}: narrow({dim}, {start}, {length}) out of range for "
                         f"dim {d} of size {n}")
    return slice_(tr, x, d, start, start + length)


def split(tr, input, split_size_or_sections, dim: int = 0):
    """``torch.split``: pieces of one size (the last may be smaller) or of the given sizes."""
    x = tr.as_tensor(input)
    d = axis(_int_arg(tr, dim, "split: dim"), x.ndim)
    n = _dims(x)[d]
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = [_int_arg(tr, s, "split: section size") for s in split_size_or_sections]
        if builtins.sum(sizes) != n or any(s <= 0 for s in sizes):
            raise ShapeError(f"{_where(tr)}: split sizes {sizes} must be positive and sum to "
                             f"{n} (dim {d})")
    else:
        size = _int_arg(tr, split_size_or_sections, "split: split_size")
        if size <= 0:
            raise InvalidArgumentError(f"{_where(tr)}: split_size must be > 0, got {size}")
        sizes = [min(size, n - s) for s in range(0, n, size)]
    out, start = [], 0
    for s in sizes:
        out.append(x if s == n else slice_(tr, x, d, start, start + s))
        start += s
    return tuple(out)


def chunk(tr, input, chunks: int, dim: int = 0):
    """``torch.chunk``: ceil(n / chunks)-sized pieces (possibly fewer than ``chunks``)."""
    x = tr.as_tensor(input)
    chunks = _int_arg(tr, chunks, "chunk: chunks")
    if chunks <= 0:
        raise InvalidArgumentError(f"{_where(tr)}: chunk expects chunks > 0, got {chunks}")
    n = _dims(x)[axis(_int_arg(tr, dim, "chunk: dim"), x.ndim)]
    return split(tr, x, -(-n // chunks), dim)


def permute(tr, input, dims: Sequence[int]):
    x = tr.as_tensor(input)
    dims = [_int_arg(tr, d, "permute: dim") for d in dims]
    if len(dims) != x.ndim:
        raise ShapeError(f"{_where(tr)}: permute of a rank-{x.ndim} tensor needs {x.ndim} "
                         f"dims, got {dims}")
    perm = [axis(d, max(x.ndim, 1)) for d in dims]
    if len(set(perm)) != len(perm):
        raise ShapeError(f"{_where(tr)}: permute dims {dims} repeat a dim")
    if perm == list(range(x.ndim)):
        return x
    return tr.emit1("transpose", [x], ndim=len(perm), **dict(zip(PERM_DIMS, perm)))


def transpose(tr, input, dim0: int, dim1: int):
    x = tr.as_tensor(input)
    nd = max(x.ndim, 1)
    a = axis(_int_arg(tr, dim0, "transpose: dim0"), nd)
    b = axis(_int_arg(tr, dim1, "transpose: dim1"), nd)
    perm = list(range(x.ndim))
    if x.ndim:
        perm[a], perm[b] = perm[b], perm[a]
    return permute(tr, x, perm)


def t(tr, input):
    x = tr.as_tensor(input)
    if x.ndim > 2:
        raise ShapeError(f"{_where(tr)}: t() expects a tensor of rank <= 2, got rank "
                         f"{x.ndim} (use transpose or permute)")
    return transpose(tr, x, 0, 1) if x.ndim == 2 else x


def expand(tr, input, sizes: Sequence[int]):
    """Broadcast to ``sizes`` (-1 keeps a dim); the gradient sums over the expanded dims."""
    x = tr.as_tensor(input)
    sizes = list(sizes)
    for s in sizes:
        _int_arg(tr, s, "expand: size")
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ShapeError(f"{_where(tr)}: expand to {len(sizes)} dims is fewer than the "
                         f"tensor's {x.ndim}")
    # sizes read from another traced tensor's shape follow it at run time (input `like`)
    like = next((s.src for s in sizes if isinstance(s, Dim) and s.src not in (-1, x.index)), -1)
    out = []
    for i, s in enumerate(sizes):
        have = _dims(x)[i - lead] if i >= lead else None
        if isinstance(s, Dim) and s.src == like >= 0:
            out.append(-2 - s.pos)
        elif s == -1 or s == have:
            out.append(-1)
        else:
            out.append(int(s))
    if lead == 0 and all(s == -1 for s in out):
        return x
    return tr.emit1("expand", [x, tr.wrap(like) if like >= 0 else None], ndim=len(out),
                    **dict(zip(RESHAPE_DIMS, out)))


_PAD_MODES = {"constant": PAD_CONSTANT, "reflect": PAD_REFLECT, "replicate": PAD_REPLICATE}


def pad(tr, input, pad: Sequence[int], mode: str = "constant", value=None):
    """``F.pad``: ``pad`` lists (before, after) pairs from the last dim backwards."""
    x = tr.as_tensor(input)
    if mode not in _PAD_MODES:
        raise NotSupportedError(f"{_where(tr)}: F.pad mode {mode!r} is not supported "
                                f"(supported: {', '.join(_PAD_MODES)})")
    if not isinstance(pad, (list, tuple)) or len(pad) % 2 or len(pad) > 2 * x.ndim:
        raise InvalidArgumentError(f"{_where(tr)}: F.pad expects an even number of pad sizes, "
                                   f"at most 2 per dim of the rank-{x.ndim} input, got {pad!r}")
    if value is not None and mode != "constant":
        raise InvalidArgumentError(f"{_where(tr)}: F.pad value applies to mode 'constant' only")
    attrs = {"mode": _PAD_MODES[mode]}
    for k in range(len(pad) // 2):
        d = x.ndim - 1 - k
        before = _int_arg(tr, pad[2 * k], "F.pad size")
        after = _int_arg(tr, pad[2 * k + 1], "F.pad size")
        if mode == "constant" and (before < 0 or after < 0):   # negative = crop (a slice)
            n = _dims(x)[d]
            x = slice_(tr, x, d, -min(before, 0), n + min(after, 0))
            before, after = max(before, 0), max(after, 0)
        attrs[f"before{d}"], attrs[f"after{d}"] = before, after
    if all(v == 0 for k, v in attrs.items() if k != "mode"):
        return x
    return tr.emit1("pad", [x], value=0.0 if value is None else float(value), **attrs)


def _index(tr, index):
    if tr.is_tensor(index):
        return tr.as_tensor(index)
    arr = np.asarray(index)
    if arr.dtype.kind not in "iu":
        raise InvalidArgumentError(f"{_where(tr)}: an index must hold integers, got "
                                   f"{arr.dtype}")
    if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
        raise InvalidArgumentError(f"{_where(tr)}: index values do not fit int32")
    return tr.const(arr.astype(np.int32), ir.I32)


def gather(tr, input, dim: int, index):
    """``torch.gather``; the gradient scatter-adds into the input (deterministic)."""
    x = tr.as_tensor(input)
    return tr.emit1("gather", [x, _index(tr, index)], axis=_int_arg(tr, dim, "gather: dim"),
                    select=0)


def index_select(tr, input, dim: int, index):
    """``torch.index_select`` with a 1-D index."""
    x = tr.as_tensor(input)
    return tr.emit1("gather", [x, _index(tr, index)],
                    axis=_int_arg(tr, dim, "index_select: dim"), select=1)


def getitem(tr, input, key):
    """Basic indexing ``x[...]``: ints (drop the dim), slices (steps >= 1), ``...`` and
    ``None`` (a new dim). Advanced indexing (tensors, lists, bools) is not supported."""
    x = tr.as_tensor(input)
    items = list(key) if isinstance(key, tuple) else [key]
    for it in items:
        if not (it is None or it is Ellipsis or isinstance(it, slice)
                or (isinstance(it, (numbers.Integral, np.integer))
                    and not isinstance(it, (bool, np.bool_)))):
            raise NotSupportedError(
                f"{_where(tr)}: indexing with {type(it).__name__} (advanced indexing) is not "
                "supported; use ints, slices, None and ..., or gather / index_select")
    if builtins.sum(it is Ellipsis for it in items) > 1:
        raise IndexError(f"{_where(tr)}: an index can only have a single ellipsis ('...')")
    used = builtins.sum(it is not None and it is not Ellipsis for it in items)
    if used > x.ndim:
        raise IndexError(f"{_where(tr)}: too many indices ({used}) for a tensor of rank "
                         f"{x.ndim}")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = [slice(None)] * (x.ndim - used)
    else:
        items += [slice(None)] * (x.ndim - used)
    y, d, yd, dims, src = x, 0, 0, [], []   # d: dim of x, yd: the same dim in y
    for it in items:
        if it is None:
            dims.append(1)
            src.append(None)
            continue
        n = _dims(x)[d]
        if isinstance(it, slice):
            if (it.step is not None and it.step <= 0) or it.indices(n) != (0, n, 1):
                y = slice_(tr, y, yd, it.start, it.stop, it.step)
            dims.append(_dims(y)[yd])
            src.append(yd)
            yd += 1
        else:
            i = int(it)
            if not -n <= i < n:
                raise IndexError(f"{_where(tr)}: index {i} is out of bounds for dim {d} with "
                                 f"size {n}")
            i %= n
            y = slice_(tr, y, yd, i, i + 1, drop=True)
        d += 1
    return reshape_moved(tr, y, dims, src)
