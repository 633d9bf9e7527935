"""``edgetrain.nn.functional``: PyTorch-named functions that emit graph nodes while tracing.

Composite functions (linear, relu6, mean, the distillation loss...) are written with the
primitive ops of :mod:`edgetrain.ops` and need no kernel or gradient of their own.
The operations behind the traced Tensor's operators and methods (``add``, ``reshape``,
``sum``, ``relu``, ``softmax``...) live in :mod:`edgetrain.tensor_ops`; here they get the
active tracer. Scalar operands of ``+ - * /`` become one ``affine`` node.
"""
from __future__ import annotations

import builtins
import numbers
from typing import Optional, Sequence, Tuple

import numpy as np

from .. import ir, tensor_ops as T, tracing
from ..errors import InvalidArgumentError, UnsupportedError
from ..ops import (ACT_HARDSWISH, ACT_LEAKY_RELU, ACT_RELU6, INTERP_BILINEAR, INTERP_NEAREST,
                   REDUCTION_MEAN, REDUCTION_NONE, REDUCTION_SUM, RESHAPE_DIMS, UN_IN_RANGE)

__all__ = ["conv2d", "linear", "matmul", "relu", "relu6", "leaky_relu", "sigmoid", "tanh",
           "hardswish", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "flatten",
           "reshape", "dropout", "batch_norm", "softmax", "log_softmax", "add", "sub", "mul",
           "div", "affine", "sum", "mean", "cross_entropy", "mse_loss", "l1_loss",
           "multi_margin_loss", "kl_div", "exp", "log", "sqrt", "rsqrt", "abs", "neg", "erf",
           "pow", "clamp", "silu", "gelu", "hardsigmoid", "elu", "softplus", "embedding",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "nll_loss",
           "smooth_l1_loss", "huber_loss", "conv1d", "conv_transpose2d", "interpolate",
           "adaptive_max_pool2d",
           "cat", "concat", "stack", "split", "chunk", "narrow", "transpose", "permute",
           "squeeze", "unsqueeze", "expand", "pad", "gather", "index_select"]


def _tr() -> tracing.Tracer:
    return tracing.require()


def _pair(v, name: str) -> Tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


# ------------------------------------------------------------------------------------
# convolution and linear
# ------------------------------------------------------------------------------------
def conv_padding(padding, kernel: Tuple[int, int], dilation: Tuple[int, int]
                 ) -> Tuple[int, int, int, int]:
    """(top, left, bottom, right) from an int, a pair, a 4-tuple, 'valid' or 'same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
            return th // 2, tw // 2, th - th // 2, tw - tw // 2
        raise ValueError(f"padding must be 'valid', 'same', an int or a tuple, got {padding!r}")
    if isinstance(padding, (tuple, list)):
        if len(padding) == 4:
            return tuple(int(p) for p in padding)
        ph, pw = _pair(padding, "padding")
        return ph, pw, ph, pw
    p = int(padding)
    return p, p, p, p


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """2-D convolution, NCHW, weight [OC, C/groups, KH, KW]. ``padding`` may be a 4-tuple
    (top, left, bottom, right) for asymmetric padding."""
    tr = _tr()
    w = tr.as_tensor(weight)
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    if isinstance(padding, str) and padding == "same" and (sh, sw) != (1, 1):
        raise ValueError("padding='same' needs stride 1 (as in PyTorch)")
    pt, pl, pb, pr = conv_padding(padding, tuple(w.shape[2:4]) if w.ndim == 4 else (1, 1),
                                  (dh, dw))
    return tr.emit1("conv2d", [input, w, bias], stride_h=sh, stride_w=sw, pad_t=pt, pad_l=pl,
                    pad_b=pb, pad_r=pr, dil_h=dh, dil_w=dw, groups=groups, act=0)


def matmul(a, b):
    """Matrix product: two 2-D tensors (matmul op) or [..., M, K] @ [..., K, N] with broadcast
    batch dims (bmm op)."""
    return T.matmul(_tr(), a, b)


def linear(input, weight, bias=None):
    """y = x W^T + b with W [out, in] (PyTorch layout); x [N, in] or [N, *, in] (the leading
    dims are flattened for one 2-D matmul and restored)."""
    tr = _tr()
    x = tr.as_tensor(input)
    if x.ndim < 2:
        raise ValueError(f"layer '{tr.layer or '<root>'}': linear expects an input [N, in] or "
                         f"[N, *, in], got shape {tuple(x.shape)}")
    lead = [int(n) for n in x.shape[1:-1]]
    if lead:
        x = tr.emit1("reshape", [x], ndim=2, d0=-1, d1=int(x.shape[-1]))
    y = tr.emit1("matmul", [x, weight], trans_a=0, trans_b=1)
    if bias is not None:
        y = tr.emit1("add", [y, bias])
    if lead:
        dims = [-1] + lead + [int(y.shape[-1])]
        y = tr.emit1("reshape", [y], ndim=len(dims), **dict(zip(RESHAPE_DIMS, dims)))
    return y


# ------------------------------------------------------------------------------------
# activations
# ------------------------------------------------------------------------------------
def relu(input, inplace: bool = False):
    return T.relu(_tr(), input)


def relu6(input, inplace: bool = False):
    return T.act(_tr(), input, ACT_RELU6)


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False):
    return T.act(_tr(), input, ACT_LEAKY_RELU, negative_slope)


def sigmoid(input):
    return T.sigmoid(_tr(), input)


def tanh(input):
    return T.tanh(_tr(), input)


def hardswish(input, inplace: bool = False):
    return T.act(_tr(), input, ACT_HARDSWISH)


# composites: built from existing ops, so they need no kernel and no gradient rule of their own
def silu(input, inplace: bool = False):
    """x * sigmoid(x)."""
    tr = _tr()
    return T.mul(tr, input, T.sigmoid(tr, input))


def gelu(input, approximate: str = "none"):
    """0.5 x (1 + erf(x / sqrt 2)); ``approximate='tanh'``: 0.5 x (1 + tanh(sqrt(2/pi) (x +
    0.044715 x^3)))."""
    tr = _tr()
    if approximate == "none":
        phi = T.erf(tr, T.affine(tr, input, 0.7071067811865476, 0.0))
    elif approximate == "tanh":
        inner = T.add(tr, input, T.affine(tr, T.pow(tr, input, 3), 0.044715, 0.0))
        phi = T.tanh(tr, T.affine(tr, inner, 0.7978845608028654, 0.0))
    else:
        raise InvalidArgumentError(f"gelu: approximate must be 'none' or 'tanh', not "
                                   f"{approximate!r}")
    return T.mul(tr, input, T.affine(tr, phi, 0.5, 0.5))


def hardsigmoid(input, inplace: bool = False):
    """relu6(x + 3) / 6."""
    tr = _tr()
    return T.affine(tr, T.act(tr, T.affine(tr, input, 1.0, 3.0), ACT_RELU6), 1.0 / 6.0, 0.0)


def elu(input, alpha: float = 1.0, inplace: bool = False):
    """x for x > 0, alpha (exp(x) - 1) otherwise: relu(x) + alpha (exp(min(x, 0)) - 1)."""
    tr = _tr()
    neg = T.affine(tr, T.exp(tr, T.clamp(tr, input, None, 0.0)), float(alpha), -float(alpha))
    return T.add(tr, T.relu(tr, input), neg)


# below this threshold the exact switch to x is emitted; above it the stable form already
# equals x to float32 precision (log1p(exp(-16)) / 16 < 1e-8)
_SOFTPLUS_EXACT_BELOW = 16.0


def softplus(input, beta: float = 1.0, threshold: float = 20.0):
    """log(1 + exp(beta x)) / beta, as relu(z) + log(1 + exp(-|z|)) with z = beta x (stable);
    x where beta x > threshold."""
    beta, threshold = float(beta), float(threshold)
    if not beta > 0.0:
        raise InvalidArgumentError(f"softplus: beta must be > 0, not {beta}")
    tr = _tr()
    z = T.affine(tr, input, beta, 0.0) if beta != 1.0 else input
    tail = T.exp(tr, T.affine(tr, T.abs(tr, z), -1.0, 0.0))
    sp = T.add(tr, T.relu(tr, z), T.log(tr, T.affine(tr, tail, 1.0, 1.0)))
    if beta != 1.0:
        sp = T.affine(tr, sp, 1.0 / beta, 0.0)
    if threshold >= _SOFTPLUS_EXACT_BELOW:
        return sp
    above = T.unary(tr, z, UN_IN_RANGE, float(np.nextafter(np.float32(threshold), np.float32(np.inf))),
                    float("inf"))
    return T.add(tr, sp, T.mul(tr, above, T.sub(tr, input, sp)))


# ------------------------------------------------------------------------------------
# pooling and shapes
# ------------------------------------------------------------------------------------
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    if return_indices:
        raise NotImplementedError("max_pool2d(return_indices=True) is not supported")
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(stride if stride is not None else (kh, kw), "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    return _tr().emit1("maxpool2d", [input], kh=kh, kw=kw, stride_h=sh, stride_w=sw,
                       pad_h=ph, pad_w=pw, dil_h=dh, dil_w=dw, ceil_mode=int(ceil_mode))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None):
    if divisor_override is not None:
        raise NotImplementedError("avg_pool2d(divisor_override=...) is not supported")
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(stride if stride is not None else (kh, kw), "stride")
    ph, pw = _pair(padding, "padding")
    return _tr().emit1("avgpool2d", [input], kh=kh, kw=kw, stride_h=sh, stride_w=sw,
                       pad_h=ph, pad_w=pw, ceil_mode=int(ceil_mode),
                       count_include_pad=int(count_include_pad))


def adaptive_avg_pool2d(input, output_size):
    """Average over PyTorch's adaptive windows (rows floor(i*H/OH) .. ceil((i+1)*H/OH)) to any
    output size; ``None`` in ``output_size`` keeps that input size. Size 1 is global pooling."""
    tr = _tr()
    x = tr.as_tensor(input)
    oh, ow = _out_size2(tr, x, output_size, "adaptive_avg_pool2d")
    if (oh, ow) == (1, 1):
        return tr.emit1("global_avgpool", [x])
    return tr.emit1("adaptive_avgpool2d", [x], oh=oh, ow=ow)


def adaptive_max_pool2d(input, output_size, return_indices: bool = False):
    """Maximum over PyTorch's adaptive windows (the first maximum; a NaN wins)."""
    tr = _tr()
    if return_indices:
        raise UnsupportedError(f"layer '{tr.layer or '<root>'}': adaptive_max_pool2d"
                               "(return_indices=True) is not supported")
    x = tr.as_tensor(input)
    oh, ow = _out_size2(tr, x, output_size, "adaptive_max_pool2d")
    return tr.emit1("adaptive_maxpool2d", [x], oh=oh, ow=ow)


def _out_size2(tr, x, size, what: str) -> Tuple[int, int]:
    """(oh, ow) from an int or a pair (None keeps the input size) for a 4-D input."""
    where = f"layer '{tr.layer or '<root>'}': {what}"
    if x.ndim != 4:
        raise UnsupportedError(f"{where} supports 4-D input [N, C, H, W] only, got shape "
                               f"{tuple(x.shape)}")
    pair = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if len(pair) != 2:
        raise InvalidArgumentError(f"{where}: output size must be an int or a pair, got {size!r}")
    out = tuple(int(x.shape[2 + i]) if v is None else int(v) for i, v in enumerate(pair))
    if builtins.min(out) < 1:
        raise InvalidArgumentError(f"{where}: output size must be positive, got {size!r}")
    return out


def reshape(input, shape: Sequence[int]):
    """Reshape; one dim may be -1. Dims read from ``x.shape`` / ``x.size(d)`` at the same
    position stay dynamic (they follow the batch size after ``Resize``)."""
    return T.reshape(_tr(), input, shape)


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    return T.flatten(_tr(), input, start_dim, end_dim)


# ------------------------------------------------------------------------------------
# regularisation and normalisation
# ------------------------------------------------------------------------------------
def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    tr = _tr()
    if not training or p == 0.0:
        return tr.as_tensor(input)
    if p == 1.0:
        return tr.emit1("affine", [input], alpha=0.0, beta=0.0)
    return tr.emit1("dropout", [input], stream=tr.next_stream(), p=p)


def batch_norm(input, running_mean, running_var, weight=None, bias=None,
               training: bool = False, momentum: Optional[float] = 0.1, eps: float = 1e-5):
    """Batch normalisation over channel dim 1. ``training`` uses batch statistics and updates
    the running statistics (batchnorm_train); otherwise the running statistics are used."""
    tr = _tr()
    x = tr.as_tensor(input)
    c = _channels(tr, x, "batch_norm", 2, "[N, C, ...]")
    gamma = tr.const(np.ones(c, np.float32)) if weight is None else weight
    beta = tr.const(np.zeros(c, np.float32)) if bias is None else bias
    if training:
        if momentum is None:
            raise NotImplementedError("batch_norm(momentum=None) (cumulative moving average) "
                                      "is not supported")
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm in training mode needs running_mean and running_var "
                             "buffers (register non-persistent ones if they are not wanted)")
        return tr.emit("batchnorm_train", [x, gamma, beta, running_mean, running_var],
                       momentum=momentum, eps=eps)[0]
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm in eval mode needs running statistics")
    return tr.emit1("batchnorm_infer", [x, gamma, beta, running_mean, running_var], eps=eps)


# ------------------------------------------------------------------------------------
# softmax
# ------------------------------------------------------------------------------------
def softmax(input, dim: int = None):
    return T.softmax(_tr(), input, dim)


def log_softmax(input, dim: int = None):
    return T.log_softmax(_tr(), input, dim)


# ------------------------------------------------------------------------------------
# elementwise arithmetic and reductions
# ------------------------------------------------------------------------------------
def affine(input, alpha: float = 1.0, beta: float = 0.0):
    """alpha * x + beta."""
    return T.affine(_tr(), input, alpha, beta)


def exp(input):
    return T.exp(_tr(), input)


def log(input):
    return T.log(_tr(), input)


def sqrt(input):
    return T.sqrt(_tr(), input)


def rsqrt(input):
    return T.rsqrt(_tr(), input)


def abs(input):  # noqa: A001 - PyTorch's name
    return T.abs(_tr(), input)


def neg(input):
    return T.neg(_tr(), input)


def erf(input):
    return T.erf(_tr(), input)


def pow(input, exponent):  # noqa: A001 - PyTorch's name
    """``input ** exponent`` for a scalar exponent."""
    return T.pow(_tr(), input, exponent)


def clamp(input, min=None, max=None):  # noqa: A002 - PyTorch's names
    """Clamp to [min, max] (either may be None); gradient 0 outside, as PyTorch."""
    return T.clamp(_tr(), input, min, max)


def add(a, b):
    return T.add(_tr(), a, b)


def sub(a, b):
    return T.sub(_tr(), a, b)


def mul(a, b):
    return T.mul(_tr(), a, b)


def div(a, b):
    return T.div(_tr(), a, b)


def sum(input, dim=None, keepdim: bool = False):  # noqa: A001 - PyTorch's name
    return T.sum(_tr(), input, dim, keepdim)


def mean(input, dim=None, keepdim: bool = False):
    return T.mean(_tr(), input, dim, keepdim)


# ------------------------------------------------------------------------------------
# losses (all reduce to a scalar mean, as PyTorch's default)
# ------------------------------------------------------------------------------------
def _check_reduction(reduction: str, allowed=("mean",)) -> None:
    if reduction not in allowed:
        raise NotImplementedError(f"reduction={reduction!r} is not supported "
                                  f"(supported: {', '.join(allowed)})")


_REDUCTIONS = ("mean", "sum", "none")
_NLL_REDUCTION = {"none": REDUCTION_NONE, "sum": REDUCTION_SUM, "mean": REDUCTION_MEAN}


def _no_legacy_reduction(size_average, reduce) -> None:
    if size_average is not None or reduce is not None:
        raise NotImplementedError("size_average / reduce are deprecated in PyTorch and not "
                                  "supported; use reduction='mean', 'sum' or 'none'")


def _reduce_loss(tr, loss, reduction: str):
    """An elementwise loss reduced as PyTorch's ``reduction`` ('none' returns it)."""
    if reduction == "mean":
        return T.mean(tr, loss)
    if reduction == "sum":
        return T.sum(tr, loss)
    return loss


def _weighted(tr, loss, weight):
    return loss if weight is None else T.mul(tr, loss, weight)


def _nll(tr, logp, target, weight, ignore_index: int, reduction: str, eps: float = 0.0):
    logp = tr.as_tensor(logp)
    w = None
    if weight is not None:
        if logp.ndim < 2:
            raise InvalidArgumentError(f"layer '{tr.layer or '<root>'}': the input must be "
                                       f"[N, C, ...], got shape {tuple(logp.shape)}")
        w = _class_weight(tr, weight, int(logp.shape[1]), 2)
    return tr.emit1("nll", [logp, target, w], ignore_index=int(ignore_index),
                    reduction=_NLL_REDUCTION[reduction], label_smoothing=float(eps))


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100,
                  reduce=None, reduction: str = "mean", label_smoothing: float = 0.0):
    """Softmax cross-entropy of logits [N, C] (or [N, C, d...]): integer class labels [N]
    or class probabilities [N, C]. The defaults on 2-D logits use the fused ops
    (softmax_xent, softmax_xent_prob; a label of -100 is then out of range); class ``weight``,
    ``label_smoothing``, another reduction or more dims use log_softmax + nll (PyTorch's
    formula, ``ignore_index`` honoured)."""
    _no_legacy_reduction(size_average, reduce)
    _check_reduction(reduction, _REDUCTIONS)
    label_smoothing = float(label_smoothing)
    if not 0.0 <= label_smoothing <= 1.0:
        raise InvalidArgumentError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                                   f"{label_smoothing}")
    tr = _tr()
    logits = tr.as_tensor(input)
    t = tr.as_tensor(target)
    plain = (weight is None and label_smoothing == 0.0 and reduction == "mean"
             and logits.ndim == 2)
    if t.dtype == ir.I32:
        if plain and ignore_index == -100:
            return tr.emit("softmax_xent", [logits, t])[0]
        return _nll(tr, T.log_softmax(tr, logits, 1), t, weight, ignore_index, reduction,
                    label_smoothing)
    if plain:
        return tr.emit("softmax_xent_prob", [logits, t])[0]
    return _soft_target_xent(tr, logits, t, weight, reduction, label_smoothing)


def _soft_target_xent(tr, logits, t, weight, reduction: str, eps: float):
    """-sum_c w_c t'_c log_softmax(x)_c with t' = (1 - eps) t + eps / C; 'mean' divides by the
    number of rows (N times the trailing dims), as PyTorch for probability targets."""
    if logits.ndim < 2:
        raise InvalidArgumentError(f"layer '{tr.layer or '<root>'}': cross_entropy expects "
                                   f"logits [N, C, ...], got shape {tuple(logits.shape)}")
    c = int(logits.shape[1])
    logp = T.log_softmax(tr, logits, 1)
    if eps != 0.0:
        t = T.affine(tr, t, 1.0 - eps, eps / c)
    prod = T.mul(tr, logp, t)
    if weight is not None:
        prod = T.mul(tr, prod, _class_weight(tr, weight, c, logits.ndim))
    return _reduce_loss(tr, T.neg(tr, T.sum(tr, prod, 1)), reduction)


def _class_weight(tr, weight, c: int, ndim: int):
    """``weight`` [C] as a tensor broadcasting along dim 1 of an ``ndim``-D input."""
    traced = isinstance(weight, (tracing.Tensor, tracing.Holder))
    w = tr.as_tensor(weight if traced else np.asarray(weight, np.float32))
    if tuple(w.shape) != (c,):
        raise InvalidArgumentError(f"layer '{tr.layer or '<root>'}': weight must have one value "
                                   f"per class ({c}), got shape {tuple(w.shape)}")
    return T.reshape(tr, w, [c] + [1] * (ndim - 2)) if ndim > 2 else w


def mse_loss(input, target, reduction: str = "mean"):
    _check_reduction(reduction)
    return _tr().emit1("mse", [input, target])


def l1_loss(input, target, reduction: str = "mean"):
    _check_reduction(reduction)
    return _tr().emit1("l1", [input, target])


def multi_margin_loss(input, target, p: int = 1, margin: float = 1.0, weight=None,
                      reduction: str = "mean"):
    """Multi-class hinge loss (PyTorch MultiMarginLoss, p=1, no class weights)."""
    if p != 1 or weight is not None:
        raise NotImplementedError("multi_margin_loss supports only p=1 without weights")
    _check_reduction(reduction)
    return _tr().emit1("hinge", [input, target], margin=margin)


def kl_div(input, target, reduction: str = "mean", log_target: bool = False):
    """KL divergence; ``input`` holds log-probabilities, ``target`` probabilities.
    'batchmean' divides by the batch size (rows), 'mean' by the element count."""
    if log_target:
        raise NotImplementedError("kl_div(log_target=True) is not supported")
    _check_reduction(reduction, ("batchmean", "mean"))
    tr = _tr()
    x, t = tr.as_tensor(input), tr.as_tensor(target)
    if x.ndim != 2:
        x = flatten(x, 1) if x.ndim > 2 else reshape(x, [1, -1])
        t = flatten(t, 1) if t.ndim > 2 else reshape(t, [1, -1])
    loss = tr.emit1("kldiv", [x, t])
    if reduction == "mean":
        loss = affine(loss, 1.0 / int(x.shape[1]))
    return loss


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction: str = "mean"):
    """-w (t log x + (1 - t) log(1 - x)) of probabilities ``input`` (logs clamped at -100, as
    PyTorch); ``weight`` broadcasts against the input."""
    _no_legacy_reduction(size_average, reduce)
    _check_reduction(reduction, _REDUCTIONS)
    tr = _tr()
    loss = tr.emit1("bce", [input, target])
    return _reduce_loss(tr, _weighted(tr, loss, weight), reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction: str = "mean", pos_weight=None):
    """BCE of sigmoid(``input``) in the stable form (1 - t) x + lw softplus(-x) with
    lw = 1 + (pos_weight - 1) t (``pos_weight`` broadcasts against the target, e.g. [C])."""
    _no_legacy_reduction(size_average, reduce)
    _check_reduction(reduction, _REDUCTIONS)
    tr = _tr()
    lw = None
    if pos_weight is not None:
        pw = T.affine(tr, pos_weight, 1.0, -1.0)
        lw = T.affine(tr, T.mul(tr, target, pw), 1.0, 1.0)
    loss = tr.emit1("bce_logits", [input, target, lw])
    return _reduce_loss(tr, _weighted(tr, loss, weight), reduction)


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100,
             reduce=None, reduction: str = "mean"):
    """Negative log-likelihood of log-probabilities [N, C] or [N, C, d...] with integer
    targets [N] or [N, d...]; 'mean' divides by the summed class weights of the targets
    that are not ``ignore_index`` (PyTorch)."""
    _no_legacy_reduction(size_average, reduce)
    _check_reduction(reduction, _REDUCTIONS)
    tr = _tr()
    return _nll(tr, input, target, weight, ignore_index, reduction)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0):
    """0.5 d^2 / beta where |d| < beta, else |d| - beta / 2 (d = input - target); beta = 0 is
    the L1 loss."""
    _no_legacy_reduction(size_average, reduce)
    _check_reduction(reduction, _REDUCTIONS)
    beta = float(beta)
    if not beta >= 0.0 or not np.isfinite(beta):
        raise InvalidArgumentError(f"smooth_l1_loss: beta must be a finite number >= 0, got "
                                   f"{beta}")
    tr = _tr()
    if beta == 0.0:
        loss = T.abs(tr, T.sub(tr, input, target))
    else:
        loss = tr.emit1("huber", [input, target], delta=beta, scale=1.0 / beta)
    return _reduce_loss(tr, loss, reduction)


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0):
    """0.5 d^2 where |d| < delta, else delta (|d| - delta / 2) (d = input - target)."""
    _check_reduction(reduction, _REDUCTIONS)
    delta = float(delta)
    if not delta > 0.0 or not np.isfinite(delta):
        raise InvalidArgumentError(f"huber_loss: delta must be a finite number > 0, got {delta}")
    tr = _tr()
    return _reduce_loss(tr, tr.emit1("huber", [input, target], delta=delta, scale=1.0),
                        reduction)


# ------------------------------------------------------------------------------------
# embedding
# ------------------------------------------------------------------------------------
def embedding(input, weight, padding_idx=None, max_norm=None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False):
    """Rows of ``weight`` [V, D] picked by the integer ``input`` (any shape): output
    ``input.shape + (D,)``. An index outside [0, V) is an error at run time. No gradient
    flows into row ``padding_idx``."""
    tr = _tr()
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError(f"layer '{tr.layer or '<root>'}': embedding with max_norm, "
                                  "scale_grad_by_freq or sparse is not supported")
    w = tr.as_tensor(weight)
    idx = tr.as_tensor(input)
    if idx.dtype != ir.I32:
        raise InvalidArgumentError(f"layer '{tr.layer or '<root>'}': embedding indices must be "
                                   f"integers (int64 data, an int64 input or label), got "
                                   f"{idx.dtype}")
    pad = -1
    if padding_idx is not None:
        v = int(w.shape[0]) if w.ndim == 2 else 0
        pad = int(padding_idx)
        if not -v <= pad < v:
            raise InvalidArgumentError(f"layer '{tr.layer or '<root>'}': padding_idx {padding_idx} "
                                       f"must be within num_embeddings ({v})")
        pad = pad % v
    return tr.emit1("embedding", [w, idx], padding_idx=pad)
# ------------------------------------------------------------------------------------
# 1-D and transposed convolution, resampling
# ------------------------------------------------------------------------------------
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """1-D convolution, x [N, C, L], weight [OC, C/groups, K] (PyTorch layout); computed as
    conv2d on [N, C, 1, L]. ``padding``: int, (p,), 'valid' or 'same'."""
    tr = _tr()
    x, w = tr.as_tensor(input), tr.as_tensor(weight)
    where = f"layer '{tr.layer or '<root>'}': conv1d"
    if x.ndim != 3 or w.ndim != 3:
        raise InvalidArgumentError(f"{where} expects input [N, C, L] and weight [OC, C/groups, K], "
                                   f"got {tuple(x.shape)} and {tuple(w.shape)}")
    s, d = _single(stride, "stride"), _single(dilation, "dilation")
    if isinstance(padding, str):
        if padding == "same" and s != 1:
            raise InvalidArgumentError(f"{where}: padding='same' needs stride 1 (as in PyTorch)")
        _, pl, _, pr = conv_padding(padding, (1, int(w.shape[2])), (1, d))
    else:
        pl = pr = _single(padding, "padding")
    x4 = tr.emit1("reshape", [x], ndim=4, d0=0, d1=int(x.shape[1]), d2=1, d3=int(x.shape[2]))
    w4 = tr.emit1("reshape", [w], ndim=4, d0=int(w.shape[0]), d1=int(w.shape[1]), d2=1,
                  d3=int(w.shape[2]))
    y = tr.emit1("conv2d", [x4, w4, bias], stride_h=1, stride_w=s, pad_t=0, pad_l=pl, pad_b=0,
                 pad_r=pr, dil_h=1, dil_w=d, groups=groups, act=0)
    return tr.emit1("reshape", [y], ndim=3, d0=0, d1=int(y.shape[1]), d2=int(y.shape[3]))


def _single(v, name: str) -> int:
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise InvalidArgumentError(f"{name} must be an int or a 1-tuple, got {v!r}")
        return int(v[0])
    return int(v)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups: int = 1, dilation=1):
    """Transposed 2-D convolution, NCHW, weight [C, OC/groups, KH, KW] (PyTorch layout);
    output size (H-1)*stride - 2*padding + dilation*(KH-1) + output_padding + 1."""
    tr = _tr()
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    oph, opw = _pair(output_padding, "output_padding")
    dh, dw = _pair(dilation, "dilation")
    return tr.emit1("conv_transpose2d", [input, weight, bias], stride_h=sh, stride_w=sw,
                    pad_h=ph, pad_w=pw, out_pad_h=oph, out_pad_w=opw, dil_h=dh, dil_w=dw,
                    groups=groups)


_INTERP_MODES = {"nearest": INTERP_NEAREST, "bilinear": INTERP_BILINEAR}


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest",
                align_corners: Optional[bool] = None, recompute_scale_factor: Optional[bool] = None,
                antialias: bool = False):
    """Resize a 4-D input by ``size`` or ``scale_factor`` (PyTorch's index formulas):
    mode 'nearest' (floor(dst * in/out)), 'bilinear' (``align_corners`` both ways) or 'area'
    (adaptive average pooling)."""
    tr = _tr()
    x = tr.as_tensor(input)
    where = f"layer '{tr.layer or '<root>'}': interpolate"
    if mode not in _INTERP_MODES and mode != "area":
        raise UnsupportedError(f"{where}: mode {mode!r} is not supported (nearest, bilinear, "
                               "area)")
    if antialias:
        raise UnsupportedError(f"{where}: antialias=True is not supported")
    if align_corners is not None and mode != "bilinear":
        raise InvalidArgumentError(f"{where}: align_corners can only be set with mode "
                                   f"'bilinear', got mode {mode!r}")
    if (size is None) == (scale_factor is None):
        raise InvalidArgumentError(f"{where}: give exactly one of size or scale_factor")
    if x.ndim != 4:
        raise UnsupportedError(f"{where} supports 4-D input [N, C, H, W] only, got shape "
                               f"{tuple(x.shape)}")
    scales = (0.0, 0.0)
    if size is not None:
        oh, ow = _out_size2(tr, x, size, "interpolate")
    else:
        sf = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2
        if len(sf) != 2 or not all(float(v) > 0 and np.isfinite(float(v)) for v in sf):
            raise InvalidArgumentError(f"{where}: scale_factor must be a positive number or a "
                                       f"pair, got {scale_factor!r}")
        oh, ow = (int(np.floor(int(x.shape[2 + i]) * float(sf[i]))) for i in range(2))
        if builtins.min(oh, ow) < 1:
            raise InvalidArgumentError(f"{where}: scale_factor {scale_factor!r} gives an empty "
                                       f"output for input {tuple(x.shape)}")
        if not recompute_scale_factor:
            scales = (float(sf[0]), float(sf[1]))
    if mode == "area":
        return adaptive_avg_pool2d(x, (oh, ow))
    return tr.emit1("interpolate", [x], mode=_INTERP_MODES[mode],
                    align_corners=int(bool(align_corners)), oh=oh, ow=ow, scale_h=scales[0],
                    scale_w=scales[1])
# ------------------------------------------------------------------------------------
# normalisation over trailing dims, PReLU, max / min, batched matmul and attention
# ------------------------------------------------------------------------------------
__all__ += ["layer_norm", "group_norm", "instance_norm", "prelu", "maximum", "minimum", "amax",
            "amin", "max", "min", "argmax", "argmin", "bmm", "scaled_dot_product_attention",
            "multi_head_attention"]


def _where(tr) -> str:
    return f"layer '{tr.layer or '<root>'}'"


def _channels(tr, x, op: str, min_ndim: int, layout: str) -> int:
    """C = dim 1 of a normalisation's input x, which must have at least ``min_ndim`` dims."""
    if x.ndim < min_ndim:
        raise InvalidArgumentError(f"{_where(tr)}: {op} expects {layout}, got shape "
                                   f"{tuple(x.shape)}")
    return int(x.shape[1])


def _channel_view(tr, p, ndim: int):
    """A per-channel vector [C] reshaped to [C, 1, ...] so it broadcasts over [N, C, *]."""
    p = tr.as_tensor(p)
    if ndim <= 2:
        return p
    return T.reshape(tr, p, [int(p.shape[0])] + [1] * (ndim - 2))


def _channel_affine(tr, y, weight, bias, ndim: int):
    if weight is not None:
        y = T.mul(tr, y, _channel_view(tr, weight, ndim))
    if bias is not None:
        y = T.add(tr, y, _channel_view(tr, bias, ndim))
    return y


def _check_channel_param(tr, p, c: int, what: str, fn: str) -> None:
    if p is not None and tuple(tr.as_tensor(p).shape) != (c,):
        raise InvalidArgumentError(f"{_where(tr)}: {fn}: {what} must have shape ({c},), got "
                                   f"{tuple(tr.as_tensor(p).shape)}")


def _normalize(tr, x, naxes: int, eps: float):
    """One ``normalize`` node: (x - mean) / sqrt(var + eps) over the trailing ``naxes`` dims."""
    return tr.emit("normalize", [x], naxes=naxes, eps=float(eps))[0]


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """Normalise over the trailing dims ``normalized_shape``, then ``* weight + bias``
    (both of shape ``normalized_shape``)."""
    tr = _tr()
    x = tr.as_tensor(input)
    ns = (int(normalized_shape),) if isinstance(normalized_shape, numbers.Integral) \
        else tuple(int(n) for n in normalized_shape)
    if not ns or len(ns) > x.ndim or tuple(x.shape[x.ndim - len(ns):]) != ns:
        raise InvalidArgumentError(f"{_where(tr)}: layer_norm: normalized_shape {ns} does not "
                                   f"match the trailing dims of the input {tuple(x.shape)}")
    for p, what in ((weight, "weight"), (bias, "bias")):
        if p is not None and tuple(tr.as_tensor(p).shape) != ns:
            raise InvalidArgumentError(f"{_where(tr)}: layer_norm: {what} must have shape {ns}, "
                                       f"got {tuple(tr.as_tensor(p).shape)}")
    y = _normalize(tr, x, len(ns), eps)
    if weight is not None:
        y = T.mul(tr, y, weight)
    if bias is not None:
        y = T.add(tr, y, bias)
    return y


def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5):
    """Normalise each of ``num_groups`` channel groups of x[N, C, *] per sample, then a
    per-channel ``* weight + bias``."""
    tr = _tr()
    x = tr.as_tensor(input)
    c = _channels(tr, x, "group_norm", 2, "[N, C, *]")
    if num_groups < 1 or c % num_groups:
        raise InvalidArgumentError(f"{_where(tr)}: group_norm: {c} channels are not divisible "
                                   f"into num_groups={num_groups}")
    _check_channel_param(tr, weight, c, "weight", "group_norm")
    _check_channel_param(tr, bias, c, "bias", "group_norm")
    g = tr.emit1("reshape", [x], ndim=3, d0=0, d1=int(num_groups), d2=-1)
    y = _normalize(tr, g, 1, eps)
    back = [0] + [int(n) for n in x.shape[1:]]
    y = tr.emit1("reshape", [y], ndim=len(back), **dict(zip(RESHAPE_DIMS, back)))
    return _channel_affine(tr, y, weight, bias, x.ndim)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats: bool = True, momentum: float = 0.1, eps: float = 1e-5):
    """Normalise each channel of each sample of x[N, C, *] over its spatial dims, then a
    per-channel ``* weight + bias``. Running statistics are not supported."""
    tr = _tr()
    x = tr.as_tensor(input)
    if running_mean is not None or running_var is not None or not use_input_stats:
        raise UnsupportedError(f"{_where(tr)}: instance_norm with running statistics "
                               "(track_running_stats=True) is not supported")
    c = _channels(tr, x, "instance_norm", 3, "[N, C, *] with at least one spatial dim")
    _check_channel_param(tr, weight, c, "weight", "instance_norm")
    _check_channel_param(tr, bias, c, "bias", "instance_norm")
    return _channel_affine(tr, _normalize(tr, x, x.ndim - 2, eps), weight, bias, x.ndim)


def prelu(input, weight):
    """max(0, x) + weight * min(0, x), weight [1] or [C] (channel dim 1), written as
    relu(x) + weight * (x - relu(x)) (its gradient at x = 0 is weight, as PyTorch's)."""
    tr = _tr()
    x, w = tr.as_tensor(input), tr.as_tensor(weight)
    n = int(np.prod(w.shape)) if w.ndim else 1
    if w.ndim != 1 or (n != 1 and (x.ndim < 2 or int(x.shape[1]) != n)):
        raise InvalidArgumentError(f"{_where(tr)}: prelu: weight must be [1] or [C] with C the "
                                   f"input's dim 1; got weight {tuple(w.shape)} for input "
                                   f"{tuple(x.shape)}")
    r = T.relu(tr, x)
    wv = _channel_view(tr, w, x.ndim) if n != 1 else w
    return T.add(tr, r, T.mul(tr, wv, T.sub(tr, x, r)))


def maximum(input, other):
    """Elementwise max with broadcasting; at ties each input gets half the gradient."""
    tr = _tr()
    return tr.emit1("maximum", [tr.as_tensor(input), tr.as_tensor(other)])


def minimum(input, other):
    """Elementwise min with broadcasting; at ties each input gets half the gradient."""
    tr = _tr()
    return tr.emit1("minimum", [tr.as_tensor(input), tr.as_tensor(other)])


def _extreme(input, dim, keepdim: bool, mode: int):
    tr = _tr()
    x = tr.as_tensor(input)
    if x.ndim == 0:
        return x
    if isinstance(dim, (tuple, list)) and len(dim) == 0:
        dim = None
    mask = T._axis_mask(x, dim)
    return tr.emit1("reduce_max", [x], mode=mode, keepdims=int(keepdim), axis_mask=mask)


def amax(input, dim=(), keepdim: bool = False):
    """Max over ``dim`` (an int, a tuple, or () / None for all); the gradient is shared evenly
    by the elements equal to the max (PyTorch's rule)."""
    return _extreme(input, dim, keepdim, 0)


def amin(input, dim=(), keepdim: bool = False):
    return _extreme(input, dim, keepdim, 1)


def _arg_extreme(input, dim, keepdim: bool, is_min: int):
    tr = _tr()
    x = tr.as_tensor(input)
    if dim is None:
        if keepdim:
            raise UnsupportedError(f"{_where(tr)}: argmax(dim=None, keepdim=True) is not "
                                   "supported")
        x = T.reshape(tr, x, [-1])
        dim = 0
    if not isinstance(dim, numbers.Integral):
        raise InvalidArgumentError(f"{_where(tr)}: argmax / argmin take one int dim, got {dim!r}")
    return tr.emit1("argmax", [x], axis=T.axis(int(dim), x.ndim or 1), keepdims=int(keepdim),
                    min=is_min)


def argmax(input, dim=None, keepdim: bool = False):
    """Position of the first max along ``dim`` (flattened when None), as an i32 tensor (PyTorch:
    int64); no gradient."""
    return _arg_extreme(input, dim, keepdim, 0)


def argmin(input, dim=None, keepdim: bool = False):
    return _arg_extreme(input, dim, keepdim, 1)


class _MinMax(tuple):
    """(values, indices) as returned by ``max(x, dim)`` / ``min(x, dim)``."""

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]


def _max_or_min(input, dim, keepdim, py_fn, pairwise, reduce, arg):
    """:func:`max` / :func:`min` with their four helpers (builtin, elementwise, reduction,
    index)."""
    if isinstance(input, numbers.Number):   # plain numbers (this name shadows the builtin)
        return py_fn(input, dim)
    if dim is not None and not isinstance(dim, numbers.Integral):
        return pairwise(input, dim)
    if dim is None:
        return reduce(input, None, False)
    return _MinMax((reduce(input, dim, keepdim), arg(input, dim, keepdim)))


def max(input, dim=None, keepdim: bool = False):  # noqa: A001 - PyTorch's name
    """``max(x)``: the max of all elements; ``max(x, dim)``: (values, indices) along one dim
    (indices i32); ``max(x, other)`` with a tensor: :func:`maximum`. The gradient of the values
    is shared evenly among tied elements (PyTorch routes it to the one returned index; the two
    differ only at exact ties)."""
    return _max_or_min(input, dim, keepdim, builtins.max, maximum, amax, argmax)


def min(input, dim=None, keepdim: bool = False):  # noqa: A001 - PyTorch's name
    """As :func:`max`, for the minimum."""
    return _max_or_min(input, dim, keepdim, builtins.min, minimum, amin, argmin)


def bmm(input, mat2, transpose_a: bool = False, transpose_b: bool = False):
    """Batched matrix product of [..., M, K] and [..., K, N] with broadcast batch dims.
    ``transpose_a`` / ``transpose_b`` (edgetrain's flags, no copy) read the operand's last two
    dims transposed: ``bmm(q, k, transpose_b=True)`` is ``q @ k.transpose(-2, -1)``."""
    tr = _tr()
    return tr.emit1("bmm", [tr.as_tensor(input), tr.as_tensor(mat2)],
                    trans_a=int(transpose_a), trans_b=int(transpose_b))


# additive mask value for masked-out positions (PyTorch uses -inf; the lowest finite float32
# gives the same softmax, exp(-3.4e38 - max) == 0, and keeps the file free of infinities)
MASKED = float(np.finfo(np.float32).min)


def _attention(tr, q, k, v, mask, dropout_p: float, scale):
    """(softmax(q k^T * scale + mask) v, the probabilities); ``mask`` additive or None."""
    s = 1.0 / float(np.sqrt(int(q.shape[-1]))) if scale is None else float(scale)
    scores = T.affine(tr, bmm(q, k, transpose_b=True), s, 0.0)
    if mask is not None:
        scores = T.add(tr, scores, mask)
    p = T.softmax(tr, scores, -1)
    pd = dropout(p, dropout_p, True) if dropout_p > 0.0 else p
    return bmm(pd, v), p


def _additive_mask(tr, attn_mask, allowed_if_true: bool):
    """A float mask as given, or a boolean numpy mask made an additive constant (0 where
    attention is allowed, :data:`MASKED` elsewhere)."""
    if attn_mask is None:
        return None
    if isinstance(attn_mask, tracing.Tensor):
        if attn_mask.dtype != ir.F32:
            raise UnsupportedError(f"{_where(tr)}: a traced attention mask must be float "
                                   "(additive); pass a boolean mask as a numpy array")
        return attn_mask
    m = np.asarray(attn_mask)
    if m.dtype == bool:
        m = np.where(m if allowed_if_true else ~m, 0.0, MASKED)
    return tr.const(m.astype(np.float32))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None, enable_gqa: bool = False):
    """softmax(q k^T * scale + mask) v over [..., L, E] / [..., S, E] / [..., S, Ev] with
    broadcast batch dims, written with bmm, softmax and add. ``attn_mask``: a float mask added
    to the scores, or a boolean array (True = attend) that becomes an additive constant;
    ``is_causal`` adds a constant [L, S] mask of :data:`MASKED` above the diagonal (masked
    positions get probability 0 and no gradient). ``scale`` defaults to 1 / sqrt(E)."""
    tr = _tr()
    q, k, v = tr.as_tensor(query), tr.as_tensor(key), tr.as_tensor(value)
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise InvalidArgumentError(f"{_where(tr)}: scaled_dot_product_attention expects "
                                   f"[..., L, E] query, key and value, got {tuple(q.shape)}, "
                                   f"{tuple(k.shape)}, {tuple(v.shape)}")
    if enable_gqa:
        raise UnsupportedError(f"{_where(tr)}: scaled_dot_product_attention(enable_gqa=True) is "
                               "not supported")
    if is_causal and attn_mask is not None:
        raise InvalidArgumentError(f"{_where(tr)}: scaled_dot_product_attention: give attn_mask "
                                   "or is_causal, not both (as PyTorch)")
    if is_causal:
        attn_mask = np.tril(np.ones((int(q.shape[-2]), int(k.shape[-2])), bool))
    return _attention(tr, q, k, v, _additive_mask(tr, attn_mask, True), dropout_p, scale)[0]


def _rows_selector(rows: Sequence[int], n: int) -> np.ndarray:
    """The constant [len(rows), n] 0/1 matrix whose product with a [n, ...] matrix picks
    ``rows`` (exact: each output is one value times 1 plus zeros)."""
    sel = np.zeros((len(rows), n), np.float32)
    sel[np.arange(len(rows)), list(rows)] = 1.0
    return sel


def multi_head_attention(query, key, value, num_heads: int, in_proj_weight, in_proj_bias,
                         out_proj_weight, out_proj_bias, attn_mask=None, dropout_p: float = 0.0,
                         need_weights: bool = True):
    """Multi-head attention of batch-first [N, L, E] query and [N, S, E] key / value with
    PyTorch's packed parameters (in_proj_weight [3E, E], out_proj_weight [E, E]). Each head's
    projection rows (and out-projection columns) are picked from the packed weights by constant
    0/1 selector matmuls, so the heads need no transpose: out = sum_h attn_h W_o[:, h]^T + b_o.
    ``attn_mask`` [L, S]: float (added) or boolean (True = not allowed, PyTorch's MHA rule).
    Returns (output, weights averaged over heads or None)."""
    tr = _tr()
    q, k, v = tr.as_tensor(query), tr.as_tensor(key), tr.as_tensor(value)
    e = int(np.shape(getattr(out_proj_weight, "data", out_proj_weight))[0]) \
        if not isinstance(out_proj_weight, tracing.Tensor) else int(out_proj_weight.shape[0])
    for t, what in ((q, "query"), (k, "key"), (v, "value")):
        if t.ndim != 3 or int(t.shape[-1]) != e:
            raise InvalidArgumentError(f"{_where(tr)}: multi-head attention expects batch-first "
                                       f"[N, L, {e}] {what}, got {tuple(t.shape)}")
    d = e // num_heads
    mask = _additive_mask(tr, attn_mask, False)
    w_in = tr.as_tensor(in_proj_weight)
    b_in = None if in_proj_bias is None else \
        T.reshape(tr, tr.as_tensor(in_proj_bias), [1, 3 * e])
    out = weights = None
    for h in range(num_heads):
        proj = []
        for j, src in enumerate((q, k, v)):
            sel = tr.const(_rows_selector(range(j * e + h * d, j * e + (h + 1) * d), 3 * e))
            b = None if b_in is None else tr.emit1("matmul", [b_in, sel], trans_a=0, trans_b=1)
            proj.append(linear(src, matmul(sel, w_in), b))
        o, p = _attention(tr, *proj, mask, dropout_p, None)
        sel_o = tr.const(_rows_selector(range(h * d, (h + 1) * d), e))
        w_o = tr.emit1("matmul", [out_proj_weight, sel_o], trans_a=0, trans_b=1)   # [E, d]
        y = linear(o, w_o)
        out = y if out is None else T.add(tr, out, y)
        if need_weights:
            weights = p if weights is None else T.add(tr, weights, p)
    if out_proj_bias is not None:
        out = T.add(tr, out, out_proj_bias)
    if need_weights and num_heads > 1:
        weights = T.affine(tr, weights, 1.0 / num_heads, 0.0)
    return out, weights
# ------------------------------------------------------------------------------------
# tensor copies (ops concat, slice, transpose, pad, gather, expand); also ``edgetrain.cat``...
# ------------------------------------------------------------------------------------
def cat(tensors, dim: int = 0):
    """Concatenate along ``dim`` (``torch.cat``); any number of tensors."""
    return T.cat(_tr(), tensors, dim)


concat = cat


def stack(tensors, dim: int = 0):
    """Stack along a new ``dim`` (``torch.stack``)."""
    return T.stack(_tr(), tensors, dim)


def split(tensor, split_size_or_sections, dim: int = 0):
    """``torch.split``: a tuple of slices of one size (the last may be smaller) or of the
    given sizes."""
    return T.split(_tr(), tensor, split_size_or_sections, dim)


def chunk(input, chunks: int, dim: int = 0):
    return T.chunk(_tr(), input, chunks, dim)


def narrow(input, dim: int, start: int, length: int):
    return T.narrow(_tr(), input, dim, start, length)


def transpose(input, dim0: int, dim1: int):
    return T.transpose(_tr(), input, dim0, dim1)


def permute(input, dims):
    return T.permute(_tr(), input, dims)


def squeeze(input, dim=None):
    return T.squeeze(_tr(), input, dim)


def unsqueeze(input, dim: int):
    return T.unsqueeze(_tr(), input, dim)


def expand(input, *sizes):
    """``x.expand(*sizes)`` as a function (-1 keeps a dim)."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    return T.expand(_tr(), input, sizes)


def pad(input, pad, mode: str = "constant", value=None):
    """``F.pad``: (before, after) pairs from the last dim backwards; modes 'constant',
    'reflect' (pads < the dim) and 'replicate'."""
    return T.pad(_tr(), input, pad, mode, value)


def gather(input, dim: int, index):
    """``torch.gather`` (index: an int32 tensor or an integer array); the gradient is a
    deterministic scatter-add."""
    return T.gather(_tr(), input, dim, index)


def index_select(input, dim: int, index):
    """``torch.index_select`` with a 1-D index (an int32 tensor or an integer array)."""
    return T.index_select(_tr(), input, dim, index)
