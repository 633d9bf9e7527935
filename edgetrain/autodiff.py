"""Reverse-mode autodiff at export time: extend a traced forward with gradient nodes.

The gradient of the scalar loss is seeded with a CONST 1.0 and pulled back through the
forward nodes in reverse order with each op's backward rule (:mod:`edgetrain.ops`).
Only values that depend on a trainable parameter get gradients: frozen parameters, inputs and
labels get no gradient nodes at all. Several contributions to one gradient are summed with
``add`` nodes. Parameter gradients are GRAD tensors named ``grad:<param name>``.

Slices that tile a tensor along one dim (an LSTM's per-step input projections ``proj[:, t]``,
``chunk``'s pieces) get their gradient as one ``concat`` of the pieces' gradients, not as a
full-size ``slice_bwd`` per piece summed with ``add`` nodes (work quadratic in the number of
pieces). Each element then holds the one piece's value instead of that value plus zeros: the
same number (a -0.0 stays -0.0 where zeros summed to +0.0).
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Sequence, Set, Tuple

import numpy as np

from . import ir, ops
from .errors import NotDifferentiableError


def requires_grad(graph: ir.Graph, nodes: Sequence[int]) -> Set[int]:
    """Tensors that depend on a trainable PARAM through ``nodes`` (in execution order)."""
    req = {t.index for t in graph.tensors if t.kind == ir.PARAM and t.trainable}
    for n in nodes:
        node = graph.nodes[n]
        op = ops.OP_BY_NAME[node.op]
        if any(t in req for i, t in enumerate(node.inputs)
               if t >= 0 and op.input_name(i) not in op.mutates):
            req.update(t for t in node.outputs if t >= 0)
    return req


def follows_batch(graph: ir.Graph, nodes: Sequence[int]) -> Set[int]:
    """Tensors whose shape follows the batch: those computed from an INPUT through ``nodes``.

    The rest (parameters, constants and what is computed from them alone) keep their traced
    shape when the batch changes, so a size-1 dim of theirs that met the traced batch of 1
    must still be summed over in their gradient (:meth:`ops.GradContext.sum_to`).
    """
    dep = {t.index for t in graph.tensors if t.kind == ir.INPUT}
    for n in nodes:
        node = graph.nodes[n]
        if any(t >= 0 and t in dep for t in node.inputs):
            dep.update(t for t in node.outputs if t >= 0)
    return dep


def backward(graph: ir.Graph, loss: int, nodes: Sequence[int]
             ) -> Tuple[List[int], Dict[int, int]]:
    """Append the gradient of scalar tensor ``loss`` through forward ``nodes``.

    Returns the new node indices (in execution order) and ``{param index: grad index}`` for
    every trainable parameter that receives a gradient.
    """
    lt = graph.tensors[loss]
    if tuple(lt.shape) != () or lt.dtype != ir.F32:
        raise ValueError(f"the loss must be a float32 scalar, got shape {tuple(lt.shape)} "
                         f"({lt.dtype})")
    first_node = len(graph.nodes)
    req = requires_grad(graph, nodes)
    if loss not in req:
        return [], {}

    batched = follows_batch(graph, nodes)
    seed = graph.add_tensor("", ir.F32, ir.CONST, (), data=np.array(1.0, np.float32))
    # tensor -> list of (gradient tensor, fresh); fresh = made for this tensor alone
    contrib: Dict[int, List[Tuple[int, bool]]] = {loss: [(seed.index, False)]}

    for n in reversed(list(nodes)):
        node = graph.nodes[n]
        if not any(t >= 0 and t in contrib for t in node.outputs):
            continue
        op = ops.OP_BY_NAME[node.op]
        need = [t >= 0 and t in req and op.input_name(i) not in op.mutates
                and graph.tensors[t].dtype == ir.F32 for i, t in enumerate(node.inputs)]
        if not any(need):
            continue
        if op.backward is None:
            what = [op.input_name(i) for i, x in enumerate(need) if x]
            raise NotDifferentiableError(
                f"op '{op.name}' in layer '{node.layer or '<root>'}' has no gradient "
                f"(needed for input(s) {', '.join(what)})")
        dys = [_total(graph, contrib.pop(t), node.layer, t) if t >= 0 and t in contrib else None
               for t in node.outputs]
        piece = _slice_piece(graph, node, dys[0])
        if piece is not None:  # joined with the other slices of its input in _total_fresh
            contrib.setdefault(node.inputs[0], []).append((piece, False))
            continue
        start = len(graph.tensors)
        ctx = ops.GradContext(graph, op, node, need, batched)
        grads = op.backward(ctx, node, dys)
        if len(grads) != len(node.inputs):
            raise RuntimeError(f"backward rule of '{op.name}' returned {len(grads)} gradients "
                               f"for {len(node.inputs)} inputs")
        for i, g in enumerate(grads):
            if g is None or not need[i]:
                continue
            fresh = g >= start and grads.count(g) == 1
            contrib.setdefault(node.inputs[i], []).append((g, fresh))

    param_grads: Dict[int, int] = {}
    for t in graph.tensors:
        if t.kind != ir.PARAM or t.index not in contrib:
            continue
        g, fresh = _total_fresh(graph, contrib.pop(t.index), _layer_of(t.name), t.index)
        if not fresh:
            g = ops.emit(graph, "affine", [g], layer=_layer_of(t.name), alpha=1.0, beta=0.0)[0]
        gd = graph.tensors[g]
        gd.kind, gd.name, gd.owner = ir.GRAD, f"grad:{t.name}", t.index
        param_grads[t.index] = g
    return list(range(first_node, len(graph.nodes))), param_grads


def _layer_of(param_name: str) -> str:
    return param_name.rsplit(".", 1)[0] if "." in param_name else ""


class _Piece(NamedTuple):
    """The gradient ``dy`` of a step-1 ``slice`` node reading [lo, hi) of ``axis``."""
    node: ir.Node
    axis: int
    lo: int
    hi: int
    dy: int


def _slice_piece(graph: ir.Graph, node: ir.Node, dy) -> "_Piece | None":
    """A step-1 slice along a dim other than 0 (dim 0 may be the batch, whose size changes)
    as a piece to join; None for any other node."""
    if node.op != "slice" or dy is None:
        return None
    a = ops.OP_BY_NAME["slice"].attrs(node)
    shape = graph.tensors[node.inputs[0]].shape
    axis = int(a["axis"]) % len(shape)
    if a["step"] != 1 or axis == 0:
        return None
    n = shape[axis]
    lo, hi = (min(max(v + n if v < 0 else v, 0), n) for v in (int(a["start"]), int(a["stop"])))
    return _Piece(node, axis, lo, hi, dy) if lo < hi else None


def _join(graph: ir.Graph, pieces: List[_Piece], x: int) -> List[Tuple[int, bool]]:
    """The contributions of the slice pieces of tensor ``x``: per dim, one ``concat`` (chained
    8 inputs at a time) where the pieces tile it, else a ``slice_bwd`` each."""
    out: List[Tuple[int, bool]] = []
    shape = graph.tensors[x].shape
    for axis in sorted({p.axis for p in pieces}):
        group = sorted((p for p in pieces if p.axis == axis), key=lambda p: p.lo)
        tiles = group[0].lo == 0 and group[-1].hi == shape[axis] and all(
            a.hi == b.lo for a, b in zip(group, group[1:]))
        if not tiles:
            slice_op = ops.OP_BY_NAME["slice"]
            out += [(ops.emit(graph, "slice_bwd", [p.dy, x], layer=p.node.layer,
                              **slice_op.attrs(p.node))[0], True) for p in group]
            continue
        parts = []
        for p in group:
            if tuple(graph.tensors[p.dy].shape) != tuple(shape[:axis]) + (p.hi - p.lo,) + \
                    tuple(shape[axis + 1:]):  # an integer index dropped the dim
                dims = [0] * axis + [p.hi - p.lo] + list(shape[axis + 1:])
                parts.append(ops.emit(graph, "reshape", [p.dy], layer=p.node.layer,
                                      ndim=len(dims), **dict(zip(ops.RESHAPE_DIMS, dims)))[0])
            else:
                parts.append(p.dy)
        if len(parts) == 1:
            out.append((parts[0], parts[0] != group[0].dy))
            continue
        layer = group[0].node.layer
        g, rest = parts[:8], parts[8:]
        y = ops.emit(graph, "concat", g + [-1] * (8 - len(g)), layer=layer, axis=axis)[0]
        while rest:
            g, rest = [y] + rest[:7], rest[7:]
            y = ops.emit(graph, "concat", g + [-1] * (8 - len(g)), layer=layer, axis=axis)[0]
        out.append((y, True))
    return out


def _total_fresh(graph: ir.Graph, items: List[Tuple[int, bool]], layer: str, x: int = -1
                 ) -> Tuple[int, bool]:
    """Sum of the contributions to tensor ``x`` with ``add`` nodes; (tensor, fresh)."""
    pieces = [p for p, _ in items if isinstance(p, _Piece)]
    if pieces:
        items = [it for it in items if not isinstance(it[0], _Piece)] + _join(graph, pieces, x)
    g, fresh = items[0]
    for h, _ in items[1:]:
        g, fresh = ops.emit(graph, "add", [g, h], layer=layer)[0], True
    return g, fresh


def _total(graph: ir.Graph, items: List[Tuple[int, bool]], layer: str, x: int = -1) -> int:
    return _total_fresh(graph, items, layer, x)[0]
