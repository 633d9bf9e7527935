"""``edgetrain.nn.functional``: PyTorch-named functions that emit graph nodes while tracing.

Composite functions (linear, relu6, mean, the distillation loss...) are written with the
primitive ops of :mod:`edgetrain.ops` and need no kernel or gradient of their own.
The operations behind the traced Tensor's operators and methods (``add``, ``reshape``,
``sum``, ``relu``, ``softmax``...) live in :mod:`edgetrain.tensor_ops`; here they get the
active tracer. Scalar operands of ``+ - * /`` become one ``affine`` node.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .. import ir, tensor_ops as T, tracing
from ..errors import InvalidArgumentError
from ..ops import ACT_HARDSWISH, ACT_LEAKY_RELU, ACT_RELU6, UN_IN_RANGE

__all__ = ["conv2d", "linear", "matmul", "relu", "relu6", "leaky_relu", "sigmoid", "tanh",
           "hardswish", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "flatten",
           "reshape", "dropout", "batch_norm", "softmax", "log_softmax", "add", "sub", "mul",
           "div", "affine", "sum", "mean", "cross_entropy", "mse_loss", "l1_loss",
           "multi_margin_loss", "kl_div", "exp", "log", "sqrt", "rsqrt", "abs", "neg", "erf",
           "pow", "clamp", "silu", "gelu", "hardsigmoid", "elu", "softplus",
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
    """Matrix product of two 2-D tensors."""
    return T.matmul(_tr(), a, b)


def linear(input, weight, bias=None):
    """y = x W^T + b with W [out, in] (PyTorch layout); x must be 2-D."""
    tr = _tr()
    x = tr.as_tensor(input)
    if x.ndim != 2:
        raise ValueError(f"layer '{tr.layer or '<root>'}': linear expects a 2-D input "
                         f"[N, in], got shape {tuple(x.shape)} (flatten it first)")
    y = tr.emit1("matmul", [x, weight], trans_a=0, trans_b=1)
    if bias is not None:
        y = tr.emit1("add", [y, bias])
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
    """Only output size 1 (global average pooling) is supported."""
    tr = _tr()
    x = tr.as_tensor(input)
    size = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    if tuple(size) in ((1, 1),):
        return tr.emit1("global_avgpool", [x])
    raise NotImplementedError(f"layer '{tr.layer or '<root>'}': adaptive_avg_pool2d supports "
                              f"only output_size=1 (global average pooling), got {output_size!r}")


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
    if x.ndim < 2:
        raise ValueError(f"layer '{tr.layer or '<root>'}': batch_norm expects [N, C, ...], "
                         f"got shape {tuple(x.shape)}")
    c = int(x.shape[1])
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


def cross_entropy(input, target, reduction: str = "mean"):
    """Softmax cross-entropy of logits [N, C]: integer class labels [N] (fused
    softmax_xent) or class probabilities [N, C] (softmax_xent_prob)."""
    _check_reduction(reduction)
    tr = _tr()
    logits = tr.as_tensor(input)
    t = tr.as_tensor(target)
    if t.dtype == ir.I32:
        return tr.emit("softmax_xent", [logits, t])[0]
    return tr.emit("softmax_xent_prob", [logits, t])[0]


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
