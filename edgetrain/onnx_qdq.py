"""QDQ ONNX export of a QAT model's int8 eval program (``export_onnx(..., int8=True)``).

The int8 eval program (docs/int8.md) is written in ONNX's QDQ format, the form onnxruntime
fuses into its integer kernels (QLinearConv, QGemm / QLinearMatMul, uint8 MaxPool):

    quantize(x; s, zp)          -> QuantizeLinear(x, s, zp:u8)
    qconv2d / qlinear           -> DequantizeLinear(x_u8, s_in, zp_in)
                                   DequantizeLinear(w_i8, s_w[C], 0, axis=0)     (weights)
                                   DequantizeLinear(b_i32, s_in*s_w[C], 0, axis=0) (bias)
                                   Conv / Gemm(transB=1)
                                   QuantizeLinear(y, s_out, zp_out)
    qrelu / qmaxpool2d / qclamp -> DequantizeLinear -> Relu / MaxPool / Clip / GlobalAveragePool
      / qglobal_avgpool            -> QuantizeLinear (same grid)
    qadd                        -> DequantizeLinear x 2 -> Add -> QuantizeLinear
    reshape (of a u8 tensor)    -> Reshape on the u8 tensor
    dequantize(q; s, zp)        -> DequantizeLinear(q, s, zp)

The int8 weights and int32 biases are the int8 file's bytes (the same ``qprep`` kernel
computes them, :func:`edgetrain.quant.int8_graph`); activations are per-tensor uint8 with the
observers' scale and zero point; weights per output channel, symmetric (zero point 0). Layers
the integer path does not cover (a first layer without ``quantize_input``) keep their float
ops: a ``fake_quant`` of weights
(constants, or computed from constants) becomes its integer levels under DequantizeLinear,
one of activations a QuantizeLinear / DequantizeLinear pair.
Only 8-bit activation ranges (0..255) have a QDQ form; other ranges raise
:class:`QuantConfigError`.
"""
from __future__ import annotations

import numpy as np

from . import ir, onnx_export
from .errors import UnsupportedError
from .quant import (QuantConfigError, constant_nodes, foldable_qpreps, needed_nodes,
                    run_constant_nodes)

MIN_OPSET = 13   # per-axis DequantizeLinear


def _data(g: ir.Graph, t: int, layer: str, what: str) -> np.ndarray:
    d = g.tensors[t].data
    if d is None:
        raise QuantConfigError(f"layer '{layer}': the {what} is computed at run time; a QDQ "
                               "model needs it as a constant")
    return np.asarray(d)


class _QDQ:
    """Emits the QDQ nodes of one int8 eval program through an onnx_export._Writer."""

    def __init__(self, w: "onnx_export._Writer", preps: dict, values: dict):
        self.w, self.g = w, w.g
        self.preps = preps        # qprep output tensor -> qprep node
        self.values = values      # qprep / constant fake_quant output tensor -> array
        self.grid = {}            # u8 tensor -> (scale name, zero point name)
        self._scalars = {}

    # ---- constants ------------------------------------------------------------------------
    def scale(self, t: int, layer: str) -> str:
        key = ("s", t)
        if key not in self._scalars:
            v = _data(self.g, t, layer, "scale").reshape(-1)
            if v.size != 1 or not np.isfinite(v[0]) or v[0] <= 0:
                raise QuantConfigError(f"layer '{layer}': activation scale "
                                       f"'{self.g.tensors[t].name}' must be one finite value "
                                       f"> 0, got {v.tolist()}")
            self._scalars[key] = self.named(np.float32(v[0]), self._hint(t, "scale"))
        return self._scalars[key]

    def zero_point(self, t: int, layer: str) -> str:
        key = ("z", t)
        if key not in self._scalars:
            v = _data(self.g, t, layer, "zero point").reshape(-1)
            if v.size != 1 or v[0] != np.round(v[0]) or not 0 <= v[0] <= 255:
                raise QuantConfigError(f"layer '{layer}': zero point "
                                       f"'{self.g.tensors[t].name}' must be one integer in "
                                       f"0..255, got {v.tolist()}")
            self._scalars[key] = self.named(np.uint8(v[0]), self._hint(t, "zero_point"),
                                            np.uint8)
        return self._scalars[key]

    def named(self, value, name: str, dtype=np.float32) -> str:
        """An initializer under ``name`` (the int8 file's tensor names), or a fresh one."""
        w = self.w
        if name in w._used or name in w.inits:
            return w.const(value, name, dtype)
        w._used.add(name)
        w.inits[name] = w.numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
        return name

    def _hint(self, t: int, kind: str) -> str:
        return self.g.tensors[t].name or kind

    @staticmethod
    def _u8_range(nd: ir.Node, qmin: int, qmax: int) -> None:
        if (qmin, qmax) != (0, 255):
            raise QuantConfigError(f"layer '{nd.layer}': QDQ ONNX export writes uint8 "
                                   f"activations (range 0..255); this model quantizes to "
                                   f"{qmin}..{qmax} (act_bits < 8)")

    def dq(self, t: int, layer: str) -> str:
        """A float view (DequantizeLinear) of u8 tensor t."""
        s, z = self.grid[t]
        y = self.w.fresh(self.w.name(t) + "_dq")
        self.w.node("DequantizeLinear", [self.w.name(t), s, z], [y], layer)
        return y

    def q(self, x: str, out: int, s: str, z: str, layer: str) -> None:
        self.w.node("QuantizeLinear", [x, s, z], [self.w.name(out)], layer)
        self.grid[out] = (s, z)

    # ---- nodes ----------------------------------------------------------------------------
    def quantize(self, nd: ir.Node) -> None:
        self._u8_range(nd, *nd.iattr[:2])
        s, z = self.scale(nd.inputs[1], nd.layer), self.zero_point(nd.inputs[2], nd.layer)
        self.q(self.w.name(nd.inputs[0]), nd.outputs[0], s, z, nd.layer)

    def dequantize(self, nd: ir.Node) -> None:
        s, z = self.scale(nd.inputs[1], nd.layer), self.zero_point(nd.inputs[2], nd.layer)
        self.w.node("DequantizeLinear", [self.w.name(nd.inputs[0]), s, z],
                    [self.w.name(nd.outputs[0])], nd.layer)

    def qlayer(self, nd: ir.Node) -> None:
        """qconv2d / qlinear: DQ(x), DQ(w) per channel, DQ(b) per channel, Conv / Gemm, Q."""
        w, layer = self.w, nd.layer
        x, wq, bq, _, _, zp_out = nd.inputs[:6]
        a = w.attrs(nd)
        self._u8_range(nd, int(a["qmin"]), int(a["qmax"]))
        prep = self.preps.get(wq)
        if prep is None:
            raise UnsupportedError(f"layer '{layer}': {nd.op} weights not made by qprep")
        s_w = _data(self.g, prep.inputs[1], layer, "weight scale").astype(np.float32).reshape(-1)
        s_in = _data(self.g, prep.inputs[3], layer, "input scale").astype(np.float32).reshape(-1)
        name = layer or nd.op
        channels = len(s_w)
        w_i8 = self.named(self.values[wq].astype(np.int8), name + ".weight_int8", np.int8)
        w_f = w.fresh(name + ".weight_dq")
        w_zp = self.named(np.zeros(channels, np.int8), name + ".weight_zp", np.int8)
        w.node("DequantizeLinear", [w_i8, self.named(s_w, name + ".weight_scale"), w_zp], [w_f],
               layer, axis=0)
        ins = [self.dq(x, layer), w_f]
        if bq >= 0:
            b_i32 = self.named(self.values[bq].astype(np.int32), name + ".bias_int32", np.int32)
            b_f = w.fresh(name + ".bias_dq")
            bias_scale = (s_in[0] * s_w).astype(np.float32)   # qprep's s_in * s_w[c] in f32
            b_zp = self.named(np.zeros(channels, np.int32), name + ".bias_zp", np.int32)
            w.node("DequantizeLinear", [b_i32, self.named(bias_scale, name + ".bias_scale"), b_zp],
                   [b_f], layer, axis=0)
            ins.append(b_f)
        y = w.fresh(name + "_float")
        if nd.op == "qconv2d":
            w.node("Conv", ins, [y], layer,
                   strides=[int(a["stride_h"]), int(a["stride_w"])],
                   pads=[int(a["pad_t"]), int(a["pad_l"]), int(a["pad_b"]), int(a["pad_r"])],
                   dilations=[int(a["dil_h"]), int(a["dil_w"])], group=int(a["groups"]),
                   kernel_shape=list(self.g.tensors[wq].shape[2:]))
        else:
            w.node("Gemm", ins, [y], layer, transB=1)
        s, z = self.scale(prep.inputs[4], layer), self.zero_point(zp_out, layer)
        if [t for t in nd.inputs[6:] if t >= 0]:
            # the layer's own clamp written unfused, Q -> DQ -> Relu / Clip -> Q on one grid
            # (clamp(Q(y), Q(lo), Q(hi)) exactly), the pattern onnxruntime fuses
            q = w.fresh(name + "_q")
            w.node("QuantizeLinear", [y, s, z], [q], layer)
            y = w.fresh(name + "_dq")
            w.node("DequantizeLinear", [q, s, z], [y], layer)
            y = self._clip(y, nd.fattr[0], nd.fattr[1], layer)
        self.q(y, nd.outputs[0], s, z, layer)

    def qrelu(self, nd: ir.Node) -> None:
        y = self.w.fresh(self.w.name(nd.outputs[0]) + "_float")
        self.w.node("Relu", [self.dq(nd.inputs[0], nd.layer)], [y], nd.layer)
        self.q(y, nd.outputs[0], *self.grid[nd.inputs[0]], nd.layer)

    def qmaxpool2d(self, nd: ir.Node) -> None:
        a = self.w.attrs(nd)
        y = self.w.fresh(self.w.name(nd.outputs[0]) + "_float")
        self.w.node("MaxPool", [self.dq(nd.inputs[0], nd.layer)], [y], nd.layer,
                    **onnx_export._pool_window(a), dilations=[int(a["dil_h"]), int(a["dil_w"])],
                    ceil_mode=int(a["ceil_mode"]))
        self.q(y, nd.outputs[0], *self.grid[nd.inputs[0]], nd.layer)

    def qclamp(self, nd: ir.Node) -> None:
        """clamp(q, Q(lo), Q(hi)) = Q(clamp(dq(q), lo, hi)) (docs/int8.md): Clip in float."""
        self._u8_range(nd, *nd.iattr[:2])
        y = self._clip(self.dq(nd.inputs[0], nd.layer), nd.fattr[0], nd.fattr[1], nd.layer)
        self.q(y, nd.outputs[0], *self.grid[nd.inputs[0]], nd.layer)

    def _clip(self, x: str, lo: float, hi: float, layer: str) -> str:
        """Relu (lo 0, hi inf) or Clip(x, lo, hi) in float."""
        y = self.w.fresh(x + "_clip")
        if lo == 0.0 and not np.isfinite(hi):
            self.w.node("Relu", [x], [y], layer)
            return y
        bounds = [self.w.const(np.float32(lo), (layer or "clip") + ".clip_min")]
        if np.isfinite(hi):
            bounds.append(self.w.const(np.float32(hi), (layer or "clip") + ".clip_max"))
        self.w.node("Clip", [x] + bounds, [y], layer)
        return y

    def qglobal_avgpool(self, nd: ir.Node) -> None:
        self._u8_range(nd, *nd.iattr[:2])
        y = self.w.fresh(self.w.name(nd.outputs[0]) + "_float")
        self.w.node("GlobalAveragePool", [self.dq(nd.inputs[0], nd.layer)], [y], nd.layer)
        self.q(y, nd.outputs[0], *self.grid[nd.inputs[0]], nd.layer)

    def qadd(self, nd: ir.Node) -> None:
        """DQ(a) + DQ(b) -> Q(y): onnxruntime fuses it into QLinearAdd."""
        self._u8_range(nd, *nd.iattr[:2])
        a, b, layer = nd.inputs[0], nd.inputs[3], nd.layer
        y = self.w.fresh(self.w.name(nd.outputs[0]) + "_float")
        self.w.node("Add", [self.dq(a, layer), self.dq(b, layer)], [y], layer)
        self.q(y, nd.outputs[0], self.scale(nd.inputs[6], layer),
               self.zero_point(nd.inputs[7], layer), layer)

    def reshape(self, nd: ir.Node) -> None:
        onnx_export._reshape(self.w, nd)
        if nd.inputs[0] in self.grid:
            self.grid[nd.outputs[0]] = self.grid[nd.inputs[0]]

    def fake_quant(self, nd: ir.Node) -> None:
        """A fake_quant left in float (a layer off the integer path): of a constant (weights,
        per channel) its integer levels under DequantizeLinear; of an activation (per tensor,
        uint8) a QuantizeLinear -> DequantizeLinear pair."""
        axis, qmin, qmax = nd.iattr[:3]
        if nd.outputs[0] in self.values:
            self.const_fake_quant(nd, axis, qmin, qmax)
            return
        if axis != -1:
            raise UnsupportedError(f"layer '{nd.layer}': a per-channel fake_quant of a computed "
                                   "tensor has no QDQ form in this export")
        self._u8_range(nd, qmin, qmax)
        s, z = self.scale(nd.inputs[1], nd.layer), self.zero_point(nd.inputs[2], nd.layer)
        q = self.w.fresh(self.w.name(nd.outputs[0]) + "_q")
        self.w.node("QuantizeLinear", [self.w.name(nd.inputs[0]), s, z], [q], nd.layer)
        self.w.node("DequantizeLinear", [q, s, z], [self.w.name(nd.outputs[0])], nd.layer)

    def const_fake_quant(self, nd: ir.Node, axis: int, qmin: int, qmax: int) -> None:
        """fake_quant of a constant: the runtime's output y = (q - zp) * s gives back its
        levels q exactly (|q| <= 255), written as int8 / uint8 under DequantizeLinear."""
        w, layer = self.w, nd.layer
        s = _data(self.g, nd.inputs[1], layer, "scale").astype(np.float32).reshape(-1)
        zp = _data(self.g, nd.inputs[2], layer, "zero point").astype(np.float32).reshape(-1)
        signed = qmin < 0
        if not (-128 <= qmin and qmax <= 127 if signed else qmax <= 255):
            raise QuantConfigError(f"layer '{layer}': fake_quant range {qmin}..{qmax} has no "
                                   "8-bit QDQ form")
        y = self.values[nd.outputs[0]].astype(np.float64)
        shape = [1] * y.ndim
        if axis >= 0:
            shape[axis] = -1
        q = np.rint(y / s.astype(np.float64).reshape(shape)) + zp.astype(np.float64).reshape(shape)
        dt = np.int8 if signed else np.uint8
        name = w.name(nd.outputs[0])
        ins = [self.named(np.clip(q, qmin, qmax).astype(dt), name + "_int", dt),
               self.named(s if axis >= 0 else s[0], name + "_scale"),
               self.named((zp if axis >= 0 else zp[0]).astype(dt), name + "_zp", dt)]
        w.node("DequantizeLinear", ins, [name], layer, **({"axis": axis} if axis >= 0 else {}))

    def emit(self, nd: ir.Node) -> None:
        if nd.op in ("quantize", "dequantize", "qrelu", "qmaxpool2d", "qclamp", "qglobal_avgpool",
                     "qadd", "fake_quant"):
            getattr(self, nd.op)(nd)
        elif nd.op in ("qconv2d", "qlinear"):
            self.qlayer(nd)
        elif nd.op == "reshape":
            self.reshape(nd)
        elif nd.op in onnx_export.EMITTERS:
            onnx_export.EMITTERS[nd.op](self.w, nd)
        else:
            raise UnsupportedError(f"QDQ ONNX export: layer '{nd.layer}': op '{nd.op}' has no "
                                   "ONNX mapping")


def to_onnx_qdq(graph: ir.Graph, run, opset: int = 17, producer: str = "edgetrain"):
    """The QDQ ``onnx.ModelProto`` of a QAT session's graph (checked by ``onnx.checker``).
    ``run(graph)`` evaluates a graph's eval program (as for :func:`quant.int8_graph`); it
    computes the int8 weights and int32 biases with the runtime's ``qprep`` kernel."""
    from .export import inference_graph

    onnx, helper, _ = onnx_export._onnx()
    if not max(MIN_OPSET, onnx_export.MIN_OPSET) <= int(opset) <= onnx_export.MAX_OPSET:
        raise ValueError(f"QDQ ONNX export supports opset {MIN_OPSET}..{onnx_export.MAX_OPSET}, "
                         f"not {opset}")
    g = inference_graph(graph)
    prog = g.programs.get(ir.EVAL)
    prep_ids = foldable_qpreps(g, prog.nodes)
    # qprep and the fake_quant of constants (weights of layers off the integer path, possibly
    # computed from constants, e.g. a simulated Conv+BatchNorm fold) run in the runtime
    const = constant_nodes(g, prog.nodes)
    folded = prep_ids + [i for i in prog.nodes if i in const and g.nodes[i].op == "fake_quant"]
    wanted = [t for i in folded for t in g.nodes[i].outputs if t >= 0]
    values = run_constant_nodes(g, [i for i in prog.nodes if i in const], wanted, run)
    preps = {t: g.nodes[i] for i in prep_ids for t in g.nodes[i].outputs if t >= 0}
    w = onnx_export._Writer(g, int(opset))
    qdq = _QDQ(w, preps, values)
    for i in needed_nodes(g, prog, set(folded)):
        if i not in prep_ids:
            qdq.emit(g.nodes[i])
    inputs = [onnx_export._value_info(w, t, True) for t in prog.inputs]
    outputs = []
    for out_name, t in prog.outputs.items():
        if w.name(t) != out_name:
            w.node("Identity", [w.name(t)], [out_name], "output")
        info = onnx_export._value_info(w, t, True)
        info.name = out_name
        outputs.append(info)
    og = helper.make_graph(w.nodes, (g.meta.get("model_name") or "edgetrain") + "_qdq",
                           inputs, outputs, initializer=list(w.inits.values()))
    model = helper.make_model(og, opset_imports=[helper.make_opsetid("", int(opset))],
                              producer_name=producer)
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model, full_check=True)
    return model


def save(graph: ir.Graph, path, run, opset: int = 17) -> None:
    """Writes :func:`to_onnx_qdq` of ``graph`` to ``path`` atomically."""
    from .fileformat import save_atomic

    model = to_onnx_qdq(graph, run, opset=opset)
    save_atomic(path, model.SerializeToString(), context="ONNX export (int8 QDQ)")
