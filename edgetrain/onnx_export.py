"""ONNX export: a program of an edgetrain graph written as an ONNX model onnxruntime runs.

:func:`to_onnx` maps each node of the eval program (the forward of a training file, or an
inference-only file's folded program) onto standard ONNX ops (default domain, opset 13–21):
parameters, buffers and constants become initializers under their edgetrain names (= the
PyTorch names), the program's inputs become graph inputs with a symbolic batch dimension
``N`` (the batch stays resizable, as in the session) and its outputs keep their names.
Activations fused into a convolution become a separate activation node after the ``Conv``.

Only the forward/eval program is exportable; gradients, optimizer updates and losses are not
ONNX inference ops. A node whose op has no mapping raises :class:`UnsupportedError` listing
every unsupported op of the program at once, with counts. ``onnx`` is an optional dependency
(``pip install edgetrain[onnx]``).
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Dict, List, Optional

import numpy as np

from . import ir, ops
from .errors import UnsupportedError

MIN_OPSET, MAX_OPSET = 13, 21
BATCH = "N"


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise UnsupportedError("ONNX export needs the optional 'onnx' package: "
                                "pip install 'edgetrain[onnx]'") from e
    return onnx, helper, numpy_helper


class _Writer:
    """Collects nodes and initializers; names fresh intermediate tensors."""

    def __init__(self, graph: ir.Graph, opset: int):
        self.g = graph
        self.opset = opset
        _, self.helper, self.numpy_helper = _onnx()
        self.nodes: List = []
        self.inits: Dict[str, object] = {}
        self.names: Dict[int, str] = {}
        self._used = set()
        self._n = 0

    def name(self, t: int) -> str:
        """The ONNX name of edgetrain tensor t ("" for an absent optional input)."""
        if t < 0:
            return ""
        if t not in self.names:
            td = self.g.tensors[t]
            nm = td.name if td.name and td.name not in self._used else f"{td.name or 't'}_{t}"
            self._used.add(nm)
            self.names[t] = nm
            if td.kind in ir.KINDS_WITH_DATA and td.data is not None:
                self.inits[nm] = self.numpy_helper.from_array(np.asarray(td.data), nm)
        return self.names[t]

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"{hint}__{self._n}"

    def const(self, value, hint: str, dtype=np.float32) -> str:
        name = self.fresh(hint)
        self.inits[name] = self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
        return name

    def node(self, op_type: str, inputs: List[str], outputs: List[str], layer: str = "",
             **attrs) -> None:
        self.nodes.append(self.helper.make_node(op_type, inputs, outputs,
                                                name=self.fresh(layer or op_type), **attrs))

    def attrs(self, nd: ir.Node) -> Dict[str, float]:
        return ops.OP_BY_NAME[nd.op].attrs(nd)


# ---- activations ------------------------------------------------------------------------
def _activation(w: _Writer, kind: int, alpha: float, x: str, y: str, layer: str) -> None:
    if kind == ops.ACT_NONE:
        w.node("Identity", [x], [y], layer)
    elif kind == ops.ACT_RELU:
        w.node("Relu", [x], [y], layer)
    elif kind == ops.ACT_RELU6:
        w.node("Clip", [x, w.const(0.0, "zero"), w.const(6.0, "six")], [y], layer)
    elif kind == ops.ACT_LEAKY_RELU:
        w.node("LeakyRelu", [x], [y], layer, alpha=float(alpha))
    elif kind == ops.ACT_SIGMOID:
        w.node("Sigmoid", [x], [y], layer)
    elif kind == ops.ACT_TANH:
        w.node("Tanh", [x], [y], layer)
    elif kind == ops.ACT_HARDSWISH:
        w.node("HardSwish", [x], [y], layer)
    else:  # pragma: no cover - the op table rejects unknown kinds at trace time
        raise UnsupportedError(f"layer '{layer}': activation kind {kind} has no ONNX mapping")


def _act(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    _activation(w, int(a["act"]), a["alpha"], w.name(nd.inputs[0]), w.name(nd.outputs[0]),
                nd.layer)


# ---- convolution, pooling, normalisation ---------------------------------------------------
def _conv2d(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    ins = [w.name(t) for t in nd.inputs[:3] if t >= 0]
    out = w.name(nd.outputs[0])
    act = int(a["act"])
    bn = len(nd.inputs) > 5 and nd.inputs[5] >= 0   # fused eval BatchNorm: + BatchNormalization
    y = out if act == ops.ACT_NONE else w.fresh(out + "_preact")
    conv_y = w.fresh(out + "_prebn") if bn else y
    w.node("Conv", ins, [conv_y], nd.layer,
           strides=[int(a["stride_h"]), int(a["stride_w"])],
           pads=[int(a["pad_t"]), int(a["pad_l"]), int(a["pad_b"]), int(a["pad_r"])],
           dilations=[int(a["dil_h"]), int(a["dil_w"])], group=int(a["groups"]),
           kernel_shape=list(w.g.tensors[nd.inputs[1]].shape[2:]))
    if bn:
        c = w.g.tensors[nd.inputs[5]].shape[0]
        gamma, beta = nd.inputs[3:5]
        g = w.name(gamma) if gamma >= 0 else w.const(np.ones(c), "bn_scale")
        b = w.name(beta) if beta >= 0 else w.const(np.zeros(c), "bn_bias")
        w.node("BatchNormalization", [conv_y, g, b, w.name(nd.inputs[5]), w.name(nd.inputs[6])],
               [y], nd.layer, epsilon=float(a["bn_eps"]))
    if act != ops.ACT_NONE:
        _activation(w, act, a["act_alpha"], y, out, nd.layer)


def _pool_window(a) -> dict:
    """kernel_shape, strides and pads of a maxpool2d / avgpool2d node's attributes."""
    return dict(kernel_shape=[int(a["kh"]), int(a["kw"])],
                strides=[int(a["stride_h"]), int(a["stride_w"])],
                pads=[int(a["pad_h"]), int(a["pad_w"]), int(a["pad_h"]), int(a["pad_w"])])


def _maxpool2d(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    w.node("MaxPool", [w.name(nd.inputs[0])], [w.name(nd.outputs[0])], nd.layer,
           **_pool_window(a), dilations=[int(a["dil_h"]), int(a["dil_w"])],
           ceil_mode=int(a["ceil_mode"]))


def _avgpool2d(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    w.node("AveragePool", [w.name(nd.inputs[0])], [w.name(nd.outputs[0])], nd.layer,
           **_pool_window(a), ceil_mode=int(a["ceil_mode"]),
           count_include_pad=int(a["count_include_pad"]))


def _global_avgpool(w: _Writer, nd: ir.Node) -> None:
    w.node("GlobalAveragePool", [w.name(nd.inputs[0])], [w.name(nd.outputs[0])], nd.layer)


def _batchnorm_infer(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    x, gamma, beta, mean, var = nd.inputs[:5]
    c = w.g.tensors[mean].shape[0]
    g = w.name(gamma) if gamma >= 0 else w.const(np.ones(c), "bn_scale")
    b = w.name(beta) if beta >= 0 else w.const(np.zeros(c), "bn_bias")
    w.node("BatchNormalization", [w.name(x), g, b, w.name(mean), w.name(var)],
           [w.name(nd.outputs[0])], nd.layer, epsilon=float(a["eps"]))


# ---- linear algebra and elementwise -------------------------------------------------------
def _matmul(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    w.node("Gemm", [w.name(nd.inputs[0]), w.name(nd.inputs[1])], [w.name(nd.outputs[0])],
           nd.layer, transA=int(a["trans_a"]), transB=int(a["trans_b"]))


def _binary(op_type: str) -> Callable:
    def emit(w: _Writer, nd: ir.Node) -> None:
        w.node(op_type, [w.name(nd.inputs[0]), w.name(nd.inputs[1])], [w.name(nd.outputs[0])],
               nd.layer)
    return emit


def _affine(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    scaled = w.fresh(w.name(nd.outputs[0]) + "_scaled")
    w.node("Mul", [w.name(nd.inputs[0]), w.const(a["alpha"], "alpha")], [scaled], nd.layer)
    w.node("Add", [scaled, w.const(a["beta"], "beta")], [w.name(nd.outputs[0])], nd.layer)


_UNARY_SIMPLE = {ops.UN_EXP: "Exp", ops.UN_LOG: "Log", ops.UN_SQRT: "Sqrt", ops.UN_ABS: "Abs",
                 ops.UN_ERF: "Erf", ops.UN_SIGN: "Sign"}


def _unary(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    fn, x, y = int(a["fn"]), w.name(nd.inputs[0]), w.name(nd.outputs[0])
    if fn in _UNARY_SIMPLE:
        w.node(_UNARY_SIMPLE[fn], [x], [y], nd.layer)
    elif fn == ops.UN_RSQRT:
        s = w.fresh(y + "_sqrt")
        w.node("Sqrt", [x], [s], nd.layer)
        w.node("Reciprocal", [s], [y], nd.layer)
    elif fn == ops.UN_POW:
        w.node("Pow", [x, w.const(a["a"], "exponent")], [y], nd.layer)
    elif fn == ops.UN_CLAMP:
        w.node("Clip", [x, w.const(a["a"], "min"), w.const(a["b"], "max")], [y], nd.layer)
    elif fn == ops.UN_IN_RANGE:
        ge, le, both = (w.fresh(y + s) for s in ("_ge", "_le", "_and"))
        w.node("GreaterOrEqual", [x, w.const(a["a"], "lo")], [ge], nd.layer)
        w.node("LessOrEqual", [x, w.const(a["b"], "hi")], [le], nd.layer)
        w.node("And", [ge, le], [both], nd.layer)
        w.node("Cast", [both], [y], nd.layer, to=1)
    else:
        raise UnsupportedError(f"layer '{nd.layer}': unary function {fn} has no ONNX mapping")


def _reshape(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    ndim = int(a["ndim"])
    dims = [int(a[f"d{i}"]) for i in range(ndim)]
    w.node("Reshape", [w.name(nd.inputs[0]), w.const(dims, "shape", np.int64)],
           [w.name(nd.outputs[0])], nd.layer)


def _reduce(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    rank = len(w.g.tensors[nd.inputs[0]].shape)
    mask = int(a["axis_mask"])
    axes = [d for d in range(rank) if mask == 0 or mask >> d & 1]
    keep = int(a["keepdims"])
    x, y = w.name(nd.inputs[0]), w.name(nd.outputs[0])
    op_type = "ReduceSum" if int(a["mode"]) == ops.REDUCE_SUM else "ReduceMean"
    if op_type == "ReduceSum" or w.opset >= 18:  # axes became an input
        w.node(op_type, [x, w.const(axes, "axes", np.int64)], [y], nd.layer, keepdims=keep)
    else:
        w.node(op_type, [x], [y], nd.layer, axes=axes, keepdims=keep)


def _softmax(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    w.node("LogSoftmax" if int(a["log"]) else "Softmax", [w.name(nd.inputs[0])],
           [w.name(nd.outputs[0])], nd.layer, axis=int(a["axis"]))


def _identity(w: _Writer, nd: ir.Node) -> None:
    w.node("Identity", [w.name(nd.inputs[0])], [w.name(nd.outputs[0])], nd.layer)


def _broadcast_to(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    shape = list(w.g.tensors[nd.inputs[1]].shape)
    expanded = w.fresh(w.name(nd.outputs[0]) + "_expanded")
    w.node("Expand", [w.name(nd.inputs[0]), w.const(shape, "shape", np.int64)], [expanded],
           nd.layer)
    w.node("Mul", [expanded, w.const(a["scale"], "scale")], [w.name(nd.outputs[0])], nd.layer)


EMITTERS: Dict[str, Callable[[_Writer, ir.Node], None]] = {
    "conv2d": _conv2d, "matmul": _matmul, "add": _binary("Add"), "sub": _binary("Sub"),
    "mul": _binary("Mul"), "div": _binary("Div"), "reshape": _reshape, "act": _act,
    "maxpool2d": _maxpool2d, "avgpool2d": _avgpool2d, "global_avgpool": _global_avgpool,
    "batchnorm_infer": _batchnorm_infer, "dropout": _identity, "softmax": _softmax,
    "affine": _affine, "unary": _unary, "reduce": _reduce, "broadcast_to": _broadcast_to,
}


# ---- tensor manipulation, normalisation, max / min, batched matmul, resampling ------------
def _concat(w: _Writer, nd: ir.Node) -> None:
    w.node("Concat", [w.name(t) for t in nd.inputs if t >= 0], [w.name(nd.outputs[0])],
           nd.layer, axis=int(w.attrs(nd)["axis"]))


def _slice(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    axis, y = int(a["axis"]), w.name(nd.outputs[0])
    out = w.fresh(y + "_kept") if int(a["drop"]) else y
    w.node("Slice", [w.name(nd.inputs[0]), w.const([int(a["start"])], "starts", np.int64),
                     w.const([int(a["stop"])], "ends", np.int64),
                     w.const([axis], "axes", np.int64),
                     w.const([int(a["step"])], "steps", np.int64)], [out], nd.layer)
    if int(a["drop"]):
        w.node("Squeeze", [out, w.const([axis], "axes", np.int64)], [y], nd.layer)


def _transpose(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    perm = [int(a[p]) for p in ops.PERM_DIMS[:int(a["ndim"])]]
    w.node("Transpose", [w.name(nd.inputs[0])], [w.name(nd.outputs[0])], nd.layer, perm=perm)


_PAD_ONNX = {ops.PAD_CONSTANT: "constant", ops.PAD_REFLECT: "reflect", ops.PAD_REPLICATE: "edge"}


def _pad(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    rank = len(w.g.tensors[nd.inputs[0]].shape)
    pads = [int(a[f"before{d}"]) for d in range(rank)] + [int(a[f"after{d}"]) for d in range(rank)]
    mode = _PAD_ONNX[int(a["mode"])]
    ins = [w.name(nd.inputs[0]), w.const(pads, "pads", np.int64)]
    if mode == "constant":
        ins.append(w.const(a["value"], "value"))
    w.node("Pad", ins, [w.name(nd.outputs[0])], nd.layer, mode=mode)


def _gather(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    op_type = "Gather" if int(a["select"]) else "GatherElements"
    w.node(op_type, [w.name(nd.inputs[0]), w.name(nd.inputs[1])], [w.name(nd.outputs[0])],
           nd.layer, axis=int(a["axis"]))


def _embedding(w: _Writer, nd: ir.Node) -> None:
    w.node("Gather", [w.name(nd.inputs[0]), w.name(nd.inputs[1])], [w.name(nd.outputs[0])],
           nd.layer, axis=0)


def _dim_of(w: _Writer, t: int, k: int, layer: str) -> str:
    """A 1-element int64 tensor holding dim ``k`` of tensor ``t`` at run time."""
    shape, out = w.fresh(w.name(t) + "_shape"), w.fresh(w.name(t) + f"_dim{k}")
    w.node("Shape", [w.name(t)], [shape], layer)
    w.node("Slice", [shape, w.const([k], "start", np.int64), w.const([k + 1], "end", np.int64)],
           [out], layer)
    return out


def _expand(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    dims = [int(a[d]) for d in ops.RESHAPE_DIMS[:int(a["ndim"])]]
    like = nd.inputs[1] if len(nd.inputs) > 1 else -1
    out_shape = list(w.g.tensors[nd.outputs[0]].shape)
    parts, static = [], []
    for i, d in enumerate(dims):
        if d <= -2 and like >= 0:
            if static:
                parts.append(w.const(static, "dims", np.int64))
                static = []
            parts.append(_dim_of(w, like, -2 - d, nd.layer))
        else:
            static.append(1 if d == -1 else (out_shape[i] if d < 0 else d))
    if static:
        parts.append(w.const(static, "dims", np.int64))
    shape = parts[0]
    if len(parts) > 1:
        shape = w.fresh(w.name(nd.outputs[0]) + "_dims")
        w.node("Concat", parts, [shape], nd.layer, axis=0)
    w.node("Expand", [w.name(nd.inputs[0]), shape], [w.name(nd.outputs[0])], nd.layer)


def _normalize(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    shape = list(w.g.tensors[nd.inputs[0]].shape)
    naxes = int(a["naxes"])
    if w.opset < 17:
        raise UnsupportedError(f"layer '{nd.layer}': normalize (layer norm) needs opset >= 17 "
                               f"(LayerNormalization), got {w.opset}")
    trailing = shape[len(shape) - naxes:]
    w.node("LayerNormalization", [w.name(nd.inputs[0]), w.const(np.ones(trailing), "ln_scale"),
                                  w.const(np.zeros(trailing), "ln_bias")],
           [w.name(nd.outputs[0])], nd.layer, axis=-naxes, epsilon=float(a["eps"]))


def _reduce_max(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    rank = len(w.g.tensors[nd.inputs[0]].shape)
    mask = int(a["axis_mask"])
    axes = [d for d in range(rank) if mask == 0 or mask >> d & 1]
    op_type = "ReduceMin" if int(a["mode"]) else "ReduceMax"
    x, y, keep = w.name(nd.inputs[0]), w.name(nd.outputs[0]), int(a["keepdims"])
    if w.opset >= 18:
        w.node(op_type, [x, w.const(axes, "axes", np.int64)], [y], nd.layer, keepdims=keep)
    else:
        w.node(op_type, [x], [y], nd.layer, axes=axes, keepdims=keep)


def _argmax(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    y = w.name(nd.outputs[0])
    i64 = w.fresh(y + "_i64")
    w.node("ArgMin" if int(a["min"]) else "ArgMax", [w.name(nd.inputs[0])], [i64], nd.layer,
           axis=int(a["axis"]), keepdims=int(a["keepdims"]))
    w.node("Cast", [i64], [y], nd.layer, to=6)  # edgetrain's indices are int32


def _bmm(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    ins = []
    for t, flag in zip(nd.inputs[:2], (a["trans_a"], a["trans_b"])):
        name = w.name(t)
        if int(flag):
            rank = len(w.g.tensors[t].shape)
            moved = w.fresh(name + "_T")
            w.node("Transpose", [name], [moved], nd.layer,
                   perm=list(range(rank - 2)) + [rank - 1, rank - 2])
            name = moved
        ins.append(name)
    w.node("MatMul", ins, [w.name(nd.outputs[0])], nd.layer)


def _conv_transpose2d(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    ph, pw = int(a["pad_h"]), int(a["pad_w"])
    w.node("ConvTranspose", [w.name(t) for t in nd.inputs if t >= 0], [w.name(nd.outputs[0])],
           nd.layer, strides=[int(a["stride_h"]), int(a["stride_w"])], pads=[ph, pw, ph, pw],
           output_padding=[int(a["out_pad_h"]), int(a["out_pad_w"])],
           dilations=[int(a["dil_h"]), int(a["dil_w"])], group=int(a["groups"]),
           kernel_shape=list(w.g.tensors[nd.inputs[1]].shape[2:]))


def _interpolate(w: _Writer, nd: ir.Node) -> None:
    a = w.attrs(nd)
    x, y = nd.inputs[0], w.name(nd.outputs[0])
    if int(a["mode"]) == ops.INTERP_NEAREST:
        attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                     nearest_mode="floor")
    else:
        attrs = dict(mode="linear", coordinate_transformation_mode="align_corners"
                     if int(a["align_corners"]) else "pytorch_half_pixel")
    if a["scale_h"] > 0 and a["scale_w"] > 0:
        ins = [w.name(x), "", w.const([1.0, 1.0, a["scale_h"], a["scale_w"]], "scales")]
    else:
        nc = w.fresh(w.name(x) + "_nc")
        shape = w.fresh(w.name(x) + "_shape")
        w.node("Shape", [w.name(x)], [shape], nd.layer)
        w.node("Slice", [shape, w.const([0], "start", np.int64), w.const([2], "end", np.int64)],
               [nc], nd.layer)
        sizes = w.fresh(y + "_sizes")
        w.node("Concat", [nc, w.const([int(a["oh"]), int(a["ow"])], "hw", np.int64)], [sizes],
               nd.layer, axis=0)
        ins = [w.name(x), "", "", sizes]
    w.node("Resize", ins, [y], nd.layer, **attrs)


def _adaptive_pool(op_type: str, global_type: str) -> Callable:
    def emit(w: _Writer, nd: ir.Node) -> None:
        a = w.attrs(nd)
        h, wd = w.g.tensors[nd.inputs[0]].shape[2:]
        oh, ow = int(a["oh"]), int(a["ow"])
        x, y = w.name(nd.inputs[0]), w.name(nd.outputs[0])
        if (oh, ow) == (1, 1):
            w.node(global_type, [x], [y], nd.layer)
        elif h % oh == 0 and wd % ow == 0:
            k = [h // oh, wd // ow]
            w.node(op_type, [x], [y], nd.layer, kernel_shape=k, strides=k)
        else:
            raise UnsupportedError(f"layer '{nd.layer}': adaptive pooling of {h}x{wd} to "
                                   f"{oh}x{ow} (not a divisor) has no ONNX mapping")
    return emit


EMITTERS.update({
    "concat": _concat, "slice": _slice, "transpose": _transpose, "pad": _pad,
    "gather": _gather, "embedding": _embedding, "expand": _expand, "normalize": _normalize,
    "maximum": _binary("Max"), "minimum": _binary("Min"), "reduce_max": _reduce_max,
    "argmax": _argmax, "bmm": _bmm, "conv_transpose2d": _conv_transpose2d,
    "interpolate": _interpolate,
    "adaptive_avgpool2d": _adaptive_pool("AveragePool", "GlobalAveragePool"),
    "adaptive_maxpool2d": _adaptive_pool("MaxPool", "GlobalMaxPool"),
})


def _check_supported(graph: ir.Graph, prog: ir.Program) -> None:
    missing = Counter(graph.nodes[i].op for i in prog.nodes if graph.nodes[i].op not in EMITTERS)
    if missing:
        listed = ", ".join(f"{op} ({n}×)" for op, n in sorted(missing.items()))
        hint = ("; this QAT model's eval program runs the int8 kernels: export it with "
                "int8=True, inference_only=True (QDQ ONNX)" if "qprep" in missing else "")
        raise UnsupportedError(f"ONNX export: the eval program uses ops without an ONNX "
                                f"mapping: {listed}{hint}")


def _value_info(w: _Writer, t: int, batch_dynamic: bool):
    td = w.g.tensors[t]
    elem = {ir.F32: 1, ir.I32: 6, ir.I64: 7, ir.U8: 2, ir.I8: 3}[td.dtype]
    shape: List = list(td.shape)
    if batch_dynamic and shape:
        shape[0] = BATCH
    return w.helper.make_tensor_value_info(w.name(t), elem, shape)


def to_onnx(graph: ir.Graph, opset: int = 17, batch_dynamic: bool = True,
            producer: str = "edgetrain"):
    """The eval program of ``graph`` as an ``onnx.ModelProto`` (checked by ``onnx.checker``)."""
    onnx, helper, _ = _onnx()
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ValueError(f"ONNX export supports opset {MIN_OPSET}..{MAX_OPSET}, not {opset}")
    prog = graph.programs.get(ir.EVAL)
    if prog is None:
        raise UnsupportedError("ONNX export: the model has no eval program")
    _check_supported(graph, prog)
    w = _Writer(graph, int(opset))
    for i in prog.nodes:
        nd = graph.nodes[i]
        EMITTERS[nd.op](w, nd)
    inputs = [_value_info(w, t, batch_dynamic) for t in prog.inputs]
    outputs = []
    for out_name, t in prog.outputs.items():
        src = w.name(t)
        if src != out_name:  # the graph output keeps the program's output name
            w.node("Identity", [src], [out_name], "output")
        info = _value_info(w, t, batch_dynamic)
        info.name = out_name
        outputs.append(info)
    g = helper.make_graph(w.nodes, graph.meta.get("model_name", "edgetrain") or "edgetrain",
                          inputs, outputs, initializer=list(w.inits.values()))
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", int(opset))],
                              producer_name=producer)
    model.ir_version = min(model.ir_version, 10)  # readable by onnxruntime releases in use
    onnx.checker.check_model(model, full_check=True)
    return model


def save(graph: ir.Graph, path, opset: int = 17) -> None:
    """Writes :func:`to_onnx` of ``graph`` to ``path`` atomically (the old file stays on error)."""
    from .fileformat import save_atomic

    model = to_onnx(graph, opset=opset)
    save_atomic(path, model.SerializeToString(), context="ONNX export")
