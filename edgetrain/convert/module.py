"""``OnnxModule``: an imported ONNX graph as an ordinary :class:`edgetrain.nn.Module`.

Parameters and BatchNorm statistics are Parameters and Buffers under the file's (= PyTorch's)
dotted names, held in nested container modules so that ``state_dict()`` and
``load_state_dict()`` use exactly PyTorch's keys (``features.1.running_mean``, with a
``num_batches_tracked`` beside each BatchNorm's statistics). Other initializers are constants.
``forward`` walks the ONNX nodes and emits edgetrain nodes through ``nn.functional`` while
tracing, so the module composes with hand-written ones (a new head, a loss, a teacher).

BatchNorm modes: ``"train"`` normalises with batch statistics in the training program and
updates the running statistics (PyTorch's ``train()``); ``"frozen"`` always uses the running
statistics, which stay bit-identical; ``"follow"`` takes each node's form from the file
(``training_mode=1`` trains, the inference form is frozen). The eval program always uses the
running statistics.
"""
from __future__ import annotations

import difflib
import fnmatch
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from .. import tracing
from ..errors import (EdgetrainError, InvalidArgumentError, ModelFormatError, NotFoundError,
                      ShapeError, UnsupportedError)
from ..nn.module import Buffer, Module, Parameter
from . import onnx_ops as O
from .onnx_file import OnnxGraph, OnnxNode

BN_MODES = ("follow", "train", "frozen")
DROPOUT_MODES = ("follow", "off")


class OnnxContainer(Module):
    """Holds the parameters of one dotted prefix (``features.0``) of a converted model."""

    def forward(self, *args, **kwargs):
        raise InvalidArgumentError("this is a part of a converted ONNX model; call the whole "
                                   "model, or cut a piece with extract()")


class OnnxModule(Module):
    """A converted ONNX graph (made by :func:`edgetrain.convert.from_onnx`)."""

    def __init__(self, graph: OnnxGraph, inputs: Optional[Mapping[str, Sequence]] = None,
                 bn: str = "follow", dropout: str = "follow"):
        super().__init__()
        _check_choice("bn", bn, BN_MODES)
        _check_choice("dropout", dropout, DROPOUT_MODES)
        _unalias_identities(graph)
        analysis = O.analyse(graph)
        if analysis.unsupported:
            raise UnsupportedError(analysis.report(graph.file))
        object.__setattr__(self, "_graph", graph)
        object.__setattr__(self, "_nodes", analysis.needed)
        object.__setattr__(self, "_holders", OrderedDict())
        object.__setattr__(self, "_statics", {})
        object.__setattr__(self, "_bn_modes", {})
        object.__setattr__(self, "_dropout_off", set())  # Dropout nodes switched off
        # plain attributes set past Module.__setattr__: a child module of the file may have
        # any name ("bn", "dropout"...) and must not replace them
        object.__setattr__(self, "_bn", bn)
        object.__setattr__(self, "_dropout", dropout)
        object.__setattr__(self, "_file_batch", _file_batch(graph))
        self._register_state(analysis)
        object.__setattr__(self, "_input_shapes", _input_shapes(graph, inputs))
        object.__setattr__(self, "_layers",
                           {nd.name: _layer_of(nd, self._holders) for nd in self._nodes})

    # -- construction helpers --------------------------------------------------------
    def _register_state(self, analysis: "O.Analysis") -> None:
        g = self._graph
        buffers = set(analysis.buffers)
        for name in list(analysis.params) + list(analysis.buffers):
            arr = g.initializers[name]
            holder = Buffer(arr) if name in buffers else Parameter(arr)
            self._holders[name] = holder
            _place(self, name, holder)
        for name in analysis.buffers:  # PyTorch's counter beside each BatchNorm's statistics
            if name.endswith(".running_mean"):
                counter = name[:-len("running_mean")] + "num_batches_tracked"
                if counter not in g.initializers and counter not in self._holders:
                    _place(self, counter, Buffer(np.array(0), traced=False, dtype=np.int64))
        for name, arr in g.initializers.items():
            if name not in self._holders:
                self._statics[name] = O.Static(arr)
        for nd in self._nodes:
            if nd.op == "Constant":
                self._statics[nd.outputs[0]] = _constant_value(nd, g.file)

    def constant_of(self, nd: OnnxNode) -> "O.Static":
        return self._statics[nd.outputs[0]]

    # -- modes -----------------------------------------------------------------------
    @property
    def bn(self) -> str:
        """The BatchNorm mode set at conversion or by :meth:`set_bn` without patterns."""
        return self._bn

    @property
    def dropout(self) -> str:
        """``"follow"`` (dropout where the file's Dropout trains) or ``"off"``."""
        return self._dropout

    @dropout.setter
    def dropout(self, mode: str) -> None:
        _check_choice("dropout", mode, DROPOUT_MODES)
        object.__setattr__(self, "_dropout", mode)

    @property
    def input_shapes(self) -> "OrderedDict[str, tuple]":
        """Input name -> shape (None for the batch and unknown dims)."""
        return OrderedDict(self._input_shapes)

    @property
    def file_batch(self) -> Optional[int]:
        """The static batch the file's inputs declare (a Reshape to it keeps the batch)."""
        return self._file_batch

    def bn_mode_of(self, nd: OnnxNode) -> str:
        """"train" or "frozen" for BatchNormalization node ``nd``."""
        mode = self._bn_modes.get(nd.name, self.bn)
        if mode == "follow":
            env = _Env(self, None)
            return "train" if O.batch_norm_is_training(env, nd) else "frozen"
        return mode

    def set_bn(self, mode: str, *patterns: str) -> "OnnxModule":
        """Set the BatchNorm mode (``"follow"``, ``"train"``, ``"frozen"``) of every
        BatchNorm, or of those whose parameter prefix (``features.1``) or node name matches
        one of the globs."""
        _check_choice("bn", mode, BN_MODES)
        bns = [nd for nd in self._nodes if nd.op == "BatchNormalization"]
        if not patterns:
            object.__setattr__(self, "_bn", mode)
            self._bn_modes.clear()
            return self
        names = {nd.name: [nd.name, self._layers[nd.name]] for nd in bns}
        for pat in patterns:
            hits = [n for n, keys in names.items() if any(fnmatch.fnmatchcase(k, pat) or
                                                          k.startswith(pat + ".") for k in keys)]
            if not hits:
                raise NotFoundError(_unknown(f"no BatchNorm matches {pat!r}", pat,
                                             [k for keys in names.values() for k in keys]))
            for n in hits:
                self._bn_modes[n] = mode
        return self

    # -- graph facts -------------------------------------------------------------------
    @property
    def file(self) -> str:
        return self._graph.file

    @property
    def opset(self) -> int:
        return self._graph.opset

    @property
    def input_names(self) -> List[str]:
        return list(self.input_shapes)

    @property
    def output_names(self) -> List[str]:
        return list(self._graph.outputs)

    def tensor_names(self) -> List[str]:
        """Every tensor a cut (:meth:`extract`) may start or end at, in graph order."""
        names = list(self.input_shapes)
        for nd in self._nodes:
            names += [o for o in nd.outputs if o]
        return names

    def nodes(self) -> List[tuple]:
        """(node name, op, input names, output names) in execution order."""
        return [(nd.name, nd.op, list(nd.inputs), list(nd.outputs)) for nd in self._nodes]

    # -- forward -----------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        tr = tracing.require()
        env = _Env(self, tr)
        names = self.input_names
        if len(args) + len(kwargs) != len(names) or any(k not in names for k in kwargs):
            raise InvalidArgumentError(f"{self.file}: the model takes {len(names)} input(s) "
                                       f"{names}, got {len(args)} positional and "
                                       f"{sorted(kwargs)} by name")
        given = dict(zip(names, args))
        given.update(kwargs)
        for name in names:
            env.values[name] = self._bind_input(tr, name, given[name])
        for nd in self._nodes:
            env.run(nd)
        outs = [env.tensor(o) for o in self._graph.outputs]
        if len(outs) == 1:
            return outs[0]
        return OrderedDict(zip(self._graph.outputs, outs))

    def _bind_input(self, tr, name: str, value):
        x = tr.as_tensor(value)
        want = self.input_shapes.get(name)
        got = tuple(int(d) for d in x.shape)
        if want is not None and (len(want) != len(got) or any(
                w is not None and w != g for w, g in zip(want[1:], got[1:]))):
            raise ShapeError(f"{self.file}: input '{name}' has shape {list(got)}, the model "
                             f"expects {_shape_str(want)}")
        return x

    # -- cutting ----------------------------------------------------------------------
    def extract(self, inputs: Sequence[str], outputs: Sequence[str],
                trainable: Optional[bool] = None, bn: Optional[str] = None) -> "OnnxModule":
        """A new module computing ``outputs`` from ``inputs`` (tensor names; see
        :meth:`tensor_names` or ``edgetrain info model.onnx``), MNN's ``extract``.

        Its parameters and statistics are copies of this module's current values, under the
        same names. ``trainable``: True makes every parameter trainable, False freezes them
        all, None keeps each one's ``requires_grad``. ``bn``: the BatchNorm mode of the cut
        (default: ``"frozen"`` for a non-trainable cut, else this module's modes).
        """
        inputs, outputs = list(inputs), list(outputs)
        known = self.tensor_names()
        for name in inputs + outputs:
            if name not in known:
                raise NotFoundError(_unknown(f"{self.file}: no tensor named {name!r}", name,
                                             known))
        if not inputs or not outputs:
            raise InvalidArgumentError("extract needs at least one input and one output")
        nodes = O.needed_nodes(self._graph, outputs, stop=inputs)
        produced = set(inputs) | {o for nd in nodes for o in nd.outputs}
        for nd in nodes:
            for i in nd.inputs:
                if i and i not in produced and i not in self._graph.initializers:
                    if i in self.input_shapes or i in self._produced_outside(nodes):
                        raise InvalidArgumentError(
                            f"{self.file}: the outputs {outputs} also depend on '{i}' (read by "
                            f"node '{nd.name}' ({nd.op})), which is not among inputs={inputs}")
        read = {i for nd in nodes for i in nd.inputs}
        inits = {k: v for k, v in self._current_initializers().items() if k in read}
        sub = OnnxGraph(self.file, self._graph.opset, self._graph.ir_version,
                        self._graph.producer, [(n, self._shape_of(n)) for n in inputs],
                        outputs, inits, list(nodes))
        if bn is None:
            bn = "frozen" if trainable is False else self.bn
        out = OnnxModule(sub, bn=bn, dropout=self.dropout)
        if bn == self.bn:
            out._bn_modes.update({k: v for k, v in self._bn_modes.items()})
        object.__setattr__(out, "_file_batch", self.file_batch)
        out._dropout_off.update(self._dropout_off)
        own = dict(self.named_parameters())
        for name, p in out.named_parameters():
            p.requires_grad = own[name].requires_grad if trainable is None and name in own \
                else bool(trainable if trainable is not None else True)
        sd = {k: v for k, v in self.state_dict().items() if k.endswith("num_batches_tracked")}
        out.load_state_dict({k: v for k, v in sd.items()
                             if k in dict(out._state_items())}, strict=False)
        return out

    def _produced_outside(self, nodes) -> set:
        inside = {nd.index for nd in nodes}
        return {o for nd in self._nodes if nd.index not in inside for o in nd.outputs}

    def _shape_of(self, name: str):
        return self.input_shapes.get(name)

    def _current_initializers(self) -> Dict[str, np.ndarray]:
        out = dict(self._graph.initializers)
        for name, holder in self._holders.items():
            out[name] = np.array(holder.data)
        return out

    def extra_repr(self) -> str:
        return (f"file={self.file!r}, opset={self.opset}, nodes={len(self._nodes)}, "
                f"bn={self.bn!r}, dropout={self.dropout!r}")


class WithHead(Module):
    """``head(body(x))`` with the body's parameters under their own names (not
    ``body.``-prefixed) and the head's under ``<name>.``: a converted backbone with a new
    classifier keeps PyTorch's names."""

    def __init__(self, body: Module, head: Module, name: str = "head"):
        super().__init__()
        object.__setattr__(self, "_body", body)
        for k, m in body._modules.items():
            self.add_module(k, m)
        for k, p in body._parameters.items():
            self.register_parameter(k, p)
        for k, b in body._buffers.items():
            self.register_buffer(k, b)
        if name in self._modules or name in self._parameters:
            raise InvalidArgumentError(f"the head's name {name!r} is already used in the body")
        self.add_module(name, head)
        object.__setattr__(self, "_head_name", name)

    def forward(self, *args, **kwargs):
        y = self._body.forward(*args, **kwargs)  # nodes named as the body's own layers
        return self._modules[self._head_name](y)

    def train(self, mode: bool = True) -> "WithHead":
        super().train(mode)
        self._body.train(mode)
        return self


# ------------------------------------------------------------------------------------
# the trace environment handed to the op handlers
# ------------------------------------------------------------------------------------
class _Env:
    def __init__(self, module: OnnxModule, tracer):
        self.module = module
        self.tracer = tracer
        self.opset = module._graph.opset
        self.file_batch = module.file_batch
        self.values: Dict[str, object] = {}

    def is_holder(self, name: str) -> bool:
        return name in self.module._holders

    def value(self, name: str):
        """A traced Tensor, or a Static (also for parameters, which stay holders)."""
        if name in self.values:
            return self.values[name]
        if name in self.module._holders:
            return O.Static(self.module._holders[name].data)
        if name in self.module._statics:
            return self.module._statics[name]
        raise O.NodeError(f"input '{name}' is not available")

    def static(self, name: str) -> "O.Static":
        v = self.value(name)
        if not isinstance(v, O.Static) or name in self.module._holders:
            raise O.unsupported(f"input '{name}' is computed from data; it must be a constant")
        return v

    def buffer(self, name: str):
        holder = self.module._holders.get(name)
        if not isinstance(holder, Buffer):
            raise O.unsupported(f"running statistic '{name}' is not an initializer")
        return holder

    def tensor(self, name: str):
        """The traced tensor for ``name`` (parameter, buffer, constant or activation)."""
        if not name:
            raise O.NodeError("a required input is missing")
        v = self.values.get(name)
        if isinstance(v, tracing.Tensor):
            return v
        holder = self.module._holders.get(name)
        if holder is not None:
            return self.tracer.as_tensor(holder)
        v = self.value(name)
        arr = v.value
        if arr.dtype.kind == "f" and arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        if name in self.module._statics and self.module._statics[name] is v:
            key = id(v)  # lives as long as the module: one constant per graph
            cache = self.tracer.holder_tensors
            if key not in cache:
                cache[key] = self.tracer.as_tensor(arr).index
            return self.tracer.wrap(cache[key])
        return self.tracer.as_tensor(arr)

    def operand(self, name: str, other: str):
        """For + - * /: a Python float for a constant scalar that does not widen the other
        operand's rank, else a tensor."""
        v = self.value(name)
        if isinstance(v, O.Static) and name not in self.module._holders and v.value.size == 1:
            o = self.value(other)
            rank = o.value.ndim if isinstance(o, O.Static) else o.ndim
            if v.value.ndim <= rank:
                return float(v.value.reshape(()).item())
        return self.tensor(name)

    def run(self, nd: OnnxNode) -> None:
        handler = O.pick(self, nd)
        layer = self.module._layers[nd.name]
        prefix = self.tracer.layer
        try:
            with self.tracer.scope(name=f"{prefix}.{layer}" if prefix else layer):
                outs = handler(self, nd)
        except O.NodeError as e:
            raise e.cls(f"{nd.where(self.module.file)}: {e}") from None
        except EdgetrainError as e:
            raise type(e)(f"{nd.where(self.module.file)}: {e}") from None
        except (NotImplementedError, TypeError) as e:
            raise UnsupportedError(f"{nd.where(self.module.file)}: {e}") from None
        except (ValueError, IndexError) as e:
            raise ModelFormatError(f"{nd.where(self.module.file)}: {e}") from None
        for name, v in zip(nd.outputs, outs):
            if name:
                self.values[name] = v


# ------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------
def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise InvalidArgumentError(f"{what} must be one of {', '.join(map(repr, choices))}, "
                                   f"got {value!r}")


def _unknown(message: str, name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(dict.fromkeys(known)), n=5, cutoff=0.4)
    return message + (f"; closest: {', '.join(repr(c) for c in close)}" if close else "")


def _shape_str(shape) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def _place(root: Module, name: str, holder) -> None:
    """Register ``holder`` under dotted ``name``: in nested containers when the parts are
    plain names, else at the root under the whole name (state_dict keys are the same). The
    dicts are written directly: a file's name never displaces an attribute of the module."""
    parts = name.split(".")
    node = root
    ok = all(parts) and len(parts) > 1
    if ok:
        for p in parts[:-1]:
            child = node._modules.get(p)
            if child is None:
                if p in node._parameters or p in node._buffers:
                    ok = False
                    break
                child = OnnxContainer()
                node._modules[p] = child
            node = child
        leaf = parts[-1]
        if ok and (leaf in node._modules or leaf in node._parameters or leaf in node._buffers):
            ok = False
    if not ok:
        node, leaf = root, name
    if leaf in node._modules or leaf in node._parameters or leaf in node._buffers:
        raise ModelFormatError(f"tensor name {name!r} is used twice")
    (node._parameters if isinstance(holder, Parameter) else node._buffers)[leaf] = holder


def _unalias_identities(graph: OnnxGraph) -> None:
    """The TorchScript exporter writes equal initializers once and aliases the others with
    ``Identity`` (``features.4.running_var = Identity(features.1.weight)``): give each alias
    its own copy so that every PyTorch name is a tensor of its own."""
    keep = []
    for nd in graph.nodes:
        src = nd.inputs[0] if nd.op == "Identity" and nd.inputs else ""
        if src in graph.initializers and len(nd.outputs) == 1 and nd.outputs[0] \
                and nd.outputs[0] not in graph.initializers:
            graph.initializers[nd.outputs[0]] = graph.initializers[src].copy()
            continue
        keep.append(nd)
    graph.nodes = keep


def _constant_value(nd: OnnxNode, file: str) -> "O.Static":
    keys = [k for k in ("value", "value_float", "value_floats", "value_int", "value_ints")
            if k in nd.attrs]
    if len(keys) != 1:
        raise (UnsupportedError if any(k in nd.attrs for k in ("sparse_value", "value_string",
                                                                "value_strings"))
               else ModelFormatError)(f"{nd.where(file)}: needs exactly one numeric value "
                                      f"attribute, has {sorted(nd.attrs)}")
    v = nd.attrs[keys[0]]
    if keys[0] in ("value_float", "value_floats"):
        return O.Static(np.array(v, np.float32))
    if keys[0] in ("value_int", "value_ints"):
        return O.Static(np.array(v, np.int64))
    if not isinstance(v, np.ndarray):
        raise ModelFormatError(f"{nd.where(file)}: value is not a tensor")
    return O.Static(v)


def _file_batch(graph: OnnxGraph) -> Optional[int]:
    """The static batch the file's inputs declare (all the same), else None."""
    firsts = {s[0] for _, s in graph.inputs if s}
    if len(firsts) == 1:
        b = next(iter(firsts))
        return b if isinstance(b, int) else None
    return None


def _input_shapes(graph: OnnxGraph, given: Optional[Mapping[str, Sequence]]):
    """name -> shape (None for the batch and unknown dims), the user's shapes checked against
    the file's."""
    out = OrderedDict()
    for name, shape in graph.inputs:
        out[name] = None if shape is None else (None,) + tuple(shape[1:])
    for name, shape in (given or {}).items():
        if name not in out:
            raise NotFoundError(_unknown(f"{graph.file}: the model has no input {name!r}", name,
                                         list(out)))
        try:
            shape = tuple(None if d is None else int(d) for d in shape)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"input {name!r}: shape must be a tuple of ints, got "
                                       f"{shape!r}") from None
        file_shape = out[name]
        if file_shape is not None and (len(file_shape) != len(shape) or any(
                f is not None and s is not None and f != s
                for f, s in zip(file_shape[1:], shape[1:]))):
            raise ShapeError(f"{graph.file}: input {name!r} is {_shape_str(file_shape)} in the "
                             f"file, not {list(shape)}")
        out[name] = (None,) + shape[1:] if shape else shape
    return out


def _layer_of(nd: OnnxNode, holders: Mapping[str, object]) -> str:
    """A PyTorch-like module path for the node: the prefix of its first parameter
    (``features.0`` for ``features.0.weight``), else the scope of its exported name
    (``/features/features.2/Clip`` -> ``features.2``), else the node's name."""
    for i in nd.inputs:
        if i in holders and "." in i:
            return i.rsplit(".", 1)[0]
    parts = [p for p in nd.name.split("/") if p]
    if nd.name.startswith("/") and len(parts) >= 2:
        return parts[-2]
    return parts[-1] if parts else nd.name
