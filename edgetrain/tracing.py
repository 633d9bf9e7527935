"""Tracing: run a Module's ``forward`` on symbolic tensors and record an :class:`ir.Graph`.

While a :class:`Tracer` is active, layers and ``nn.functional`` calls do not compute; they
append nodes to the tracer's graph and return :class:`Tensor` objects (shape, dtype, tensor
index). Parameters met during ``forward`` become PARAM tensors named by their dotted path
(``conv1.weight``), buffers BUFFER tensors (``bn1.running_mean``); every node records the
path of the module that emitted it as its ``layer``.
"""
from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import ir, ops, tensor_ops as T
from .errors import NotSupportedError
from .tensor_ops import Dim

_active: Optional["Tracer"] = None


def current() -> Optional["Tracer"]:
    """The active tracer, or None outside tracing."""
    return _active


def require() -> "Tracer":
    if _active is None:
        raise RuntimeError("edgetrain modules and functions build a training program; they run "
                           "only while tracing (use edgetrain.TrainSession.from_module or "
                           "edgetrain.export.build_graph)")
    return _active


class Tensor:
    """A symbolic tensor of the graph being traced."""

    __array_ufunc__ = None  # numpy operands on the left defer to our reflected operators
    __torch_function__ = classmethod(lambda cls, *a, **k: _torch_function(cls, *a, **k))

    def __init__(self, tracer: "Tracer", index: int):
        self.tracer = tracer
        self.index = index

    # -- metadata ------------------------------------------------------------------
    @property
    def _def(self) -> ir.TensorDef:
        return self.tracer.graph.tensors[self.index]

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(Dim(n, i, self.index) for i, n in enumerate(self._def.shape))

    @property
    def dtype(self) -> str:
        return self._def.dtype

    @property
    def name(self) -> str:
        return self._def.name

    @property
    def ndim(self) -> int:
        return len(self._def.shape)

    def dim(self) -> int:
        return self.ndim

    def size(self, d: Optional[int] = None):
        if d is None:
            return self.shape
        return self.shape[d]

    def numel(self) -> int:
        return self._def.numel

    def __repr__(self) -> str:
        return (f"Tensor(shape={tuple(self._def.shape)}, dtype={self.dtype}, "
                f"index={self.index}{', name=' + repr(self.name) if self.name else ''})")

    def __len__(self) -> int:
        if not self._def.shape:
            raise TypeError("len() of a scalar tensor")
        return self._def.shape[0]

    def __bool__(self):
        raise TypeError("a traced tensor has no value; data-dependent control flow cannot be "
                        "traced")

    # -- operators (see tensor_ops; nn.functional gives them PyTorch's names) ------------
    def __add__(self, other):
        return T.add(require(), self, other)

    def __radd__(self, other):
        return T.add(require(), other, self)

    def __sub__(self, other):
        return T.sub(require(), self, other)

    def __rsub__(self, other):
        return T.sub(require(), other, self)

    def __mul__(self, other):
        return T.mul(require(), self, other)

    def __rmul__(self, other):
        return T.mul(require(), other, self)

    def __truediv__(self, other):
        return T.div(require(), self, other)

    def __rtruediv__(self, other):
        return T.div(require(), other, self)

    def __neg__(self):
        return T.mul(require(), self, -1.0)

    def __pos__(self):
        return self

    def __matmul__(self, other):
        return T.matmul(require(), self, other)

    # -- methods ------------------------------------------------------------------------
    def reshape(self, *shape):
        return T.reshape(require(), self, _shape_args(shape))

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        return T.flatten(require(), self, start_dim, end_dim)

    def sum(self, dim=None, keepdim: bool = False):
        return T.sum(require(), self, dim, keepdim)

    def mean(self, dim=None, keepdim: bool = False):
        return T.mean(require(), self, dim, keepdim)

    def relu(self):
        return T.relu(require(), self)

    def exp(self):
        return T.exp(require(), self)

    def log(self):
        return T.log(require(), self)

    def sqrt(self):
        return T.sqrt(require(), self)

    def rsqrt(self):
        return T.rsqrt(require(), self)

    def abs(self):
        return T.abs(require(), self)

    def neg(self):
        return T.neg(require(), self)

    def erf(self):
        return T.erf(require(), self)

    def pow(self, exponent):
        return T.pow(require(), self, exponent)

    def clamp(self, min=None, max=None):  # noqa: A002 - PyTorch's names
        return T.clamp(require(), self, min, max)

    def __pow__(self, exponent):
        return T.pow(require(), self, exponent)

    def __abs__(self):
        return T.abs(require(), self)

    def sigmoid(self):
        return T.sigmoid(require(), self)

    def tanh(self):
        return T.tanh(require(), self)

    def softmax(self, dim: int):
        return T.softmax(require(), self, dim)

    def log_softmax(self, dim: int):
        return T.log_softmax(require(), self, dim)

    # -- shapes and copies (ops concat, slice, transpose, pad, gather, expand) ------------
    def __getitem__(self, key):
        return T.getitem(require(), self, key)

    def permute(self, *dims):
        return T.permute(require(), self, _shape_args(dims))

    def transpose(self, dim0: int, dim1: int):
        return T.transpose(require(), self, dim0, dim1)

    def t(self):
        return T.t(require(), self)

    @property
    def mT(self):  # noqa: N802 - PyTorch's name
        return T.transpose(require(), self, -2, -1)

    @property
    def T(self):  # noqa: N802 - PyTorch's name: all dims reversed
        return T.permute(require(), self, list(range(self.ndim))[::-1])

    def squeeze(self, dim=None):
        return T.squeeze(require(), self, dim)

    def unsqueeze(self, dim: int):
        return T.unsqueeze(require(), self, dim)

    def expand(self, *sizes):
        return T.expand(require(), self, _shape_args(sizes))

    def expand_as(self, other):
        return T.expand(require(), self, other.shape)

    def split(self, split_size, dim: int = 0):
        return T.split(require(), self, split_size, dim)

    def chunk(self, chunks: int, dim: int = 0):
        return T.chunk(require(), self, chunks, dim)

    def narrow(self, dim: int, start: int, length: int):
        return T.narrow(require(), self, dim, start, length)

    def gather(self, dim: int, index):
        return T.gather(require(), self, dim, index)

    def index_select(self, dim: int, index):
        return T.index_select(require(), self, dim, index)

    def contiguous(self, memory_format=None):
        return self

    def __getattr__(self, name: str):
        # only reached for names the class lacks: a PyTorch attribute edgetrain cannot trace
        if name.startswith("_"):
            raise AttributeError(f"'Tensor' object has no attribute '{name}'")
        raise not_supported(self.tracer, name)


# torch functions that dispatch to us (``__torch_function__``) when PyTorch code is traced
# unchanged, e.g. ``torch.cat([a, b], 1)``: same name and positional signature in tensor_ops
_TORCH_FUNCTIONS = frozenset((
    "cat", "concat", "stack", "split", "chunk", "narrow", "transpose", "permute", "squeeze",
    "unsqueeze", "gather", "index_select", "reshape", "flatten", "pad", "relu", "sigmoid",
    "tanh", "exp", "log", "sqrt", "rsqrt", "abs", "neg", "erf", "add", "sub", "mul", "div",
    "sum", "mean", "softmax", "log_softmax", "matmul", "clamp", "pow"))
_TORCH_ALIASES = {"concat": "cat"}


def _torch_function(cls, func, types, args=(), kwargs=None):
    """``torch.<func>`` called with traced tensors: the edgetrain op of the same name, or a
    NotSupportedError naming it and the layer (never PyTorch's 'expected Tensor')."""
    tr = require()
    name = getattr(func, "__name__", str(func))
    # defaults spelled out (dtype=None, inplace=False) are dropped; out= / inplace=True are not
    # supported
    kwargs = {k: v for k, v in (kwargs or {}).items()
              if v is not None and not k.startswith("_") and not (k == "inplace" and v is False)}
    if name in _TORCH_FUNCTIONS and not {"out", "inplace"} & set(kwargs):
        fn = getattr(T, _TORCH_ALIASES.get(name, name))
        return fn(tr, *args, **kwargs)
    raise NotSupportedError(
        f"layer '{tr.layer or '<root>'}': torch.{name} on a traced tensor is not supported; "
        "use edgetrain's function of the same name (edgetrain.cat, edgetrain.nn.functional...) "
        "or the ops in docs/ops.md")


def not_supported(tracer, name: str) -> Exception:
    """The error for a PyTorch tensor attribute the traced tensor lacks."""
    return NotSupportedError(
        f"layer '{tracer.layer or '<root>'}': Tensor.{name} is not supported by the edgetrain "
        "tracer (docs/ops.md lists the ops; write it with them or open an issue)")


def _shape_args(shape) -> Sequence[int]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


class Holder:
    """Base of ``nn.Parameter`` and ``nn.Buffer``: an array owned by a module. ``kind`` is
    ``ir.PARAM`` or ``ir.BUFFER`` (the tensor kind it becomes when traced). Inside ``forward``
    its arithmetic and tensor methods go through the active tracer."""

    kind: int = ir.PARAM

    __array_ufunc__ = None
    __torch_function__ = classmethod(lambda cls, *a, **k: _torch_function(cls, *a, **k))

    _TENSOR_METHODS = frozenset(("reshape", "view", "flatten", "sum", "mean", "relu", "sigmoid",
                                 "tanh", "softmax", "log_softmax", "exp", "log", "sqrt",
                                 "rsqrt", "abs", "neg", "erf", "pow", "clamp"))

    def _t(self):
        return require().holder_tensor(self)

    def __getattr__(self, name: str):
        if name in Holder._TENSOR_METHODS:
            return getattr(self._t(), name)
        if name.startswith("_") or _active is None:   # outside tracing: a plain object
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        if hasattr(Tensor, name):
            return getattr(self._t(), name)
        raise not_supported(_active, name)

    def __getitem__(self, key):
        if _active is None:   # outside tracing: the array itself
            return self.data[key]
        return self._t()[key]

    def __add__(self, o):
        return self._t() + o

    def __radd__(self, o):
        return o + self._t()

    def __sub__(self, o):
        return self._t() - o

    def __rsub__(self, o):
        return o - self._t()

    def __mul__(self, o):
        return self._t() * o

    def __rmul__(self, o):
        return o * self._t()

    def __truediv__(self, o):
        return self._t() / o

    def __rtruediv__(self, o):
        return o / self._t()

    def __neg__(self):
        return -self._t()

    def __pow__(self, o):
        return self._t() ** o

    def __abs__(self):
        return abs(self._t())

    def __matmul__(self, o):
        return self._t() @ o

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.data.shape

    def numel(self) -> int:
        return int(self.data.size)

    def size(self, d: Optional[int] = None):
        return self.data.shape if d is None else self.data.shape[d]

    def dim(self) -> int:
        return self.data.ndim

    def numpy(self) -> np.ndarray:
        return self.data


class Tracer:
    """Records nodes into ``graph``.

    ``names`` maps ``id(Parameter or Buffer)`` to its dotted name; ``module_paths`` maps
    ``id(module)`` to its path. The two traces of one model (train and eval mode) share a
    graph, ``names`` and ``tensors`` (so parameters are shared tensors). Holders whose id is in
    ``constants`` (a distillation teacher's parameters and buffers) become named CONST tensors:
    read-only, never given a gradient, never updated.
    """

    def __init__(self, graph: ir.Graph, names: Dict[int, Tuple[str, object]],
                 module_paths: Dict[int, str], holder_tensors: Optional[Dict[int, int]] = None,
                 streams: Optional[List[int]] = None, constants: Optional[set] = None):
        self.graph = graph
        self.constants = constants or set()
        self.names = names
        self.module_paths = module_paths
        self.holder_tensors = {} if holder_tensors is None else holder_tensors
        self._streams = [0] if streams is None else streams
        self._layers: List[str] = []
        self.nodes: List[int] = []  # node indices recorded by this tracer, in order

    # -- scope ---------------------------------------------------------------------
    @property
    def layer(self) -> str:
        return self._layers[-1] if self._layers else ""

    @contextlib.contextmanager
    def scope(self, module=None, name: Optional[str] = None):
        """Nodes emitted inside belong to ``module`` (its path) or to ``name``."""
        if name is None:
            name = self.module_paths.get(id(module))
            if name is None:  # a module outside the traced model: nest under the caller
                own = type(module).__name__.lower()
                name = f"{self.layer}.{own}" if self.layer else own
        self._layers.append(name)
        try:
            yield
        finally:
            self._layers.pop()

    @contextlib.contextmanager
    def activate(self):
        global _active
        prev, _active = _active, self
        try:
            yield self
        finally:
            _active = prev

    def next_stream(self) -> int:
        s = self._streams[0]
        self._streams[0] += 1
        return s

    # -- tensors -------------------------------------------------------------------
    def wrap(self, index: int) -> Tensor:
        return Tensor(self, index)

    def holder_tensor(self, holder: Holder) -> Tensor:
        """The PARAM / BUFFER tensor of a Parameter or Buffer (created on first use)."""
        key = id(holder)
        if key in self.holder_tensors:
            return self.wrap(self.holder_tensors[key])
        entry = self.names.get(key)
        param = holder.kind == ir.PARAM
        what = "parameter" if param else "buffer"
        if entry is None:
            raise ValueError(f"layer '{self.layer or '<root>'}': a {what} of shape "
                             f"{tuple(holder.data.shape)} is used in forward but is not "
                             "registered in the model (assign it as an attribute of a Module)")
        name = entry[0]
        if key in self.constants:
            t = self.graph.add_tensor(name, ir.F32, ir.CONST, holder.data.shape,
                                      data=np.array(holder.data, dtype=np.float32))
        elif param:
            t = self.graph.add_tensor(name, ir.F32, ir.PARAM, holder.data.shape,
                                      trainable=bool(holder.requires_grad),
                                      data=np.array(holder.data, dtype=np.float32))
        else:
            if not getattr(holder, "traced", True):
                raise ValueError(f"buffer '{name}' is a Python-side counter and cannot be "
                                 "used in forward")
            t = self.graph.add_tensor(name, ir.F32, ir.BUFFER, holder.data.shape,
                                      data=np.array(holder.data, dtype=np.float32))
        self.holder_tensors[key] = t.index
        return self.wrap(t.index)

    def const(self, value, dtype: str = ir.F32) -> Tensor:
        """A CONST tensor holding ``value`` (read-only data in the file)."""
        arr = np.asarray(value, dtype=ir.NUMPY_DTYPE[dtype])
        t = self.graph.add_tensor("", dtype, ir.CONST, arr.shape, data=arr)
        return self.wrap(t.index)

    def is_tensor(self, value) -> bool:
        """True for a traced Tensor, a Parameter or a Buffer."""
        return isinstance(value, (Tensor, Holder))

    def as_tensor(self, value, like: Optional[Tensor] = None) -> Tensor:
        """Convert a Tensor, Parameter, Buffer or array-like to a traced tensor."""
        if isinstance(value, Tensor):
            if value.tracer.graph is not self.graph:
                raise ValueError("tensor from another trace")
            return value
        if isinstance(value, Holder):
            return self.holder_tensor(value)
        arr = np.asarray(value)
        if arr.dtype.kind in "iub":
            return self.const(arr, ir.I32)
        if arr.dtype.kind != "f":
            raise TypeError(f"cannot use a value of type {type(value).__name__} in a traced "
                            "computation")
        return self.const(arr, ir.F32)

    # -- nodes ---------------------------------------------------------------------
    def emit(self, op_name: str, inputs: Sequence[Optional[Tensor]], **attrs) -> List[Tensor]:
        idx = [-1 if t is None else self.as_tensor(t).index for t in inputs]
        outs = ops.emit(self.graph, op_name, idx, layer=self.layer, **attrs)
        self.nodes.append(len(self.graph.nodes) - 1)
        return [self.wrap(o) if o >= 0 else None for o in outs]

    def emit1(self, op_name: str, inputs: Sequence[Optional[Tensor]], **attrs) -> Tensor:
        return self.emit(op_name, inputs, **attrs)[0]
