"""Quantization-aware training (QAT) in float simulation: fake quantization and observers.

One number rule (PyTorch's and ONNX's): ``q = clamp(nearbyint(x * (1/s)) + zp, qmin, qmax)``
with round-half-even, ``y = (q - zp) * s`` — bit for bit PyTorch's
``fake_quantize_per_tensor_affine`` / ``fake_quantize_per_channel_affine`` (op ``fake_quant``);
the gradient is straight-through inside the range, zero outside (op ``fake_quant_bwd``).

Scales and zero points are observed (op ``quant_observe``, in training programs only: an eval
never moves a scale) from running min / max ("minmax", PyTorch's MinMaxObserver) or their
moving average ("ema", MovingAverageMinMaxObserver), and computed as PyTorch's observers do.
Their state (``scale``, ``zero_point``, ``min_val``, ``max_val``) is a buffer of the model, saved
and resumed like BatchNorm running statistics. ``observe_until_step`` stops the observers at an
optimizer step, read from the runtime's step counter (so it also holds in ``et_train``);
``freeze_bn_step`` likewise freezes the BatchNorm of the folded Conv+BN pairs (op
``batchnorm_train`` / ``batchnorm_bwd`` attribute ``freeze_step``).

:func:`prepare_qat` (used by ``TrainSession.from_module(..., quantize=QConfig(...))``) returns a
copy of a model in which Conv2d and Linear weights are fake-quantized per output channel
(symmetric, ``±(2^(b-1) - 1)``) and their outputs and residual adds per tensor (affine,
``0 .. 2^b - 1``); a Conv2d followed by a BatchNorm2d in a Sequential simulates the fold
(weights quantized as they will be folded, :class:`QATConvBn2d`); parameter names are those of the float model, so a float ``state_dict`` or
``.etm`` initialises the QAT model.

In eval mode a QATConv2d / QATLinear on a quantized input runs the int8 kernels (ops quantize,
qprep, qconv2d / qlinear, dequantize; relu and max pooling on the u8 grid after
:func:`integer_chains`), and :func:`int8_graph` (``SaveToFile(..., inference_only=True,
int8=True)``) writes that eval program with the weight quantization folded to int8 / int32 /
fp32 constants by the same kernel: the int8 file's logits are ``Eval()``'s bit for bit
(docs/int8.md).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import tracing
from .errors import InvalidArgumentError
from .ops import ACT_RELU, ACT_RELU6
from .nn import functional as F
from .nn.layers import Add, BatchNorm2d, Conv2d, Linear, Sequential
from .nn.module import Buffer, Module
from .models.mobilenet import InvertedResidual

__all__ = ["QConfig", "FakeQuantize", "prepare_qat", "fake_quantize_per_tensor_affine",
           "fake_quantize_per_channel_affine", "weight_range", "activation_range",
           "QuantConfigError"]

OBSERVERS = ("ema", "minmax")


class QuantConfigError(InvalidArgumentError):
    """A quantization setting out of range (bits outside 2..8, unknown observer, ...)."""


def _bits(what: str, bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise QuantConfigError(f"{what} must be an integer from 2 to 8, got {bits!r}")
    return int(bits)


def weight_range(bits: int):
    """(qmin, qmax) of symmetric per-channel weights: ±(2^(bits-1) - 1)."""
    b = _bits("weight_bits", bits)
    return -(2 ** (b - 1) - 1), 2 ** (b - 1) - 1


def activation_range(bits: int):
    """(qmin, qmax) of affine per-tensor activations: 0 .. 2^bits - 1."""
    b = _bits("act_bits", bits)
    return 0, 2 ** b - 1


@dataclass(frozen=True)
class QConfig:
    """How to quantize: bits of weights and activations (2..8 each), the observer ("ema" or
    "minmax"), its averaging constant, the optimizer step at which observers stop
    (``None``: never), the optimizer step from which the folded Conv2d + BatchNorm2d pairs
    freeze their BatchNorm (``freeze_bn_step``, ``None``: never; PyTorch's
    ``torch.ao.nn.intrinsic.qat.freeze_bn_stats``: running statistics no longer updated and
    used in training too, read from the runtime's step counter so it also holds in
    ``et_train``; other BatchNorm layers are not affected, as in PyTorch, so with
    ``fold_bn=False`` it changes nothing) and whether Conv2d + BatchNorm2d pairs simulate their fold (``fold_bn``,
    torch.ao.nn.intrinsic.qat.ConvBn2d semantics). ``quantize_input`` fake-quantizes the input
    of the first Conv2d / Linear (PyTorch's QuantStub), so that in eval the whole chain runs the
    int8 kernels. ``output_bits`` (``None``: ``act_bits``) sets the bits of the output of the
    last Conv2d / Linear in module order (as ``quantize_input``'s first), the model's logits:
    with 4-bit activations a 16-level logit grid ties the argmax on many inputs (LeNet W4A4 on
    MNIST: 121 of 200 errors were ties holding the true class), so low-bit recipes keep the
    last layer's output at 8 bits (MNN leaves it float)."""
    weight_bits: int = 8
    act_bits: int = 8
    observer: str = "ema"
    averaging_constant: float = 0.01
    observe_until_step: Optional[int] = None
    freeze_bn_step: Optional[int] = None
    fold_bn: bool = True
    quantize_input: bool = False
    output_bits: Optional[int] = None

    def __post_init__(self):
        weight_range(self.weight_bits)
        activation_range(self.act_bits)
        if self.output_bits is not None:
            _bits("output_bits", self.output_bits)
        if self.observer not in OBSERVERS:
            raise QuantConfigError(f"observer must be one of {OBSERVERS}, got {self.observer!r}")
        c = self.averaging_constant
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 < float(c) <= 1.0:
            raise QuantConfigError(f"averaging_constant must be a number in (0, 1], got {c!r}")
        for name in ("observe_until_step", "freeze_bn_step"):
            s = getattr(self, name)
            if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer))
                                  or s < 0):
                raise QuantConfigError(f"{name} must be None or an integer >= 0, got {s!r}")


# ------------------------------------------------------------------------------------------
# functions (traced)
# ------------------------------------------------------------------------------------------
def _check_range(quant_min, quant_max):
    for v in (quant_min, quant_max):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise QuantConfigError(f"quant_min / quant_max must be integers, got {v!r}")
    if not quant_min < quant_max:
        raise QuantConfigError(f"quant_min {quant_min} must be < quant_max {quant_max}")


def fake_quantize_per_tensor_affine(input, scale, zero_point, quant_min: int, quant_max: int):
    """PyTorch's ``torch.fake_quantize_per_tensor_affine``; ``scale`` and ``zero_point`` are
    one-element tensors (buffers), the zero point an integer-valued float."""
    _check_range(quant_min, quant_max)
    return tracing.require().emit1("fake_quant", [input, scale, zero_point], axis=-1,
                                   qmin=quant_min, qmax=quant_max)


def fake_quantize_per_channel_affine(input, scale, zero_point, axis: int, quant_min: int,
                                     quant_max: int):
    """PyTorch's ``torch.fake_quantize_per_channel_affine``: ``scale`` / ``zero_point`` hold one
    value per index of dimension ``axis``."""
    _check_range(quant_min, quant_max)
    tr = tracing.require()
    x = tr.as_tensor(input)
    if isinstance(axis, bool) or not isinstance(axis, int) or not -x.ndim <= axis < x.ndim:
        raise QuantConfigError(f"layer '{tr.layer or '<root>'}': axis {axis!r} out of range "
                               f"for a {x.ndim}-D input")
    return tr.emit1("fake_quant", [x, scale, zero_point], axis=axis % x.ndim, qmin=quant_min,
                    qmax=quant_max)


# ------------------------------------------------------------------------------------------
# the observed fake-quantizer module
# ------------------------------------------------------------------------------------------
class FakeQuantize(Module):
    """Observer + fake quantization (PyTorch's FakeQuantize). Per tensor (``channels=None``)
    or per channel along ``axis``. Buffers: ``scale`` (1.0), ``zero_point`` (0), ``min_val``
    (+inf) and ``max_val`` (-inf) until the first observation."""

    def __init__(self, quant_min: int, quant_max: int, channels: Optional[int] = None,
                 axis: int = 0, symmetric: bool = False, observer: str = "ema",
                 averaging_constant: float = 0.01, observe_until_step: Optional[int] = None):
        super().__init__()
        _check_range(quant_min, quant_max)
        if observer not in OBSERVERS:
            raise QuantConfigError(f"observer must be one of {OBSERVERS}, got {observer!r}")
        if symmetric and not quant_min <= 0 <= quant_max:
            raise QuantConfigError(f"a symmetric range {quant_min}..{quant_max} must contain 0")
        self.quant_min, self.quant_max = int(quant_min), int(quant_max)
        self.axis = -1 if channels is None else int(axis)
        self.symmetric, self.observer = bool(symmetric), observer
        self.averaging_constant = float(averaging_constant)
        self.observe_until_step = -1 if observe_until_step is None else int(observe_until_step)
        c = 1 if channels is None else int(channels)
        self.scale = Buffer(np.ones(c, np.float32))
        self.zero_point = Buffer(np.zeros(c, np.float32))
        self.min_val = Buffer(np.full(c, math.inf, np.float32))
        self.max_val = Buffer(np.full(c, -math.inf, np.float32))

    def forward(self, x):
        tr = tracing.require()
        q = dict(axis=self.axis, qmin=self.quant_min, qmax=self.quant_max)
        if self.training:
            tr.emit("quant_observe", [x, self.min_val, self.max_val, self.scale, self.zero_point],
                    symmetric=int(self.symmetric), ema=int(self.observer == "ema"),
                    until_step=self.observe_until_step,
                    averaging_constant=self.averaging_constant, **q)
        return tr.emit1("fake_quant", [x, self.scale, self.zero_point], **q)

    def extra_repr(self) -> str:
        kind = "per_tensor" if self.axis < 0 else f"per_channel(axis={self.axis})"
        return (f"{kind}, quant_min={self.quant_min}, quant_max={self.quant_max}, "
                f"symmetric={self.symmetric}, observer={self.observer!r}")


# ------------------------------------------------------------------------------------------
# QAT versions of the layers (same parameters, extra quantizer submodules)
# ------------------------------------------------------------------------------------------
def _weight_fq(qc: QConfig, channels: int) -> FakeQuantize:
    lo, hi = weight_range(qc.weight_bits)
    return FakeQuantize(lo, hi, channels=channels, axis=0, symmetric=True, observer=qc.observer,
                        averaging_constant=qc.averaging_constant,
                        observe_until_step=qc.observe_until_step)


def _act_fq(qc: QConfig, bits: Optional[int] = None) -> FakeQuantize:
    lo, hi = activation_range(qc.act_bits if bits is None else bits)
    return FakeQuantize(lo, hi, observer=qc.observer, averaging_constant=qc.averaging_constant,
                        observe_until_step=qc.observe_until_step)


# ------------------------------------------------------------------------------------------
# the integer eval path (issue 14's invariant): in eval mode a QATConv2d / QATLinear whose input
# lies on a known per-tensor grid runs the int8 kernels (kernels/src/qgemm.c) instead of the
# float simulation, and an int8 file (export.int8_graph) is that program with qprep folded.
# ------------------------------------------------------------------------------------------
# The ops a quantized eval program may pass between a grid and the next integer layer, and the
# integer op each becomes on the u8 tensor (integer_chains). Exact (the float chain's bits):
# relu and max pooling commute with dequantize (s > 0, 0 on every grid), reshape moves no value,
# and for relu6 quantize(clamp(v, 0, 6)) = clamp(q, Q(0), Q(6)) as quantize is monotone
# (qclamp). Defined in integers (not the float chain's bits, within one level of them): global
# average pooling, the exact mean of q - zp rounded half to even (qglobal_avgpool).
_TO_INT = {"maxpool2d": "qmaxpool2d", "reshape": "reshape", "relu": "qrelu", "relu6": "qclamp",
           "global_avgpool": "qglobal_avgpool"}
# the integer ops whose u8 output a dequantize turns back to float: their last two int
# attributes are the output's (qmin, qmax)
_INT_PRODUCERS = ("qconv2d", "qlinear", "quantize", "qadd", "qclamp", "qglobal_avgpool")


def _chain_kind(nd) -> Optional[str]:
    """The _TO_INT key of a node that keeps a tensor on its quantization grid, or None."""
    if nd.op == "act":
        return {ACT_RELU: "relu", ACT_RELU6: "relu6"}.get(nd.iattr[0])
    return nd.op if nd.op in _TO_INT else None


def _grid_of(tr, x):
    """(scale, zero_point, qmin, qmax) tensors / ints of the per-tensor grid ``x`` lies on —
    the output of a per-tensor ``fake_quant`` or of a ``dequantize``, possibly through the
    ops of ``_TO_INT`` — or None."""
    if not isinstance(x, tracing.Tensor):
        return None
    g, t = tr.graph, x.index
    producer = {o: nd for nd in g.nodes for o in nd.outputs if o >= 0}
    while t in producer:
        nd = producer[t]
        if nd.op == "fake_quant":
            axis, qmin, qmax = nd.iattr[:3]
            if axis != -1 or qmin < 0 or qmax > 255:
                return None
            return tr.wrap(nd.inputs[1]), tr.wrap(nd.inputs[2]), qmin, qmax
        if nd.op == "dequantize":
            q = producer.get(nd.inputs[0])
            lim = q.iattr[-2:] if q is not None and q.op in _INT_PRODUCERS else None
            return None if lim is None else (tr.wrap(nd.inputs[1]), tr.wrap(nd.inputs[2]),
                                             lim[0], lim[1])
        if _chain_kind(nd) is None:
            return None
        t = nd.inputs[0]
    return None


def _int_layer(m, x, conv: bool, weight=None, bias=None):
    """The integer eval path of a QATConv2d / QATLinear (or of a QATConvBn2d, whose folded
    ``weight`` and ``bias`` are given), or None when it does not apply."""
    tr = tracing.require()
    grid = _grid_of(tr, x)
    apq, wfq = m.activation_post_process, m.weight_fake_quant
    if grid is None or apq.axis != -1 or not 0 <= apq.quant_min < apq.quant_max <= 255:
        return None
    if wfq.quant_min < -128 or wfq.quant_max > 127:
        return None
    s_in, zp_in, qmin_in, qmax_in = grid
    x = tr.as_tensor(x)
    if conv:
        if getattr(m, "padding_mode", "zeros") != "zeros" or x.ndim != 4:
            return None
        sh, sw = F._pair(m.stride, "stride")
        dh, dw = F._pair(m.dilation, "dilation")
        if isinstance(m.padding, str) and m.padding == "same" and (sh, sw) != (1, 1):
            return None
        pt, pl, pb, pr = F.conv_padding(m.padding, tuple(m.weight.data.shape[2:4]), (dh, dw))
        geom = dict(stride_h=sh, stride_w=sw, pad_t=pt, pad_l=pl, pad_b=pb, pad_r=pr, dil_h=dh,
                    dil_w=dw, groups=m.groups)
    elif x.ndim != 2:
        return None
    xq = tr.emit1("quantize", [x, s_in, zp_in], qmin=qmin_in, qmax=qmax_in)
    weight = m.weight if weight is None else weight
    bias = m.bias if bias is None else bias
    wq, bq, mult = tr.emit("qprep", [weight, wfq.scale, bias, s_in, apq.scale],
                           wqmin=wfq.quant_min, wqmax=wfq.quant_max,
                           skip_outputs=() if bias is not None else (1,))
    ins = [xq, wq, bq, mult, zp_in, apq.zero_point]
    lim = dict(qmin=apq.quant_min, qmax=apq.quant_max)
    yq = tr.emit1("qconv2d", ins, **geom, **lim) if conv else tr.emit1("qlinear", ins, **lim)
    return tr.emit1("dequantize", [yq, apq.scale, apq.zero_point])


class QATConv2d(Conv2d):
    """Conv2d with per-channel fake-quantized weights and a fake-quantized output; in eval
    mode, on a quantized input, the int8 kernels."""

    def forward(self, x):
        if hasattr(self, "input_fake_quant"):
            x = self.input_fake_quant(x)
        if not self.training:
            y = _int_layer(self, x, conv=True)
            if y is not None:
                return y
        w = self.weight_fake_quant(self.weight)
        y = F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return self.activation_post_process(y)


class QATLinear(Linear):
    """Linear with per-channel fake-quantized weights and a fake-quantized output; in eval
    mode, on a quantized 2-D input, the int8 kernels."""

    def forward(self, x):
        if hasattr(self, "input_fake_quant"):
            x = self.input_fake_quant(x)
        if not self.training:
            y = _int_layer(self, x, conv=False)
            if y is not None:
                return y
        y = F.linear(x, self.weight_fake_quant(self.weight), self.bias)
        return self.activation_post_process(y)


class QATAdd(Add):
    """x + y with a fake-quantized sum (residual connections)."""

    def forward(self, x, y):
        return self.activation_post_process(F.add(x, y))


class QATConvBn2d(Conv2d):
    """Conv2d followed by its BatchNorm2d with the fold simulated as
    torch.ao.nn.intrinsic.qat.ConvBn2d does: the weight is scaled by gamma / sqrt(running_var +
    eps) and fake-quantized as it will be folded, the convolution's output is divided by that
    factor again (plus the conv bias) and batch-normalised (batch statistics in training,
    running ones in eval, and in training too from the optimizer step ``freeze_bn_step`` on:
    PyTorch's ``freeze_bn_stats``); the BatchNorm module stays in place (same names) as an
    identity."""

    freeze_bn_step = -1   # -1: never

    def forward(self, x):
        if hasattr(self, "input_fake_quant"):
            x = self.input_fake_quant(x)
        bn = self._folded_bn
        std = (tracing.require().as_tensor(bn.running_var) + bn.eps).sqrt()
        factor = tracing.require().as_tensor(bn.weight) / std
        w_folded = self.weight * factor.reshape(-1, 1, 1, 1)
        if not self.training:
            # eval: the fold itself (running statistics), on the int8 kernels when x is on a grid:
            # BN(conv(x, w) + b) = conv(x, w * factor) + beta + (b - mean) * factor
            shift = tracing.require().as_tensor(bn.running_mean)
            if self.bias is not None:
                shift = shift - tracing.require().as_tensor(self.bias)
            b_folded = tracing.require().as_tensor(bn.bias) - shift * factor
            y = _int_layer(self, x, conv=True, weight=w_folded, bias=b_folded)
            if y is not None:
                return y
        w = self.weight_fake_quant(w_folded)
        y = F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)
        y = y / factor.reshape(1, -1, 1, 1)
        if self.bias is not None:
            y = y + tracing.require().as_tensor(self.bias).reshape(1, -1, 1, 1)
        if self.training and self.freeze_bn_step >= 0:
            # batchnorm_train switches to the running statistics at that step (C: bn_frozen)
            if bn.momentum is None:
                raise NotImplementedError("batch_norm(momentum=None) (cumulative moving "
                                          "average) is not supported")
            y = tracing.require().emit("batchnorm_train", [y, bn.weight, bn.bias,
                                                           bn.running_mean, bn.running_var],
                                       freeze_step=self.freeze_bn_step,
                                       momentum=bn.momentum, eps=bn.eps)[0]
        else:
            y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                             training=self.training, momentum=bn.momentum, eps=bn.eps)
        return self.activation_post_process(y)


class FoldedBatchNorm2d(BatchNorm2d):
    """A BatchNorm2d computed by the QATConvBn2d before it: an identity here."""

    def forward(self, x):
        return x


def _fold_conv_bn(m: Module, qc: QConfig) -> None:
    """In a Sequential, each Conv2d directly followed by an affine BatchNorm2d with running
    statistics becomes a QATConvBn2d (the BatchNorm an identity, its tensors read by the conv)."""
    if not isinstance(m, Sequential):
        return
    kids = list(m.children())
    for conv, bn in zip(kids, kids[1:]):
        if type(conv) is Conv2d and type(bn) is BatchNorm2d and bn.affine and \
                bn.track_running_stats and bn.num_features == conv.out_channels:
            conv.__class__ = QATConvBn2d
            object.__setattr__(conv, "_folded_bn", bn)   # not a child: names stay the same
            conv.weight_fake_quant = _weight_fq(qc, conv.out_channels)
            conv.activation_post_process = _act_fq(qc)
            if qc.freeze_bn_step is not None:
                conv.freeze_bn_step = int(qc.freeze_bn_step)
            bn.__class__ = FoldedBatchNorm2d


def _convert(m: Module, qc: QConfig) -> None:
    if qc.fold_bn:
        _fold_conv_bn(m, qc)
    for child in m.children():
        _convert(child, qc)
    if type(m) is Conv2d:
        m.__class__ = QATConv2d
        m.weight_fake_quant = _weight_fq(qc, m.out_channels)
        m.activation_post_process = _act_fq(qc)
    elif type(m) is Linear:
        m.__class__ = QATLinear
        m.weight_fake_quant = _weight_fq(qc, m.out_features)
        m.activation_post_process = _act_fq(qc)
    elif type(m) is Add:
        m.__class__ = QATAdd
        m.activation_post_process = _act_fq(qc)
    else:
        _convert_residual(m, qc)


def _convert_residual(m: Module, qc: QConfig) -> None:
    """MobileNetV2's inverted residual block writes its add as ``x + self.conv(x)``: its sum
    is fake-quantized too."""
    if type(m) is InvertedResidual and m.use_res_connect:
        m.__class__ = QATInvertedResidual
        m.add_fake_quant = _act_fq(qc)


class QATInvertedResidual(InvertedResidual):
    """MobileNetV2 block with a fake-quantized residual sum."""

    def forward(self, x):
        if self.use_res_connect:
            return self.add_fake_quant(x + self.conv(x))
        return self.conv(x)


def prepare_qat(model: Module, qconfig: QConfig) -> Module:
    """A copy of ``model`` for quantization-aware training (MNN's toTrainQuant): the same
    parameter names, plus the quantizers' buffers (``<layer>.weight_fake_quant.*``,
    ``<layer>.activation_post_process.*``)."""
    if not isinstance(qconfig, QConfig):
        raise TypeError(f"quantize must be an edgetrain.quant.QConfig, got "
                        f"{type(qconfig).__name__}")
    if not isinstance(model, Module):
        raise TypeError(f"model must be an edgetrain.nn.Module, got {type(model).__name__}")
    # the copy shares the Parameter and Buffer objects (optimizer groups find them)
    memo = {id(h): h for _, h in model.named_parameters()}
    memo.update({id(h): h for _, h in model.named_buffers()})
    qat = copy.deepcopy(model, memo)
    _convert(qat, qconfig)
    if qconfig.quantize_input:
        first = next((m for m in qat.modules()
                      if isinstance(m, (QATConv2d, QATLinear, QATConvBn2d))), None)
        if first is not None:
            first.input_fake_quant = _act_fq(qconfig)
    if qconfig.output_bits is not None:
        last = [m for m in qat.modules() if isinstance(m, (QATConv2d, QATLinear, QATConvBn2d))]
        if last:
            last[-1].activation_post_process = _act_fq(qconfig, qconfig.output_bits)
    return qat


# ------------------------------------------------------------------------------------------
# the int8 file: the eval program with the weight quantization folded to constants
# ------------------------------------------------------------------------------------------
def constant_nodes(g, nodes) -> set:
    """The nodes (in program order) whose inputs are all stored tensors or outputs of such
    nodes: what an exporter may compute once and store (weight quantization, a folded BN)."""
    known, const = set(), set()
    for i in nodes:
        nd = g.nodes[i]
        if all(t < 0 or t in known or g.tensors[t].data is not None for t in nd.inputs):
            const.add(i)
            known.update(t for t in nd.outputs if t >= 0)
    return const


def needed_nodes(g, prog, folded: set) -> list:
    """The program's nodes its outputs need, in order; a folded node (written as constants)
    needs none of its inputs."""
    producer = {t: i for i in prog.nodes for t in g.nodes[i].outputs if t >= 0}
    need, todo = set(), list(prog.outputs.values())
    while todo:
        i = producer.get(todo.pop())
        if i is None or i in need:
            continue
        need.add(i)
        if i not in folded:
            todo.extend(t for t in g.nodes[i].inputs if t >= 0)
    return [i for i in prog.nodes if i in need]


def run_constant_nodes(g, nodes, wanted, run) -> dict:
    """{tensor: array} of the ``wanted`` outputs of constant-only ``nodes`` (program order),
    computed by the runtime's own kernels (the ones the session's eval program runs) through
    ``run(graph) -> outputs`` (the session layer passes a one-thread session's eval)."""
    from . import ir

    mini, remap = ir.Graph(), {}
    produced = {t for i in nodes for t in g.nodes[i].outputs if t >= 0}

    def tensor(t):
        if t < 0:
            return -1
        if t not in remap:
            td = g.tensors[t]
            remap[t] = (mini.add_tensor("", td.dtype, ir.ACT, td.shape) if t in produced else
                        mini.add_tensor(td.name or f"t{t}", td.dtype, ir.CONST, td.shape,
                                        data=td.data)).index
        return remap[t]

    for i in nodes:
        nd = g.nodes[i]
        ins = [tensor(t) for t in nd.inputs]
        mini.add_node(ir.Node(nd.op, ins, [tensor(t) for t in nd.outputs], list(nd.iattr),
                              list(nd.fattr), nd.layer))
    outs = {f"o{t}": remap[t] for t in wanted}
    for i in outs.values():
        mini.tensors[i].is_output = True
    mini.programs[ir.EVAL] = ir.Program(ir.EVAL, list(range(len(mini.nodes))), [], outs)
    res = run(mini)
    return {t: np.asarray(res[f"o{t}"]) for t in wanted}


def foldable_qpreps(g, nodes) -> list:
    """The ``qprep`` nodes among ``nodes`` (indices into g.nodes, program order) of an inference
    graph, each reading stored tensors or tensors computed from them only (a folded
    Conv+BatchNorm's weights), so that its outputs can be folded to constants; a clear
    QuantConfigError when there is none (not a QAT model) or one reads a computed tensor."""
    preps = [i for i in nodes if g.nodes[i].op == "qprep"]
    if not preps:
        raise QuantConfigError("int8=True needs a QAT model whose eval program runs the int8 "
                               "kernels (a session built with quantize=QConfig(...))")
    const = constant_nodes(g, nodes)
    for i in preps:
        if i not in const:
            raise QuantConfigError(f"layer '{g.nodes[i].layer}': weight quantization "
                                   "depends on a computed tensor; cannot fold it")
    return preps


def int8_graph(graph, run):
    """The int8 inference graph of a QAT session's graph: its eval program (as
    ``export.inference_graph``) with every ``qprep`` node replaced by its outputs — int8
    weights, int32 biases and fp32 requantize multipliers as constants, computed by the same
    kernel the eval program runs (``run(graph)`` evaluates a graph's eval program, e.g.
    ``TrainSession.from_graph(g, threads=1).RunGraph({})``) — so the file's logits are the
    session's ``Eval()`` ones bit for bit. Layers the integer path does not cover stay float."""
    from . import ir
    from .export import _compact, inference_graph

    g = inference_graph(graph)
    prog = g.programs[ir.EVAL]
    preps = foldable_qpreps(g, prog.nodes)
    const = constant_nodes(g, prog.nodes)
    values = run_constant_nodes(g, [i for i in prog.nodes if i in const],
                                [t for i in preps for t in g.nodes[i].outputs if t >= 0], run)
    suffix = (".weight_int8", ".bias_int32", ".multiplier")
    for i in preps:
        nd = g.nodes[i]
        for k, t in enumerate(nd.outputs):
            if t < 0:
                continue
            td = g.tensors[t]
            td.kind, td.data = ir.CONST, values[t].astype(ir.NUMPY_DTYPE[td.dtype]).reshape(td.shape)
            td.name = (nd.layer or "qprep") + suffix[k]
    nodes = [g.nodes[i] for i in needed_nodes(g, prog, set(preps)) if i not in set(preps)]
    out = _compact(g, [], nodes, prog)
    out.meta = dict(out.meta, int8=True)
    return out


# ------------------------------------------------------------------------------------------
# integer chains in the eval program
# ------------------------------------------------------------------------------------------
def _readers(graph, nodes) -> dict:
    readers = {}
    for n in nodes:
        for t in graph.nodes[n].inputs:
            if t >= 0:
                readers.setdefault(t, []).append(n)
    return readers


def _integer_adds(graph, nodes, keep_out) -> None:
    """``dequantize(a) + dequantize(b) -> fake_quant`` (per tensor, same shapes) becomes
    ``qadd(a, b) -> dequantize``: qadd computes the float chain's level in the same float
    operations, so the dequantized sum keeps its bits (and the next integer layer finds the
    u8 sum to read, integer_chains)."""
    producer = {o: n for n in nodes for o in graph.nodes[n].outputs if o >= 0}
    readers = _readers(graph, nodes)
    for fn in nodes:
        f = graph.nodes[fn]
        if f.op != "fake_quant" or f.iattr[0] != -1 or f.iattr[1] < 0 or f.iattr[2] > 255:
            continue
        t = f.inputs[0]
        if t in keep_out or readers.get(t) != [fn] or t not in producer:
            continue
        a = graph.nodes[producer[t]]
        if a.op != "add" or len(a.inputs) != 2:
            continue
        deq = [graph.nodes[producer[x]] if x in producer else None for x in a.inputs]
        if any(d is None or d.op != "dequantize" for d in deq) or \
                graph.tensors[a.inputs[0]].shape != graph.tensors[a.inputs[1]].shape:
            continue
        a.op, a.iattr, a.fattr = "qadd", list(f.iattr[1:3]), []
        a.inputs = [x for d in deq for x in d.inputs] + list(f.inputs[1:3])
        graph.tensors[t].dtype = "u8"
        f.op, f.inputs, f.iattr, f.fattr = "dequantize", [t] + list(f.inputs[1:3]), [], []


def _int_node(nd, x, q) -> None:
    """Rewrites the grid-keeping node ``nd`` (in a chain ending in the quantize node ``q``)
    into its integer op on the u8 tensor ``x``."""
    kind = _chain_kind(nd)
    s, zp = q.inputs[1:3]
    lim = list(q.iattr[:2])
    nd.op = _TO_INT[kind]
    if kind == "relu":
        nd.inputs, nd.iattr, nd.fattr = [x, zp], [], []
    elif kind == "relu6":
        nd.inputs, nd.iattr, nd.fattr = [x, s, zp], lim, [0.0, 6.0]
    elif kind == "global_avgpool":
        nd.inputs, nd.iattr, nd.fattr = [x, zp], lim, []
    else:
        nd.inputs = [x]


def _fuse_clamp(graph, producer, readers, keep_out, first, deq, q) -> bool:
    """When the chain's first node ``first`` (after the dequantize node ``deq``) is a relu or
    relu6 and the u8 tensor comes from a qconv2d / qlinear read by nothing else, that layer
    clamps its own output (its optional ``y_scale`` input and ``(lo, hi)`` attributes: the
    bounds Q(lo), Q(hi) of qclamp, so the bytes are those of the separate op) and ``first``
    goes. Returns whether it did."""
    kind = _chain_kind(graph.nodes[first])
    dq = graph.nodes[deq]
    u8 = dq.inputs[0]
    layer = graph.nodes[producer[u8]] if u8 in producer else None
    if kind not in ("relu", "relu6") or layer is None or layer.op not in ("qconv2d", "qlinear") \
            or [t for t in layer.inputs[6:] if t >= 0] or list(layer.iattr[-2:]) != list(q.iattr[:2]) \
            or list(layer.inputs[5:6]) != [q.inputs[2]] \
            or readers.get(u8) != [deq] or readers.get(dq.outputs[0]) != [first] \
            or u8 in keep_out or dq.outputs[0] in keep_out:
        return False
    layer.inputs = list(layer.inputs[:6]) + [q.inputs[1]]
    layer.fattr = [0.0, 6.0 if kind == "relu6" else math.inf]
    return True


def integer_chains(graph, node_ids, outputs):
    """Rewrite the eval program's ``dequantize -> (relu | relu6 | maxpool2d | global_avgpool |
    reshape)* -> quantize`` chains on one grid (same scale and zero-point tensors) into the
    integer ops on the u8 tensor (``_TO_INT``: qrelu = max(q, zp), qclamp, qmaxpool2d,
    qglobal_avgpool, reshape), a bare ``dequantize -> quantize`` into the u8 tensor itself,
    ``dequantize + dequantize -> fake_quant`` into ``qadd`` (:func:`_integer_adds`) and
    ``fake_quant -> quantize`` on one grid into ``quantize``. Exact (requantizing a grid value
    gives its level back) except global average pooling, which the integer op defines
    (see ``_TO_INT``). Applied when the eval program is built, so the session's Eval() and
    the int8 file run the same nodes. Returns the new node list."""
    nodes = list(node_ids)
    keep_out = set(outputs)
    _integer_adds(graph, nodes, keep_out)
    producer = {o: n for n in nodes for o in graph.nodes[n].outputs if o >= 0}
    readers = _readers(graph, nodes)

    def sole_reader(t, n):
        return t not in keep_out and readers.get(t) == [n]

    dropped = set()
    for qn in nodes:
        q = graph.nodes[qn]
        if q.op != "quantize":
            continue
        chain, t, cur = [], q.inputs[0], qn
        while t in producer and sole_reader(t, cur):
            nd = graph.nodes[producer[t]]
            if _chain_kind(nd) is None:
                break
            chain.append(producer[t])
            cur, t = producer[t], nd.inputs[0]
        src = graph.nodes[producer[t]] if t in producer else None
        if src is None or list(src.inputs[1:3]) != list(q.inputs[1:3]):
            continue
        if src.op == "fake_quant" and not chain and sole_reader(t, cur) and \
                src.iattr[:3] == [-1] + list(q.iattr[:2]):
            q.inputs = [src.inputs[0]] + list(q.inputs[1:])
            dropped.add(producer[t])
            continue
        if src.op != "dequantize":
            continue
        u8 = src.inputs[0]
        if not chain:                     # the u8 tensor itself
            if q.outputs[0] in keep_out:
                continue
            for r in readers.get(q.outputs[0], []):
                nd = graph.nodes[r]
                nd.inputs = [u8 if x == q.outputs[0] else x for x in nd.inputs]
                readers.setdefault(u8, []).append(r)
            dropped.add(qn)
            continue
        x, order = u8, list(reversed(chain))         # from the dequantize towards the quantize
        if _fuse_clamp(graph, producer, readers, keep_out, order[0], producer[t], q):
            dropped.add(order.pop(0))
            if not order:
                graph.nodes[producer[u8]].outputs = list(q.outputs)
        for k, n in enumerate(order):
            nd = graph.nodes[n]
            _int_node(nd, x, q)
            if k == len(order) - 1:
                nd.outputs = list(q.outputs)
            else:
                graph.tensors[nd.outputs[0]].dtype = "u8"
            x = nd.outputs[0]
        dropped.add(qn)
        readers[t] = [r for r in readers.get(t, []) if r != cur]
        readers.setdefault(u8, []).append(chain[-1])
    # dequantize nodes nobody reads any more (their readers now take the u8 tensor)
    for n in nodes:
        nd = graph.nodes[n]
        if nd.op == "dequantize" and nd.outputs[0] not in keep_out and \
                not [r for r in readers.get(nd.outputs[0], []) if r not in dropped]:
            dropped.add(n)
    return [n for n in nodes if n not in dropped]
