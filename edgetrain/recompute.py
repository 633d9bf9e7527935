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

__all__ = ["AUTO", "apply_auto", "apply_budget", "check_budget"]

# Forward ops that may be copied, with their cost in operations per output element (conv2d and
# max pooling: computed from the weight / window below).
_ELEMENTWISE = {"act": 1.0, "add": 1.0, "sub": 1.0, "mul": 1.0, "affine": 1.0,
                "batchnorm_train": 4.0}   # two statistics passes, the affine, the copy
_RECOMPUTABLE = set(_ELEMENTWISE) | {"conv2d", "maxpool2d"}
_MAX_SEGMENT = 6   # nodes per segment
# memory_budget="auto" (the default of build_graph / from_module / `edgetrain train`): only
# BatchNorm and elementwise segments (never a convolution or a pooling), and only while their
# work stays within _AUTO_WORK of the training step's estimated work. MobileNetV2 32x32 b32:
# the saved activations 33.7 -> 17.2 MiB, 0.97x / 0.99x the step time at 1 / 2 threads
# (test_memory_budget_step; a smaller working set of saved activations costs fewer cache
# misses than the copies' work).
AUTO = "auto"
_AUTO_OPS = frozenset(_ELEMENTWISE)
_AUTO_WORK = 0.02
_MAX_ROUNDS = 8    # measure / re-target rounds


def check_budget(budget):
    """``budget`` as a byte count (an int >= 1) or :data:`AUTO`, else
    :class:`InvalidArgumentError`."""
    if isinstance(budget, str) and budget == AUTO:
        return AUTO
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise InvalidArgumentError(f"memory_budget must be a byte count (an int), \"auto\" or "
                                   f"None, got {budget!r}")
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
        self._numel: Dict[int, int] = {}
        self._pos: Optional[Dict[int, int]] = None
        self._acts = {td.index for td in graph.tensors if td.kind == ir.ACT}

    def numel(self, t: int) -> int:
        n = self._numel.get(t)
        if n is None:
            n = self._numel[t] = self.graph.tensors[t].numel
        return n

    def nbytes(self, t: int) -> int:
        td = self.graph.tensors[t]
        return self.numel(t) * np.dtype(ir.NUMPY_DTYPE[td.dtype]).itemsize

    def position(self) -> Dict[int, int]:
        """{node: its position in ``order``} (cached until the next rewrite)."""
        if self._pos is None:
            self._pos = {n: i for i, n in enumerate(self.order)}
        return self._pos

    def is_act(self, t: int) -> bool:
        return t in self._acts

    # -- liveness ------------------------------------------------------------------------
    def live_ranges(self) -> Dict[int, Tuple[int, int]]:
        """{activation: (first position, last position)} over ``order``."""
        first: Dict[int, int] = {}
        last: Dict[int, int] = {}
        acts, nodes = self._acts, self.graph.nodes
        for pos, n in enumerate(self.order):
            nd = nodes[n]
            for ts in (nd.outputs, nd.inputs):
                for t in ts:
                    if t in acts:
                        first.setdefault(t, pos)
                        last[t] = pos
        end = len(self.order)
        for t in self.keep:
            if t in last:
                last[t] = end
        return {t: (a, last[t]) for t, a in first.items()}

    def peak(self) -> Tuple[int, int, Dict[int, Tuple[int, int]]]:
        """(estimated peak bytes, its position, the live ranges)."""
        rng = self.live_ranges()
        ts = list(rng)
        ab = np.array([rng[t] for t in ts], np.int64).reshape(-1, 2)
        size = np.array([self.nbytes(t) for t in ts], np.int64)
        delta = np.zeros(len(self.order) + 2, np.int64)
        np.add.at(delta, ab[:, 0], size)
        np.add.at(delta, ab[:, 1] + 1, -size)
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

    def segment(self, t: int, producer: Dict[int, int], readers: Dict[int, List[int]],
                allowed=None) -> Optional[List[int]]:
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
            if not _copyable(nd, allowed):
                return None
            seen.add(n)
            need.append(n)
            if len(need) > _MAX_SEGMENT:
                return None
            stack.extend(i for i in nd.inputs if self.is_act(i))
        return sorted(need, key=self.position().__getitem__)

    def cost(self, seg: Sequence[int]) -> float:
        total = 0.0
        for n in seg:
            nd = self.graph.nodes[n]
            if not nd.outputs or nd.outputs[0] < 0:   # e.g. quant_observe: writes state only
                continue
            out = self.numel(nd.outputs[0])
            if nd.op == "conv2d":
                w = self.graph.tensors[nd.inputs[1]]
                total += 2.0 * out * (self.numel(nd.inputs[1]) // w.shape[0])
            elif nd.op == "maxpool2d":
                total += float(self.numel(nd.inputs[0]))
            elif nd.op == "matmul":   # the contracted length: a's last dim, or first if trans_a
                a = self.graph.tensors[nd.inputs[0]].shape
                k = a[-2] if nd.iattr and nd.iattr[0] and len(a) > 1 else a[-1]
                total += 2.0 * out * k
            else:
                total += _ELEMENTWISE.get(nd.op, 1.0) * out
        return total

    def step_work(self) -> float:
        """Estimated operations of one training step: three times the forward's (the
        backward computes about two products per forward product)."""
        return 3.0 * self.cost([n for n in self.order if n in self.forward])

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
                self._acts.add(nt.index)
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
        self._pos = None
        self.copies += new_nodes
        # Every output of the copies, not only t: the later backward readers of a node's other
        # outputs (batchnorm_train's saved mean and inverse std beside y) read the copy too.
        # Rewired one tensor at a time, each of them later cost a copy of the whole node of
        # its own, for a few hundred bytes (MobileNetV2: 114 copies for 99 tensors, BatchNorm
        # computed three times per step). The original's live range only gets shorter.
        later = [g.nodes[n] for n in self.order[first_reader + len(new_nodes):]
                 if n not in self.forward]
        read = {i for nd in later for i in nd.inputs}
        rewire = {o: new_o for o, new_o in remap.items() if o == t or o in read}
        for nd in later:
            nd.inputs = [rewire.get(i, i) for i in nd.inputs]
        self.recomputed.update(rewire)


def _copyable(nd: ir.Node, allowed=None) -> bool:
    if nd.op not in (_RECOMPUTABLE if allowed is None else allowed):
        return False
    if nd.op == "batchnorm_train":
        freeze = ops.OP_BY_NAME["batchnorm_train"].attrs(nd).get("freeze_step", -1)
        return freeze < 0
    return not ops.OP_BY_NAME[nd.op].mutates


def _best_candidate(prog: _Program, pos: int, rng, allowed=None):
    """(score, tensor, segment, first backward reader) of the saved tensor alive across the
    estimated peak at ``pos`` (``rng``: the live ranges) that frees the most bytes per recompute
    operation with a segment of ``allowed`` ops; None when there is none."""
    producer, readers = prog.producers(), prog.backward_readers()
    best = None
    for t, positions in readers.items():
        if t in prog.recomputed or t in prog.keep or t not in producer:
            continue
        a, _ = rng[t]
        first = positions[0]
        if not a <= pos < first:   # not alive across the peak, or read there
            continue
        seg = prog.segment(t, producer, readers, allowed)
        if seg is None:
            continue
        score = prog.nbytes(t) / max(prog.cost(seg), 1.0)
        if best is None or score > best[0]:
            best = (score, t, seg, first)
    return best


def _greedy(prog: _Program, target: int, allowed=None, work: Optional[float] = None) -> bool:
    """Recompute saved tensors until the estimated peak is at most ``target``; False when no
    saved tensor alive at the peak can be recomputed (from ``allowed`` ops, within ``work``
    operations in all when given)."""
    while True:
        peak, pos, rng = prog.peak()
        if peak <= target:
            return True
        best = _best_candidate(prog, pos, rng, allowed)
        if best is None:
            return False
        _, t, seg, first = best
        if work is not None:
            work -= prog.cost(seg)
            if work < 0:
                return False
        prog.recompute(t, seg, first)


def apply_auto(graph: ir.Graph, n_forward: int) -> Optional[dict]:
    """``memory_budget="auto"``: recompute the BatchNorm / elementwise segments saved across
    the estimated peak, the most bytes per operation first, while their work stays within
    ``_AUTO_WORK`` of the step's and the peak still drops. Returns the plan, or None when
    nothing is worth recomputing; its ``arena_unconstrained`` / ``arena`` / ``memory_budget``
    are the liveness estimates of the training programs' peak before / after (``auto`` = 1)."""
    if ir.GRAD_PROGRAM not in graph.programs:
        return None
    prog = _Program(graph, n_forward)
    before, pos, rng = prog.peak()
    if _best_candidate(prog, pos, rng, _AUTO_OPS) is None:
        return None
    # No measure_arena here: loading a second session would add the parameters' and
    # gradients' bytes to the process's peak while the model is still alive. The liveness
    # estimate matches the runtime's planner to within a few KiB (tests/test_recompute.py).
    undo = _snapshot(graph)
    _greedy(prog, 0, _AUTO_OPS, _AUTO_WORK * prog.step_work())
    arena = prog.peak()[0]
    if arena >= before:   # nothing gained: keep the graph as it was
        _restore(graph, undo)
        return None
    plan = {"memory_budget": arena, "auto": 1, "arena_unconstrained": before, "arena": arena,
            "recomputed_tensors": len(prog.recomputed),
            "recomputed_bytes": int(sum(prog.nbytes(t) for t in prog.recomputed)),
            "recompute_nodes": len(prog.copies)}
    graph.meta["recompute"] = plan
    return plan


def _snapshot(graph: ir.Graph):
    return (len(graph.tensors), len(graph.nodes),
            {k: list(p.nodes) for k, p in graph.programs.items()},
            [list(nd.inputs) for nd in graph.nodes])


def _restore(graph: ir.Graph, snap) -> None:
    n_tensors, n_nodes, programs, inputs = snap
    del graph.tensors[n_tensors:]
    del graph.nodes[n_nodes:]
    for k, nodes in programs.items():
        graph.programs[k].nodes[:] = nodes
    for nd, ins in zip(graph.nodes, inputs):
        nd.inputs = ins


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
