"""The op table: every op of the runtime, listed once (docs/ops.md).

Each :class:`OpDef` holds the op's id and name (the same as ``enum et_op`` in
``kernels/include/edgetrain/et_ops.h``), the names of its inputs, outputs and attributes (in
the fixed attribute positions of docs/ops.md), a shape function used at trace time, and the
backward rule used by :mod:`edgetrain.autodiff`.

Backward rules are written with other ops (few primitives): a rule receives a
:class:`GradContext` (``ctx``), the forward node and the gradients of the node's outputs, and
returns one gradient tensor index (or ``None``) per input. Ops without a rule raise
:class:`~edgetrain.errors.NotDifferentiableError` when a gradient must flow through them.

:func:`emit` appends one node to a graph, checking attributes and computing output shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import ir
from .errors import NotDifferentiableError, ShapeError

# enum et_act (kernels/include/edgetrain/et_kernels.h)
ACT_NONE, ACT_RELU, ACT_RELU6, ACT_LEAKY_RELU, ACT_SIGMOID, ACT_TANH, ACT_HARDSWISH = range(7)
ACT_NAMES = ("none", "relu", "relu6", "leaky_relu", "sigmoid", "tanh", "hardswish")

# reduce modes
REDUCE_SUM, REDUCE_MEAN = 0, 1

Shape = Tuple[int, ...]


@dataclass
class OpDef:
    """One op: its interface, shape function and backward rule."""
    id: int
    name: str
    inputs: Tuple[str, ...]    # a trailing "?" marks an optional input
    outputs: Tuple[str, ...]   # a trailing "?" marks an optional output
    iattrs: Tuple[str, ...] = ()
    fattrs: Tuple[str, ...] = ()
    shape: Optional[Callable] = None      # (in_shapes, attrs) -> list of output shapes
    backward: Optional[Callable] = None   # (ctx, node, dys) -> list of input grads
    kind: str = "forward"                 # "forward", "backward" or "update"
    mutates: Tuple[str, ...] = ()         # inputs written in place
    int_inputs: Tuple[str, ...] = ()      # inputs of dtype i32 (labels)

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
        iattr = [int(attrs.get(k, 0)) for k in self.iattrs]
        fattr = [float(attrs.get(k, 0.0)) for k in self.fattrs]
        return iattr, fattr


# =====================================================================================
# Shape helpers
# =====================================================================================
def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ShapeError(msg)


def broadcast_shapes(a: Shape, b: Shape) -> Shape:
    """numpy broadcasting of two shapes (ranks right-aligned)."""
    n = max(len(a), len(b))
    a2 = (1,) * (n - len(a)) + tuple(a)
    b2 = (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a2, b2):
        _need(x == y or x == 1 or y == 1, f"shapes {tuple(a)} and {tuple(b)} do not broadcast")
        out.append(max(x, y) if x and y else 0)
    return tuple(out)


def _broadcasts_to(small: Shape, big: Shape) -> bool:
    if len(small) > len(big):
        return False
    s = (1,) * (len(big) - len(small)) + tuple(small)
    return all(x == y or x == 1 for x, y in zip(s, big))


def conv_out_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dil: int) -> int:
    return (size + pad_lo + pad_hi - dil * (k - 1) - 1) // stride + 1


def pool_out_size(size: int, k: int, stride: int, pad: int, dil: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size (the last window starts inside input or left pad)."""
    span = size + 2 * pad - dil * (k - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + pad:
            out -= 1
    else:
        out = span // stride + 1
    return out


def _rank(shape: Shape, n: int, what: str) -> None:
    _need(len(shape) == n, f"{what} must have rank {n}, got shape {tuple(shape)}")


# =====================================================================================
# Shape functions: (in_shapes, attrs) -> list of output shapes
# =====================================================================================
def _conv_params(x: Shape, w: Shape, a) -> Tuple[int, int]:
    _rank(x, 4, "conv2d input")
    _rank(w, 4, "conv2d weight")
    g = a["groups"]
    _need(g >= 1, f"groups must be >= 1, got {g}")
    for k in ("stride_h", "stride_w", "dil_h", "dil_w"):
        _need(a[k] >= 1, f"{k} must be >= 1, got {a[k]}")
    for k in ("pad_t", "pad_l", "pad_b", "pad_r"):
        _need(a[k] >= 0, f"{k} must be >= 0, got {a[k]}")
    _need(x[1] == w[1] * g, f"input has {x[1]} channels but the weight {tuple(w)} with "
          f"groups={g} expects {w[1] * g}")
    _need(w[0] % g == 0, f"{w[0]} output channels not divisible by groups={g}")
    oh = conv_out_size(x[2], w[2], a["stride_h"], a["pad_t"], a["pad_b"], a["dil_h"])
    ow = conv_out_size(x[3], w[3], a["stride_w"], a["pad_l"], a["pad_r"], a["dil_w"])
    _need(oh >= 1 and ow >= 1, f"input {tuple(x)} too small for kernel {tuple(w[2:])} "
          f"(output would be {oh}x{ow})")
    return oh, ow


def _shape_conv2d(s, a):
    x, w, b = s
    oh, ow = _conv_params(x, w, a)
    if b is not None:
        _need(tuple(b) == (w[0],), f"bias shape {tuple(b)} != ({w[0]},)")
    return [(x[0], w[0], oh, ow)]


def _shape_conv2d_bwd_input(s, a):
    dy, w, x = s
    oh, ow = _conv_params(x, w, a)
    _need(tuple(dy) == (x[0], w[0], oh, ow), f"dy shape {tuple(dy)} does not match the conv")
    return [tuple(x)]


def _shape_conv2d_bwd_weight(s, a):
    dy, x, w = s
    oh, ow = _conv_params(x, w, a)
    _need(tuple(dy) == (x[0], w[0], oh, ow), f"dy shape {tuple(dy)} does not match the conv")
    return [tuple(w)]


def _shape_conv2d_bwd_bias(s, a):
    _rank(s[0], 4, "dy")
    return [(s[0][1],)]


def _shape_matmul(s, a):
    x, y = s
    _rank(x, 2, "matmul a")
    _rank(y, 2, "matmul b")
    m, k = (x[1], x[0]) if a["trans_a"] else (x[0], x[1])
    k2, n = (y[1], y[0]) if a["trans_b"] else (y[0], y[1])
    _need(k == k2, f"matmul inner dimensions differ: {tuple(x)}{'^T' if a['trans_a'] else ''}"
          f" x {tuple(y)}{'^T' if a['trans_b'] else ''}")
    return [(m, n)]


def _shape_binary(s, a):
    return [broadcast_shapes(s[0], s[1])]


def _shape_reduce_sum_to(s, a):
    x, ref = s
    _need(_broadcasts_to(ref, x), f"cannot sum {tuple(x)} down to {tuple(ref)}")
    return [tuple(ref)]


def _shape_broadcast_to(s, a):
    x, ref = s
    _need(_broadcasts_to(x, ref), f"cannot broadcast {tuple(x)} to {tuple(ref)}")
    return [tuple(ref)]


def reduce_axes(ndim: int, axis_mask: int) -> List[int]:
    """The axes reduced by a reduce node (axis_mask 0 = all)."""
    return list(range(ndim)) if axis_mask == 0 else [d for d in range(ndim) if axis_mask >> d & 1]


def _shape_reduce(s, a):
    x = s[0]
    _need(a["mode"] in (REDUCE_SUM, REDUCE_MEAN), f"bad reduce mode {a['mode']}")
    _need(a["axis_mask"] >> len(x) == 0, f"axis_mask {a['axis_mask']:#x} out of range for "
          f"rank {len(x)}")
    axes = reduce_axes(len(x), a["axis_mask"])
    if a["keepdims"]:
        return [tuple(1 if d in axes else n for d, n in enumerate(x))]
    return [tuple(n for d, n in enumerate(x) if d not in axes)]


RESHAPE_DIMS = ("d0", "d1", "d2", "d3", "d4", "d5")


def reshape_target(x: Shape, ndim: int, dims: Sequence[int]) -> Shape:
    """Resolve reshape dims (0 = copy input dim at that position, -1 = infer one)."""
    _need(1 <= ndim <= ir.MAX_DIMS or ndim == 0, f"bad reshape rank {ndim}")
    out = []
    infer = -1
    for d in range(ndim):
        v = dims[d]
        if v == 0:
            _need(d < len(x), f"reshape dim {d} = 0 copies a dimension the input {tuple(x)} "
                  "does not have")
            out.append(x[d])
        elif v == -1:
            _need(infer < 0, "reshape has more than one -1")
            infer = d
            out.append(1)
        else:
            _need(v > 0, f"bad reshape dim {v}")
            out.append(v)
    numel = 1
    for n in x:
        numel *= n
    known = 1
    for n in out:
        known *= n
    if infer >= 0:
        _need(known > 0 and numel % known == 0, f"cannot reshape {tuple(x)} to "
              f"{tuple(dims[:ndim])}")
        out[infer] = numel // known
    _need(numel == (known if infer < 0 else known * out[infer]),
          f"cannot reshape {tuple(x)} ({numel} elements) to {tuple(out)}")
    return tuple(out)


def _shape_reshape(s, a):
    return [reshape_target(s[0], a["ndim"], [a[k] for k in RESHAPE_DIMS])]


def _shape_same0(s, a):
    return [tuple(s[0])]


def _shape_act(s, a):
    _need(0 <= a["act"] < len(ACT_NAMES), f"unknown activation {a['act']}")
    return [tuple(s[0])]


def _shape_act_bwd(s, a):
    _need(tuple(s[0]) == tuple(s[1]), f"dy {tuple(s[0])} and t {tuple(s[1])} differ")
    return _shape_act(s, a)


def _pool_out(x: Shape, a, dil: bool) -> Shape:
    _rank(x, 4, "pooling input")
    dh, dw = (a["dil_h"], a["dil_w"]) if dil else (1, 1)
    for k in ("kh", "kw", "stride_h", "stride_w"):
        _need(a[k] >= 1, f"{k} must be >= 1, got {a[k]}")
    _need(dh >= 1 and dw >= 1, "dilation must be >= 1")
    _need(0 <= a["pad_h"] <= a["kh"] // 2 and 0 <= a["pad_w"] <= a["kw"] // 2,
          f"padding ({a['pad_h']}, {a['pad_w']}) must be at most half the kernel "
          f"({a['kh']}, {a['kw']})")
    oh = pool_out_size(x[2], a["kh"], a["stride_h"], a["pad_h"], dh, bool(a["ceil_mode"]))
    ow = pool_out_size(x[3], a["kw"], a["stride_w"], a["pad_w"], dw, bool(a["ceil_mode"]))
    _need(oh >= 1 and ow >= 1, f"input {tuple(x)} too small for pooling window "
          f"({a['kh']}, {a['kw']})")
    return (x[0], x[1], oh, ow)


def _shape_maxpool(s, a):
    return [_pool_out(s[0], a, True)]


def _shape_avgpool(s, a):
    return [_pool_out(s[0], a, False)]


def _shape_pool_bwd(dil: bool):
    def fn(s, a):
        dy, x = s
        out = _pool_out(x, a, dil)
        _need(tuple(dy) == out, f"dy shape {tuple(dy)} != pooled shape {out}")
        return [tuple(x)]
    return fn


def _shape_global_avgpool(s, a):
    _rank(s[0], 4, "global_avgpool input")
    return [(s[0][0], s[0][1], 1, 1)]


def _shape_global_avgpool_bwd(s, a):
    dy, x = s
    _rank(x, 4, "global_avgpool input")
    _need(tuple(dy) == (x[0], x[1], 1, 1), f"dy shape {tuple(dy)} does not match {tuple(x)}")
    return [tuple(x)]


def _bn_check(x: Shape, params: Sequence[Shape]) -> int:
    _need(len(x) >= 2, f"batch norm input must have rank >= 2, got {tuple(x)}")
    c = x[1]
    for p in params:
        _need(tuple(p) == (c,), f"batch norm parameter shape {tuple(p)} != ({c},)")
    return c


def _shape_bn_train(s, a):
    c = _bn_check(s[0], s[1:5])
    return [tuple(s[0]), (c,), (c,)]


def _shape_bn_infer(s, a):
    _bn_check(s[0], s[1:5])
    return [tuple(s[0])]


def _shape_bn_bwd(s, a):
    dy, x = s[0], s[1]
    _need(tuple(dy) == tuple(x), f"dy {tuple(dy)} != x {tuple(x)}")
    c = _bn_check(x, s[2:5])
    return [tuple(x), (c,), (c,)]


def _shape_softmax(s, a):
    _need(0 <= a["axis"] < len(s[0]), f"softmax axis {a['axis']} out of range for "
          f"{tuple(s[0])}")
    return [tuple(s[-1])]


def _shape_xent(s, a):
    logits, labels = s
    _rank(logits, 2, "logits")
    _need(tuple(labels) == (logits[0],), f"labels shape {tuple(labels)} != ({logits[0]},)")
    return [(), tuple(logits)]


def _shape_xent_bwd(s, a):
    probs, labels, dloss = s
    _rank(probs, 2, "probs")
    _need(tuple(labels) == (probs[0],), f"labels shape {tuple(labels)} != ({probs[0]},)")
    _need(tuple(dloss) == (), "dloss must be a scalar")
    return [tuple(probs)]


def _shape_xent_prob(s, a):
    logits, target = s
    _rank(logits, 2, "logits")
    _need(tuple(target) == tuple(logits), f"target {tuple(target)} != logits {tuple(logits)}")
    return [(), tuple(logits)]


def _shape_xent_prob_bwd(s, a):
    probs, target, dloss = s
    _rank(probs, 2, "probs")
    _need(tuple(target) == tuple(probs), f"target {tuple(target)} != {tuple(probs)}")
    _need(tuple(dloss) == (), "dloss must be a scalar")
    return [tuple(probs)]


def _shape_pair_loss(s, a):
    _need(tuple(s[0]) == tuple(s[1]), f"prediction {tuple(s[0])} and target {tuple(s[1])} "
          "shapes differ")
    return [()]


def _shape_pair_loss_bwd(s, a):
    _need(tuple(s[0]) == tuple(s[1]), f"prediction {tuple(s[0])} and target {tuple(s[1])} "
          "shapes differ")
    _need(tuple(s[2]) == (), "dloss must be a scalar")
    return [tuple(s[0])]


def _shape_hinge(s, a):
    x, labels = s
    _rank(x, 2, "hinge input")
    _need(tuple(labels) == (x[0],), f"labels shape {tuple(labels)} != ({x[0]},)")
    return [()]


def _shape_hinge_bwd(s, a):
    x = s[0]
    _shape_hinge(s[:2], a)
    _need(tuple(s[2]) == (), "dloss must be a scalar")
    return [tuple(x)]


def _shape_kldiv(s, a):
    _rank(s[0], 2, "kl_div input")
    return _shape_pair_loss(s, a)


def _shape_kldiv_bwd(s, a):
    _rank(s[0], 2, "kl_div target")
    _need(tuple(s[1]) == (), "dloss must be a scalar")
    return [tuple(s[0])]


def _shape_update(s, a):
    p = tuple(s[0])
    for other in s[1:]:
        if other is not None:
            _need(tuple(other) == p, f"update tensor shape {tuple(other)} != param {p}")
    return []


# =====================================================================================
# Backward rules: (ctx, node, dys) -> list of input gradients (tensor index or None)
# =====================================================================================
def _bw_conv2d(ctx, node, dys):
    x, w, b = node.inputs
    a = ctx.attrs(node)
    dy = dys[0]
    act = a["act"]
    if act != ACT_NONE:
        # y = act(z): the backward must see the pre-activation; only activations whose
        # derivative can be read from the output y are supported.
        if act == ACT_HARDSWISH or (act == ACT_LEAKY_RELU and a["act_alpha"] <= 0):
            ctx.fail("y", f"fused {ACT_NAMES[act]} activation")
        dy = ctx.emit("act_bwd", [dy, node.outputs[0]], act=act, alpha=a["act_alpha"])[0]
    conv = {k: a[k] for k in a if k not in ("act", "act_alpha")}
    dx = dw = db = None
    if ctx.need(0):
        dx = ctx.emit("conv2d_bwd_input", [dy, w, x], **conv)[0]
    if ctx.need(1):
        dw = ctx.emit("conv2d_bwd_weight", [dy, x, w], **conv)[0]
    if b >= 0 and ctx.need(2):
        db = ctx.emit("conv2d_bwd_bias", [dy])[0]
    return [dx, dw, db]


def _bw_matmul(ctx, node, dys):
    a_, b_ = node.inputs
    dy = dys[0]
    ta, tb = node.iattr[0], node.iattr[1]
    da = db = None
    if ctx.need(0):
        if not ta:   # op(a) = a: da = dy op(b)^T
            da = ctx.emit("matmul", [dy, b_], trans_a=0, trans_b=0 if tb else 1)[0]
        else:        # a stored [K, M]: da = op(b) dy^T
            da = ctx.emit("matmul", [b_, dy], trans_a=1 if tb else 0, trans_b=1)[0]
    if ctx.need(1):
        if not tb:   # db = op(a)^T dy
            db = ctx.emit("matmul", [a_, dy], trans_a=0 if ta else 1, trans_b=0)[0]
        else:        # b stored [N, K]: db = dy^T op(a)
            db = ctx.emit("matmul", [dy, a_], trans_a=1, trans_b=1 if ta else 0)[0]
    return [da, db]


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
        kept = [1 if d in axes else n for d, n in enumerate(xs)]
        dims = []
        pos = 0  # position of this dim in dy
        for d in range(len(xs)):
            if d in axes:
                dims.append(1)
            else:
                dims.append(0 if pos == d else kept[d])
                pos += 1
        dy = ctx.reshape(dy, dims)
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
    t = node.outputs[0] if act in (ACT_SIGMOID, ACT_TANH) else node.inputs[0]
    return [ctx.emit("act_bwd", [dys[0], t], act=act, alpha=alpha)[0]]


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
    dx, dg, db = ctx.emit("batchnorm_bwd", [dys[0], x, gamma, save_mean, save_invstd],
                          skip_outputs=skip)
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


# =====================================================================================
# The table (order = ids = enum et_op)
# =====================================================================================
_CONV_I = ("stride_h", "stride_w", "pad_t", "pad_l", "pad_b", "pad_r", "dil_h", "dil_w",
           "groups", "act")
_MAXPOOL_I = ("kh", "kw", "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w",
              "ceil_mode")
_AVGPOOL_I = ("kh", "kw", "stride_h", "stride_w", "pad_h", "pad_w", "ceil_mode",
              "count_include_pad")
_BN_IN = ("x", "gamma", "beta", "running_mean", "running_var")
_BIN = (("a", "b"), ("y",))

OPS: List[OpDef] = [
    OpDef(0, "conv2d", ("x", "w", "b?"), ("y",), _CONV_I, ("act_alpha",),
          _shape_conv2d, _bw_conv2d),
    OpDef(1, "conv2d_bwd_input", ("dy", "w", "x"), ("dx",), _CONV_I, (),
          _shape_conv2d_bwd_input, kind="backward"),
    OpDef(2, "conv2d_bwd_weight", ("dy", "x", "w"), ("dw",), _CONV_I, (),
          _shape_conv2d_bwd_weight, kind="backward"),
    OpDef(3, "conv2d_bwd_bias", ("dy",), ("db",), (), (), _shape_conv2d_bwd_bias,
          kind="backward"),
    OpDef(4, "matmul", ("a", "b"), ("y",), ("trans_a", "trans_b"), (), _shape_matmul,
          _bw_matmul),
    OpDef(5, "add", *_BIN, shape=_shape_binary, backward=_bw_add),
    OpDef(6, "sub", *_BIN, shape=_shape_binary, backward=_bw_sub),
    OpDef(7, "mul", *_BIN, shape=_shape_binary, backward=_bw_mul),
    OpDef(8, "div", *_BIN, shape=_shape_binary, backward=_bw_div),
    OpDef(9, "reduce_sum_to", ("x", "ref"), ("y",), (), ("scale",), _shape_reduce_sum_to,
          _bw_reduce_sum_to),
    OpDef(10, "reduce", ("x",), ("y",), ("mode", "keepdims", "axis_mask"), (),
          _shape_reduce, _bw_reduce),
    OpDef(11, "broadcast_to", ("x", "ref"), ("y",), (), ("scale",), _shape_broadcast_to,
          _bw_broadcast_to),
    OpDef(12, "reshape", ("x",), ("y",), ("ndim",) + RESHAPE_DIMS, (), _shape_reshape,
          _bw_reshape),
    OpDef(13, "act", ("x",), ("y",), ("act",), ("alpha",), _shape_act, _bw_act),
    OpDef(14, "act_bwd", ("dy", "t"), ("dx",), ("act",), ("alpha",), _shape_act_bwd,
          kind="backward"),
    OpDef(15, "maxpool2d", ("x",), ("y",), _MAXPOOL_I, (), _shape_maxpool, _bw_maxpool),
    OpDef(16, "maxpool2d_bwd", ("dy", "x"), ("dx",), _MAXPOOL_I, (), _shape_pool_bwd(True),
          kind="backward"),
    OpDef(17, "avgpool2d", ("x",), ("y",), _AVGPOOL_I, (), _shape_avgpool, _bw_avgpool),
    OpDef(18, "avgpool2d_bwd", ("dy", "x"), ("dx",), _AVGPOOL_I, (), _shape_pool_bwd(False),
          kind="backward"),
    OpDef(19, "global_avgpool", ("x",), ("y",), (), (), _shape_global_avgpool,
          _bw_global_avgpool),
    OpDef(20, "global_avgpool_bwd", ("dy", "x"), ("dx",), (), (), _shape_global_avgpool_bwd,
          kind="backward"),
    OpDef(21, "batchnorm_train", _BN_IN, ("y", "save_mean", "save_invstd"), (),
          ("momentum", "eps"), _shape_bn_train, _bw_bn_train,
          mutates=("running_mean", "running_var")),
    OpDef(22, "batchnorm_infer", _BN_IN, ("y",), (), ("eps",), _shape_bn_infer),
    OpDef(23, "batchnorm_bwd", ("dy", "x", "gamma", "save_mean", "save_invstd"),
          ("dx", "dgamma?", "dbeta?"), (), (), _shape_bn_bwd, kind="backward"),
    OpDef(24, "dropout", ("x",), ("y",), ("stream",), ("p",), _shape_same0, _bw_dropout),
    OpDef(25, "dropout_bwd", ("dy",), ("dx",), ("stream",), ("p",), _shape_same0,
          kind="backward"),
    OpDef(26, "softmax", ("x",), ("y",), ("axis", "log"), (), _shape_softmax, _bw_softmax),
    OpDef(27, "softmax_bwd", ("dy", "y"), ("dx",), ("axis", "log"), (), _shape_softmax,
          kind="backward"),
    OpDef(28, "softmax_xent", ("logits", "labels"), ("loss", "probs"), (), (), _shape_xent,
          _bw_xent("softmax_xent_bwd"), int_inputs=("labels",)),
    OpDef(29, "softmax_xent_bwd", ("probs", "labels", "dloss"), ("dlogits",), (), (),
          _shape_xent_bwd, kind="backward", int_inputs=("labels",)),
    OpDef(30, "softmax_xent_prob", ("logits", "target"), ("loss", "probs"), (), (),
          _shape_xent_prob, _bw_xent("softmax_xent_prob_bwd")),
    OpDef(31, "softmax_xent_prob_bwd", ("probs", "target", "dloss"), ("dlogits",), (), (),
          _shape_xent_prob_bwd, kind="backward"),
    OpDef(32, "mse", ("pred", "target"), ("loss",), (), (), _shape_pair_loss,
          _bw_pair_loss("mse_bwd")),
    OpDef(33, "mse_bwd", ("pred", "target", "dloss"), ("dpred",), (), (),
          _shape_pair_loss_bwd, kind="backward"),
    OpDef(34, "l1", ("pred", "target"), ("loss",), (), (), _shape_pair_loss,
          _bw_pair_loss("l1_bwd")),
    OpDef(35, "l1_bwd", ("pred", "target", "dloss"), ("dpred",), (), (),
          _shape_pair_loss_bwd, kind="backward"),
    OpDef(36, "hinge", ("x", "labels"), ("loss",), (), ("margin",), _shape_hinge, _bw_hinge,
          int_inputs=("labels",)),
    OpDef(37, "hinge_bwd", ("x", "labels", "dloss"), ("dx",), (), ("margin",),
          _shape_hinge_bwd, kind="backward", int_inputs=("labels",)),
    OpDef(38, "kldiv", ("input", "target"), ("loss",), (), (), _shape_kldiv, _bw_kldiv),
    OpDef(39, "kldiv_bwd", ("target", "dloss"), ("dinput",), (), (), _shape_kldiv_bwd,
          kind="backward"),
    OpDef(40, "sgd_update", ("param", "grad", "momentum_buf?", "prox_anchor?"), (),
          ("nesterov", "l1"), ("lr_scale", "momentum", "dampening", "weight_decay", "prox_mu"),
          _shape_update, kind="update", mutates=("param", "momentum_buf")),
    OpDef(41, "adam_update", ("param", "grad", "m", "v", "prox_anchor?"), (), ("decoupled",),
          ("lr_scale", "beta1", "beta2", "eps", "weight_decay", "prox_mu"), _shape_update,
          kind="update", mutates=("param", "m", "v")),
    OpDef(42, "affine", ("x",), ("y",), (), ("alpha", "beta"), _shape_same0, _bw_affine),
]

OP_BY_NAME: Dict[str, OpDef] = {op.name: op for op in OPS}

assert all(op.id == i for i, op in enumerate(OPS)), "op ids must equal table positions"
assert all(len(op.iattrs) <= ir.MAX_IATTR and len(op.fattrs) <= ir.MAX_FATTR
           and len(op.inputs) <= ir.MAX_INPUTS and len(op.outputs) <= ir.MAX_OUTPUTS
           for op in OPS)


# =====================================================================================
# Emitting nodes
# =====================================================================================
def emit(graph: ir.Graph, op_name: str, inputs: Sequence[int], *, layer: str = "",
         skip_outputs: Sequence[int] = (), **attrs) -> List[int]:
    """Append one ``op_name`` node reading ``inputs`` (tensor indices, -1 = absent).

    Output tensors are created as ACT f32 tensors with shapes from the op's shape function;
    outputs listed in ``skip_outputs`` (optional ones) are left absent (-1). Returns the
    output tensor indices. A shape problem raises :class:`ShapeError` naming ``layer``.
    """
    op = OP_BY_NAME.get(op_name)
    if op is None:
        raise ValueError(f"unknown op {op_name!r}")
    inputs = list(inputs)
    if len(inputs) != len(op.inputs):
        raise ValueError(f"op '{op_name}' takes {len(op.inputs)} inputs, got {len(inputs)}")
    shapes = []
    for i, t in enumerate(inputs):
        optional = op.inputs[i].endswith("?")
        if t < 0:
            if not optional:
                raise ValueError(f"op '{op_name}': input '{op.input_name(i)}' is required")
            shapes.append(None)
            continue
        td = graph.tensors[t]
        want = ir.I32 if op.input_name(i) in op.int_inputs else ir.F32
        if td.dtype != want:
            raise ShapeError(f"layer '{layer}': op '{op_name}' input '{op.input_name(i)}' must "
                             f"be {want}, got {td.dtype} (tensor {td.name or t!r})")
        shapes.append(tuple(td.shape))
    iattr, fattr = op.pack_attrs(attrs)
    named = dict(zip(op.iattrs, iattr))
    named.update(zip(op.fattrs, fattr))
    try:
        out_shapes = op.shape(shapes, named)
    except ShapeError as e:
        raise ShapeError(f"layer '{layer or '<root>'}': op '{op_name}': {e}") from None
    outputs = []
    for k, shp in enumerate(out_shapes):
        if k in skip_outputs:
            if not op.outputs[k].endswith("?"):
                raise ValueError(f"op '{op_name}': output '{op.outputs[k]}' is required")
            outputs.append(-1)
        else:
            outputs.append(graph.add_tensor("", ir.F32, ir.ACT, shp).index)
    graph.add_node(ir.Node(op_name, inputs, outputs, iattr, fattr, layer))
    return outputs


class GradContext:
    """What a backward rule sees: which inputs need a gradient, and a way to emit nodes.

    Nodes emitted through the context carry the forward node's layer name.
    """

    def __init__(self, graph: ir.Graph, op: OpDef, node: ir.Node, need: Sequence[bool]):
        self.graph = graph
        self.op = op
        self.node = node
        self._need = list(need)

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
        """``g`` summed over the dims ``target`` was broadcast along (and scaled)."""
        if self.shape(g) == self.shape(target):
            if scale == 1.0:
                return g
            return self.emit("affine", [g], alpha=scale, beta=0.0)[0]
        return self.emit("reduce_sum_to", [g, target], scale=scale)[0]

    def fail(self, what: str, why: str = "") -> None:
        detail = f" ({why})" if why else ""
        raise NotDifferentiableError(
            f"op '{self.op.name}' in layer '{self.node.layer or '<root>'}' has no gradient "
            f"with respect to '{what}'{detail}")
