"""ONNX ops mapped onto ``edgetrain.nn.functional`` (and the traced tensor operations).

Two kinds of node:

* **compute** ops (Conv, BatchNormalization, Relu, Gemm, ...) become edgetrain nodes while the
  converted module is traced; each handler below maps one ONNX op (attributes, optional
  inputs, opset differences) onto the existing functions, nothing else.
* **fold** ops (Constant, Shape, Gather, Unsqueeze, Concat, Cast, Slice, ...) are computed in
  numpy while tracing, from constants and static shapes. A value read with ``Shape(x)[0]``
  remembers that it is the batch size, so a Reshape built from it keeps the batch dynamic.

:func:`analyse` decides before any tracing which nodes are supported and which initializers
are parameters (the weights of Conv, Gemm, MatMul and BatchNormalization, and any other
float tensor an op reads as data), BatchNorm statistics (buffers) or constants.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .. import tensor_ops as T
from ..errors import ModelFormatError, UnsupportedError
from ..nn import functional as F
from .onnx_file import DEFAULT_DOMAINS, OnnxGraph, OnnxNode


class Static:
    """A value known without running the model (an initializer, a Constant, a folded shape).
    ``batch`` (bool array like ``value`` or None) marks elements that are the batch size read
    with ``Shape`` from dim 0 of a traced tensor."""

    def __init__(self, value, batch=None):
        self.value = np.asarray(value)
        if batch is not None:
            batch = np.asarray(batch, dtype=bool)
            if not batch.any():
                batch = None
        self.batch = batch

    def mask(self) -> np.ndarray:
        return self.batch if self.batch is not None else np.zeros(self.value.shape, bool)


class NodeError(Exception):
    """Raised by a handler: becomes an edgetrain error naming the file, node and op."""

    def __init__(self, message: str, cls=ModelFormatError):
        super().__init__(message)
        self.cls = cls


def unsupported(message: str) -> NodeError:
    return NodeError(message, UnsupportedError)


# ------------------------------------------------------------------------------------
# helpers used by the handlers (``env`` is the converted module's trace environment:
# env.tensor(name), env.static(name), env.value(name), env.opset, env.module)
# ------------------------------------------------------------------------------------
def _ints(v, what: str) -> List[int]:
    if not isinstance(v, (list, tuple)) or not all(isinstance(i, int) for i in v):
        raise NodeError(f"attribute {what} must be a list of integers, got {v!r}")
    return list(v)


def _attr(nd: OnnxNode, name: str, default, types, what: str):
    """Attribute ``name`` (or ``default``), which must be an instance of ``types``."""
    v = nd.attrs.get(name, default)
    if not isinstance(v, types):
        raise NodeError(f"attribute {name} must be {what}, got {v!r}")
    return v


def _int(nd: OnnxNode, name: str, default: int) -> int:
    return _attr(nd, name, default, int, "an integer")


def _float(nd: OnnxNode, name: str, default: float) -> float:
    return float(_attr(nd, name, default, (int, float), "a number"))


def _str(nd: OnnxNode, name: str, default: str) -> str:
    return _attr(nd, name, default, str, "a string")


def _arg(nd: OnnxNode, k: int) -> str:
    return nd.inputs[k] if k < len(nd.inputs) else ""


def _scalar(env, nd: OnnxNode, k: int, default=None):
    """Optional static scalar input ``k`` (a Python float) or ``default``."""
    name = _arg(nd, k)
    if not name:
        return default
    v = env.static(name).value
    if v.size != 1:
        raise NodeError(f"input {k} ('{name}') must be a scalar, got shape {list(v.shape)}")
    return v.reshape(()).item()


def _axes_of(env, nd: OnnxNode, input_pos: int, attr_until: int) -> Optional[List[int]]:
    """Axes from the ``axes`` attribute (opset < ``attr_until``) or input ``input_pos``."""
    if env.opset < attr_until:
        v = nd.attrs.get("axes")
        return None if v is None else _ints(v, "axes")
    name = _arg(nd, input_pos)
    if not name:
        return None
    return [int(a) for a in env.static(name).value.reshape(-1)]


def _norm_axes(axes: Sequence[int], rank: int) -> List[int]:
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise NodeError(f"axis {a} is out of range for rank {rank}")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise NodeError(f"axes {list(axes)} repeat an axis")
    return out


def _shape(t) -> List[int]:
    return [int(d) for d in t.shape]


def _same_pads(nd: OnnxNode, in_hw, kernel, strides, dil) -> List[int]:
    """[t, l, b, r] for auto_pad SAME_UPPER / SAME_LOWER / VALID (or the pads attribute)."""
    mode = _str(nd, "auto_pad", "NOTSET")
    if mode == "NOTSET":
        pads = _ints(nd.attrs.get("pads", [0, 0, 0, 0]), "pads")
        if len(pads) != 4 or min(pads) < 0:
            raise NodeError(f"pads must be 4 non-negative integers [t, l, b, r], got {pads}")
        return pads
    if mode == "VALID":
        return [0, 0, 0, 0]
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise NodeError(f"auto_pad {mode!r} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    begin, end = [], []
    for size, k, s, d in zip(in_hw, kernel, strides, dil):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else big)
        end.append(big if mode == "SAME_UPPER" else small)
    return [begin[0], begin[1], end[0], end[1]]


def _pair_attr(nd: OnnxNode, name: str, default: int) -> List[int]:
    v = _ints(nd.attrs.get(name, [default, default]), name)
    if len(v) != 2 or min(v) < 1:
        raise NodeError(f"{name} must be 2 positive integers, got {v}")
    return v


def _want_4d(x, what: str = "input") -> None:
    if x.ndim != 4:
        raise unsupported(f"{what} has shape {_shape(x)}; only the 2-D (NCHW) form is supported")


# ------------------------------------------------------------------------------------
# compute handlers: (env, node) -> list of output values
# ------------------------------------------------------------------------------------
def conv(env, nd):
    x, w = env.tensor(nd.inputs[0]), env.tensor(_arg(nd, 1))
    b = env.tensor(_arg(nd, 2)) if _arg(nd, 2) else None
    _want_4d(x)
    if w.ndim != 4:
        raise unsupported(f"weight has shape {_shape(w)}; only 2-D convolution is supported")
    ks = nd.attrs.get("kernel_shape")
    if ks is not None and _ints(ks, "kernel_shape") != _shape(w)[2:]:
        raise NodeError(f"kernel_shape {ks} does not match the weight {_shape(w)}")
    strides, dil = _pair_attr(nd, "strides", 1), _pair_attr(nd, "dilations", 1)
    group = _int(nd, "group", 1)
    if group < 1:
        raise NodeError(f"group must be >= 1, got {group}")
    pads = _same_pads(nd, _shape(x)[2:], _shape(w)[2:], strides, dil)
    return [F.conv2d(x, w, b, strides, tuple(pads), dil, group)]


def _torch_momentum(onnx_momentum: float) -> float:
    """PyTorch's momentum (weight of the new batch statistic) from ONNX's (weight of the old
    running value): 1 - m, rounded to the shortest decimal that gives back the same float32
    (ONNX stores 0.9 as float32, so 1 - m would otherwise be 0.100000024)."""
    m32 = np.float32(onnx_momentum)
    exact = 1.0 - float(m32)
    for digits in range(1, 10):
        r = round(exact, digits)
        if np.float32(1.0 - r) == m32:
            return r
    return exact


def batch_norm_is_training(env, nd: OnnxNode) -> bool:
    """Whether the file's BatchNormalization is the training form (batch statistics)."""
    if env.opset >= 14:
        return _int(nd, "training_mode", 0) == 1
    return any(nd.outputs[1:])


def batch_norm(env, nd):
    x = env.tensor(nd.inputs[0])
    scale, bias = env.tensor(_arg(nd, 1)), env.tensor(_arg(nd, 2))
    mean, var = env.buffer(_arg(nd, 3)), env.buffer(_arg(nd, 4))
    eps = _float(nd, "epsilon", 1e-5)
    momentum = _torch_momentum(_float(nd, "momentum", 0.9))
    if not eps > 0 or not 0.0 <= momentum <= 1.0:
        raise NodeError(f"epsilon {eps} must be > 0 and momentum in [0, 1]")
    train = env.module.training and env.module.bn_mode_of(nd) == "train"
    y = F.batch_norm(x, mean, var, scale, bias, training=train, momentum=momentum, eps=eps)
    return [y]


def clip(env, nd):
    x = env.tensor(nd.inputs[0])
    if env.opset < 11:
        lo, hi = _float(nd, "min", -math.inf), _float(nd, "max", math.inf)
    else:
        lo, hi = _scalar(env, nd, 1, -math.inf), _scalar(env, nd, 2, math.inf)
    lo, hi = float(lo), float(hi)
    if lo == 0.0 and hi == 6.0:
        return [F.relu6(x)]
    if lo == 0.0 and hi == math.inf:
        return [F.relu(x)]
    return [F.clamp(x, None if lo == -math.inf else lo, None if hi == math.inf else hi)]


def hard_sigmoid(env, nd):
    x = env.tensor(nd.inputs[0])
    alpha, beta = _float(nd, "alpha", 0.2), _float(nd, "beta", 0.5)
    if np.float32(alpha) == np.float32(1 / 6) and beta == 0.5:
        return [F.hardsigmoid(x)]
    return [F.clamp(F.affine(x, alpha, beta), 0.0, 1.0)]


def _unary(fn: Callable) -> Callable:
    def handler(env, nd):
        return [fn(env.tensor(nd.inputs[0]))]
    return handler


def leaky_relu(env, nd):
    return [F.leaky_relu(env.tensor(nd.inputs[0]), _float(nd, "alpha", 0.01))]


def elu(env, nd):
    return [F.elu(env.tensor(nd.inputs[0]), _float(nd, "alpha", 1.0))]


def gelu(env, nd):
    approx = _str(nd, "approximate", "none")
    return [F.gelu(env.tensor(nd.inputs[0]), approx)]


def _softmax(log: bool) -> Callable:
    def handler(env, nd):
        x = env.tensor(nd.inputs[0])
        axis = _int(nd, "axis", 1 if env.opset < 13 else -1)
        axis = _norm_axes([axis], x.ndim)[0]
        if env.opset < 13 and axis != x.ndim - 1:  # over the dims from axis on, flattened
            dims = _shape(x)
            flat = T.reshape_moved(env.tracer, x, dims[:axis] + [int(np.prod(dims[axis:]))],
                                   list(range(axis)) + [None])
            y = F.log_softmax(flat, axis) if log else F.softmax(flat, axis)
            return [T.reshape_moved(env.tracer, y, dims, list(range(axis)) +
                                    [None] * (len(dims) - axis))]
        return [F.log_softmax(x, axis) if log else F.softmax(x, axis)]
    return handler


def _pool_args(nd, x):
    _want_4d(x)
    ks = _ints(nd.attrs.get("kernel_shape", []), "kernel_shape")
    if len(ks) != 2 or min(ks) < 1:
        raise unsupported(f"kernel_shape {ks}: only 2-D pooling is supported")
    strides, dil = _pair_attr(nd, "strides", 1), _pair_attr(nd, "dilations", 1)
    pads = _same_pads(nd, _shape(x)[2:], ks, strides, dil)
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise unsupported(f"asymmetric pooling pads {pads} [t, l, b, r]")
    return ks, strides, pads[:2], dil, bool(_int(nd, "ceil_mode", 0))


def max_pool(env, nd):
    x = env.tensor(nd.inputs[0])
    if _int(nd, "storage_order", 0) != 0:
        raise unsupported("storage_order=1")
    ks, strides, pads, dil, ceil = _pool_args(nd, x)
    return [F.max_pool2d(x, ks, strides, pads, dil, ceil)]


def avg_pool(env, nd):
    x = env.tensor(nd.inputs[0])
    ks, strides, pads, dil, ceil = _pool_args(nd, x)
    if dil != [1, 1]:
        raise unsupported(f"dilations {dil} in average pooling")
    return [F.avg_pool2d(x, ks, strides, pads, ceil, bool(_int(nd, "count_include_pad", 0)))]


def global_avg_pool(env, nd):
    x = env.tensor(nd.inputs[0])
    _want_4d(x)
    return [F.adaptive_avg_pool2d(x, 1)]


def _reduce(fn: Callable, attr_until: int) -> Callable:
    def handler(env, nd):
        x = env.tensor(nd.inputs[0])
        axes = _axes_of(env, nd, 1, attr_until)
        keep = bool(_int(nd, "keepdims", 1))
        if not axes:
            if _int(nd, "noop_with_empty_axes", 0):
                return [x]
            axes = list(range(x.ndim))
        return [fn(x, _norm_axes(axes, x.ndim), keep)]
    return handler


def _fold_binary(a: Static, b: Static, fn) -> Static:
    return Static(fn(a.value, b.value))


_NP_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}


def _np_div(a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        if np.any(b == 0):
            raise NodeError("integer division by zero in a constant")
        q = np.abs(a) // np.abs(b)
        return (np.sign(a) * np.sign(b) * q).astype(np.result_type(a, b))
    return np.divide(a, b)


def binary(env, nd):
    a_name, b_name = nd.inputs[0], _arg(nd, 1)
    if not b_name:
        raise NodeError("needs two inputs")
    a, b = env.value(a_name), env.value(b_name)
    if isinstance(a, Static) and isinstance(b, Static) and not env.is_holder(a_name) \
            and not env.is_holder(b_name):
        if not np.issubdtype(np.result_type(a.value, b.value), np.number):
            raise NodeError("operands are not numbers")
        fn = _np_div if nd.op == "Div" else _NP_BINARY[nd.op]
        with np.errstate(all="ignore"):
            return [_fold_binary(a, b, fn)]
    fn = {"Add": T.add, "Sub": T.sub, "Mul": T.mul, "Div": T.div}[nd.op]
    tr = env.tracer
    return [fn(tr, env.operand(a_name, b_name), env.operand(b_name, a_name))]


def pow_(env, nd):
    x = env.tensor(nd.inputs[0])
    return [F.pow(x, float(_scalar(env, nd, 1)))]


def gemm(env, nd):
    a, b = env.tensor(nd.inputs[0]), env.tensor(_arg(nd, 1))
    ta, tb = _int(nd, "transA", 0), _int(nd, "transB", 0)
    alpha, beta = _float(nd, "alpha", 1.0), _float(nd, "beta", 1.0)
    if ta not in (0, 1) or tb not in (0, 1):
        raise NodeError(f"transA/transB must be 0 or 1, got {ta}/{tb}")
    y = env.tracer.emit1("matmul", [a, b], trans_a=ta, trans_b=tb)
    if alpha != 1.0:
        y = F.affine(y, alpha, 0.0)
    c_name = _arg(nd, 2)
    if c_name and beta != 0.0:
        c = env.value(c_name)
        if isinstance(c, Static) and not env.is_holder(c_name) and c.value.size == 1:
            y = F.affine(y, 1.0, beta * float(c.value.reshape(()).item()))
        else:
            c = env.tensor(c_name)
            y = F.add(y, c if beta == 1.0 else F.affine(c, beta, 0.0))
    return [y]


def matmul(env, nd):
    return [F.matmul(env.tensor(nd.inputs[0]), env.tensor(_arg(nd, 1)))]


def _traced_batch(env) -> Optional[int]:
    """Dim 0 of the model's first input as traced (the batch), or None."""
    first = env.values.get(env.module.input_names[0]) if env.module.input_names else None
    if first is None or isinstance(first, Static) or not first.ndim:
        return None
    return int(first.shape[0])


def _reshape_to(env, x, dims: List[int], batch_kept: bool):
    """Reshape traced ``x`` to ``dims`` (0 = copy, -1 = infer); ``batch_kept``: dim 0 of the
    result is x's batch, so it stays dynamic (0)."""
    dims = list(dims)
    traced = _traced_batch(env)
    if batch_kept and dims and x.ndim and dims[0] > 0 and \
            int(x.shape[0]) == (dims[0] if traced is None else traced):
        dims[0] = 0  # only when x's dim 0 is the batch (not [N * heads, ...] of attention)
    return T.reshape(env.tracer, x, [int(d) for d in dims])


def reshape(env, nd):
    x = env.value(nd.inputs[0])
    shape = env.static(_arg(nd, 1))
    dims = [int(d) for d in shape.value.reshape(-1)]
    mask = list(shape.mask().reshape(-1))
    allowzero = _int(nd, "allowzero", 0)
    if isinstance(x, Static) and not env.is_holder(nd.inputs[0]):
        return [Static(x.value.reshape(_np_target(x.value.shape, dims, allowzero)),
                       x.batch.reshape(_np_target(x.value.shape, dims, allowzero))
                       if x.batch is not None else None)]
    x = env.tensor(nd.inputs[0])
    if allowzero and 0 in dims:
        raise unsupported(f"reshape to {dims} with allowzero=1 (zero-size tensors)")
    if len(dims) > 6 or sum(d == -1 for d in dims) > 1 or any(d < -1 for d in dims):
        raise NodeError(f"invalid reshape target {dims}")
    keep = bool(dims) and (mask[0] or dims[0] == 0 or
                           (env.file_batch is not None and dims[0] == env.file_batch
                            and x.ndim and env.file_batch != 1))
    if any(mask[1:]) and -1 not in dims:  # the batch read into another dim: inferred
        dims[mask.index(True, 1)] = -1
    return [_reshape_to(env, x, dims, keep)]


def _np_target(src_shape, dims, allowzero) -> List[int]:
    out = [src_shape[i] if d == 0 and not allowzero and i < len(src_shape) else d
           for i, d in enumerate(dims)]
    return out


def flatten(env, nd):
    x = env.tensor(nd.inputs[0])
    axis = _int(nd, "axis", 1)
    if not -x.ndim <= axis <= x.ndim:
        raise NodeError(f"axis {axis} out of range for rank {x.ndim}")
    axis = axis % x.ndim if axis < 0 else axis
    if axis == 0:
        return [T.reshape(env.tracer, x, [1, -1])]
    if axis == 1:
        return [_reshape_to(env, x, [0, -1], True)]
    lead = int(np.prod(_shape(x)[:axis]))
    return [T.reshape(env.tracer, x, [lead, -1])]


def unsqueeze(env, nd):
    x = env.value(nd.inputs[0])
    axes = _axes_of(env, nd, 1, 13)
    if axes is None:
        raise NodeError("needs axes")
    rank = (x.value.ndim if isinstance(x, Static) else x.ndim) + len(axes)
    axes = sorted(_norm_axes(axes, rank))
    if isinstance(x, Static) and not env.is_holder(nd.inputs[0]):
        v, m = x.value, x.mask()
        for a in axes:
            v, m = np.expand_dims(v, a), np.expand_dims(m, a)
        return [Static(v, m)]
    x = env.tensor(nd.inputs[0])
    dims = _shape(x)
    for a in axes:
        dims.insert(a, 1)
    return [_reshape_to(env, x, dims, 0 not in axes)]


def squeeze(env, nd):
    x = env.value(nd.inputs[0])
    axes = _axes_of(env, nd, 1, 13)
    shape = list(x.value.shape) if isinstance(x, Static) else _shape(x)
    axes = [i for i, d in enumerate(shape) if d == 1] if axes is None \
        else _norm_axes(axes, len(shape))
    if any(shape[a] != 1 for a in axes):
        raise NodeError(f"cannot squeeze axes {axes} of shape {shape}")
    if isinstance(x, Static) and not env.is_holder(nd.inputs[0]):
        return [Static(np.squeeze(x.value, tuple(axes)), np.squeeze(x.mask(), tuple(axes)))]
    x = env.tensor(nd.inputs[0])
    dims = [d for i, d in enumerate(shape) if i not in axes]
    return [_reshape_to(env, x, dims, 0 not in axes and bool(dims))]


def dropout(env, nd):
    x = env.tensor(nd.inputs[0])
    if env.opset < 12:
        p = _float(nd, "ratio", 0.5)
        in_file = bool(_arg(nd, 0)) and len(nd.outputs) > 1 and bool(nd.outputs[1])
    else:
        p = float(_scalar(env, nd, 1, 0.5))
        in_file = bool(_scalar(env, nd, 2, False))
    if not 0.0 <= p < 1.0:
        raise NodeError(f"ratio {p} must be in [0, 1)")
    active = in_file and env.module.dropout == "follow" and env.module.training and \
        nd.name not in env.module._dropout_off
    return [F.dropout(x, p, training=active)]


def identity(env, nd):
    name = nd.inputs[0]
    return [env.tensor(name) if env.is_holder(name) else env.value(name)]


def cast(env, nd):
    to = _int(nd, "to", 1)
    x = env.value(nd.inputs[0])
    if isinstance(x, Static) and not env.is_holder(nd.inputs[0]):
        from .onnx_file import _DTYPES
        if to not in _DTYPES:
            raise unsupported(f"cast to element type {to}")
        with np.errstate(all="ignore"):
            return [Static(x.value.astype(_DTYPES[to][0]), x.batch)]
    if to != 1:
        raise unsupported(f"cast of a computed tensor to element type {to} (only float32)")
    return [env.tensor(nd.inputs[0])]


# ------------------------------------------------------------------------------------
# fold handlers (all inputs static)
# ------------------------------------------------------------------------------------
def constant(env, nd):
    return [env.module.constant_of(nd)]


def shape(env, nd):
    x = env.value(nd.inputs[0])
    dims = list(x.value.shape) if isinstance(x, Static) else _shape(x)
    traced = _traced_batch(env)
    # dim 0 of a traced tensor is the batch unless its size shows otherwise (the sequence
    # dim of [L, N, E] after a transpose)
    batch = [not isinstance(x, Static) and i == 0 and (traced is None or dims[0] == traced)
             for i in range(len(dims))]
    start, end = _int(nd, "start", 0), nd.attrs.get("end")
    end = len(dims) if end is None else int(end)
    sl = slice(*slice(start, end).indices(len(dims))[:2])
    return [Static(np.array(dims[sl], np.int64), np.array(batch[sl], bool))]


def gather(env, nd):
    data, idx = env.static(nd.inputs[0]), env.static(_arg(nd, 1)).value
    axis = _int(nd, "axis", 0)
    if data.value.ndim == 0 or idx.dtype.kind not in "iu":
        raise NodeError("gather needs an array and integer indices")
    axis = _norm_axes([axis], data.value.ndim)[0]
    n = data.value.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise NodeError(f"index out of range for a dim of size {n}")
    idx = np.where(idx < 0, idx + n, idx)
    return [Static(np.take(data.value, idx, axis), np.take(data.mask(), idx, axis))]


def concat(env, nd):
    parts = [env.static(n) for n in nd.inputs if n]
    if not parts:
        raise NodeError("needs inputs")
    axis = _int(nd, "axis", 0)
    rank = parts[0].value.ndim
    if rank == 0 or any(p.value.ndim != rank for p in parts):
        raise NodeError("inputs must have one rank >= 1")
    axis = _norm_axes([axis], rank)[0]
    try:
        v = np.concatenate([p.value for p in parts], axis)
        m = np.concatenate([p.mask() for p in parts], axis)
    except ValueError as e:
        raise NodeError(f"cannot concatenate: {e}") from None
    return [Static(v, m)]


def slice_(env, nd):
    data = env.static(nd.inputs[0])
    if env.opset < 10:
        starts, ends = nd.attrs.get("starts", []), nd.attrs.get("ends", [])
        axes, steps = nd.attrs.get("axes"), None
    else:
        starts = list(env.static(_arg(nd, 1)).value.reshape(-1))
        ends = list(env.static(_arg(nd, 2)).value.reshape(-1))
        axes = list(env.static(_arg(nd, 3)).value.reshape(-1)) if _arg(nd, 3) else None
        steps = list(env.static(_arg(nd, 4)).value.reshape(-1)) if _arg(nd, 4) else None
    rank = data.value.ndim
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    if not (len(starts) == len(ends) == len(axes) == len(steps)) or 0 in steps:
        raise NodeError("starts, ends, axes and steps must have one length, steps non-zero")
    index = [slice(None)] * rank
    for a, s, e, st in zip(_norm_axes(axes, rank), starts, ends, steps):
        n = data.value.shape[a]
        s, e = max(min(int(s), 2 * n + 1), -2 * n - 1), max(min(int(e), 2 * n + 1), -2 * n - 1)
        index[a] = slice(s, e, st)
    return [Static(data.value[tuple(index)], data.mask()[tuple(index)])]


def constant_of_shape(env, nd):
    dims = [int(d) for d in env.static(nd.inputs[0]).value.reshape(-1)]
    if any(d < 0 for d in dims) or int(np.prod(dims, dtype=np.float64)) > 1 << 24:
        raise NodeError(f"invalid or too large shape {dims}")
    fill = nd.attrs.get("value")
    fill = np.zeros(1, np.float32) if fill is None else np.asarray(fill).reshape(-1)
    if fill.size != 1:
        raise NodeError("value must hold one element")
    return [Static(np.full(dims, fill[0], dtype=fill.dtype))]


# ------------------------------------------------------------------------------------
# ops that PyTorch's exporters write for cat / slicing / permute / pad / gather / expand,
# ConvTranspose2d, interpolate, LayerNorm, amax / argmax, max / min, PReLU and LSTM
# (a node whose inputs are all static is still folded in numpy: see :func:`pick`)
# ------------------------------------------------------------------------------------
def _all_static(env, nd) -> bool:
    for name in nd.inputs:
        if name and (env.is_holder(name) or not isinstance(env.value(name), Static)):
            return False
    return True


def pick(env, nd) -> Callable:
    """The handler of ``nd``: the numpy fold when every input is static, else the compute one."""
    if nd.op in FOLD and (nd.op not in COMPUTE or _all_static(env, nd)):
        return FOLD[nd.op]
    return COMPUTE[nd.op][0]


def concat_t(env, nd):
    names = [n for n in nd.inputs if n]
    if not names:
        raise NodeError("needs inputs")
    xs = [env.tensor(n) for n in names]
    rank = xs[0].ndim
    if any(x.ndim != rank for x in xs):
        raise NodeError(f"inputs have different ranks {[x.ndim for x in xs]}")
    axis = _norm_axes([_int(nd, "axis", 0)], rank)[0]
    return [T.cat(env.tracer, xs, axis)]


def _slice_args(env, nd):
    if env.opset < 10:
        starts = _ints(nd.attrs.get("starts", []), "starts")
        ends = _ints(nd.attrs.get("ends", []), "ends")
        axes, steps = nd.attrs.get("axes"), None
    else:
        starts = [int(v) for v in env.static(_arg(nd, 1)).value.reshape(-1)]
        ends = [int(v) for v in env.static(_arg(nd, 2)).value.reshape(-1)]
        axes = [int(v) for v in env.static(_arg(nd, 3)).value.reshape(-1)] if _arg(nd, 3) \
            else None
        steps = [int(v) for v in env.static(_arg(nd, 4)).value.reshape(-1)] if _arg(nd, 4) \
            else None
    axes = list(range(len(starts))) if axes is None else list(axes)
    steps = [1] * len(starts) if steps is None else steps
    if not (len(starts) == len(ends) == len(axes) == len(steps)) or 0 in steps:
        raise NodeError("starts, ends, axes and steps must have one length, steps non-zero")
    return starts, ends, axes, steps


def slice_t(env, nd):
    x = env.tensor(nd.inputs[0])
    starts, ends, axes, steps = _slice_args(env, nd)
    for a, s, e, st in zip(_norm_axes(axes, x.ndim), starts, ends, steps):
        if st < 0:
            raise unsupported(f"negative step {st} (flip) on axis {a}")
        n = _shape(x)[a]
        s, e, _ = slice(s, e, st).indices(n)
        if e <= s:
            raise unsupported(f"an empty slice [{s}:{e}] of axis {a} (zero-size tensors)")
        if (s, e, st) != (0, n, 1):
            x = T.slice_(env.tracer, x, a, s, e, st)
    return [x]


def split_t(env, nd):
    x = env.tensor(nd.inputs[0])
    axis = _norm_axes([_int(nd, "axis", 0)], x.ndim)[0]
    n = _shape(x)[axis]
    if env.opset < 13:
        sizes = nd.attrs.get("split")
        sizes = None if sizes is None else _ints(sizes, "split")
    else:
        sizes = [int(v) for v in env.static(_arg(nd, 1)).value.reshape(-1)] if _arg(nd, 1) \
            else None
    outs = len(nd.outputs)
    if sizes is None:
        parts = _int(nd, "num_outputs", outs) if env.opset >= 18 else outs
        size = -(-n // parts)
        sizes = [min(size, n - s) for s in range(0, n, size)]
    if len(sizes) != outs or sum(sizes) != n or min(sizes) <= 0:
        raise NodeError(f"split sizes {sizes} do not give {outs} positive parts summing to "
                        f"{n} (axis {axis})")
    res = T.split(env.tracer, x, sizes, axis)
    return list(res)


def transpose(env, nd):
    x = env.tensor(nd.inputs[0])
    perm = nd.attrs.get("perm")
    perm = list(range(x.ndim))[::-1] if perm is None else _ints(perm, "perm")
    if sorted(_norm_axes(perm, x.ndim)) != list(range(x.ndim)):
        raise NodeError(f"perm {perm} is not a permutation of {x.ndim} axes")
    return [T.permute(env.tracer, x, perm)]


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


def pad(env, nd):
    x = env.tensor(nd.inputs[0])
    mode = _str(nd, "mode", "constant")
    if mode not in _PAD_MODES:
        raise unsupported(f"mode {mode!r} (constant, reflect, edge)")
    if env.opset < 11:
        pads, value = _ints(nd.attrs.get("pads", []), "pads"), _float(nd, "value", 0.0)
        axes = None
    else:
        pads = [int(v) for v in env.static(_arg(nd, 1)).value.reshape(-1)]
        value = float(_scalar(env, nd, 2, 0.0))
        axes = [int(v) for v in env.static(_arg(nd, 3)).value.reshape(-1)] if _arg(nd, 3) \
            else None
    axes = list(range(x.ndim)) if axes is None else _norm_axes(axes, x.ndim)
    if len(pads) != 2 * len(axes):
        raise NodeError(f"pads {pads} must hold 2 values per padded axis ({len(axes)})")
    before = dict(zip(axes, pads[:len(axes)]))
    after = dict(zip(axes, pads[len(axes):]))
    flat = []
    for d in range(x.ndim - 1, -1, -1):
        flat += [before.get(d, 0), after.get(d, 0)]
    while flat and flat[-2:] == [0, 0]:
        flat = flat[:-2]
    if not flat:
        return [x]
    if mode != "constant" and min(flat) < 0:
        raise unsupported(f"negative pads {pads} in mode {mode!r}")
    return [T.pad(env.tracer, x, flat, _PAD_MODES[mode], value if mode == "constant" else None)]


def gather_t(env, nd):
    x = env.tensor(nd.inputs[0])
    axis = _norm_axes([_int(nd, "axis", 0)], max(x.ndim, 1))[0]
    idx_name = _arg(nd, 1)
    idx_v = env.value(idx_name)
    if not isinstance(idx_v, Static) or env.is_holder(idx_name):
        if axis != 0 or x.ndim != 2:
            raise unsupported("gather with computed indices other than an embedding lookup "
                              "(2-D data, axis 0)")
        return [F.embedding(env.tensor(idx_name), x)]
    idx = idx_v.value
    if idx.dtype.kind not in "iu":
        raise NodeError(f"indices must be integers, got {idx.dtype}")
    n = _shape(x)[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise NodeError(f"index out of range for axis {axis} of size {n}")
    idx = np.where(idx < 0, idx + n, idx).astype(np.int64)
    if idx.ndim == 0:
        i = int(idx)
        return [T.slice_(env.tracer, x, axis, i, i + 1, drop=True)]
    flat = idx.reshape(-1)
    if flat.size and np.array_equal(flat, np.arange(flat[0], flat[0] + flat.size)):
        y = T.slice_(env.tracer, x, axis, int(flat[0]), int(flat[0]) + flat.size) \
            if flat.size != n else x
    else:
        y = T.index_select(env.tracer, x, axis, flat)
    if idx.ndim == 1:
        return [y]
    dims = _shape(x)[:axis] + list(idx.shape) + _shape(x)[axis + 1:]
    src = list(range(axis)) + [None] * idx.ndim + list(range(axis + 1, x.ndim))
    return [T.reshape_moved(env.tracer, y, dims, src)]


def _batch_dim(env, value: int):
    """``value`` as a dim that follows the batch of the model's first input at run time."""
    first = env.values.get(env.module.input_names[0])
    return T.Dim(value, 0, first.index) if first is not None and \
        hasattr(first, "index") else value


def expand(env, nd):
    x = env.tensor(nd.inputs[0])
    sh = env.static(_arg(nd, 1))
    dims, mask = [int(v) for v in sh.value.reshape(-1)], list(sh.mask().reshape(-1))
    rank = max(len(dims), x.ndim)
    xs = [1] * (rank - x.ndim) + _shape(x)
    ds = [1] * (rank - len(dims)) + dims
    ms = [False] * (rank - len(dims)) + mask
    sizes = []
    for i, (a, b, m) in enumerate(zip(xs, ds, ms)):
        if a != b and a != 1 and b != 1:
            raise NodeError(f"cannot expand shape {_shape(x)} to {dims}")
        out = max(a, b)
        if m and a == 1:
            sizes.append(_batch_dim(env, out))
        elif i >= rank - x.ndim and out == a:
            sizes.append(-1)
        else:
            sizes.append(out)
    return [T.expand(env.tracer, x, sizes)]


def conv_transpose(env, nd):
    x, w = env.tensor(nd.inputs[0]), env.tensor(_arg(nd, 1))
    b = env.tensor(_arg(nd, 2)) if _arg(nd, 2) else None
    _want_4d(x)
    if w.ndim != 4:
        raise unsupported(f"weight has shape {_shape(w)}; only 2-D transposed convolution")
    if _str(nd, "auto_pad", "NOTSET") != "NOTSET" or "output_shape" in nd.attrs:
        raise unsupported("auto_pad / output_shape (give pads and output_padding)")
    strides, dil = _pair_attr(nd, "strides", 1), _pair_attr(nd, "dilations", 1)
    group = _int(nd, "group", 1)
    pads = _ints(nd.attrs.get("pads", [0, 0, 0, 0]), "pads")
    out_pad = _ints(nd.attrs.get("output_padding", [0, 0]), "output_padding")
    if len(pads) != 4 or min(pads) < 0 or len(out_pad) != 2 or min(out_pad) < 0:
        raise NodeError(f"pads {pads} / output_padding {out_pad} are invalid")
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise unsupported(f"asymmetric pads {pads} [t, l, b, r]")
    return [F.conv_transpose2d(x, w, b, strides, pads[:2], out_pad, group, dil)]


def resize(env, nd):
    x = env.tensor(nd.inputs[0])
    _want_4d(x)
    mode = _str(nd, "mode", "nearest")
    coord = _str(nd, "coordinate_transformation_mode",
                 "half_pixel" if env.opset >= 11 else "asymmetric")
    if _int(nd, "antialias", 0) or nd.attrs.get("axes") is not None or \
            _str(nd, "keep_aspect_ratio_policy", "stretch") != "stretch":
        raise unsupported("antialias / axes / keep_aspect_ratio_policy")
    if env.opset < 11:
        scales, sizes = env.static(_arg(nd, 1)).value, None
    else:
        sc, sz = _arg(nd, 2), _arg(nd, 3)
        scales = env.static(sc).value if sc else None
        sizes = env.static(sz).value if sz else None
        if scales is not None and scales.size == 0:
            scales = None
    hw = _shape(x)[2:]
    if sizes is not None and sizes.size:
        size = [int(v) for v in sizes.reshape(-1)]
        if len(size) != 4 or size[:2] != _shape(x)[:2]:
            raise unsupported(f"sizes {size} resize other than the spatial dims")
        kw = {"size": tuple(size[2:])}
    elif scales is not None:
        s = [float(v) for v in scales.reshape(-1)]
        if len(s) != 4 or s[:2] != [1.0, 1.0]:
            raise unsupported(f"scales {s} resize other than the spatial dims")
        kw = {"scale_factor": tuple(s[2:])}
    else:
        raise NodeError("needs scales or sizes")
    if mode == "nearest":
        nmode = _str(nd, "nearest_mode", "round_prefer_floor")
        if coord != "asymmetric" or nmode != "floor":
            raise unsupported(f"nearest with coordinate_transformation_mode {coord!r} and "
                              f"nearest_mode {nmode!r} (only asymmetric + floor, PyTorch's)")
        return [F.interpolate(x, mode="nearest", **kw)]
    if mode == "linear":
        if coord == "align_corners":
            return [F.interpolate(x, mode="bilinear", align_corners=True, **kw)]
        if coord in ("half_pixel", "pytorch_half_pixel"):
            if coord == "half_pixel" and "size" in kw and 1 in kw["size"] and hw != [1, 1]:
                raise unsupported("half_pixel linear resize to a size-1 dim")
            return [F.interpolate(x, mode="bilinear", align_corners=False, **kw)]
        raise unsupported(f"linear with coordinate_transformation_mode {coord!r}")
    raise unsupported(f"mode {mode!r} (nearest, linear)")


def layer_norm(env, nd):
    x = env.tensor(nd.inputs[0])
    axis = _norm_axes([_int(nd, "axis", -1)], x.ndim)[0]
    if _int(nd, "stash_type", 1) != 1:
        raise unsupported("stash_type other than float")
    w = env.tensor(_arg(nd, 1)) if _arg(nd, 1) else None
    b = env.tensor(_arg(nd, 2)) if _arg(nd, 2) else None
    eps = _float(nd, "epsilon", 1e-5)
    return [F.layer_norm(x, _shape(x)[axis:], w, b, eps)]


def arg_max(env, nd):
    x = env.tensor(nd.inputs[0])
    if _int(nd, "select_last_index", 0):
        raise unsupported("select_last_index=1")
    axis = _norm_axes([_int(nd, "axis", 0)], x.ndim)[0]
    fn = F.argmin if nd.op == "ArgMin" else F.argmax
    return [fn(x, axis, bool(_int(nd, "keepdims", 1)))]


def max_min(env, nd):
    names = [n for n in nd.inputs if n]
    if not names:
        raise NodeError("needs inputs")
    fn = F.maximum if nd.op == "Max" else F.minimum
    y = env.tensor(names[0])
    for n in names[1:]:
        y = fn(y, env.tensor(n))
    return [y]


def prelu(env, nd):
    x, w = env.tensor(nd.inputs[0]), env.tensor(_arg(nd, 1))
    r = F.relu(x)
    return [F.add(r, F.mul(w, F.sub(x, r)))]


def lstm(env, nd):
    """ONNX LSTM (gates i, o, f, c) as PyTorch's recurrence (gates i, f, g, o) on the file's
    W [1, 4H, I], R [1, 4H, H] and B [1, 8H]: forward direction, default activations."""
    tr = env.tracer
    x, w, r = env.tensor(nd.inputs[0]), env.tensor(_arg(nd, 1)), env.tensor(_arg(nd, 2))
    if _str(nd, "direction", "forward") != "forward" or _int(nd, "input_forget", 0) or \
            nd.attrs.get("activations") is not None or nd.attrs.get("clip") is not None or \
            _int(nd, "layout", 0) or _arg(nd, 4) or _arg(nd, 7):
        raise unsupported("only the forward direction with default activations, no clip, "
                          "layout 0, no sequence_lens, no peepholes")
    if x.ndim != 3:
        raise NodeError(f"X must be [seq, batch, input], got {_shape(x)}")
    hid = _int(nd, "hidden_size", _shape(r)[-1])
    bias = env.tensor(_arg(nd, 3)) if _arg(nd, 3) else None
    h = T.reshape(tr, env.tensor(_arg(nd, 5)), [-1, hid]) \
        if _arg(nd, 5) else None
    c = T.reshape(tr, env.tensor(_arg(nd, 6)), [-1, hid]) if _arg(nd, 6) else None
    wk = T.reshape(tr, w, [4 * hid, -1])
    rk = T.reshape(tr, r, [4 * hid, hid])
    bk = None
    if bias is not None:
        bb = T.reshape(tr, bias, [2, 4 * hid])
        bk = T.add(tr, T.slice_(tr, bb, 0, 0, 1, drop=True), T.slice_(tr, bb, 0, 1, 2, drop=True))
    hs = []
    for t in range(_shape(x)[0]):
        xt = T.slice_(tr, x, 0, t, t + 1, drop=True)
        g = F.linear(xt, wk, bk)
        if h is not None:
            g = T.add(tr, g, F.linear(h, rk))
        i, o, f, cc = T.chunk(tr, g, 4, 1)
        i, o, f = T.sigmoid(tr, i), T.sigmoid(tr, o), T.sigmoid(tr, f)
        ig = T.mul(tr, i, T.tanh(tr, cc))
        c = ig if c is None else T.add(tr, T.mul(tr, f, c), ig)
        h = T.mul(tr, o, T.tanh(tr, c))
        hs.append(T.unsqueeze(tr, h, 0))
    y = T.unsqueeze(tr, T.cat(tr, hs, 0), 1)
    return [y, T.unsqueeze(tr, h, 0), T.unsqueeze(tr, c, 0)]


def _fold_np(fn: Callable, keep_batch: bool = False) -> Callable:
    """A numpy fold of an elementwise op on static inputs (shape arithmetic the exporters
    write, e.g. ``Where(Equal(shape, -1), ...)`` for ``x.expand(x.size(0), -1)``)."""
    def handler(env, nd):
        vals = [env.static(n) for n in nd.inputs if n]
        if not vals:
            raise NodeError("needs inputs")
        with np.errstate(all="ignore"):
            v = np.asarray(fn(nd, *[x.value for x in vals]))
        mask = None
        if keep_batch:  # an element taken unchanged from a batch-marked input stays marked
            mask = np.zeros(v.shape, bool)
            for x in vals:
                if x.batch is not None and x.value.dtype.kind in "iu":
                    xb = np.broadcast_to(x.value, v.shape)
                    mask |= np.broadcast_to(x.mask(), v.shape) & (xb == v)
        return [Static(v, mask)]
    return handler


def _np_mod(nd, a, b):
    if _int(nd, "fmod", 0):
        return np.fmod(a, b)
    if np.any(b == 0):
        raise NodeError("modulo by zero in a constant")
    return np.mod(a, b)


def _np_where(nd, c, a, b):
    return np.where(c.astype(bool), a, b)


def _np_maxmin(nd, *vals):
    fn = np.maximum if nd.op == "Max" else np.minimum
    out = vals[0]
    for v in vals[1:]:
        out = fn(out, v)
    return out


# op -> (handler, input positions that must be static)
COMPUTE: Dict[str, tuple] = {
    "Conv": (conv, ()),
    "BatchNormalization": (batch_norm, ()),
    "Relu": (_unary(F.relu), ()),
    "Clip": (clip, (1, 2)),
    "HardSwish": (_unary(F.hardswish), ()),
    "HardSigmoid": (hard_sigmoid, ()),
    "LeakyRelu": (leaky_relu, ()),
    "Sigmoid": (_unary(F.sigmoid), ()),
    "Tanh": (_unary(F.tanh), ()),
    "Elu": (elu, ()),
    "Softplus": (_unary(F.softplus), ()),
    "Gelu": (gelu, ()),
    "Exp": (_unary(F.exp), ()),
    "Log": (_unary(F.log), ()),
    "Sqrt": (_unary(F.sqrt), ()),
    "Abs": (_unary(F.abs), ()),
    "Neg": (_unary(F.neg), ()),
    "Erf": (_unary(F.erf), ()),
    "Softmax": (_softmax(False), ()),
    "LogSoftmax": (_softmax(True), ()),
    "MaxPool": (max_pool, ()),
    "AveragePool": (avg_pool, ()),
    "GlobalAveragePool": (global_avg_pool, ()),
    "ReduceMean": (_reduce(F.mean, 18), (1,)),
    "ReduceSum": (_reduce(F.sum, 13), (1,)),
    "Add": (binary, ()),
    "Sub": (binary, ()),
    "Mul": (binary, ()),
    "Div": (binary, ()),
    "Pow": (pow_, (1,)),
    "Gemm": (gemm, ()),
    "MatMul": (matmul, ()),
    "Flatten": (flatten, ()),
    "Reshape": (reshape, (1,)),
    "Unsqueeze": (unsqueeze, (1,)),
    "Squeeze": (squeeze, (1,)),
    "Dropout": (dropout, (1, 2)),
    "Identity": (identity, ()),
    "Cast": (cast, ()),
    "Concat": (concat_t, ()),
    "Slice": (slice_t, (1, 2, 3, 4)),
    "Split": (split_t, (1,)),
    "Transpose": (transpose, ()),
    "Pad": (pad, (1, 2, 3)),
    "Gather": (gather_t, ()),
    "Expand": (expand, (1,)),
    "ConvTranspose": (conv_transpose, ()),
    "Resize": (resize, (1, 2, 3)),
    "Upsample": (resize, (1,)),
    "LayerNormalization": (layer_norm, ()),
    "ReduceMax": (_reduce(F.amax, 18), (1,)),
    "ReduceMin": (_reduce(F.amin, 18), (1,)),
    "ArgMax": (arg_max, ()),
    "ArgMin": (arg_max, ()),
    "Max": (max_min, ()),
    "Min": (max_min, ()),
    "PRelu": (prelu, ()),
    "LSTM": (lstm, ()),
}
# evaluated in numpy; supported only when every input is static
FOLD: Dict[str, Callable] = {
    "Constant": constant,
    "Shape": shape,
    "Gather": gather,
    "Concat": concat,
    "Slice": slice_,
    "ConstantOfShape": constant_of_shape,
    "Equal": _fold_np(lambda nd, a, b: np.equal(a, b)),
    "Less": _fold_np(lambda nd, a, b: np.less(a, b)),
    "Greater": _fold_np(lambda nd, a, b: np.greater(a, b)),
    "Not": _fold_np(lambda nd, a: np.logical_not(a)),
    "Where": _fold_np(_np_where, keep_batch=True),
    "Mod": _fold_np(_np_mod),
    "Max": _fold_np(_np_maxmin, keep_batch=True),
    "Min": _fold_np(_np_maxmin, keep_batch=True),
}
# ops whose outputs are static whatever their input (the shape of a traced tensor is)
ALWAYS_STATIC = ("Constant", "Shape")
# the weight-like inputs: float initializers read there are parameters
WEIGHT_INPUTS = {"Conv": (1, 2), "Gemm": (1, 2), "MatMul": (0, 1),
                 "BatchNormalization": (1, 2), "ConvTranspose": (1, 2),
                 "LayerNormalization": (1, 2), "PRelu": (1,), "LSTM": (1, 2, 3)}
# optional outputs that no mapped op produces: reading them is unsupported
UNUSABLE_OUTPUTS = {"BatchNormalization": "running statistics / saved statistics",
                    "Dropout": "mask", "MaxPool": "indices",
                    "LayerNormalization": "mean / inverse standard deviation"}


def supported_ops() -> List[str]:
    return sorted(set(COMPUTE) | set(FOLD))


class Analysis:
    """What :func:`analyse` finds: supported or not, and the role of each initializer."""

    def __init__(self):
        self.unsupported: "OrderedDict[str, List[str]]" = OrderedDict()  # label -> node names
        self.params: List[str] = []
        self.buffers: List[str] = []
        self.static: set = set()
        self.needed: List[OnnxNode] = []

    def add(self, label: str, node: OnnxNode) -> None:
        self.unsupported.setdefault(label, []).append(node.name)

    def report(self, file: str) -> str:
        total = sum(len(v) for v in self.unsupported.values())
        parts = []
        for label, names in self.unsupported.items():
            shown = ", ".join(f"'{n}'" for n in names[:3]) + (", ..." if len(names) > 3 else "")
            parts.append(f"{label} x{len(names)} ({shown})")
        return (f"{file}: {total} node(s) cannot be converted: " + "; ".join(parts)
                + ". edgetrain maps: " + ", ".join(supported_ops()))


def needed_nodes(graph: OnnxGraph, outputs: Sequence[str], stop: Sequence[str] = ()
                 ) -> List[OnnxNode]:
    """The nodes the ``outputs`` depend on (not past the tensors in ``stop``), in order."""
    producer = graph.producers()
    want, seen = list(outputs), set(stop)
    keep = set()
    while want:
        name = want.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        nd = producer.get(name)
        if nd is not None and nd.index not in keep:
            keep.add(nd.index)
            want.extend(nd.inputs)
    return [nd for nd in graph.nodes if nd.index in keep]


def analyse(graph: OnnxGraph, nodes: Optional[List[OnnxNode]] = None) -> Analysis:
    """Support and initializer roles for ``nodes`` (default: those the outputs need)."""
    res = Analysis()
    res.needed = needed_nodes(graph, graph.outputs) if nodes is None else nodes
    static = set(graph.initializers)
    readers: Dict[str, List[OnnxNode]] = {}
    for nd in res.needed:
        for i in nd.inputs:
            readers.setdefault(i, []).append(nd)
    params, buffers = OrderedDict(), OrderedDict()
    outputs = set(graph.outputs)
    for nd in res.needed:
        if nd.domain not in DEFAULT_DOMAINS:
            res.add(f"{nd.op} (domain '{nd.domain}')", nd)
            continue
        ins = [i for i in nd.inputs if i]
        reads_weight = nd.op in COMPUTE and any(_is_weight(graph, i) for i in ins)
        if nd.op in ALWAYS_STATIC or (nd.op in FOLD and all(i in static for i in ins)
                                      and not reads_weight):
            static.update(o for o in nd.outputs if o)
            continue
        if nd.op in FOLD and nd.op not in COMPUTE:
            res.add(f"{nd.op} (of computed tensors)", nd)
            continue
        if nd.op not in COMPUTE:
            res.add(nd.op, nd)
            continue
        _, static_pos = COMPUTE[nd.op]
        bad = [nd.inputs[k] for k in static_pos if k < len(nd.inputs) and nd.inputs[k]
               and nd.inputs[k] not in static]
        if bad:
            res.add(f"{nd.op} (input '{bad[0]}' computed from data)", nd)
            continue
        extra = [o for o in nd.outputs[1:] if o and (o in readers or o in outputs)]
        if extra and nd.op in UNUSABLE_OUTPUTS:
            res.add(f"{nd.op} (its {UNUSABLE_OUTPUTS[nd.op]} output is read)", nd)
            continue
        data_ins = [i for k, i in enumerate(nd.inputs) if i and k not in static_pos]
        if data_ins and all(i in static for i in data_ins) and nd.op in (
                "Add", "Sub", "Mul", "Div", "Identity", "Cast", "Reshape", "Unsqueeze",
                "Squeeze") and not any(_is_weight(graph, i) for i in data_ins):
            static.update(o for o in nd.outputs if o)  # folded in numpy
            continue
        if nd.op == "BatchNormalization":
            for k in (3, 4):
                name = _arg(nd, k)
                if name not in graph.initializers:
                    res.add("BatchNormalization (running statistics not initializers)", nd)
                    break
                buffers[name] = None
        for k, name in enumerate(nd.inputs):
            if name in graph.initializers and k not in static_pos and \
                    _float_init(graph, name) and (k in WEIGHT_INPUTS.get(nd.op, ()) or
                                                  graph.initializers[name].size > 1):
                params[name] = None
    for name in buffers:
        params.pop(name, None)
    res.params, res.buffers, res.static = list(params), list(buffers), static
    return res


def _float_init(graph: OnnxGraph, name: str) -> bool:
    return graph.initializers[name].dtype.kind == "f"


def _is_weight(graph: OnnxGraph, name: str) -> bool:
    arr = graph.initializers.get(name)
    return arr is not None and arr.dtype.kind == "f" and arr.size > 1
