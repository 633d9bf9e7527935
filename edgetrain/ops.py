"""The op table: every op of the runtime, listed once (docs/ops.md).

Each :class:`OpDef` holds the op's id and name (the same as ``enum et_op`` in
``kernels/include/edgetrain/et_ops.h``), the names of its inputs, outputs and attributes (in
the fixed attribute positions of docs/ops.md), its kind, and the backward rule used by
:mod:`edgetrain.autodiff`. Output shapes come from the C runtime's shape rule
(:func:`infer_shapes`), the one the planner applies to a loaded file.

Backward rules are written with other ops (few primitives): a rule receives a
:class:`GradContext` (``ctx``), the forward node and the gradients of the node's outputs, and
returns one gradient tensor index (or ``None``) per input. Ops without a rule raise
:class:`~edgetrain.errors.NotDifferentiableError` when a gradient must flow through them.

:func:`emit` appends one node to a graph, checking attributes and computing output shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import AbstractSet, Callable, Dict, List, Optional, Sequence, Tuple

from . import ir
from .errors import NotDifferentiableError, ShapeError

# enum et_act (kernels/include/edgetrain/et_kernels.h)
ACT_NONE, ACT_RELU, ACT_RELU6, ACT_LEAKY_RELU, ACT_SIGMOID, ACT_TANH, ACT_HARDSWISH = range(7)
ACT_NAMES = ("none", "relu", "relu6", "leaky_relu", "sigmoid", "tanh", "hardswish")

# enum et_unary (kernels/include/edgetrain/et_kernels.h): the fn of the "unary" op
(UN_EXP, UN_LOG, UN_SQRT, UN_RSQRT, UN_ABS, UN_ERF, UN_SIGN, UN_POW, UN_CLAMP,
 UN_IN_RANGE) = range(10)

# enum et_interp_mode (kernels/include/edgetrain/et_kernels.h): the mode of "interpolate"
INTERP_NEAREST, INTERP_BILINEAR = range(2)

# reduce modes
REDUCE_SUM, REDUCE_MEAN = 0, 1

# enum et_reduction (kernels/include/edgetrain/et_kernels.h): the reduction of the "nll" op
REDUCTION_NONE, REDUCTION_SUM, REDUCTION_MEAN = 0, 1, 2
# enum et_pad_mode (kernels/include/edgetrain/et_kernels.h): the mode of the "pad" op
PAD_CONSTANT, PAD_REFLECT, PAD_REPLICATE = range(3)

Shape = Tuple[int, ...]


@dataclass
class OpDef:
    """One op: its interface and backward rule (its shape rule is C's, see :func:`infer_shapes`)."""
    id: int
    name: str
    inputs: Tuple[str, ...]    # a trailing "?" marks an optional input
    outputs: Tuple[str, ...]   # a trailing "?" marks an optional output
    iattrs: Tuple[str, ...] = ()
    fattrs: Tuple[str, ...] = ()
    backward: Optional[Callable] = None   # (ctx, node, dys) -> list of input grads
    kind: str = "forward"                 # "forward", "backward", "update" or "inference"
    mutates: Tuple[str, ...] = ()         # inputs written in place
    int_inputs: Tuple[str, ...] = ()      # inputs of dtype i32 (labels)
    defaults: Dict[str, float] = field(default_factory=dict)   # attribute values when not given (0)
    # trailing attributes written only when given (files before them have none, and a node
    # without them is written as before): e.g. batchnorm_train's fused act / alpha
    optional_attrs: Tuple[str, ...] = ()

    def input_name(self, i: int) -> str:
        return self.inputs[i].rstrip("?")

    def attrs(self, node: ir.Node) -> Dict[str, float]:
        """The node's attributes by name."""
        out: Dict[str, float] = dict(zip(self.iattrs, node.iattr))
        out.update(zip(self.fattrs, node.fattr))
        return out

    def pack_attrs(self, attrs: Dict[str, float]) -> Tuple[List[int], List[float]]:
        unknown = set(attrs) - set(self.iattrs) - set(self.fattrs)
        if unknown:
            raise ValueError(f"op '{self.name}' has no attribute(s) {sorted(unknown)}")
        d = self.defaults
        iattr = [int(attrs.get(k, d.get(k, 0))) for k in self.iattrs]
        fattr = [float(attrs.get(k, d.get(k, 0.0))) for k in self.fattrs]
        for names, vals in ((self.iattrs, iattr), (self.fattrs, fattr)):
            n = len(names)
            while n and names[n - 1] in self.optional_attrs and names[n - 1] not in attrs:
                n -= 1
            del vals[n:]
        return iattr, fattr


# =====================================================================================
# Attribute helpers shared by backward rules (shape rules live in C: et_op_infer)
# =====================================================================================
RESHAPE_DIMS = ("d0", "d1", "d2", "d3", "d4", "d5")
PERM_DIMS = ("p0", "p1", "p2", "p3", "p4", "p5")
SLICE_ATTRS = ("axis", "start", "stop", "step", "drop")
PAD_ATTRS = ("mode",) + tuple(f"{w}{d}" for d in range(6) for w in ("before", "after"))
SLICE_END = 2 ** 63 - 1   # a slice stop meaning "to the end" (C clamps it to the dim)


def reduce_axes(ndim: int, axis_mask: int) -> List[int]:
    """The axes reduced by a reduce node (axis_mask 0 = all)."""
    return list(range(ndim)) if axis_mask == 0 else [d for d in range(ndim) if axis_mask >> d & 1]


# =====================================================================================
# Backward rules: (ctx, node, dys) -> list of input gradients (tensor index or None)
# =====================================================================================
def _bw_conv2d(ctx, node, dys):
    x, w, b = node.inputs[:3]
    if any(t >= 0 for t in node.inputs[3:]):
        # a fused BatchNorm only appears in eval programs (export.fuse_conv_batchnorm)
        ctx.fail("y", "fused BatchNorm (an eval-only conv2d)")
    a = ctx.attrs(node)
    dy = dys[0]
    act = a["act"]
    if act != ACT_NONE:
        # y = act(z): the backward must see the pre-activation; only activations whose
        # derivative can be read from the output y are supported.
        if act == ACT_HARDSWISH or (act == ACT_LEAKY_RELU and a["act_alpha"] <= 0):
            ctx.fail("y", f"fused {ACT_NAMES[act]} activation")
        dy = ctx.emit("act_bwd", [dy, node.outputs[0]], act=act, alpha=a["act_alpha"])[0]
    conv = {k: a[k] for k in a if k not in ("act", "act_alpha", "bn_eps")}
    dx = dw = db = None
    if ctx.need(0):
        dx = ctx.emit("conv2d_bwd_input", [dy, w, x], **conv)[0]
    if ctx.need(1):
        dw = ctx.emit("conv2d_bwd_weight", [dy, x, w], **conv)[0]
    if b >= 0 and ctx.need(2):
        db = ctx.emit("conv2d_bwd_bias", [dy])[0]
    return [dx, dw, db]


def _matmul_grads(ctx, node, dys, op: str, batched: bool):
    """da, db of ``op`` (matmul or bmm) with the transpose flags in iattr[0..1], written with
    ``op`` itself; ``batched``: a gradient over broadcast batch dims is summed back."""
    a_, b_ = node.inputs
    dy = dys[0]
    ta, tb = node.iattr[0], node.iattr[1]
    da = db = None
    if ctx.need(0):
        if not ta:   # op(a) = a: da = dy op(b)^T
            da = ctx.emit(op, [dy, b_], trans_a=0, trans_b=0 if tb else 1)[0]
        else:        # a stored [K, M]: da = op(b) dy^T
            da = ctx.emit(op, [b_, dy], trans_a=1 if tb else 0, trans_b=1)[0]
        if batched:
            da = ctx.sum_to(da, a_)
    if ctx.need(1):
        if not tb:   # db = op(a)^T dy
            db = ctx.emit(op, [a_, dy], trans_a=0 if ta else 1, trans_b=0)[0]
        else:        # b stored [N, K]: db = dy^T op(a)
            db = ctx.emit(op, [dy, a_], trans_a=1, trans_b=1 if ta else 0)[0]
        if batched:
            db = ctx.sum_to(db, b_)
    return [da, db]


def _bw_matmul(ctx, node, dys):
    return _matmul_grads(ctx, node, dys, "matmul", batched=False)


def _bw_add(ctx, node, dys):
    a, b = node.inputs
    return [ctx.sum_to(dys[0], a) if ctx.need(0) else None,
            ctx.sum_to(dys[0], b) if ctx.need(1) else None]


def _bw_sub(ctx, node, dys):
    a, b = node.inputs
    return [ctx.sum_to(dys[0], a) if ctx.need(0) else None,
            ctx.sum_to(dys[0], b, scale=-1.0) if ctx.need(1) else None]


def _bw_mul(ctx, node, dys):
    a, b = node.inputs
    dy = dys[0]
    da = ctx.sum_to(ctx.emit("mul", [dy, b])[0], a) if ctx.need(0) else None
    db = ctx.sum_to(ctx.emit("mul", [dy, a])[0], b) if ctx.need(1) else None
    return [da, db]


def _bw_div(ctx, node, dys):
    a, b = node.inputs
    y = node.outputs[0]
    dy = dys[0]
    da = db = None
    if ctx.need(0):                     # d(a/b)/da = 1/b
        da = ctx.sum_to(ctx.emit("div", [dy, b])[0], a)
    if ctx.need(1):                     # d(a/b)/db = -y/b
        t = ctx.emit("div", [y, b])[0]
        db = ctx.sum_to(ctx.emit("mul", [dy, t])[0], b, scale=-1.0)
    return [da, db]


def _bw_reduce_sum_to(ctx, node, dys):
    x = node.inputs[0]
    return [ctx.emit("broadcast_to", [dys[0], x], scale=node.fattr[0])[0], None]


def _bw_broadcast_to(ctx, node, dys):
    x = node.inputs[0]
    return [ctx.emit("reduce_sum_to", [dys[0], x], scale=node.fattr[0])[0], None]


def _bw_reduce(ctx, node, dys):
    x = node.inputs[0]
    a = ctx.attrs(node)
    xs = ctx.shape(x)
    axes = reduce_axes(len(xs), a["axis_mask"])
    dy = dys[0]
    if not a["keepdims"] and axes != list(range(len(axes))):
        # bring dy to the keepdims shape so that it broadcasts (ranks right-aligned)
        dy = _keepdims_view(ctx, dy, x, a["axis_mask"])
    if a["mode"] == REDUCE_MEAN:
        # divide by the element count computed at run time (correct after Resize)
        ones = ctx.emit("affine", [x], alpha=0.0, beta=1.0)[0]
        count = ctx.emit("reduce", [ones], mode=REDUCE_SUM, keepdims=1,
                         axis_mask=a["axis_mask"])[0]
        dy = ctx.emit("div", [dy, count])[0]
    return [ctx.emit("broadcast_to", [dy, x], scale=1.0)[0]]


def _bw_reshape(ctx, node, dys):
    x = node.inputs[0]
    xs = ctx.shape(x)
    fwd = [node.iattr[1 + d] for d in range(node.iattr[0])]
    dims = [0 if d < len(fwd) and fwd[d] == 0 else n for d, n in enumerate(xs)]
    return [ctx.reshape(dys[0], dims)]


def _bw_act(ctx, node, dys):
    act, alpha = node.iattr[0], node.fattr[0]
    if act == ACT_NONE:
        return [dys[0]]
    t = node.outputs[0] if _bwd_reads_output(act, alpha) else node.inputs[0]
    return [ctx.emit("act_bwd", [dys[0], t], act=act, alpha=alpha)[0]]


def _bwd_reads_output(act: int, alpha: float) -> bool:
    """Whether act_bwd takes the activation's output: sigmoid and tanh need it; for relu,
    relu6 and leaky relu (alpha >= 0) the output gives the input's mask bit for bit (y > 0
    exactly when x > 0, 0 < y < 6 exactly when 0 < x < 6, NaN both ways), so the input — often a
    BatchNorm output — need not be kept for the backward (less activation memory)."""
    return act in (ACT_SIGMOID, ACT_TANH, ACT_RELU, ACT_RELU6) or \
        (act == ACT_LEAKY_RELU and alpha >= 0.0)


def _bw_maxpool(ctx, node, dys):
    return [ctx.emit("maxpool2d_bwd", [dys[0], node.inputs[0]], **ctx.attrs(node))[0]]


def _bw_avgpool(ctx, node, dys):
    return [ctx.emit("avgpool2d_bwd", [dys[0], node.inputs[0]], **ctx.attrs(node))[0]]


def _bw_global_avgpool(ctx, node, dys):
    return [ctx.emit("global_avgpool_bwd", [dys[0], node.inputs[0]])[0]]


def _bw_bn_train(ctx, node, dys):
    x, gamma, beta, _, _ = node.inputs
    _, save_mean, save_invstd = node.outputs
    if dys[1] is not None or dys[2] is not None:
        ctx.fail("save_mean", "gradient through the saved batch statistics")
    for i in (3, 4):
        if ctx.need(i):
            ctx.fail(ctx.op.input_name(i))
    skip = [k for k, i in ((1, 1), (2, 2)) if not ctx.need(i)]
    a = ctx.attrs(node)
    freeze = a.get("freeze_step", -1)   # absent in files written before it
    ins = [dys[0], x, gamma, save_mean, save_invstd]
    fused = {}
    if a.get("act", ACT_NONE) != ACT_NONE:
        # a fused relu / relu6 (export.fuse_batchnorm_activations): y is the activated output;
        # the backward masks dy from it (act_bwd's rule) inside its sums and its dx pass
        ins.append(node.outputs[0])
        fused = {"act": a["act"], "alpha": a.get("alpha", 0.0)}
    dx, dg, db = ctx.emit("batchnorm_bwd", ins, skip_outputs=skip, freeze_step=freeze, **fused)
    return [dx if ctx.need(0) else None, dg if dg >= 0 else None, db if db >= 0 else None,
            None, None]


def _bw_dropout(ctx, node, dys):
    return [ctx.emit("dropout_bwd", [dys[0]], **ctx.attrs(node))[0]]


def _bw_softmax(ctx, node, dys):
    return [ctx.emit("softmax_bwd", [dys[0], node.outputs[0]], **ctx.attrs(node))[0]]


def _no_grad_to(ctx, idx: Sequence[int], why: str = "") -> None:
    for i in idx:
        if ctx.need(i):
            ctx.fail(ctx.op.input_name(i), why)


def _bw_xent(bwd: str):
    def rule(ctx, node, dys):
        logits, target = node.inputs
        if dys[1] is not None:
            ctx.fail("probs", "gradient through the saved probabilities")
        _no_grad_to(ctx, [1])
        return [ctx.emit(bwd, [node.outputs[1], target, dys[0]])[0], None]
    return rule


def _bw_pair_loss(bwd: str):
    def rule(ctx, node, dys):
        pred, target = node.inputs
        g = ctx.emit(bwd, [pred, target, dys[0]])[0]
        dt = ctx.emit("affine", [g], alpha=-1.0, beta=0.0)[0] if ctx.need(1) else None
        return [g if ctx.need(0) else None, dt]
    return rule


def _bw_hinge(ctx, node, dys):
    x, labels = node.inputs
    _no_grad_to(ctx, [1])
    return [ctx.emit("hinge_bwd", [x, labels, dys[0]], margin=node.fattr[0])[0], None]


def _bw_kldiv(ctx, node, dys):
    _, target = node.inputs
    _no_grad_to(ctx, [1], "gradient with respect to the KL target (detach the teacher)")
    return [ctx.emit("kldiv_bwd", [target, dys[0]])[0], None]


def _bw_affine(ctx, node, dys):
    return [ctx.emit("affine", [dys[0]], alpha=node.fattr[0], beta=0.0)[0]]


def _bw_unary(ctx, node, dys):
    """Gradients of y = f(x; a, b) written with mul/div/affine and unary itself."""
    x, y, dy = node.inputs[0], node.outputs[0], dys[0]
    fn, (a, b) = node.iattr[0], node.fattr

    def e(op, ins, **kw):
        return ctx.emit(op, ins, **kw)[0]

    def scale(t, s):
        return e("affine", [t], alpha=s, beta=0.0)

    def un(t, f, a_=0.0, b_=0.0):
        return e("unary", [t], fn=f, a=a_, b=b_)

    if fn == UN_EXP:                      # dy * y
        return [e("mul", [dy, y])]
    if fn == UN_LOG:                      # dy / x
        return [e("div", [dy, x])]
    if fn == UN_SQRT:                     # dy / (2 y)
        return [scale(e("div", [dy, y]), 0.5)]
    if fn == UN_RSQRT:                    # -dy y / (2 x)
        return [scale(e("div", [e("mul", [dy, y]), x]), -0.5)]
    if fn == UN_ABS:                      # dy * sign(x)
        return [e("mul", [dy, un(x, UN_SIGN)])]
    if fn == UN_ERF:                      # dy * 2/sqrt(pi) * exp(-x^2)
        g = un(scale(e("mul", [x, x]), -1.0), UN_EXP)
        return [e("mul", [dy, scale(g, 1.1283791670955126)])]
    if fn == UN_POW:                      # dy * a x^(a-1)
        if a == 0.0:
            return [scale(dy, 0.0)]
        if a == 1.0:
            return [dy]
        return [e("mul", [dy, scale(un(x, UN_POW, a - 1.0), a)])]
    if fn == UN_CLAMP:                    # dy where min <= x <= max (PyTorch), else 0
        return [e("mul", [dy, un(x, UN_IN_RANGE, a, b)])]
    return [scale(dy, 0.0)]               # sign, in_range: piecewise constant


def _bw_embedding(ctx, node, dys):
    weight, indices = node.inputs
    _no_grad_to(ctx, [1], "indices are integers")
    return [ctx.emit("embedding_bwd", [weight, indices, dys[0]], **ctx.attrs(node))[0], None]


def _bw_bce(ctx, node, dys):
    x, target = node.inputs
    dl = dys[0]
    dx = ctx.emit("bce_bwd", [x, target, dl])[0] if ctx.need(0) else None
    dt = None
    if ctx.need(1):   # PyTorch: -logit(x) dl = (log(1 - x) - log(x)) dl
        one_minus = ctx.emit("affine", [x], alpha=-1.0, beta=1.0)[0]
        lx = ctx.emit("unary", [x], fn=UN_LOG, a=0.0, b=0.0)[0]
        l1x = ctx.emit("unary", [one_minus], fn=UN_LOG, a=0.0, b=0.0)[0]
        dt = ctx.emit("mul", [dl, ctx.emit("sub", [l1x, lx])[0]])[0]
    return [dx, dt]


def _bw_bce_logits(ctx, node, dys):
    x, target, lw = node.inputs
    dl = dys[0]

    def e(op, ins, **kw):
        return ctx.emit(op, ins, **kw)[0]

    dx = e("bce_logits_bwd", [x, target, dl, lw]) if ctx.need(0) else None
    dt = e("mul", [dl, e("affine", [x], alpha=-1.0, beta=0.0)]) if ctx.need(1) else None
    dlw = None
    if lw >= 0 and ctx.need(2):   # dl * softplus(-x) = dl (relu(-x) + log(1 + exp(-|x|)))
        tail = e("unary", [e("affine", [e("unary", [x], fn=UN_ABS, a=0.0, b=0.0)], alpha=-1.0,
                                 beta=0.0)], fn=UN_EXP, a=0.0, b=0.0)
        sp = e("add", [e("act", [e("affine", [x], alpha=-1.0, beta=0.0)], act=ACT_RELU, alpha=0.0),
                       e("unary", [e("affine", [tail], alpha=1.0, beta=1.0)], fn=UN_LOG, a=0.0,
                         b=0.0)])
        dlw = e("mul", [dl, sp])
    return [dx, dt, dlw]


def _bw_huber(ctx, node, dys):
    x, target = node.inputs
    g = ctx.emit("huber_bwd", [x, target, dys[0]], **ctx.attrs(node))[0]
    dt = ctx.emit("affine", [g], alpha=-1.0, beta=0.0)[0] if ctx.need(1) else None
    return [g if ctx.need(0) else None, dt]


def _bw_nll(ctx, node, dys):
    x, target, weight = node.inputs
    _no_grad_to(ctx, [1, 2], "class weights and targets are constants")
    return [ctx.emit("nll_bwd", [x, target, dys[0], weight], **ctx.attrs(node))[0], None, None]
def _bw_conv_transpose2d(ctx, node, dys):
    """conv_transpose2d is conv2d's input gradient, so its gradients are conv2d ops: dx is the
    convolution of dy with w, dw that convolution's weight gradient with x as "dy"."""
    x, w, b = node.inputs
    a = ctx.attrs(node)
    dy = dys[0]
    conv = dict(stride_h=a["stride_h"], stride_w=a["stride_w"], pad_t=a["pad_h"],
                pad_l=a["pad_w"], pad_b=a["pad_h"], pad_r=a["pad_w"], dil_h=a["dil_h"],
                dil_w=a["dil_w"], groups=a["groups"])
    dx = dw = db = None
    if ctx.need(0):
        dx = ctx.emit("conv2d", [dy, w, -1], act=ACT_NONE, **conv)[0]
    if ctx.need(1):
        dw = ctx.emit("conv2d_bwd_weight", [x, dy, w], **conv)[0]
    if b >= 0 and ctx.need(2):
        db = ctx.emit("conv2d_bwd_bias", [dy])[0]
    return [dx, dw, db]


def _bw_interpolate(ctx, node, dys):
    return [ctx.emit("interpolate_bwd", [dys[0], node.inputs[0]], **ctx.attrs(node))[0]]


def _bw_adaptive_avgpool(ctx, node, dys):
    return [ctx.emit("adaptive_avgpool2d_bwd", [dys[0], node.inputs[0]], **ctx.attrs(node))[0]]


def _bw_adaptive_maxpool(ctx, node, dys):
    return [ctx.emit("adaptive_maxpool2d_bwd", [dys[0], node.inputs[0]], **ctx.attrs(node))[0]]
def _bw_fake_quant(ctx, node, dys):
    """Straight-through estimator: dy where the unclamped level is inside [qmin, qmax]."""
    x, scale, zero_point = node.inputs
    for i, what in ((1, "scale"), (2, "zero_point")):
        if ctx.need(i):
            ctx.fail(what, "quantization parameters are observed, not learned")
    a = ctx.attrs(node)
    return [ctx.emit("fake_quant_bwd", [dys[0], x, scale, zero_point], **a)[0], None, None]
def _bw_normalize(ctx, node, dys):
    if dys[1] is not None:
        ctx.fail("invstd", "gradient through the saved statistics")
    y, invstd = node.outputs
    return [ctx.emit("normalize_bwd", [dys[0], y, invstd], naxes=node.iattr[0])[0]]


def _bw_extreme(is_max: bool):
    """maximum / minimum: the gradient goes to the larger (smaller) input, split half/half at
    ties (PyTorch); tie_weight(a, b) is 1 where a > b, 0.5 where a == b, else 0."""
    def rule(ctx, node, dys):
        a, b = node.inputs
        dy = dys[0]
        da = db = None
        if ctx.need(0):
            w = ctx.emit("tie_weight", [a, b] if is_max else [b, a])[0]
            da = ctx.sum_to(ctx.emit("mul", [dy, w])[0], a)
        if ctx.need(1):
            w = ctx.emit("tie_weight", [b, a] if is_max else [a, b])[0]
            db = ctx.sum_to(ctx.emit("mul", [dy, w])[0], b)
        return [da, db]
    return rule


def _keepdims_view(ctx, t: int, x: int, axis_mask: int) -> int:
    """``t`` (a reduction of ``x`` without keepdims) reshaped to the keepdims shape."""
    xs = ctx.shape(x)
    axes = reduce_axes(len(xs), axis_mask)
    dims, pos = [], 0
    for d in range(len(xs)):
        if d in axes:
            dims.append(1)
        else:
            dims.append(0 if pos == d else xs[d])
            pos += 1
    return ctx.reshape(t, dims)


def _bw_reduce_max(ctx, node, dys):
    """amax / amin: dy shared evenly by the elements equal to the result (PyTorch's rule)."""
    x, y = node.inputs[0], node.outputs[0]
    a = ctx.attrs(node)
    dy = dys[0]
    if not a["keepdims"]:
        y = _keepdims_view(ctx, y, x, a["axis_mask"])
        dy = _keepdims_view(ctx, dy, x, a["axis_mask"])
    # x <= y (max) or x >= y (min): tie_weight is 0.5 exactly where x == y, else 0
    half = ctx.emit("tie_weight", [x, y] if a["mode"] == 0 else [y, x])[0]
    count = ctx.emit("reduce", [half], mode=REDUCE_SUM, keepdims=1, axis_mask=a["axis_mask"])[0]
    share = ctx.emit("div", [dy, count])[0]          # dy / (count / 2)
    return [ctx.emit("mul", [half, share])[0]]       # (1/2) * 2 dy / count on the ties


def _bw_bmm(ctx, node, dys):
    """As matmul, batched; a gradient over broadcast batch dims is summed back (sum_to)."""
    return _matmul_grads(ctx, node, dys, "bmm", batched=True)


def _bw_concat(ctx, node, dys):
    nd = len(ctx.shape(node.outputs[0]))
    axis = node.iattr[0] % nd
    grads, start = [], 0
    for i, t in enumerate(node.inputs):
        if t < 0:
            grads.append(None)
            continue
        n = ctx.shape(t)[axis]
        grads.append(ctx.emit("slice", [dys[0]], axis=axis, start=start, stop=start + n, step=1)[0]
                     if ctx.need(i) else None)
        start += n
    return grads


def _bw_slice(ctx, node, dys):
    return [ctx.emit("slice_bwd", [dys[0], node.inputs[0]], **ctx.attrs(node))[0]]


def _bw_transpose(ctx, node, dys):
    nd = node.iattr[0]
    perm = node.iattr[1:1 + nd]
    inv = [0] * nd
    for d, p in enumerate(perm):
        inv[p] = d
    return [ctx.emit("transpose", [dys[0]], ndim=nd, **dict(zip(PERM_DIMS, inv)))[0]]


def _bw_pad(ctx, node, dys):
    return [ctx.emit("pad_bwd", [dys[0], node.inputs[0]], **ctx.attrs(node))[0]]


def _bw_gather(ctx, node, dys):
    x, index = node.inputs
    return [ctx.emit("gather_bwd", [dys[0], index, x], **ctx.attrs(node))[0], None]


def _bw_expand(ctx, node, dys):
    # always a reduce_sum_to: equal shapes at trace time may differ after Resize
    return [ctx.emit("reduce_sum_to", [dys[0], node.inputs[0]], scale=1.0)[0], None]


# =====================================================================================
# The table (order = ids = enum et_op)
# =====================================================================================
_CONV_I = ("stride_h", "stride_w", "pad_t", "pad_l", "pad_b", "pad_r", "dil_h", "dil_w",
           "groups", "act")
_MAXPOOL_I = ("kh", "kw", "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w",
              "ceil_mode")
_AVGPOOL_I = ("kh", "kw", "stride_h", "stride_w", "pad_h", "pad_w", "ceil_mode",
              "count_include_pad")
_CONVT_I = ("stride_h", "stride_w", "pad_h", "pad_w", "out_pad_h", "out_pad_w", "dil_h",
            "dil_w", "groups")
_INTERP_I = ("mode", "align_corners", "oh", "ow")
_BN_IN = ("x", "gamma", "beta", "running_mean", "running_var")
_BIN = (("a", "b"), ("y",))
_FQ_I = ("axis", "qmin", "qmax")

OPS: List[OpDef] = [
    # optional fused eval BatchNorm (export.fuse_conv_batchnorm; kernels: et_conv_epilogue_):
    # y = act(batchnorm_infer(conv(x) + b)) with bn_mean / bn_var present, eps = bn_eps
    OpDef(0, "conv2d", ("x", "w", "b?", "bn_weight?", "bn_bias?", "bn_mean?", "bn_var?"), ("y",),
          _CONV_I, ("act_alpha", "bn_eps"), _bw_conv2d),
    OpDef(1, "conv2d_bwd_input", ("dy", "w", "x"), ("dx",), _CONV_I, (),
          kind="backward"),
    OpDef(2, "conv2d_bwd_weight", ("dy", "x", "w"), ("dw",), _CONV_I, (),
          kind="backward"),
    OpDef(3, "conv2d_bwd_bias", ("dy",), ("db",), (), (), kind="backward"),
    OpDef(4, "matmul", ("a", "b"), ("y",), ("trans_a", "trans_b"), (), _bw_matmul),
    OpDef(5, "add", *_BIN, backward=_bw_add),
    OpDef(6, "sub", *_BIN, backward=_bw_sub),
    OpDef(7, "mul", *_BIN, backward=_bw_mul),
    OpDef(8, "div", *_BIN, backward=_bw_div),
    OpDef(9, "reduce_sum_to", ("x", "ref"), ("y",), (), ("scale",), _bw_reduce_sum_to),
    OpDef(10, "reduce", ("x",), ("y",), ("mode", "keepdims", "axis_mask"), (),
          _bw_reduce),
    OpDef(11, "broadcast_to", ("x", "ref"), ("y",), (), ("scale",), _bw_broadcast_to),
    OpDef(12, "reshape", ("x",), ("y",), ("ndim",) + RESHAPE_DIMS, (), _bw_reshape),
    OpDef(13, "act", ("x",), ("y",), ("act",), ("alpha",), _bw_act),
    OpDef(14, "act_bwd", ("dy", "t"), ("dx",), ("act",), ("alpha",), kind="backward"),
    OpDef(15, "maxpool2d", ("x",), ("y",), _MAXPOOL_I, (), _bw_maxpool),
    # act: a fused relu / relu6 derivative read from x (export.fuse_maxpool_act_bwd)
    OpDef(16, "maxpool2d_bwd", ("dy", "x"), ("dx",), _MAXPOOL_I + ("act",), (), kind="backward",
          optional_attrs=("act",)),
    OpDef(17, "avgpool2d", ("x",), ("y",), _AVGPOOL_I, (), _bw_avgpool),
    OpDef(18, "avgpool2d_bwd", ("dy", "x"), ("dx",), _AVGPOOL_I, (), kind="backward"),
    OpDef(19, "global_avgpool", ("x",), ("y",), (), (), _bw_global_avgpool),
    OpDef(20, "global_avgpool_bwd", ("dy", "x"), ("dx",), (), (), kind="backward"),
    # without running statistics (both absent): the recompute form, which updates nothing;
    # act / alpha: a fused relu / relu6 (export.fuse_batchnorm_activations), y = act(bn(x)),
    # whose backward is batchnorm_bwd with act and the input y (the activated output)
    OpDef(21, "batchnorm_train", ("x", "gamma", "beta", "running_mean?", "running_var?"),
          ("y", "save_mean", "save_invstd"), ("freeze_step", "act"),
          ("momentum", "eps", "alpha"), _bw_bn_train,
          mutates=("running_mean", "running_var"), defaults={"freeze_step": -1},
          optional_attrs=("act", "alpha")),
    OpDef(22, "batchnorm_infer", _BN_IN, ("y",), (), ("eps",)),
    OpDef(23, "batchnorm_bwd", ("dy", "x", "gamma", "save_mean", "save_invstd", "y?"),
          ("dx", "dgamma?", "dbeta?"), ("freeze_step", "act"), ("alpha",), kind="backward",
          defaults={"freeze_step": -1}, optional_attrs=("act", "alpha")),
    OpDef(24, "dropout", ("x",), ("y",), ("stream",), ("p",), _bw_dropout),
    OpDef(25, "dropout_bwd", ("dy",), ("dx",), ("stream",), ("p",), kind="backward"),
    OpDef(26, "softmax", ("x",), ("y",), ("axis", "log"), (), _bw_softmax),
    OpDef(27, "softmax_bwd", ("dy", "y"), ("dx",), ("axis", "log"), (), kind="backward"),
    OpDef(28, "softmax_xent", ("logits", "labels"), ("loss", "probs"), (), (),
          _bw_xent("softmax_xent_bwd"), int_inputs=("labels",)),
    OpDef(29, "softmax_xent_bwd", ("probs", "labels", "dloss"), ("dlogits",), (), (),
          kind="backward", int_inputs=("labels",)),
    OpDef(30, "softmax_xent_prob", ("logits", "target"), ("loss", "probs"), (), (),
          _bw_xent("softmax_xent_prob_bwd")),
    OpDef(31, "softmax_xent_prob_bwd", ("probs", "target", "dloss"), ("dlogits",), (), (),
          kind="backward"),
    OpDef(32, "mse", ("pred", "target"), ("loss",), (), (), _bw_pair_loss("mse_bwd")),
    OpDef(33, "mse_bwd", ("pred", "target", "dloss"), ("dpred",), (), (),
          kind="backward"),
    OpDef(34, "l1", ("pred", "target"), ("loss",), (), (), _bw_pair_loss("l1_bwd")),
    OpDef(35, "l1_bwd", ("pred", "target", "dloss"), ("dpred",), (), (),
          kind="backward"),
    OpDef(36, "hinge", ("x", "labels"), ("loss",), (), ("margin",), _bw_hinge,
          int_inputs=("labels",)),
    OpDef(37, "hinge_bwd", ("x", "labels", "dloss"), ("dx",), (), ("margin",),
          kind="backward", int_inputs=("labels",)),
    OpDef(38, "kldiv", ("input", "target"), ("loss",), (), (), _bw_kldiv),
    OpDef(39, "kldiv_bwd", ("target", "dloss"), ("dinput",), (), (), kind="backward"),
    OpDef(40, "sgd_update", ("param", "grad", "momentum_buf?", "prox_anchor?"), (),
          ("nesterov", "l1"), ("lr_scale", "momentum", "dampening", "weight_decay", "prox_mu"),
          kind="update", mutates=("param", "momentum_buf")),
    OpDef(41, "adam_update", ("param", "grad", "m", "v", "prox_anchor?"), (), ("decoupled",),
          ("lr_scale", "beta1", "beta2", "eps", "weight_decay", "prox_mu"),
          kind="update", mutates=("param", "m", "v")),
    OpDef(42, "affine", ("x",), ("y",), (), ("alpha", "beta"), _bw_affine),
    OpDef(43, "unary", ("x",), ("y",), ("fn",), ("a", "b"), _bw_unary),
    OpDef(44, "embedding", ("weight", "indices"), ("y",), ("padding_idx",), (), _bw_embedding,
          int_inputs=("indices",)),
    OpDef(45, "embedding_bwd", ("weight", "indices", "dy"), ("dweight",), ("padding_idx",), (),
          kind="backward", int_inputs=("indices",)),
    OpDef(46, "bce", ("input", "target"), ("loss",), (), (), _bw_bce),
    OpDef(47, "bce_bwd", ("input", "target", "dloss"), ("dinput",), (), (), kind="backward"),
    OpDef(48, "bce_logits", ("input", "target", "log_weight?"), ("loss",), (), (),
          _bw_bce_logits),
    OpDef(49, "bce_logits_bwd", ("input", "target", "dloss", "log_weight?"), ("dinput",), (),
          (), kind="backward"),
    OpDef(50, "huber", ("input", "target"), ("loss",), (), ("delta", "scale"), _bw_huber),
    OpDef(51, "huber_bwd", ("input", "target", "dloss"), ("dinput",), (), ("delta", "scale"),
          kind="backward"),
    OpDef(52, "nll", ("input", "target", "weight?"), ("loss",), ("ignore_index", "reduction"),
          ("label_smoothing",), _bw_nll, int_inputs=("target",)),
    OpDef(53, "nll_bwd", ("input", "target", "dloss", "weight?"), ("dinput",),
          ("ignore_index", "reduction"), ("label_smoothing",), kind="backward",
          int_inputs=("target",)),
    OpDef(54, "rmsprop_update",
          ("param", "grad", "square_avg", "grad_avg?", "momentum_buf?", "prox_anchor?"), (),
          ("centered",), ("lr_scale", "alpha", "eps", "weight_decay", "momentum", "prox_mu"),
          kind="update", mutates=("param", "square_avg", "grad_avg", "momentum_buf")),
    OpDef(55, "adagrad_update", ("param", "grad", "sum", "prox_anchor?"), (), (),
          ("lr_scale", "lr_decay", "eps", "weight_decay", "prox_mu"),
          kind="update", mutates=("param", "sum")),
    OpDef(56, "grad_norm", ("x0", "x1?", "x2?", "x3?", "x4?", "x5?", "x6?", "x7?"),
          ("norm", "scale?"), (), ("max_norm",), kind="update"),
    OpDef(57, "grad_accumulate", ("acc", "grad", "count"), (), (), ("scale",), kind="update",
          mutates=("acc",), int_inputs=("count",)),
    OpDef(58, "accum_step", ("count",), (), ("k",), (), kind="update", mutates=("count",),
          int_inputs=("count",)),
    OpDef(59, "conv_transpose2d", ("x", "w", "b?"), ("y",), _CONVT_I, (),
          _bw_conv_transpose2d),
    OpDef(60, "interpolate", ("x",), ("y",), _INTERP_I, ("scale_h", "scale_w"),
          _bw_interpolate),
    OpDef(61, "interpolate_bwd", ("dy", "x"), ("dx",), _INTERP_I, ("scale_h", "scale_w"),
          kind="backward"),
    OpDef(62, "adaptive_avgpool2d", ("x",), ("y",), ("oh", "ow"), (), _bw_adaptive_avgpool),
    OpDef(63, "adaptive_avgpool2d_bwd", ("dy", "x"), ("dx",), ("oh", "ow"), (),
          kind="backward"),
    OpDef(64, "adaptive_maxpool2d", ("x",), ("y",), ("oh", "ow"), (), _bw_adaptive_maxpool),
    OpDef(65, "adaptive_maxpool2d_bwd", ("dy", "x"), ("dx",), ("oh", "ow"), (),
          kind="backward"),
    OpDef(66, "fake_quant", ("x", "scale", "zero_point"), ("y",), _FQ_I, (), _bw_fake_quant),
    OpDef(67, "fake_quant_bwd", ("dy", "x", "scale", "zero_point"), ("dx",), _FQ_I, (),
          kind="backward"),
    OpDef(68, "quant_observe", ("x", "min_val", "max_val", "scale", "zero_point"), (),
          _FQ_I + ("symmetric", "ema", "until_step"), ("averaging_constant",), kind="update",
          mutates=("min_val", "max_val", "scale", "zero_point")),
    OpDef(69, "normalize", ("x",), ("y", "invstd"), ("naxes",), ("eps",), _bw_normalize),
    OpDef(70, "normalize_bwd", ("dy", "y", "invstd"), ("dx",), ("naxes",), (),
          kind="backward"),
    OpDef(71, "maximum", *_BIN, backward=_bw_extreme(True)),
    OpDef(72, "minimum", *_BIN, backward=_bw_extreme(False)),
    OpDef(73, "tie_weight", *_BIN, kind="backward"),
    OpDef(74, "reduce_max", ("x",), ("y",), ("mode", "keepdims", "axis_mask"), (),
          _bw_reduce_max),
    OpDef(75, "argmax", ("x",), ("indices",), ("axis", "keepdims", "min"), ()),
    OpDef(76, "bmm", ("a", "b"), ("y",), ("trans_a", "trans_b"), (), _bw_bmm),
    OpDef(77, "concat", ("x0",) + tuple(f"x{k}?" for k in range(1, 8)), ("y",), ("axis",), (),
          _bw_concat),
    OpDef(78, "slice", ("x",), ("y",), SLICE_ATTRS, (), _bw_slice),
    OpDef(79, "slice_bwd", ("dy", "x"), ("dx",), SLICE_ATTRS, (), kind="backward"),
    OpDef(80, "transpose", ("x",), ("y",), ("ndim",) + PERM_DIMS, (), _bw_transpose),
    OpDef(81, "pad", ("x",), ("y",), PAD_ATTRS, ("value",), _bw_pad),
    OpDef(82, "pad_bwd", ("dy", "x"), ("dx",), PAD_ATTRS, ("value",), kind="backward"),
    OpDef(83, "gather", ("x", "index"), ("y",), ("axis", "select"), (), _bw_gather,
          int_inputs=("index",)),
    OpDef(84, "gather_bwd", ("dy", "index", "x"), ("dx",), ("axis", "select"), (),
          kind="backward", int_inputs=("index",)),
    OpDef(85, "expand", ("x", "like?"), ("y",), ("ndim",) + RESHAPE_DIMS, (), _bw_expand),
    # int8 inference (kernels/src/qgemm.c): eval programs of QAT models and int8 files only;
    # checked bit for bit against a numpy integer reference in tests/test_int8.py
    OpDef(86, "quantize", ("x", "scale", "zero_point"), ("y",), ("qmin", "qmax"), (),
          kind="inference"),
    OpDef(87, "dequantize", ("x", "scale", "zero_point"), ("y",), (), (), kind="inference"),
    OpDef(88, "qprep", ("w", "w_scale", "b?", "s_in", "s_out"), ("wq", "bq?", "mult"),
          ("wqmin", "wqmax"), (), kind="inference"),
    # optional fused clamp: with y_scale, the output is clamped to qclamp's levels of
    # (clamp_lo, clamp_hi) on the output grid (= the op then qclamp; ReLU: 0, +inf)
    OpDef(89, "qconv2d", ("x", "w", "b?", "mult", "x_zp", "y_zp", "y_scale?"), ("y",),
          _CONV_I[:9] + ("qmin", "qmax"), ("clamp_lo", "clamp_hi"), kind="inference",
          defaults={"clamp_lo": 0.0, "clamp_hi": float("inf")}),
    OpDef(90, "qlinear", ("x", "w", "b?", "mult", "x_zp", "y_zp", "y_scale?"), ("y",),
          ("qmin", "qmax"), ("clamp_lo", "clamp_hi"), kind="inference",
          defaults={"clamp_lo": 0.0, "clamp_hi": float("inf")}),
    OpDef(91, "qmaxpool2d", ("x",), ("y",), _MAXPOOL_I, (), kind="inference"),
    OpDef(92, "qrelu", ("x", "zero_point"), ("y",), (), (), kind="inference"),
    # MobileNetV2's int8 ops (kernels/src/qgemm.c; contracts checked in tests/test_int8_ops.py)
    OpDef(93, "qadd", ("a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "y_scale",
                       "y_zero_point"), ("y",), ("qmin", "qmax"), (), kind="inference"),
    OpDef(94, "qclamp", ("x", "scale", "zero_point"), ("y",), ("qmin", "qmax"), ("lo", "hi"),
          kind="inference"),
    OpDef(95, "qglobal_avgpool", ("x", "zero_point"), ("y",), ("qmin", "qmax"), (),
          kind="inference"),
]

OP_BY_NAME: Dict[str, OpDef] = {op.name: op for op in OPS}

assert all(op.id == i for i, op in enumerate(OPS)), "op ids must equal table positions"
assert all(len(op.iattrs) <= ir.MAX_IATTR and len(op.fattrs) <= ir.MAX_FATTR
           and len(op.inputs) <= ir.MAX_INPUTS and len(op.outputs) <= ir.MAX_OUTPUTS
           for op in OPS)


# =====================================================================================
# Emitting nodes
# =====================================================================================
def infer_shapes(graph: ir.Graph, op: OpDef, inputs: Sequence[int], iattr: Sequence[int],
                 fattr: Sequence[float]) -> List[Tuple[str, Shape]]:
    """``(dtype, shape)`` of each output of an ``op`` node reading ``inputs`` (tensor indices,
    -1 = absent), by the C runtime's shape rule (``et_op_infer``) — the one the planner
    applies when it loads the file. A bad node raises :class:`ShapeError` with the C message."""
    from . import _native

    specs = [None if t < 0 else (ir.DTYPE_CODES[graph.tensors[t].dtype], graph.tensors[t].shape)
             for t in inputs]
    return [(ir.CODE_DTYPES[code], shape)
            for code, shape in _native.infer_shapes(op.id, specs, list(iattr), list(fattr))]


def emit(graph: ir.Graph, op_name: str, inputs: Sequence[int], *, layer: str = "",
         skip_outputs: Sequence[int] = (), **attrs) -> List[int]:
    """Append one ``op_name`` node reading ``inputs`` (tensor indices, -1 = absent).

    Output tensors are created as ACT tensors with the dtypes and shapes of the C shape rule;
    outputs listed in ``skip_outputs`` (optional ones) are left absent (-1). Returns the
    output tensor indices. A shape problem raises :class:`ShapeError` naming ``layer``.
    """
    op = OP_BY_NAME.get(op_name)
    if op is None:
        raise ValueError(f"unknown op {op_name!r}")
    inputs = list(inputs)
    # trailing optional inputs may be left out (the node then has fewer inputs, as files
    # written before those inputs existed)
    n_req = len(op.inputs)
    while n_req > 0 and op.inputs[n_req - 1].endswith("?") and n_req > len(inputs):
        n_req -= 1
    if not n_req <= len(inputs) <= len(op.inputs):
        raise ValueError(f"op '{op_name}' takes {len(op.inputs)} inputs, got {len(inputs)}")
    for i, t in enumerate(inputs):
        if t < 0 and not op.inputs[i].endswith("?"):
            raise ValueError(f"op '{op_name}': input '{op.input_name(i)}' is required")
    iattr, fattr = op.pack_attrs(attrs)
    try:
        out_shapes = infer_shapes(graph, op, inputs, iattr, fattr)
    except ShapeError as e:
        raise ShapeError(f"layer '{layer or '<root>'}': op '{op_name}': {e}") from None
    outputs = []
    for k, (dtype, shp) in enumerate(out_shapes):
        if k in skip_outputs:
            if not op.outputs[k].endswith("?"):
                raise ValueError(f"op '{op_name}': output '{op.outputs[k]}' is required")
            outputs.append(-1)
        else:
            outputs.append(graph.add_tensor("", dtype, ir.ACT, shp).index)
    graph.add_node(ir.Node(op_name, inputs, outputs, iattr, fattr, layer))
    return outputs


class GradContext:
    """What a backward rule sees: which inputs need a gradient, and a way to emit nodes.

    Nodes emitted through the context carry the forward node's layer name.
    """

    def __init__(self, graph: ir.Graph, op: OpDef, node: ir.Node, need: Sequence[bool],
                 batched: Optional[AbstractSet[int]] = None):
        self.graph = graph
        self.op = op
        self.node = node
        self._need = list(need)
        self._batched = batched  # tensors whose shape follows the batch; None = all

    def need(self, i: int) -> bool:
        return self._need[i]

    def attrs(self, node: ir.Node) -> Dict[str, float]:
        return OP_BY_NAME[node.op].attrs(node)

    def shape(self, t: int) -> Shape:
        return tuple(self.graph.tensors[t].shape)

    def emit(self, op_name: str, inputs: Sequence[int], **kw) -> List[int]:
        return emit(self.graph, op_name, inputs, layer=self.node.layer, **kw)

    def reshape(self, t: int, dims: Sequence[int]) -> int:
        """Reshape ``t``; ``dims`` may use 0 (copy input dim). If no dim is dynamic, the
        first becomes -1 so that a change of batch size is followed after Resize."""
        dims = list(dims)
        if dims and 0 not in dims and -1 not in dims:
            dims[0] = -1
        kw = {k: v for k, v in zip(RESHAPE_DIMS, dims)}
        return self.emit("reshape", [t], ndim=len(dims), **kw)[0]

    def sum_to(self, g: int, target: int, scale: float = 1.0) -> int:
        """``g`` summed over the dims ``target`` was broadcast along (and scaled).

        Equal traced shapes need no sum unless ``target`` keeps its shape when the batch
        changes (a parameter or constant, or a value computed from them alone) and has a size-1
        dim: traced at batch 1, that dim may meet a larger batch later (a ViT's [1, T, D]
        position embedding), so the reduction is always emitted then."""
        tshape = self.shape(target)
        if self.shape(g) == tshape and not (
                1 in tshape and self._batched is not None and target not in self._batched):
            if scale == 1.0:
                return g
            return self.emit("affine", [g], alpha=scale, beta=0.0)[0]
        return self.emit("reduce_sum_to", [g, target], scale=scale)[0]

    def fail(self, what: str, why: str = "") -> None:
        detail = f" ({why})" if why else ""
        raise NotDifferentiableError(
            f"op '{self.op.name}' in layer '{self.node.layer or '<root>'}' has no gradient "
            f"with respect to '{what}'{detail}")
