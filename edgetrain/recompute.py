"""Recomputation (gradient checkpointing) under a memory budget, chosen at export.

A training program keeps every forward activation the backward reads alive from the node that
computes it to its last backward reader; those activations dominate the activation arena
(kernels/runtime/plan.c). :func:`apply_budget` drops some of them: a saved tensor T is instead
recomputed by copies of the forward nodes that made it (its *segment*), placed just before the
first backward node that reads T, and every backward reader of T is rewired to the copy. The
file format computes each activation once per program, so the copy writes new tensors.

Only cheap, deterministic nodes without side effects are copied: activations, elementwise
add / sub / mul, affine, max pooling, convolutions (by cost, so last) and ``batchnorm_train`` in
its recompute form — the same node without running statistics (inputs 3 and 4 absent, see
docs/ops.md), which computes the same batch statistics and the same ``y`` bits and updates
nothing. Batch norms with ``freeze_step`` (they read the running statistics), dropout (its
mask comes from the session's random stream) and every op that writes an input are never
copied. The copies run the same kernels on the same inputs, so losses and parameters keep
their bits; the step costs the copies' time.

Choice (greedy): while the estimated peak of live activation bytes exceeds the target, take
among the saved tensors alive at the peak the one whose segment frees the most bytes per
recompute operation. The estimate is a liveness sum; the real arena (the runtime's planner,
loaded from the bytes of the file) is then measured, and the target lowered by the excess
until the arena fits or nothing is left to recompute (then :class:`ResourceLimitError` says
the smallest arena reached).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _native, fileformat, ir, ops
from .errors import InvalidArgumentError, ResourceLimitError

__all__ = ["apply_budget", "check_budget"]

# Forward ops that may be copied, with their cost in operations per output element (conv2d and
# max pooling: computed from the weight / window below).
_ELEMENTWISE = {"act": 1.0, "add": 1.0, "sub": 1.0, "mul": 1.0, "affine": 1.0,
                "batchnorm_train": 4.0}   # two statistics passes, the affine, the copy
_RECOMPUTABLE = set(_ELEMENTWISE) | {"conv2d", "maxpool2d"}
_MAX_SEGMENT = 6   # nodes per segment
_MAX_ROUNDS = 8    # measure / re-target rounds


def check_budget(budget) -> int:
    """``budget`` as a byte count (an int >= 1), else :class:`InvalidArgumentError`."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise InvalidArgumentError(f"memory_budget must be a byte count (an int), got {budget!r}")
    if not 1 <= int(budget) < 2 ** 63:
        raise InvalidArgumentError(f"memory_budget must be a byte count in 1..2^63-1, got "
                                   f"{budget}")
    return int(budget)


def measure_arena(graph: ir.Graph) -> int:
    """The activation arena (bytes) the runtime plans for ``graph`` (all its programs), less the
    gradients it holds (memory_info()["activations"]; gradients are never recomputed)."""
    sess = _native.Session.from_bytes(fileformat.dumps(graph), 1, 0)
    arena = int(sess.memory_info()["activations"])
    del sess
    _native.release_free_memory()   # its copy of the parameters, before the next measure
    return arena


class _Program:
    """The node lists being rewritten (grad and train share their first nodes) and what the
    estimate needs: the forward part's length, tensor sizes, program outputs."""

    def __init__(self, graph: ir.Graph, n_forward: int) -> None:
        self.graph = graph
        self.kinds = [k for k in (ir.GRAD_PROGRAM, ir.TRAIN) if k in graph.programs]
        main = graph.programs[ir.TRAIN if ir.TRAIN in graph.programs else ir.GRAD_PROGRAM]
        self.order: List[int] = list(main.nodes)
        self.forward = set(self.order[:n_forward])
        self.keep = {t for k in self.kinds for t in graph.programs[k].outputs.values()}
        self.recomputed: Dict[int, int] = {}   # saved tensor -> its copy
        self.copies: List[int] = []           # new node ids

    def nbytes(self, t: int) -> int:
        td = self.graph.tensors[t]
        return td.numel * np.dtype(ir.NUMPY_DTYPE[td.dtype]).itemsize

    def is_act(self, t: int) -> bool:
        return t >= 0 and self.graph.tensors[t].kind == ir.ACT

    # -- liveness ------------------------------------------------------------------------
    def live_ranges(self) -> Dict[int, Tuple[int, int]]:
        """{activation: (first position, last position)} over ``order``."""
        rng: Dict[int, Tuple[int, int]] = {}
        end = len(self.order)
        for pos, n in enumerate(self.order):
            nd = self.graph.nodes[n]
            for t in list(nd.outputs) + list(nd.inputs):
                if self.is_act(t):
                    a, _ = rng.get(t, (pos, pos))
                    rng[t] = (a, pos)
        for t in self.keep:
            if t in rng:
                rng[t] = (rng[t][0], end)
        return rng

    def peak(self) -> Tuple[int, int, Dict[int, Tuple[int, int]]]:
        """(estimated peak bytes, its position, the live ranges)."""
        rng = self.live_ranges()
        delta = np.zeros(len(self.order) + 2, np.int64)
        for t, (a, b) in rng.items():
            delta[a] += self.nbytes(t)
            delta[b + 1] -= self.nbytes(t)
        live = np.cumsum(delta)
        pos = int(np.argmax(live))
        return int(live[pos]), pos, rng

    # -- segments ------------------------------------------------------------------------
    def producers(self) -> Dict[int, int]:
        return {t: n for n in self.order if n in self.forward
                for t in self.graph.nodes[n].outputs if t >= 0}

    def backward_readers(self) -> Dict[int, List[int]]:
        out: Dict[int, List[int]] = {}
        for pos, n in enumerate(self.order):
            if n in self.forward:
                continue
            for t in self.graph.nodes[n].inputs:
                if self.is_act(t):
                    out.setdefault(t, []).append(pos)
        return out

    def segment(self, t: int, producer: Dict[int, int],
                readers: Dict[int, List[int]]) -> Optional[List[int]]:
        """Forward nodes (forward order) recomputing ``t`` from tensors the backward keeps
        anyway; None when one of them may not be copied or there are too many."""
        need, seen, stack = [], set(), [t]
        while stack:
            x = stack.pop()
            n = producer.get(x)
            if n is None or n in seen:
                continue
            if x != t and x in readers and x not in self.recomputed:
                continue   # kept for the backward anyway
            nd = self.graph.nodes[n]
            if not _copyable(nd):
                return None
            seen.add(n)
            need.append(n)
            if len(need) > _MAX_SEGMENT:
                return None
            stack.extend(i for i in nd.inputs if self.is_act(i))
        pos = {n: i for i, n in enumerate(self.order)}
        return sorted(need, key=pos.__getitem__)

    def cost(self, seg: Sequence[int]) -> float:
        total = 0.0
        for n in seg:
            nd = self.graph.nodes[n]
            out = self.graph.tensors[nd.outputs[0]].numel
            if nd.op == "conv2d":
                w = self.graph.tensors[nd.inputs[1]]
                total += 2.0 * out * (w.numel // w.shape[0])
            elif nd.op == "maxpool2d":
                total += float(self.graph.tensors[nd.inputs[0]].numel)
            else:
                total += _ELEMENTWISE[nd.op] * out
        return total

    # -- the rewrite ----------------------------------------------------------------------
    def recompute(self, t: int, seg: Sequence[int], first_reader: int) -> None:
        """Copy ``seg`` (new output tensors) before the node at ``first_reader`` and rewire the
        backward's reads of ``t`` to its copy; the segment's inner tensors are forward-only."""
        g = self.graph
        remap: Dict[int, int] = {}
        new_nodes = []
        for n in seg:
            nd = g.nodes[n]
            outs = []
            for o in nd.outputs:
                if o < 0:
                    outs.append(o)
                    continue
                src = g.tensors[o]
                nt = g.add_tensor(f"{src.name}.recomputed" if src.name else "", src.dtype,
                                  ir.ACT, src.shape)
                remap[o] = nt.index
                outs.append(nt.index)
            ins = [remap.get(i, i) for i in nd.inputs]
            if nd.op == "batchnorm_train":   # the recompute form: no running statistics
                ins[3] = ins[4] = -1
            new_nodes.append(g.add_node(ir.Node(nd.op, ins, outs, list(nd.iattr),
                                                list(nd.fattr), nd.layer)))
        anchor = self.order[first_reader]
        for k in self.kinds:
            nodes = g.programs[k].nodes
            i = nodes.index(anchor)
            nodes[i:i] = new_nodes
        self.order[first_reader:first_reader] = new_nodes
        self.copies += new_nodes
        new_t = remap[t]
        for n in self.order[first_reader + len(new_nodes):]:
            if n in self.forward:
                continue
            nd = g.nodes[n]
            nd.inputs = [new_t if i == t else i for i in nd.inputs]
        self.recomputed[t] = new_t


def _copyable(nd: ir.Node) -> bool:
    if nd.op not in _RECOMPUTABLE:
        return False
    if nd.op == "batchnorm_train":
        freeze = ops.OP_BY_NAME["batchnorm_train"].attrs(nd).get("freeze_step", -1)
        return freeze < 0
    return not ops.OP_BY_NAME[nd.op].mutates


def _greedy(prog: _Program, target: int) -> bool:
    """Recompute saved tensors until the estimated peak is at most ``target``; False when no
    saved tensor alive at the peak can be recomputed."""
    while True:
        peak, pos, rng = prog.peak()
        if peak <= target:
            return True
        producer, readers = prog.producers(), prog.backward_readers()
        best = None
        for t, positions in readers.items():
            if t in prog.recomputed or t in prog.keep or t not in producer:
                continue
            a, _ = rng[t]
            first = positions[0]
            if not a <= pos < first:   # not alive across the peak, or read there
                continue
            seg = prog.segment(t, producer, readers)
            if seg is None:
                continue
            score = prog.nbytes(t) / max(prog.cost(seg), 1.0)
            if best is None or score > best[0]:
                best = (score, t, seg, first)
        if best is None:
            return False
        _, t, seg, first = best
        prog.recompute(t, seg, first)


def apply_budget(graph: ir.Graph, budget: int, n_forward: int) -> dict:
    """Rewrite ``graph``'s grad / train programs so their activation arena fits ``budget``
    bytes (``n_forward``: how many of their first nodes are the forward). Returns the plan
    (also stored as ``graph.meta["recompute"]``)."""
    budget = check_budget(budget)
    if ir.GRAD_PROGRAM not in graph.programs:
        raise InvalidArgumentError("memory_budget needs a training program (a loss)")
    before = measure_arena(graph)
    prog = _Program(graph, n_forward)
    arena, target = before, budget
    if before > budget:
        estimate = prog.peak()[0]
        target = budget - max(0, before - estimate)   # the planner's excess over the estimate
        for _ in range(_MAX_ROUNDS):
            progress = _greedy(prog, target)
            arena = measure_arena(graph)
            if arena <= budget or not progress:
                break
            target -= arena - budget
    plan = {"memory_budget": budget, "arena_unconstrained": before, "arena": arena,
            "recomputed_tensors": len(prog.recomputed),
            "recomputed_bytes": int(sum(prog.nbytes(t) for t in prog.recomputed)),
            "recompute_nodes": len(prog.copies)}
    graph.meta["recompute"] = plan
    if arena > budget:
        raise ResourceLimitError(
            f"memory_budget={budget:,} bytes cannot be met: recomputing {len(prog.recomputed)} "
            f"activations brings the activation arena from {before:,} to {arena:,} bytes, "
            f"the smallest the recompute planner reaches for this model; give memory_budget >= "
            f"{arena:,}")
    return plan
