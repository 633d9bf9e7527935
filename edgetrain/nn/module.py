"""``Module``, ``Parameter`` and ``Buffer``: the PyTorch-like authoring API.

A Module owns Parameters (trainable float32 arrays), Buffers (persistent non-trained arrays
such as BatchNorm running statistics) and child Modules, with PyTorch's dotted names and
tensor layouts, so ``load_state_dict(torch_model.state_dict())`` works unchanged.
``forward`` runs only while tracing (see :mod:`edgetrain.tracing`).
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from .. import ir, tracing


class Parameter(tracing.Holder):
    """A trainable float32 array. ``requires_grad=False`` freezes it (no gradient nodes)."""

    kind = ir.PARAM

    def __init__(self, data, requires_grad: bool = True):
        self.data = data
        self.requires_grad = bool(requires_grad)

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value) -> None:
        self._data = np.array(_to_numpy(value), dtype=np.float32, copy=True, order="C")

    def requires_grad_(self, flag: bool = True) -> "Parameter":
        self.requires_grad = bool(flag)
        return self

    def __repr__(self) -> str:
        return (f"Parameter(shape={self.data.shape}, "
                f"requires_grad={self.requires_grad})")


class Buffer(tracing.Holder):
    """A persistent, non-trained array (BatchNorm running statistics).

    ``persistent=False`` keeps it out of ``state_dict``; ``traced=False`` marks a Python-side
    value (``num_batches_tracked``) that never enters the graph.
    """

    kind = ir.BUFFER

    def __init__(self, data, persistent: bool = True, traced: bool = True,
                 dtype=np.float32):
        self.dtype = dtype
        self.data = data
        self.persistent = persistent
        self.traced = traced

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value) -> None:
        self._data = np.array(_to_numpy(value), dtype=self.dtype, copy=True, order="C")

    def __repr__(self) -> str:
        return f"Buffer(shape={self.data.shape}, dtype={np.dtype(self.dtype).name})"


def _to_numpy(value) -> np.ndarray:
    """numpy array from an array-like or a torch tensor (torch is not imported here)."""
    if isinstance(value, (Parameter, Buffer)):
        return value.data
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return np.asarray(value.detach().cpu())
    return np.asarray(value)


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer and model (PyTorch's ``nn.Module`` API)."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- attributes ----------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        for d in (self._parameters, self._buffers, self._modules):
            if name in d and not _same_kind(d, self, value):
                del d[name]
        if isinstance(value, Parameter):
            self.__dict__.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Buffer):
            self.__dict__.pop(name, None)
            self._buffers[name] = value
        elif isinstance(value, Module):
            self.__dict__.pop(name, None)
            self._modules[name] = value
        elif value is None and (name in self._parameters or name in self._buffers
                                or name in self._modules):
            for d in (self._parameters, self._buffers, self._modules):
                if name in d:
                    d[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if key in d and name in d[key]:
                return d[key][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for d in (self._parameters, self._buffers, self._modules):
            if name in d:
                del d[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Optional[Parameter]) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"{name}: expected a Parameter, got {type(param).__name__}")
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name: str, value, persistent: bool = True) -> None:
        buf = value if isinstance(value, Buffer) or value is None else \
            Buffer(value, persistent=persistent)
        self.__dict__.pop(name, None)
        self._buffers[name] = buf

    def add_module(self, name: str, module: Optional["Module"]) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{name}: expected a Module, got {type(module).__name__}")
        self.__dict__.pop(name, None)
        self._modules[name] = module

    register_module = add_module

    # -- calling -------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        tracer = tracing.require()
        with tracer.scope(self):
            return self.forward(*args, **kwargs)

    # -- traversal -----------------------------------------------------------------
    def named_children(self) -> Iterator[Tuple[str, "Module"]]:
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, memo=None, prefix: str = "") -> Iterator[Tuple[str, "Module"]]:
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def _named_members(self, attr: str, prefix: str, recurse: bool):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, v in getattr(m, attr).items():
                if v is None or id(v) in seen:
                    continue
                seen.add(id(v))
                yield (f"{mprefix}.{name}" if mprefix else name), v

    def named_parameters(self, prefix: str = "", recurse: bool = True
                         ) -> Iterator[Tuple[str, Parameter]]:
        yield from self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True
                      ) -> Iterator[Tuple[str, Buffer]]:
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Buffer]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn) -> "Module":
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- modes ---------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        object.__setattr__(self, "training", bool(mode))
        for m in self.children():
            m.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def freeze(self, *patterns: str) -> "Module":
        """Stop training the parameters whose dotted name matches one of the globs
        (``"features.*"``, ``"*.bias"``) or lies under a matching module path
        (``"features"``); all parameters without a pattern. A pattern that matches nothing
        raises ``NotFoundError`` naming the closest names."""
        return self._set_requires_grad(patterns, False)

    def unfreeze(self, *patterns: str) -> "Module":
        """Train again the parameters :meth:`freeze` would select."""
        return self._set_requires_grad(patterns, True)

    def _set_requires_grad(self, patterns, flag: bool) -> "Module":
        import difflib
        import fnmatch

        from ..errors import NotFoundError

        params = list(self.named_parameters())
        if not patterns:
            patterns = ("*",)
        for pat in patterns:
            hits = [p for n, p in params
                    if fnmatch.fnmatchcase(n, pat) or n.startswith(pat + ".")]
            if not hits:
                names = [n for n, _ in params] + [n for n, _ in self.named_modules() if n]
                close = difflib.get_close_matches(pat, names, n=5, cutoff=0.4)
                raise NotFoundError(f"{type(self).__name__}: no parameter matches {pat!r}"
                                    + (f"; closest: {', '.join(map(repr, close))}"
                                       if close else ""))
            for p in hits:
                p.requires_grad = flag
        return self

    # -- state -----------------------------------------------------------------------
    def _state_items(self, prefix: str = ""):
        """(name, holder) in PyTorch's state_dict order: own params, own buffers, children."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        for name, b in self._buffers.items():
            if b is not None and b.persistent:
                yield prefix + name, b
        for name, m in self._modules.items():
            if m is not None:
                yield from m._state_items(f"{prefix}{name}.")

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of all parameters and persistent buffers, by PyTorch's dotted names."""
        return OrderedDict((k, v.data.copy()) for k, v in self._state_items())

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Load numpy arrays or torch tensors by name. Shapes must match exactly."""
        own = OrderedDict(self._state_items())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {', '.join(missing)}")
            if unexpected:
                parts.append(f"unexpected keys: {', '.join(unexpected)}")
            raise KeyError(f"load_state_dict for {type(self).__name__}: " + "; ".join(parts))
        for name, holder in own.items():
            if name not in state_dict:
                continue
            arr = _to_numpy(state_dict[name])
            if tuple(arr.shape) != tuple(holder.data.shape):
                raise ValueError(f"load_state_dict: '{name}' has shape {tuple(arr.shape)} in "
                                 f"the state dict but {tuple(holder.data.shape)} in the model")
            holder.data = arr
        return IncompatibleKeys(missing, unexpected)

    # -- printing --------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {sub}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def _same_kind(d: Dict, module: Module, value) -> bool:
    """Whether assigning ``value`` keeps an entry of dict ``d`` (None keeps it)."""
    if value is None:
        return True
    if d is module._parameters:
        return isinstance(value, Parameter)
    if d is module._buffers:
        return isinstance(value, Buffer)
    return isinstance(value, Module)
