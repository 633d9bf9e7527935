"""Layers with PyTorch's names, constructor arguments, parameter names and layouts."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Optional

import numpy as np

from .. import tracing
from ..errors import InvalidArgumentError, UnsupportedError
from . import functional as F
from . import init
from .module import Buffer, Module, Parameter

__all__ = ["Conv2d", "Linear", "BatchNorm2d", "Dropout", "ReLU", "ReLU6", "LeakyReLU",
           "Sigmoid", "Tanh", "Hardswish", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "Flatten", "Sequential", "ModuleList", "Identity", "Softmax", "LogSoftmax", "Add",
           "SiLU", "GELU", "Hardsigmoid", "ELU", "Softplus", "Embedding", "Conv1d", "ConvTranspose2d",
           "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "AdaptiveMaxPool2d"]


class _ConvNd(Module):
    """What Conv1d, Conv2d and ConvTranspose2d share: the argument checks, the weight and bias
    (default init) and the tail of extra_repr."""

    def _conv_args(self, in_channels: int, out_channels: int, groups: int,
                   padding_mode: str) -> None:
        layer = type(self).__name__
        if padding_mode != "zeros":
            raise UnsupportedError(f"{layer}: padding_mode={padding_mode!r} is not supported")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise InvalidArgumentError(f"{layer}: in_channels ({in_channels}) and out_channels "
                                       f"({out_channels}) must be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups

    def _weight_and_bias(self, weight_shape, bias: bool) -> None:
        self.weight = Parameter(np.zeros(weight_shape, np.float32))
        self.bias = Parameter(np.zeros(self.out_channels, np.float32)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_weight_and_bias_(self.weight, self.bias)

    def _repr_tail(self) -> str:
        s = ""
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvNd):
    """2-D convolution. ``padding``: int, (ph, pw), (top, left, bottom, right), 'valid' or
    'same'. Weight [out_channels, in_channels / groups, kh, kw]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros"):
        super().__init__()
        self._conv_args(in_channels, out_channels, groups, padding_mode)
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride = F._pair(stride, "stride")
        self.dilation = F._pair(dilation, "dilation")
        self.padding = padding
        F.conv_padding(padding, self.kernel_size, self.dilation)  # validate early
        self._weight_and_bias((out_channels, in_channels // groups) + self.kernel_size, bias)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding not in (0, (0, 0)):
            s += f", padding={self.padding}"
        return s + self._repr_tail()


class Linear(Module):
    """y = x W^T + b, weight [out_features, in_features]."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(np.zeros((out_features, in_features), np.float32))
        self.bias = Parameter(np.zeros(out_features, np.float32)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_weight_and_bias_(self.weight, self.bias)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class _BatchNorm(Module):
    """What BatchNorm2d and BatchNorm1d share: parameters, buffers and the normalisation."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        if momentum is None:
            raise NotImplementedError(f"{type(self).__name__}(momentum=None) is not supported")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None
        persistent = bool(track_running_stats)
        self.running_mean = Buffer(np.zeros(num_features), persistent=persistent)
        self.running_var = Buffer(np.ones(num_features), persistent=persistent)
        if track_running_stats:
            self.num_batches_tracked = Buffer(np.array(0), traced=False, dtype=np.int64)

    def forward(self, x):
        use_batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=use_batch_stats, momentum=self.momentum, eps=self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over channels. Training mode normalises with batch statistics
    and updates running_mean / running_var in place (momentum as PyTorch);
    ``num_batches_tracked`` is kept as a Python-side counter for state_dict compatibility."""


class Dropout(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _Activation(Module):
    _fn = None

    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, x):
        return type(self)._fn(x)


class ReLU(_Activation):
    _fn = staticmethod(F.relu)


class ReLU6(_Activation):
    _fn = staticmethod(F.relu6)


class Sigmoid(_Activation):
    _fn = staticmethod(F.sigmoid)


class Tanh(_Activation):
    _fn = staticmethod(F.tanh)


class Hardswish(_Activation):
    _fn = staticmethod(F.hardswish)


class SiLU(_Activation):
    _fn = staticmethod(F.silu)


class Hardsigmoid(_Activation):
    _fn = staticmethod(F.hardsigmoid)


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise InvalidArgumentError(f"GELU: approximate must be 'none' or 'tanh', not "
                                       f"{approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class ELU(Module):
    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return F.elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Softplus(Module):
    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False):
        super().__init__()
        if return_indices:
            raise NotImplementedError("MaxPool2d(return_indices=True) is not supported")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None):
        super().__init__()
        if divisor_override is not None:
            raise NotImplementedError("AvgPool2d(divisor_override=...) is not supported")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}")


class AdaptiveAvgPool2d(Module):
    """Average pooling to ``output_size`` (int or pair, ``None`` keeps that input size) over
    PyTorch's adaptive windows; any size, divisible or not."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Softmax(Module):
    def __init__(self, dim: int = None):
        super().__init__()
        if dim is None:
            raise ValueError("Softmax needs an explicit dim")
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)


class LogSoftmax(Softmax):
    def forward(self, x):
        return F.log_softmax(x, self.dim)


class Add(Module):
    """x + y as a module (residual connections); ``x + y`` on traced tensors is the same."""

    def forward(self, x, y):
        return F.add(x, y)


class _ModuleSequence(Module):
    """What Sequential and ModuleList share: children named "0", "1", ... in order."""

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module: Module):
        self.add_module(str(len(self._modules)), module)
        return self


class Sequential(_ModuleSequence):
    """Children called in order; built from modules or an OrderedDict of named modules."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, m in args[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        keys = list(self._modules)
        return self._modules[keys[idx]]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(_ModuleSequence):
    def __init__(self, modules: Optional[Iterable[Module]] = None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def __getitem__(self, idx):
        return list(self._modules.values())[idx]


class Embedding(Module):
    """A lookup table ``weight`` [num_embeddings, embedding_dim] (PyTorch ``nn.Embedding``):
    integer indices of any shape -> their rows. Initialised N(0, 1), row ``padding_idx`` zero
    (it gets no gradient)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None,
                 max_norm=None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight=None, _freeze: bool = False):
        super().__init__()
        if max_norm is not None or scale_grad_by_freq or sparse:
            raise NotImplementedError("Embedding with max_norm, scale_grad_by_freq or sparse "
                                      "is not supported")
        if num_embeddings < 1 or embedding_dim < 1:
            raise InvalidArgumentError(f"Embedding needs num_embeddings >= 1 and embedding_dim "
                                       f">= 1, got {num_embeddings}, {embedding_dim}")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise InvalidArgumentError(f"padding_idx {padding_idx} must be within "
                                           f"num_embeddings ({num_embeddings})")
            padding_idx = padding_idx % num_embeddings
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        if _weight is not None:
            w = np.asarray(_weight, np.float32)
            if w.shape != (num_embeddings, embedding_dim):
                raise InvalidArgumentError(f"_weight must be [{num_embeddings}, "
                                           f"{embedding_dim}], got {w.shape}")
            self.weight = Parameter(w, requires_grad=not _freeze)
        else:
            self.weight = Parameter(np.zeros((num_embeddings, embedding_dim), np.float32),
                                    requires_grad=not _freeze)
            self.reset_parameters()

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0.0

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
class Conv1d(_ConvNd):
    """1-D convolution over [N, C, L]. ``padding``: int, 'valid' or 'same'. Weight
    [out_channels, in_channels / groups, kernel_size] (PyTorch's layout)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros"):
        super().__init__()
        self._conv_args(in_channels, out_channels, groups, padding_mode)
        self.kernel_size = (F._single(kernel_size, "kernel_size"),)
        self.stride = (F._single(stride, "stride"),)
        self.dilation = (F._single(dilation, "dilation"),)
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise InvalidArgumentError(f"Conv1d: padding must be 'valid', 'same' or an int, "
                                       f"got {padding!r}")
        if padding == "same" and self.stride != (1,):
            raise InvalidArgumentError("Conv1d: padding='same' needs stride 1 (as in PyTorch)")
        self.padding = padding if isinstance(padding, str) else (F._single(padding, "padding"),)
        self._weight_and_bias((out_channels, in_channels // groups) + self.kernel_size, bias)

    def forward(self, x):
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        return s + self._repr_tail()


class ConvTranspose2d(_ConvNd):
    """Transposed 2-D convolution. Weight [in_channels, out_channels / groups, kh, kw]
    (PyTorch's layout); ``output_padding`` must be smaller than ``stride``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros"):
        super().__init__()
        self._conv_args(in_channels, out_channels, groups, padding_mode)
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride = F._pair(stride, "stride")
        self.padding = F._pair(padding, "padding")
        self.output_padding = F._pair(output_padding, "output_padding")
        self.dilation = F._pair(dilation, "dilation")
        if any(o >= s for o, s in zip(self.output_padding, self.stride)) or \
                min(self.output_padding) < 0:
            raise InvalidArgumentError(f"ConvTranspose2d: output_padding {self.output_padding} "
                                       f"must be >= 0 and smaller than stride {self.stride}")
        self._weight_and_bias((in_channels, out_channels // groups) + self.kernel_size, bias)

    def forward(self, x, output_size=None):
        if output_size is not None:
            raise UnsupportedError("ConvTranspose2d: forward(output_size=...) is not supported; "
                                   "set output_padding")
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        return s + self._repr_tail()


class Upsample(Module):
    """F.interpolate as a layer: ``size`` or ``scale_factor``, mode 'nearest' or 'bilinear'."""

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest",
                 align_corners: Optional[bool] = None,
                 recompute_scale_factor: Optional[bool] = None):
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise InvalidArgumentError(f"{type(self).__name__}: give exactly one of size or "
                                       "scale_factor")
        if mode not in ("nearest", "bilinear"):
            raise UnsupportedError(f"{type(self).__name__}: mode {mode!r} is not supported "
                                   "(nearest, bilinear)")
        if align_corners is not None and mode != "bilinear":
            raise InvalidArgumentError(f"{type(self).__name__}: align_corners can only be set "
                                       f"with mode 'bilinear', got mode {mode!r}")
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, x):
        return F.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners,
                             self.recompute_scale_factor)

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else \
            f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    """Bilinear with ``align_corners=True`` (as PyTorch's)."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)


class AdaptiveMaxPool2d(Module):
    """Max pooling to ``output_size`` over PyTorch's adaptive windows (no indices)."""

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__()
        if return_indices:
            raise UnsupportedError("AdaptiveMaxPool2d: return_indices=True is not supported")
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_max_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
# ------------------------------------------------------------------------------------
# normalisation over trailing dims, BatchNorm1d, PReLU
# ------------------------------------------------------------------------------------
__all__ += ["LayerNorm", "GroupNorm", "InstanceNorm2d", "BatchNorm1d", "PReLU",
            "MultiheadAttention"]


class LayerNorm(Module):
    """Normalisation over the trailing dims ``normalized_shape`` (weight and bias of that
    shape when ``elementwise_affine``)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True):
        super().__init__()
        ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if not ns or any(int(n) < 1 for n in ns):
            raise InvalidArgumentError(f"LayerNorm: normalized_shape must be positive dims, got "
                                       f"{normalized_shape!r}")
        self.normalized_shape = tuple(int(n) for n in ns)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self.weight = Parameter(np.ones(self.normalized_shape, np.float32)) \
            if elementwise_affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, np.float32)) \
            if elementwise_affine and bias else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class GroupNorm(Module):
    """Per-sample normalisation of ``num_groups`` channel groups, per-channel affine."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise InvalidArgumentError(f"GroupNorm: num_channels ({num_channels}) must be "
                                       f"divisible by num_groups ({num_groups})")
        self.num_groups, self.num_channels, self.eps, self.affine = (num_groups, num_channels,
                                                                     eps, affine)
        self.weight = Parameter(np.ones(num_channels, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_channels, np.float32)) if affine else None

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class InstanceNorm2d(Module):
    """Per-sample, per-channel normalisation of x[N, C, H, W] over H, W (PyTorch defaults:
    affine=False, no running statistics; track_running_stats=True is not supported)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = False, track_running_stats: bool = False):
        super().__init__()
        if track_running_stats:
            raise UnsupportedError("InstanceNorm2d(track_running_stats=True) is not supported")
        self.num_features, self.eps, self.momentum, self.affine = (num_features, eps, momentum,
                                                                   affine)
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None

    def forward(self, x):
        x = tracing.require().as_tensor(x)
        if x.ndim != 4:
            raise InvalidArgumentError(f"InstanceNorm2d expects a 4-D input [N, C, H, W], got "
                                       f"shape {tuple(x.shape)}")
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of [N, C] or [N, C, L] over N (and L): the same parameters,
    buffers and running-statistics update as BatchNorm2d (both derive from _BatchNorm, not
    from each other, as in PyTorch)."""

    def forward(self, x):
        x = tracing.require().as_tensor(x)
        if x.ndim not in (2, 3):
            raise InvalidArgumentError(f"BatchNorm1d expects a 2-D or 3-D input [N, C] / "
                                       f"[N, C, L], got shape {tuple(x.shape)}")
        return super().forward(x)


class PReLU(Module):
    """max(0, x) + weight * min(0, x) with a learnable weight of ``num_parameters`` (1 or the
    channel count, dim 1 of the input), initialised to ``init``."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        super().__init__()
        if num_parameters < 1:
            raise InvalidArgumentError(f"PReLU: num_parameters must be >= 1, got {num_parameters}")
        self.num_parameters = num_parameters
        self.weight = Parameter(np.full(num_parameters, init, np.float32))

    def forward(self, x):
        return F.prelu(x, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class MultiheadAttention(Module):
    """PyTorch's ``nn.MultiheadAttention`` for ``batch_first=True`` inputs with PyTorch's
    parameter names (``in_proj_weight`` [3E, E], ``in_proj_bias``, ``out_proj.weight``,
    ``out_proj.bias``). ``forward(query, key, value, attn_mask=None, need_weights=True)``
    returns (output [N, L, E], weights averaged over heads [N, L, S] or None). Not supported:
    batch_first=False, kdim / vdim, add_bias_kv, add_zero_attn, key_padding_mask,
    average_attn_weights=False."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False):
        super().__init__()
        if num_heads < 1 or embed_dim % num_heads:
            raise InvalidArgumentError(f"MultiheadAttention: embed_dim ({embed_dim}) must be "
                                       f"divisible by num_heads ({num_heads})")
        if not batch_first:
            raise UnsupportedError("MultiheadAttention(batch_first=False) is not supported; "
                                   "use batch_first=True ([N, L, E] inputs)")
        for flag, name in ((add_bias_kv, "add_bias_kv"), (add_zero_attn, "add_zero_attn"),
                           (kdim not in (None, embed_dim), "kdim"),
                           (vdim not in (None, embed_dim), "vdim")):
            if flag:
                raise UnsupportedError(f"MultiheadAttention({name}=...) is not supported")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.batch_first = batch_first
        self.in_proj_weight = Parameter(np.zeros((3 * embed_dim, embed_dim), np.float32))
        self.in_proj_bias = Parameter(np.zeros(3 * embed_dim, np.float32)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        init.xavier_uniform_(self.in_proj_weight)
        if bias:
            init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True,
                attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
        if key_padding_mask is not None:
            raise UnsupportedError("MultiheadAttention: key_padding_mask is not supported")
        if need_weights and not average_attn_weights:
            raise UnsupportedError("MultiheadAttention: average_attn_weights=False is not "
                                   "supported")
        if is_causal and attn_mask is None:
            raise InvalidArgumentError("MultiheadAttention: is_causal needs attn_mask (it is a "
                                       "hint, as in PyTorch)")
        return F.multi_head_attention(query, key, value, self.num_heads, self.in_proj_weight,
                                      self.in_proj_bias, self.out_proj.weight,
                                      self.out_proj.bias, attn_mask,
                                      self.dropout if self.training else 0.0, need_weights)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first=True"
