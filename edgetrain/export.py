"""Export: turn a Module (+ loss, optimizer, schedule) into an :class:`ir.Graph`.

:func:`build_graph` traces the model twice — in eval mode for the EVAL program and in train
mode (batch-statistics BatchNorm, active dropout) for the GRAD program (forward + loss +
backward) — and appends optimizer updates for the TRAIN program. Parameters and buffers are
tensors shared by all programs. :func:`inference_graph` makes a deployable eval-only graph
with BatchNorm folded into convolutions; :func:`graph_summary` prints a graph.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import autodiff, ir, ops, tracing
from .errors import NotDifferentiableError, ShapeError
from .nn.module import Module

__all__ = ["build_graph", "inference_graph", "graph_summary", "NotDifferentiableError",
           "ShapeError"]

_INT_DTYPES = {"int64", "int32", "i64", "i32", "long", "int"}
_FLOAT_DTYPES = {"float32", "float64", "f32", "float", "double"}


def _label_dtype(name: str, dtype) -> str:
    key = np.dtype(dtype).name if not isinstance(dtype, str) else dtype.lower()
    if key in _INT_DTYPES:
        return ir.I32
    if key in _FLOAT_DTYPES:
        return ir.F32
    raise ValueError(f"label {name!r}: dtype must be int64 (class indices) or float32, "
                     f"got {dtype!r}")


# Largest batch accepted without an explicit Resize when the batch is left open (None) and
# no max_batch is given.
DEFAULT_MAX_BATCH = 1024


def _shape(name: str, shape, batch: Optional[int] = None) -> Tuple[int, ...]:
    """A shape of ints; an open batch (None as dim 0) becomes ``batch``."""
    try:
        shape = tuple(shape)
        if shape and shape[0] is None and batch is not None:
            shape = (batch,) + shape[1:]
        shape = tuple(int(d) for d in shape)
    except TypeError:
        raise ValueError(f"{name!r}: shape must be a tuple of ints (None allowed as the batch, "
                         f"dim 0), got {shape!r}") from None
    if any(d < 1 for d in shape) or len(shape) > ir.MAX_DIMS:
        raise ValueError(f"{name!r}: invalid shape {shape}")
    return shape


def _input_spec(name: str, spec) -> Tuple[Sequence, str]:
    """``(shape, dtype)`` of a data input: a shape (float32), or ``(shape, "int64")`` for
    integer data (e.g. Embedding indices; i32 inside the program, as labels)."""
    if (isinstance(spec, (tuple, list)) and len(spec) == 2
            and isinstance(spec[0], (tuple, list)) and not isinstance(spec[1], (int, type(None)))):
        return spec[0], _label_dtype(name, spec[1])
    return spec, ir.F32


def _plan_batch(inputs: Mapping, labels: Mapping, max_batch: Optional[int]):
    """(batch planned for an open batch dim, max_batch stored in the file)."""
    shapes = ([_input_spec(k, v)[0] for k, v in inputs.items()]
              + [spec[0] for spec in labels.values()])
    open_batch = any(len(tuple(s)) and tuple(s)[0] is None for s in shapes)
    if max_batch is not None and (int(max_batch) != max_batch or max_batch < 1
                                  or max_batch > 0xFFFFFFFF):
        raise ValueError(f"max_batch must be an integer in 1..2^32-1, got {max_batch!r}")
    fixed = [int(tuple(s)[0]) for s in shapes if len(tuple(s)) and tuple(s)[0] is not None]
    if max_batch is not None and fixed and max(fixed) > max_batch:
        raise ValueError(f"max_batch={max_batch} is smaller than the batch {max(fixed)} of the "
                         "inputs")
    if open_batch:  # planned at the batch of the fixed shapes, else 1
        return (max(fixed) if fixed else 1,
                int(max_batch) if max_batch is not None else max(DEFAULT_MAX_BATCH, *fixed, 1))
    return None, int(max_batch) if max_batch is not None else 0


def _named_outputs(out, what: str) -> "OrderedDict[str, tracing.Tensor]":
    """The outputs of ``forward`` by name: one tensor is "output"; a tuple or list gives
    "output0", "output1", ...; a dict keeps its keys."""
    if isinstance(out, (tuple, list)) and len(out) == 1:
        out = out[0]
    if isinstance(out, dict):
        named = OrderedDict((str(k), v) for k, v in out.items())
    elif isinstance(out, (tuple, list)):
        named = OrderedDict((f"output{i}", v) for i, v in enumerate(out))
    else:
        named = OrderedDict(output=out)
    if not named:
        raise ValueError(f"{what} returned no tensor")
    for k, v in named.items():
        if not isinstance(v, tracing.Tensor):
            raise TypeError(f"{what} must return traced tensors (one, a tuple or a dict); "
                            f"{k!r} is a {type(v).__name__}")
    if "loss" in named:
        raise ValueError(f"{what}: an output may not be named 'loss' (the loss's name)")
    return named


def _loss_target(named: Mapping[str, "tracing.Tensor"], output) -> str:
    """Name of the output the loss is applied to (``output``: a name or an index)."""
    names = list(named)
    if output is None:
        if len(names) == 1:
            return names[0]
        raise ValueError(f"the model returns {len(names)} outputs {names}; name the one the loss "
                         "applies to with output=<name or index>")
    if isinstance(output, int) and not isinstance(output, bool):
        if not -len(names) <= output < len(names):
            raise ValueError(f"output={output} is out of range for the outputs {names}")
        return names[output]
    if output not in named:
        raise ValueError(f"output={output!r} is not one of the model's outputs {names}")
    return output


def _register(names: Dict, paths: Dict, module: Module, prefix: str) -> None:
    for n, p in module.named_parameters(prefix=prefix):
        names.setdefault(id(p), (n, p))
    for n, b in module.named_buffers(prefix=prefix):
        names.setdefault(id(b), (n, b))
    for n, m in module.named_modules(prefix=prefix):
        paths.setdefault(id(m), n)


def _single_output(out, what: str):
    if isinstance(out, (tuple, list)):
        if len(out) != 1:
            raise ValueError(f"{what} must return one tensor, got {len(out)}")
        out = out[0]
    if not isinstance(out, tracing.Tensor):
        raise TypeError(f"{what} must return a traced tensor, got {type(out).__name__}")
    return out


def _materialise(tracer: tracing.Tracer, t: tracing.Tensor) -> tracing.Tensor:
    """Program outputs must be activations: copy inputs/params/consts through affine."""
    if t._def.kind != ir.ACT:
        return tracer.emit1("affine", [t], alpha=1.0, beta=0.0)
    return t


def _program_inputs(graph: ir.Graph, nodes: Sequence[int]) -> List[int]:
    used = {t for n in nodes for t in graph.nodes[n].inputs if t >= 0}
    return sorted(t for t in used if graph.tensors[t].kind == ir.INPUT)


def build_graph(model: Module, inputs: Mapping[str, Sequence[int]], loss=None,
                labels: Optional[Mapping[str, Tuple[Sequence[int], str]]] = None,
                optimizer=None, scheduler=None, max_batch: Optional[int] = None,
                output=None, teacher: Optional[Module] = None,
                memory_budget="auto") -> ir.Graph:
    """Trace ``model`` into a graph with EVAL, and with ``loss`` GRAD (and with
    ``optimizer`` TRAIN) programs.

    ``inputs`` maps input names to shapes (float32, passed to ``forward`` in order; ``(shape,
    "int64")`` for integer data such as Embedding indices, i32 in the program);
    ``labels`` maps label names to ``(shape, dtype)`` (``"int64"`` class indices become i32
    inputs, ``"float32"`` targets f32); ``loss`` is called as ``loss(output, *labels)`` and
    must return a scalar.

    The batch (dim 0) may be left open with ``None``: the file is planned at batch 1 and
    accepts any batch up to ``max_batch`` (default :data:`DEFAULT_MAX_BATCH`). With fixed
    shapes ``max_batch`` raises the limit above the planned batch (smaller batches are always
    accepted). A ``forward`` that returns a tuple or dict gives one program output per entry
    ("output0", "output1", ... or the dict keys); ``output`` (a name or index) says which one
    the loss is applied to.

    ``memory_budget`` (bytes) bounds the activation arena of the training programs: when the
    plan exceeds it, cheap forward segments are recomputed in the backward instead of kept
    (:mod:`edgetrain.recompute`; the same bits, more time); the plan is
    ``graph.meta["recompute"]``. A budget no recomputation reaches raises ResourceLimitError.
    The default ``"auto"`` recomputes only BatchNorm / elementwise segments, within 2 % of the
    step's work (:func:`edgetrain.recompute.apply_auto`); ``None`` keeps every activation.

    With a ``teacher`` module (distillation), the loss is called as
    ``loss(output, teacher_output, *labels)``: the teacher runs forward only, in eval form,
    on the same inputs inside the GRAD/TRAIN programs; its parameters and buffers are CONST
    tensors named ``teacher.<name>`` (stored once, no gradient, never updated). The EVAL
    program, inference-only saves and exports hold the student only.
    """
    _check_build_args(model, loss, optimizer, scheduler)
    if memory_budget is not None:
        from .recompute import AUTO, check_budget
        memory_budget = check_budget(memory_budget)
        if loss is None and memory_budget != AUTO:
            raise ValueError("memory_budget needs a loss (it bounds the training programs)")
    _check_teacher(model, loss, teacher)
    labels = dict(labels or {})
    planned_batch, stored_max_batch = _plan_batch(inputs, labels, max_batch)
    graph = ir.Graph()
    graph.state.max_batch = stored_max_batch
    ctx = _TraceContext(graph, model, loss, teacher)
    in_tensors, label_tensors = _add_inputs(ctx, inputs, labels, planned_batch)
    modes = [(m, m.training) for m in model.modules()]
    modes += [(m, m.training) for m in (teacher.modules() if teacher is not None else ())]
    try:
        _eval_program(ctx, model, in_tensors)
        if loss is not None:
            grad_nodes, outs, param_grads = _grad_program(ctx, model, loss, output, in_tensors,
                                                          label_tensors)
            if optimizer is not None:
                _train_program(ctx, optimizer, scheduler, grad_nodes, outs, param_grads)
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    _drop_unused_nodes(graph)
    plan = None
    if memory_budget is not None and loss is not None:
        from .recompute import AUTO, apply_auto, apply_budget
        plan = (apply_auto(graph, ctx.n_forward) if memory_budget == AUTO
                else apply_budget(graph, memory_budget, ctx.n_forward))
    graph.meta = _graph_meta(model, loss, optimizer, scheduler, in_tensors, label_tensors,
                             stored_max_batch)
    if plan is not None:
        graph.meta["recompute"] = plan
    if teacher is not None:
        graph.meta["teacher"] = type(teacher).__name__
    return graph


def _check_build_args(model, loss, optimizer, scheduler) -> None:
    if not isinstance(model, Module):
        raise TypeError(f"model must be an edgetrain.nn.Module, got {type(model).__name__}")
    if optimizer is not None and loss is None:
        raise ValueError("an optimizer needs a loss")
    if scheduler is not None and optimizer is None:
        raise ValueError("a scheduler needs an optimizer")
    if scheduler is not None and scheduler.optimizer is not optimizer:
        raise ValueError("the scheduler belongs to another optimizer")


class _TraceContext:
    """What the traces of one graph share: the graph, the names of parameters and buffers
    (model first, then a Module loss under "loss", then a distillation teacher under
    "teacher", whose holders are constants), module paths, and the tracer's holders and
    random-stream counter."""

    def __init__(self, graph: ir.Graph, model: Module, loss, teacher=None) -> None:
        self.graph = graph
        self.names: Dict[int, Tuple[str, object]] = {}
        self.paths: Dict[int, str] = {}
        self.holders: Dict[int, int] = {}
        self.streams = [0]
        self.teacher = teacher
        self.constants: set = set()
        self.n_forward = 0   # forward nodes at the start of the grad / train programs
        _register(self.names, self.paths, model, "")
        if isinstance(loss, Module):
            _register(self.names, self.paths, loss, "loss")
        if teacher is not None:
            before = set(self.names)
            _register(self.names, self.paths, teacher, "teacher")
            self.constants = set(self.names) - before

    def tracer(self) -> tracing.Tracer:
        return tracing.Tracer(self.graph, self.names, self.paths, self.holders, self.streams,
                              self.constants)


def _add_inputs(ctx: _TraceContext, inputs: Mapping, labels: Mapping, planned_batch):
    """The INPUT tensors of the data inputs (f32) and of the labels, names checked unique."""
    used_names = {n for n, _ in ctx.names.values()}

    def claim(name, clash: str) -> None:
        if name in used_names:
            raise ValueError(f"{clash} name {name!r} clashes with "
                             + ("a parameter/buffer name" if clash == "input" else "another name"))
        used_names.add(name)

    def add(name, dtype, shape):
        return ctx.graph.add_tensor(name, dtype, ir.INPUT, _shape(name, shape, planned_batch))

    in_tensors, label_tensors = [], []
    for name, spec in inputs.items():
        claim(name, "input")
        shape, dtype = _input_spec(name, spec)
        in_tensors.append(add(name, dtype, shape))
    for name, spec in labels.items():
        claim(name, "label")
        shape, dtype = spec
        label_tensors.append(add(name, _label_dtype(name, dtype), shape))
    return in_tensors, label_tensors


def _eval_program(ctx: _TraceContext, model: Module, in_tensors) -> None:
    """Trace ``model`` in eval mode into the EVAL program."""
    model.eval()
    tr = ctx.tracer()
    with tr.activate():
        outs = _named_outputs(model(*[tr.wrap(t.index) for t in in_tensors]), "forward")
        outs = {k: _materialise(tr, v).index for k, v in outs.items()}
    nodes = tr.nodes
    if any(ctx.graph.nodes[n].op == "quantize" for n in nodes):   # a QAT model's int8 path
        from .quant import integer_chains
        nodes = integer_chains(ctx.graph, nodes, list(outs.values()))
    keep = list(outs.values())
    if FUSE_CONV_BATCHNORM:
        nodes = fuse_conv_batchnorm(ctx.graph.nodes, nodes, keep)
    _add_program(ctx.graph, ir.EVAL, fold_conv_activations(ctx.graph.nodes, nodes, keep), outs)


def _trace_loss(ctx: _TraceContext, model: Module, loss, output, in_tensors, label_tensors):
    """Trace ``model`` in train mode and ``loss`` on its chosen output: (tracer, the named
    outputs, the scalar loss tensor)."""
    model.train()
    tr = ctx.tracer()
    with tr.activate():
        named = _named_outputs(model(*[tr.wrap(t.index) for t in in_tensors]), "forward")
        named = OrderedDict((k, _materialise(tr, v)) for k, v in named.items())
        out = named[_loss_target(named, output)]
        extra = [_teacher_output(ctx, tr, in_tensors, output)] if ctx.teacher is not None else []
        with tr.scope(name="loss"):
            value = loss(out, *extra, *[tr.wrap(t.index) for t in label_tensors])
        value = _single_output(value, "the loss")
        if tuple(value.shape) != ():
            raise ShapeError(f"the loss must be a scalar, got shape {tuple(value.shape)}")
        value = _materialise(tr, value)
    return tr, named, value


def _check_teacher(model, loss, teacher) -> None:
    if teacher is None:
        return
    if not isinstance(teacher, Module):
        raise TypeError(f"teacher must be an edgetrain.nn.Module, got {type(teacher).__name__}")
    if teacher is model:
        raise ValueError("the teacher must be another module than the model it teaches")
    if loss is None:
        raise ValueError("a teacher needs a loss taking (output, teacher_output, *labels), "
                         "e.g. nn.DistillLoss(temperature, alpha)")
    shared = {id(p) for p in model.parameters()} & {id(p) for p in teacher.parameters()}
    if shared:
        raise ValueError(f"the teacher shares {len(shared)} parameter(s) with the model; "
                         "distil from a separate copy")


def _teacher_output(ctx: _TraceContext, tr: tracing.Tracer, in_tensors, output):
    """The teacher's forward (eval form, constants only) on the program's inputs."""
    ctx.teacher.eval()
    with tr.scope(name="teacher"):
        named = _named_outputs(ctx.teacher(*[tr.wrap(t.index) for t in in_tensors]),
                               "the teacher's forward")
        return named[_loss_target(named, output)]


def _grad_program(ctx: _TraceContext, model: Module, loss, output, in_tensors, label_tensors):
    """The GRAD program (forward + loss + backward): (its nodes, its outputs, {param: grad})."""
    tr, named, value = _trace_loss(ctx, model, loss, output, in_tensors, label_tensors)
    graph = ctx.graph
    outs = OrderedDict([("loss", value.index)] + [(k, v.index) for k, v in named.items()])
    keep = list(outs.values())
    fwd_nodes = fold_conv_activations(graph.nodes, tr.nodes, keep)
    if FUSE_BATCHNORM_ACT:
        fwd_nodes = fuse_batchnorm_activations(graph.nodes, fwd_nodes, keep)
    ctx.n_forward = len(fwd_nodes)
    bwd_nodes, param_grads = autodiff.backward(graph, value.index, fwd_nodes)
    if FUSE_MAXPOOL_ACT_BWD:
        bwd_nodes = fuse_maxpool_act_bwd(graph, bwd_nodes, keep)
    bwd_nodes = mask_before_maxpool_bwd(graph, fwd_nodes, bwd_nodes, keep)
    grad_nodes = fwd_nodes + bwd_nodes
    _add_program(graph, ir.GRAD_PROGRAM, grad_nodes, outs)
    return grad_nodes, outs, param_grads


def _train_program(ctx: _TraceContext, optimizer, scheduler, grad_nodes, outs,
                   param_grads) -> None:
    """The TRAIN program: the GRAD program's nodes followed by the optimizer's updates."""
    graph = ctx.graph
    optimizer.configure(graph.state)
    by_index = {ctx.holders[k]: holder for k, (_, holder) in ctx.names.items()
                if k in ctx.holders}
    items = [(graph.tensors[p_idx], graph.tensors[g_idx], by_index.get(p_idx))
             for p_idx, g_idx in param_grads.items()]
    update_nodes, step_outs = optimizer.emit_step(graph, items)
    _add_program(graph, ir.TRAIN, grad_nodes + update_nodes, {**outs, **step_outs})
    if scheduler is not None:
        scheduler.configure(graph.state)


def _graph_meta(model, loss, optimizer, scheduler, in_tensors, label_tensors,
                stored_max_batch) -> dict:
    """The META section: what was exported, for tools."""
    meta = {
        "model": type(model).__name__,
        "inputs": {t.name: list(t.shape) for t in in_tensors},
        "labels": {t.name: [list(t.shape), t.dtype] for t in label_tensors},
        "loss": type(loss).__name__ if loss is not None else None,
        "optimizer": type(optimizer).__name__ if optimizer is not None else None,
        "scheduler": type(scheduler).__name__ if scheduler is not None else None,
    }
    if stored_max_batch:
        meta["max_batch"] = stored_max_batch
    return meta


# Activations a conv2d can apply itself and whose derivative autodiff reads from the output.
_FOLDABLE_ACTS = (ops.ACT_RELU, ops.ACT_RELU6)


def _producers_and_readers(nodes: Sequence[ir.Node], node_ids: List[int]):
    """{tensor: node that writes it} and {tensor: number of reads} over node_ids."""
    producer: Dict[int, int] = {}
    readers: Dict[int, int] = {}
    for n in node_ids:
        nd = nodes[n]
        for t in nd.outputs:
            producer[t] = n
        for t in nd.inputs:
            readers[t] = readers.get(t, 0) + 1
    return producer, readers


# Eval programs fuse conv2d -> batchnorm_infer into one conv2d (then the act, as for any conv);
# a switch so tests can build the unfused program and compare the bits.
FUSE_CONV_BATCHNORM = True


def fuse_conv_batchnorm(nodes: Sequence[ir.Node], node_ids: List[int],
                        keep: Sequence[int]) -> List[int]:
    """Fuse a ``batchnorm_infer`` into the ``conv2d`` (no fused act, no BatchNorm yet) whose
    output only it reads (and that is not in ``keep``): the conv takes the BatchNorm's inputs
    as bn_weight / bn_bias / bn_mean / bn_var and its eps as bn_eps, and writes the BatchNorm's
    output. The kernels' epilogue (et_conv_epilogue_) computes the separate ops' bits. Only for
    eval programs: the backward of such a conv is an error. Returns the new node list."""
    conv_def = ops.OP_BY_NAME["conv2d"]
    act_pos = conv_def.iattrs.index("act")
    producer, readers = _producers_and_readers(nodes, node_ids)
    dropped = set()
    for n in node_ids:
        bn = nodes[n]
        if bn.op != "batchnorm_infer":
            continue
        x = bn.inputs[0]
        conv = nodes[producer[x]] if x in producer else None
        if conv is None or conv.op != "conv2d" or conv.iattr[act_pos] != ops.ACT_NONE or \
                any(t >= 0 for t in conv.inputs[3:]) or readers.get(x) != 1 or x in keep:
            continue
        ins = list(conv.inputs[:3]) + [-1] * (3 - len(conv.inputs[:3]))
        conv.inputs = ins + list(bn.inputs[1:5])
        conv.fattr = [conv.fattr[0] if conv.fattr else 0.0, bn.fattr[0]]
        conv.outputs = list(bn.outputs)
        producer[bn.outputs[0]] = producer[x]
        dropped.add(n)
    return [n for n in node_ids if n not in dropped]


def fold_conv_activations(nodes: Sequence[ir.Node], node_ids: List[int],
                          keep: Sequence[int]) -> List[int]:
    """Fuse ``act`` (relu / relu6) into the ``conv2d`` that feeds it when nothing else reads the
    conv's output (nor is it in ``keep``, the program's outputs): the conv writes the activated
    result into the act's output tensor and the act node leaves the program. The result is
    bitwise the same (the conv kernel applies the same activation after the bias), and the
    backward reads the activation's derivative from its output (relu: y > 0 exactly when
    x > 0; relu6: 0 < y < 6 exactly when 0 < x < 6), as autodiff already does for a conv with
    a fused activation. Returns the program's new node list; the dropped act node stays in
    ``nodes`` (e.g. ``graph.nodes``) until build_graph drops the nodes no program runs."""
    act_pos = ops.OP_BY_NAME["conv2d"].iattrs.index("act")

    def fold(conv, act):
        if conv.iattr[act_pos] != ops.ACT_NONE:
            return False
        conv.iattr[act_pos] = act.iattr[0]
        conv.fattr[0] = act.fattr[0]
        conv.outputs = list(act.outputs)
        return True
    return _fold_activations(nodes, node_ids, keep, "conv2d", fold)


def _fold_activations(nodes: Sequence[ir.Node], node_ids: List[int], keep: Sequence[int],
                      op: str, fold) -> List[int]:
    """The scan both activation fusions share: each relu / relu6 ``act`` whose input only it
    reads (and is not in ``keep``) and comes from an ``op`` node is offered to
    ``fold(producer, act)``, which rewrites the producer to write the act's output and returns
    True, or returns False to leave the pair alone. Returns the node list without the folded
    act nodes."""
    producer, readers = _producers_and_readers(nodes, node_ids)
    dropped = set()
    for n in node_ids:
        nd = nodes[n]
        if nd.op != "act" or nd.iattr[0] not in _FOLDABLE_ACTS:
            continue
        x = nd.inputs[0]
        p = nodes[producer[x]] if x in producer else None
        if p is None or p.op != op or readers.get(x) != 1 or x in keep or not fold(p, nd):
            continue
        producer[nd.outputs[0]] = producer[x]
        dropped.add(n)
    return [n for n in node_ids if n not in dropped]


# Training programs fuse batchnorm_train -> act (relu / relu6) into one batchnorm_train; a
# switch so tests and benchmarks can build the unfused program and compare the bits.
FUSE_BATCHNORM_ACT = True


def fuse_batchnorm_activations(nodes: Sequence[ir.Node], node_ids: List[int],
                               keep: Sequence[int]) -> List[int]:
    """Fuse an ``act`` (relu / relu6) into the ``batchnorm_train`` whose output only it reads
    (and that is not in ``keep``): the BatchNorm takes the act's kind as its ``act`` / ``alpha``
    attributes and writes the act's output; the BatchNorm output tensor is no longer computed.
    Its backward (ops._bw_bn_train) is one ``batchnorm_bwd`` that reads the activated output
    and masks dy from it as act_bwd would (relu: y > 0, relu6: 0 < y < 6) inside its sums and
    its dx pass. The kernels compute the separate ops' bits, forward and backward. BatchNorms
    with ``freeze_step`` (QAT's frozen statistics) are left alone. Returns the new node list;
    the dropped act node stays in ``nodes`` until build_graph drops the nodes no program runs."""
    bn_def = ops.OP_BY_NAME["batchnorm_train"]

    def fold(bn, act):
        a = bn_def.attrs(bn)
        if a.get("freeze_step", -1) >= 0 or a.get("act", ops.ACT_NONE) != ops.ACT_NONE:
            return False
        bn.iattr, bn.fattr = bn_def.pack_attrs({**a, "act": act.iattr[0], "alpha": act.fattr[0]})
        bn.outputs = [act.outputs[0]] + list(bn.outputs[1:])
        return True
    return _fold_activations(nodes, node_ids, keep, "batchnorm_train", fold)


_MAXPOOL_BWD_IATTRS = ops.OP_BY_NAME["maxpool2d_bwd"].iattrs


def _act_bwd_after_maxpool_bwd(graph: ir.Graph, scan: List[int], bwd_nodes: List[int],
                               keep: Sequence[int]):
    """Yields (act_bwd node, maxpool2d_bwd node) for each relu / relu6 ``act_bwd`` in
    ``bwd_nodes`` whose gradient input is the output of a ``maxpool2d_bwd`` over the same
    activation ``y`` (``act_bwd(maxpool2d_bwd(g, y), y)``), read by nothing else (producers and
    readers counted over ``scan``) and not in ``keep``. Lazy: the caller may rewrite a pair
    before the next is looked for."""
    producer, readers = _producers_and_readers(graph.nodes, scan)
    for n in bwd_nodes:
        act = graph.nodes[n]
        if act.op != "act_bwd" or act.iattr[0] not in _FOLDABLE_ACTS:
            continue
        d_full, y = act.inputs
        pn = producer.get(d_full)
        if pn is None or readers.get(d_full) != 1 or d_full in keep:
            continue
        pool_bwd = graph.nodes[pn]
        if pool_bwd.op == "maxpool2d_bwd" and pool_bwd.inputs[1] == y:
            yield n, pn


# Training programs fuse act_bwd (relu / relu6) after a maxpool2d_bwd into the pool's backward;
# a switch so tests and benchmarks can build the unfused program and compare the bits.
FUSE_MAXPOOL_ACT_BWD = True


def fuse_maxpool_act_bwd(graph: ir.Graph, bwd_nodes: List[int], keep: List[int]) -> List[int]:
    """Fuse ``act_bwd(maxpool2d_bwd(g, y), y)`` (relu / relu6) into one ``maxpool2d_bwd`` with
    ``act``: the kernel drops a window's gradient when the act's derivative at the winning value
    is 0 (see mask_before_maxpool_bwd for why the winner's test is every cell's), the same bits
    without the act_bwd pass and its tensor. The fused node writes the act_bwd's output; the
    act_bwd node stays in ``graph.nodes`` until build_graph drops the nodes no program runs.
    Returns the new backward node list."""
    dropped = set()
    for n, pn in _act_bwd_after_maxpool_bwd(graph, bwd_nodes, bwd_nodes, keep):
        act, pool_bwd = graph.nodes[n], graph.nodes[pn]
        if len(pool_bwd.iattr) != len(_MAXPOOL_BWD_IATTRS) - 1:
            continue  # already carries an act
        pool_bwd.iattr = list(pool_bwd.iattr) + [act.iattr[0]]
        pool_bwd.outputs = list(act.outputs)
        dropped.add(n)
    return [n for n in bwd_nodes if n not in dropped]


def mask_before_maxpool_bwd(graph: ir.Graph, fwd_nodes: List[int], bwd_nodes: List[int],
                            keep: List[int]) -> List[int]:
    """For relu / relu6 followed by a max pool, apply the activation's derivative to the pooled
    gradient (4x smaller for a 2x2 pool) instead of the unpooled one:

        act_bwd(maxpool2d_bwd(g, y), y)  ->  maxpool2d_bwd(act_bwd(g, pool(y)), y)

    The max pool's backward copies each window's gradient to its winning cell and writes +0
    elsewhere, and the winner's value is the window's output pool(y), so the derivative mask
    read from pool(y) is the one read from y at every cell that receives a gradient: the same
    bits. Returns the new backward node list (the two nodes swap places)."""
    pooled = {}  # (input tensor, attrs) -> output of the forward maxpool2d
    for n in fwd_nodes:
        nd = graph.nodes[n]
        if nd.op == "maxpool2d":
            pooled[(nd.inputs[0], tuple(nd.iattr))] = nd.outputs[0]
    order = list(bwd_nodes)
    for n, pn in _act_bwd_after_maxpool_bwd(graph, fwd_nodes + bwd_nodes, bwd_nodes, keep):
        act, pool_bwd = graph.nodes[n], graph.nodes[pn]
        if pn not in order:
            continue
        y = act.inputs[1]
        y_pool = pooled.get((y, tuple(pool_bwd.iattr)))
        if y_pool is None:
            continue
        g = pool_bwd.inputs[0]
        masked = graph.add_tensor("", ir.F32, ir.ACT, graph.tensors[g].shape).index
        act.inputs = [g, y_pool]
        act.outputs, pool_bwd.outputs = [masked], list(act.outputs)
        pool_bwd.inputs = [masked, y]
        i, j = order.index(pn), order.index(n)
        order[i], order[j] = n, pn
    return order


def _drop_unused_nodes(graph: ir.Graph) -> None:
    """Remove nodes no program runs (activations folded away), renumbering the programs."""
    used = sorted({n for p in graph.programs.values() for n in p.nodes})
    if len(used) == len(graph.nodes):
        return
    remap = {old: new for new, old in enumerate(used)}
    graph.nodes = [graph.nodes[n] for n in used]
    for p in graph.programs.values():
        p.nodes = [remap[n] for n in p.nodes]


def _add_program(graph: ir.Graph, kind: int, nodes: List[int], outputs: Dict[str, int]):
    for t in outputs.values():
        graph.tensors[t].is_output = True
    graph.programs[kind] = ir.Program(kind, list(nodes), _program_inputs(graph, nodes),
                                      dict(outputs))


# =====================================================================================
# Inference graph: eval program only, BatchNorm folded into convolutions
# =====================================================================================
def inference_graph(graph: ir.Graph, fold_activations: bool = True) -> ir.Graph:
    """A new graph with only the EVAL program and the tensors it uses.

    ``batchnorm_infer`` is folded into the preceding ``conv2d`` when the conv output has no
    other consumer (weights recomputed in float64 from ``graph.tensors[i].data``); with
    ``fold_activations`` a following relu/relu6 is fused into the conv's ``act`` attribute.
    """
    prog = graph.programs.get(ir.EVAL)
    if prog is None:
        raise ValueError("the graph has no eval program")
    nodes = [_copy_node(graph.nodes[n]) for n in prog.nodes]
    outputs = set(prog.outputs.values())
    extra: List[ir.TensorDef] = []  # new tensors, indices >= len(graph.tensors)

    def consumers(t: int) -> List[int]:
        return [i for i, nd in enumerate(nodes) if nd is not None and t in nd.inputs]

    def tensor(i: int) -> ir.TensorDef:
        return graph.tensors[i] if i < len(graph.tensors) else extra[i - len(graph.tensors)]

    def fold_into_weights(conv: ir.Node, bn_inputs: List[int], eps: float) -> bool:
        """conv's weights and bias times the BatchNorm (gamma, beta, mean, var) in float64."""
        w_idx, b_idx = conv.inputs[1], conv.inputs[2]
        vals = [tensor(t).data if t >= 0 else None for t in [w_idx, b_idx] + bn_inputs]
        if any(v is None for k, v in enumerate(vals) if k != 1):
            return False  # data unknown (e.g. a computed weight)
        w, b, gamma, beta, mean, var = [None if v is None else v.astype(np.float64)
                                        for v in vals]
        scale = gamma / np.sqrt(var + np.float64(eps))
        w_new = w * scale[:, None, None, None]
        b_new = ((b if b is not None else 0.0) - mean) * scale + beta
        w_name = tensor(w_idx).name
        base = w_name[:-len(".weight")] if w_name.endswith(".weight") else w_name
        wt = _new_param(graph, extra, w_name, w_new)
        bt = _new_param(graph, extra, tensor(b_idx).name if b_idx >= 0 else base + ".bias",
                        b_new)
        conv.inputs = [conv.inputs[0], wt, bt]
        return True

    for i, nd in enumerate(nodes):
        if nd is not None and nd.op == "conv2d" and len(nd.inputs) > 5 and nd.inputs[5] >= 0 \
                and all(t >= 0 for t in nd.inputs[3:7]):
            # an eval conv with a fused BatchNorm (fuse_conv_batchnorm): fold it into the weights
            if fold_into_weights(nd, list(nd.inputs[3:7]), nd.fattr[1]):
                nd.fattr = nd.fattr[:1]
            continue
        if nd is None or nd.op != "batchnorm_infer":
            continue
        x = nd.inputs[0]
        prod = [j for j, c in enumerate(nodes) if c is not None and x in c.outputs]
        if not prod or nodes[prod[0]].op != "conv2d" or x in outputs or consumers(x) != [i]:
            continue
        conv = nodes[prod[0]]
        if conv.iattr[ops.OP_BY_NAME["conv2d"].iattrs.index("act")] != ops.ACT_NONE or \
                any(t >= 0 for t in conv.inputs[3:]):
            continue
        if not fold_into_weights(conv, list(nd.inputs[1:]), nd.fattr[0]):
            continue
        conv.outputs = list(nd.outputs)
        nodes[i] = None

    nodes = [nd for nd in nodes if nd is not None]
    if FUSE_CONV_BATCHNORM:   # what could not be folded into weights: the fused epilogue
        kept = fuse_conv_batchnorm(nodes, list(range(len(nodes))), list(outputs))
        nodes = [nodes[i] for i in kept]
    if fold_activations:
        kept = fold_conv_activations(nodes, list(range(len(nodes))), list(outputs))
        nodes = [nodes[i] for i in kept]
    return _compact(graph, extra, nodes, prog)


def _copy_node(nd: ir.Node) -> ir.Node:
    return ir.Node(nd.op, list(nd.inputs), list(nd.outputs), list(nd.iattr), list(nd.fattr),
                   nd.layer)


def _new_param(graph: ir.Graph, extra: List[ir.TensorDef], name: str, data: np.ndarray) -> int:
    idx = len(graph.tensors) + len(extra)
    extra.append(ir.TensorDef(idx, name, ir.F32, ir.PARAM, tuple(data.shape), False,
                              data.astype(np.float32)))
    return idx


def _compact(graph: ir.Graph, extra: List[ir.TensorDef], nodes: List[ir.Node],
             prog: ir.Program) -> ir.Graph:
    """A graph holding ``nodes`` and only the tensors they (and the outputs) use."""
    def tensor(i):
        return graph.tensors[i] if i < len(graph.tensors) else extra[i - len(graph.tensors)]

    used = OrderedDict()
    for nd in nodes:
        for t in list(nd.inputs) + list(nd.outputs):
            if t >= 0:
                used.setdefault(t, None)
    for t in prog.outputs.values():
        used.setdefault(t, None)
    # a folded weight may share its name with the original still used elsewhere
    out = ir.Graph()
    remap: Dict[int, int] = {}
    taken = set()
    for old in sorted(used):
        td = tensor(old)
        name = td.name
        if name and name in taken:
            k = 1
            while f"{name}.{k}" in taken:
                k += 1
            name = f"{name}.{k}"
        if name:
            taken.add(name)
        data = td.data
        kind = td.kind
        nt = out.add_tensor(name, td.dtype, kind, td.shape,
                            trainable=False,
                            data=None if kind not in ir.KINDS_WITH_DATA else
                            (np.array(data) if data is not None else
                             np.zeros(td.shape, ir.NUMPY_DTYPE[td.dtype])))
        nt.is_output = old in prog.outputs.values()
        remap[old] = nt.index
    for nd in nodes:
        out.add_node(ir.Node(nd.op, [remap[t] if t >= 0 else -1 for t in nd.inputs],
                             [remap[t] if t >= 0 else -1 for t in nd.outputs],
                             nd.iattr, nd.fattr, nd.layer))
    out.programs[ir.EVAL] = ir.Program(
        ir.EVAL, list(range(len(nodes))),
        sorted(remap[t] for t in prog.inputs if t in remap),
        {k: remap[t] for k, t in prog.outputs.items()})
    out.state = ir.TrainState(seed=graph.state.seed, max_batch=graph.state.max_batch)
    out.meta = dict(graph.meta, inference_only=True)
    return out


# =====================================================================================
# Summary
# =====================================================================================
def graph_summary(graph: ir.Graph) -> str:
    """A printable table of layers (ops, parameter counts), programs and tensors."""
    rows: List[Tuple[str, Dict]] = []  # one row per run of nodes of the same layer
    prog = graph.programs.get(ir.EVAL) or next(iter(graph.programs.values()), None)
    seen_params = set()
    for n in (prog.nodes if prog else []):
        nd = graph.nodes[n]
        name = nd.layer or "<root>"
        if not rows or rows[-1][0] != name:
            rows.append((name, {"ops": [], "params": 0, "out": ()}))
        row = rows[-1][1]
        if nd.op not in row["ops"]:
            row["ops"].append(nd.op)
        for t in nd.inputs:
            if t >= 0 and graph.tensors[t].kind == ir.PARAM and t not in seen_params:
                seen_params.add(t)
                row["params"] += graph.tensors[t].numel
        if nd.outputs and nd.outputs[0] >= 0:
            row["out"] = graph.tensors[nd.outputs[0]].shape
    params = graph.of_kind(ir.PARAM)
    trainable = sum(t.numel for t in params if t.trainable)
    total = sum(t.numel for t in params)
    w1 = max([len("layer")] + [len(k) for k, _ in rows])
    w2 = max([len("ops")] + [len(", ".join(r["ops"])) for _, r in rows])
    lines = [f"{'layer':<{w1}}  {'ops':<{w2}}  {'output shape':<20}  {'params':>10}",
             "-" * (w1 + w2 + 36)]
    for name, r in rows:
        lines.append(f"{name:<{w1}}  {', '.join(r['ops']):<{w2}}  {str(tuple(r['out'])):<20}  "
                     f"{r['params']:>10,}")
    lines.append("-" * (w1 + w2 + 36))
    lines.append(f"parameters: {total:,} ({trainable:,} trainable, {total - trainable:,} frozen)")
    bufs = graph.of_kind(ir.BUFFER)
    if bufs:
        lines.append(f"buffers: {sum(t.numel for t in bufs):,} values in {len(bufs)} tensors")
    for kind in sorted(graph.programs):
        p = graph.programs[kind]
        names = ", ".join(graph.tensors[t].name for t in p.inputs)
        lines.append(f"program {ir.PROGRAM_NAMES[kind]:<5}: {len(p.nodes):4d} nodes; inputs: "
                     f"{names or '-'}; outputs: {', '.join(p.outputs)}")
    counts = {}
    for t in graph.tensors:
        counts[ir.KIND_NAMES[t.kind]] = counts.get(ir.KIND_NAMES[t.kind], 0) + 1
    lines.append("tensors: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    if graph.state.opt_kind:
        from .optim.optimizer import OPT_NAMES
        opt = OPT_NAMES[graph.state.opt_kind] if graph.state.opt_kind < len(OPT_NAMES) else "?"
        sched = ("constant", "step", "multistep", "exponential", "cosine",
                 "inv")[graph.state.sched_kind]
        lines.append(f"optimizer: {opt}, base lr {graph.state.base_lr:g}, schedule {sched}"
                     + (f", warmup {graph.state.warmup}" if graph.state.warmup else "")
                     + f"; step {graph.state.step}")
    return "\n".join(lines)
