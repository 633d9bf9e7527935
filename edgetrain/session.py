"""``TrainSession``: train and run an ``.etm`` program with the C runtime.

The verbs are MindSpore Lite's (``Train``, ``Eval``, ``RunGraph``, ``SaveToFile``,
``Resize``); everything else is PEP 8. All execution happens in C (``edgetrain._native``);
this class converts arguments and results and keeps no model state of its own.
"""
from __future__ import annotations

import functools
import os
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional

import numpy as np

from . import fileformat, ir
from .optim.optimizer import ACCUM_COUNT
from .errors import (DTypeError, NotFoundError, SessionStateError, ShapeError,
                     InvalidArgumentError)

try:
    from . import _native
except ImportError as e:  # pragma: no cover - only without a build
    raise ImportError("edgetrain's native extension is not built; run `pip install .` "
                      f"(or `make test`) first ({e})") from e


def _serialised(method):
    """Run a TrainSession method as one unit: it holds the session's lock throughout."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with self._s.lock:
            return method(self, *args, **kwargs)
    return call


class TrainSession:
    """A loaded training program.

    Create one with :meth:`from_module` (trace a :class:`edgetrain.nn.Module`),
    :meth:`from_graph` or :meth:`load` (an ``.etm`` file).

    Threads: a session may be shared between threads. Calls on one session are serialised by
    its lock (:attr:`lock`, re-entrant; a waiting thread releases the GIL), and each call is one
    unit: ``RunGraph`` feeds its inputs, runs and copies its outputs without another call in
    between, and ``SaveToFile`` writes one consistent state. To make several calls one unit
    (``Resize`` + ``RunGraph``, ``Eval`` + ``RunGraph`` + ``step``), hold the lock yourself::

        with sess.lock:
            sess.Eval()
            sess.Resize({"data": (n, 1, 28, 28)})
            out = sess.RunGraph({"data": x})

    Different sessions run in parallel.
    """

    def __init__(self, native: "_native.Session"):
        self._s = native
        self._recompute = {}   # the memory_budget plan (edgetrain.recompute), if any
        self._release_at_run = False   # give freed heap pages back before the first run
        self._names = {}
        for i in range(native.tensor_count()):
            info = native.info(i)
            if info["name"]:
                self._names[info["name"]] = i

    @property
    def lock(self):
        """The session's re-entrant lock: ``with sess.lock:`` makes several calls one unit."""
        return self._s.lock

    # ---- construction ---------------------------------------------------------------
    @classmethod
    def from_module(cls, model, inputs: Mapping[str, tuple], loss=None,
                    labels: Optional[Mapping[str, tuple]] = None, optimizer=None,
                    scheduler=None, threads: Optional[int] = None,
                    seed: Optional[int] = None, max_batch: Optional[int] = None,
                    output=None, max_memory: Optional[int] = None,
                    teacher=None, quantize=None,
                    memory_budget="auto") -> "TrainSession":
        """Trace ``model`` into a trainable program and load it.

        ``inputs`` maps input names to shapes (float32; ``(shape, "int64")`` for integer data
        such as Embedding indices); ``labels`` maps label names to
        ``(shape, dtype)`` with dtype ``"int64"`` (class indices) or ``"float32"``;
        ``loss`` is called as ``loss(output, *labels)`` while tracing. The batch may be left
        open (``(None, 1, 28, 28)``); ``max_batch`` is the largest batch accepted without a
        :meth:`Resize`. For a model returning a tuple or dict, ``output`` (name or index)
        names the output the loss applies to; :meth:`RunGraph` returns all of them.
        ``max_memory`` (bytes) bounds what the session may plan; by default half the
        physical memory. A plan above it raises :class:`ResourceLimitError` before any
        allocation (also at :meth:`Resize` and at an automatic batch change).
        ``teacher`` (a module) distils into ``model``: the loss is called as
        ``loss(output, teacher_output, *labels)`` (e.g. ``nn.DistillLoss(20, 0.9)``); the
        teacher runs forward only, in eval form, inside each training step, as constants.
        ``quantize`` (an :class:`edgetrain.quant.QConfig`) traces a copy of ``model`` prepared
        for quantization-aware training (:func:`edgetrain.quant.prepare_qat`). With both,
        ``teacher=model`` is distill-QAT (MNN's distillTrainQuant): the float model, as it is
        now, teaches its own QAT copy (the teacher is a frozen snapshot of its weights).
        ``memory_budget`` (bytes) bounds the activation arena: cheap forward segments are
        recomputed in the backward when the plan exceeds it (the same bits, more time;
        :mod:`edgetrain.recompute`); :meth:`memory_info` shows the plan. The default
        ``"auto"`` recomputes BatchNorm / elementwise segments within 2 % of the step's work;
        ``None`` keeps every activation the backward reads.
        """
        from .export import build_graph

        if quantize is not None:
            from .quant import prepare_qat
            if teacher is not None and teacher is model:
                import copy
                teacher = copy.deepcopy(model)   # the QAT copy shares model's parameters
            model = prepare_qat(model, quantize)
        graph = build_graph(model, inputs=dict(inputs), loss=loss,
                            labels=dict(labels) if labels else None,
                            optimizer=optimizer, scheduler=scheduler, max_batch=max_batch,
                            output=output, teacher=teacher, memory_budget=memory_budget)
        if seed is not None:
            graph.state.seed = int(seed)
        recompute = dict(graph.meta.get("recompute") or {})
        buf = fileformat.dumps_buffer(graph)
        del graph  # its copies of the weights: the file bytes hold them now
        return cls._from_buffer(buf, threads, max_memory, recompute)

    @classmethod
    def from_graph(cls, graph: ir.Graph, threads: Optional[int] = None,
                   max_memory: Optional[int] = None) -> "TrainSession":
        recompute = dict(graph.meta.get("recompute") or {})
        return cls._from_buffer(fileformat.dumps_buffer(graph), threads, max_memory, recompute)

    @classmethod
    def _from_buffer(cls, buf: bytearray, threads, max_memory, recompute) -> "TrainSession":
        """Load the file bytes ``buf``, then empty it: past this point the session holds the
        only copy of the weights the export made, and the heap pages freed by the export go
        back to the system (they would otherwise stay in the process's peak RSS)."""
        threads, max_memory = _threads(threads), _max_memory(max_memory)
        _native.release_free_memory()
        try:
            native = _native.Session.from_bytes(buf, threads, max_memory)
        finally:
            buf.clear()
            _native.release_free_memory()
        sess = cls(native)
        sess._recompute = recompute   # the memory_budget plan (graph.meta), for memory_info
        # The caller usually drops the traced module (and its optimizer) after construction:
        # glibc keeps the heap pages its arrays freed, so they would sit under the activation
        # arena the first run fills. That run gives them back first (once; malloc_trim).
        sess._release_at_run = True
        return sess

    @classmethod
    def load(cls, path, threads: Optional[int] = None,
             max_memory: Optional[int] = None) -> "TrainSession":
        """Load an ``.etm`` file (full training state or inference-only). ``max_memory``:
        see :meth:`from_module`."""
        native = _native.Session.from_file(os.fspath(path), _threads(threads),
                                           _max_memory(max_memory))
        _native.release_free_memory()  # the runtime's read buffer (the whole file) is freed
        sess = cls(native)
        sess._recompute = None   # read from the file's META when memory_info asks
        sess._path = os.fspath(path)
        return sess

    @classmethod
    def from_bytes(cls, data: bytes, threads: Optional[int] = None,
                   max_memory: Optional[int] = None) -> "TrainSession":
        return cls(_native.Session.from_bytes(bytes(data), _threads(threads),
                                              _max_memory(max_memory)))

    # ---- the session verbs -----------------------------------------------------------
    @_serialised
    def Train(self) -> None:
        """Select the training program (forward, backward, optimizer update)."""
        if not self._s.has_program("train"):
            raise SessionStateError("this model has no training program "
                                    "(inference-only file, or no optimizer at export)")
        self._s.set_program("train")

    def Eval(self) -> None:
        """Select the inference program (running statistics, no dropout)."""
        self._s.set_program("eval")

    @_serialised
    def Grad(self) -> None:
        """Select the gradient program (forward + backward, no update)."""
        if not self._s.has_program("grad"):
            raise SessionStateError("this model has no gradient program")
        self._s.set_program("grad")

    @property
    def is_train(self) -> bool:
        return self._s.program == "train"

    @property
    def mode(self) -> str:
        return self._s.program

    @_serialised
    def RunGraph(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run the selected program once; returns copies of its outputs by name.

        ``feeds`` must hold every input of the program (the labels only for train/grad).
        Arrays must have the planned shapes except for the batch (dim 0): any batch up to
        :attr:`max_batch` re-plans in the runtime (recent plans are cached); call
        :meth:`Resize` for a larger batch or another shape. A train step whose loss or
        gradient is NaN/Inf raises :class:`~edgetrain.errors.NonFiniteError` and changes
        nothing (see :attr:`nonfinite`).
        """
        needed = [self._s.info(i)["name"] for i in self._s.inputs()]
        missing = [n for n in needed if n not in feeds]
        if missing:
            raise NotFoundError(f"RunGraph ({self.mode}): missing input(s) {missing}; "
                                f"the program reads {needed}")
        for name in needed:
            self._s.set_input(name, _as_input(name, feeds[name]))
        if self._release_at_run:
            self._release_at_run = False
            _native.release_free_memory()
        self._s.run()
        return {name: self._s.get(t) for name, t in self._s.outputs().items()}

    @_serialised
    def predict(self, x, batch_size: Optional[int] = None):
        """Run the eval program on ``x`` (an array for the model's one input, or a dict by
        input name) of any batch size, in chunks of at most ``batch_size`` (default
        :attr:`max_batch`). Returns the output array (a dict for a model with several
        outputs). The selected program (train/grad/eval) is restored afterwards."""
        prev = self.mode
        self._s.set_program("eval")
        try:
            names = self.input_names
            if isinstance(x, Mapping):
                feeds = {k: _as_input(k, v) for k, v in x.items()}
            elif len(names) == 1:
                feeds = {names[0]: _as_input(names[0], x)}
            else:
                raise InvalidArgumentError(f"predict: the model reads {names}; pass a dict")
            n = len(next(iter(feeds.values())))
            step = int(batch_size) if batch_size is not None else self.max_batch
            if step < 1:
                raise InvalidArgumentError(f"predict: batch_size must be >= 1, got {step}")
            parts = [self.RunGraph({k: v[i:i + step] for k, v in feeds.items()})
                     for i in range(0, max(n, 1), step)]
        finally:
            self._s.set_program(prev)
        out = {k: (parts[0][k] if len(parts) == 1 else np.concatenate([p[k] for p in parts]))
               for k in parts[0]}
        return out["output"] if list(out) == ["output"] else out

    @property
    def max_batch(self) -> int:
        """Largest batch :meth:`RunGraph` accepts without :meth:`Resize` (set at export)."""
        return int(self._s.max_batch)

    @property
    def cached_plans(self) -> int:
        """Memory plans the runtime holds (the current one and up to 3 other batch sizes)."""
        return int(self._s.cached_plans)

    @property
    def nonfinite(self) -> str:
        """What a train step with a NaN/Inf loss or gradient does: ``"raise"`` (default,
        :class:`~edgetrain.errors.NonFiniteError`), ``"skip"`` (the step is skipped and
        counted in :attr:`skipped_steps`) or ``"off"`` (no check). Either way a bad step
        changes no weight, optimizer state, BatchNorm statistic or step counter."""
        return self._s.nonfinite

    @nonfinite.setter
    def nonfinite(self, policy: str) -> None:
        if policy not in ("raise", "skip", "off"):
            raise InvalidArgumentError(f"nonfinite must be 'raise', 'skip' or 'off', got "
                                       f"{policy!r}")
        self._s.nonfinite = policy

    @property
    def skipped_steps(self) -> int:
        """Train steps skipped for a non-finite loss or gradient (``nonfinite="skip"``)."""
        return int(self._s.skipped_steps)

    @property
    def last_step_skipped(self) -> bool:
        return bool(self._s.last_step_skipped)

    def Resize(self, shapes: Mapping[str, tuple]) -> None:
        """Re-plan for new input shapes, e.g. ``{"data": (17, 1, 28, 28), "label": (17,)}``."""
        self._s.resize({k: tuple(v) for k, v in shapes.items()})

    def SaveToFile(self, path, inference_only: bool = False, int8: bool = False) -> None:
        """Save atomically. Full training state by default (resumable); with
        ``inference_only`` the eval program alone, BatchNorm folded into convolutions.

        Both kinds go through the runtime's one writer: a unique temporary file in the target's
        folder, fsync, rename, fsync of the folder. A failed save raises ``ModelIOError`` naming
        the cause (missing folder, a folder path, read-only or unwritable folder, full disk) and
        leaves the old file unchanged. The new file keeps the old one's permissions; a symlink is
        written through to the file it points to. The saved state is the state between two calls.

        ``int8=True`` (with ``inference_only``, for a QAT session) writes the int8 model: the eval
        program, which runs the int8 kernels, with int8 weights, int32 biases and fp32
        requantize multipliers as constants (``edgetrain.quant.int8_graph``): its outputs are
        those of ``Eval()`` bit for bit.
        """
        path = os.fspath(path)
        if int8:
            if not inference_only:
                raise ValueError("int8=True writes an inference file: pass inference_only=True")
            from .quant import int8_graph

            def run(g):
                return TrainSession.from_graph(g, threads=1).RunGraph({})

            fileformat.save_atomic(path, fileformat.dumps(int8_graph(self.to_graph(), run),
                                                          inference_only=True),
                                   context="SaveToFile(int8=True)")
            return
        if not inference_only:
            self._s.save(path)
            return
        from .export import inference_graph

        graph = self.to_graph()  # one consistent snapshot, taken under the lock
        fileformat.save_atomic(path, fileformat.dumps(inference_graph(graph), inference_only=True),
                               context="SaveToFile(inference_only=True)")

    def export_onnx(self, path, opset: int = 17, inference_only: bool = False,
                    int8: bool = False) -> None:
        """Write the eval program as an ONNX model (``onnx`` optional extra) that onnxruntime
        runs with the session's current weights; with ``inference_only`` BatchNorm is folded
        into the convolutions first, as in :meth:`SaveToFile`. The batch dimension stays
        symbolic. Written atomically; the old file stays on error.

        ``int8=True`` (with ``inference_only``, for a QAT session) writes the int8 eval program
        in QDQ form (``edgetrain.onnx_qdq``): uint8 QuantizeLinear / DequantizeLinear around
        float Conv / Gemm / Relu / MaxPool, int8 per-channel weights and int32 biases (the int8
        file's values), which onnxruntime fuses into its integer kernels (docs/int8.md)."""
        from . import onnx_export
        from .export import inference_graph

        if int8:
            if not inference_only:
                raise ValueError("int8=True writes an inference model: pass inference_only=True")
            from . import onnx_qdq

            def run(g):
                return TrainSession.from_graph(g, threads=1).RunGraph({})

            onnx_qdq.save(self.to_graph(), os.fspath(path), run, opset=opset)
            return
        graph = self.to_graph()
        onnx_export.save(inference_graph(graph) if inference_only else graph, os.fspath(path),
                         opset=opset)

    @_serialised
    def to_graph(self) -> ir.Graph:
        """The session's program with its current tensors and counters, as a Graph."""
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "session.etm")
            self._s.save(p)
            return fileformat.load(p)

    # ---- inputs, outputs and tensors ------------------------------------------------
    @property
    @_serialised
    def input_names(self):
        return [self._s.info(i)["name"] for i in self._s.inputs()]

    @property
    @_serialised
    def output_names(self):
        return list(self._s.outputs())

    @_serialised
    def input_shapes(self) -> Dict[str, tuple]:
        return {self._s.info(i)["name"]: self._s.info(i)["shape"] for i in self._s.inputs()}

    def _tensors_of(self, kind: str) -> Dict[str, int]:
        return {name: i for name, i in self._names.items() if self._s.info(i)["kind"] == kind}

    @_serialised
    def get_parameters(self, include_buffers: bool = True) -> Dict[str, np.ndarray]:
        """Copies of the parameters (and BN running statistics) by PyTorch-style name."""
        kinds = ("param", "buffer") if include_buffers else ("param",)
        return {name: self._s.get(i) for name, i in self._names.items()
                if self._s.info(i)["kind"] in kinds and name != ACCUM_COUNT}

    @_serialised
    def set_parameters(self, values: Mapping[str, np.ndarray], strict: bool = False) -> None:
        """Overwrite parameters/buffers by name (shapes must match)."""
        known = {**self._tensors_of("param"), **self._tensors_of("buffer")}
        unknown = [k for k in values if k not in known]
        if unknown:
            raise NotFoundError(f"set_parameters: unknown parameter(s) {unknown}")
        if strict:
            missing = [k for k in known if k not in values]
            if missing:
                raise NotFoundError(f"set_parameters: missing parameter(s) {missing}")
        for k, v in values.items():
            self._s.set(known[k], v)

    @_serialised
    def state_dict(self, as_torch: bool = False) -> "OrderedDict[str, np.ndarray]":
        """Parameters and buffers by PyTorch name and shape, ready for
        ``model.load_state_dict`` (an ``edgetrain.nn.Module``, or a ``torch.nn.Module`` with
        ``as_torch=True``, which returns torch tensors). Every BatchNorm also gets
        ``num_batches_tracked``: the session's step (train steps run; each one showed every
        BatchNorm one batch), as an int64 scalar."""
        out = OrderedDict()
        names = {self._s.info(i)["name"] for i in range(self._s.tensor_count())}
        for i in range(self._s.tensor_count()):
            info = self._s.info(i)
            if info["kind"] not in ("param", "buffer") or info["name"] == ACCUM_COUNT:
                continue  # the accumulation counter belongs to the optimizer, not the model
            out[info["name"]] = self._s.get(i)
            prefix = info["name"][:-len("running_var")]
            if info["name"].endswith("running_var") and prefix + "running_mean" in names:
                out[prefix + "num_batches_tracked"] = np.array(self.step, np.int64)
        if as_torch:
            import torch

            out = OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v)))
                              for k, v in out.items())
        return out

    @_serialised
    def update_module(self, model, strict: bool = True) -> None:
        """Copy the trained values back into ``model`` (the ``edgetrain.nn.Module`` the
        session was made from, or one with the same structure), including BatchNorm
        running statistics and ``num_batches_tracked``. With ``strict`` every parameter and
        persistent buffer of ``model`` must be in the session."""
        own = OrderedDict(model._state_items())
        values = self.state_dict()
        missing = [k for k in own if k not in values]
        if strict and missing:
            raise NotFoundError(f"update_module: the session has no value for {missing}")
        for k, holder in own.items():
            if k not in values:
                continue
            if tuple(values[k].shape) != tuple(holder.data.shape):
                raise ShapeError(f"update_module: {k!r} has shape {tuple(values[k].shape)} in "
                                 f"the session but {tuple(holder.data.shape)} in the model")
            holder.data = values[k]

    def get_gradients(self) -> Dict[str, np.ndarray]:
        """Gradients of the trainable parameters from the last train/grad run."""
        out = {}
        for i in range(self._s.tensor_count()):
            info = self._s.info(i)
            if info["kind"] == "grad":
                name = info["name"]
                out[name[5:] if name.startswith("grad:") else name] = self._s.get(i)
        return out

    @_serialised
    def get_tensor(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise NotFoundError(f"no tensor named {name!r}")
        return self._s.get(self._names[name])

    @_serialised
    def set_tensor(self, name: str, value: np.ndarray) -> None:
        """Overwrite any named tensor (e.g. an optimizer state such as
        ``prox_anchor:<param>``); the shape must match."""
        if name not in self._names:
            raise NotFoundError(f"no tensor named {name!r}")
        self._s.set(self._names[name], value)

    @_serialised
    def trainable_parameters(self):
        return [n for n, i in self._tensors_of("param").items() if self._s.info(i)["trainable"]]

    # ---- optimizer state, threads, memory --------------------------------------------
    @property
    def learning_rate(self) -> float:
        """Learning rate of the next step (schedule applied). Setting it sets the base rate."""
        return float(self._s.lr)

    @learning_rate.setter
    def learning_rate(self, lr: float) -> None:
        if not np.isfinite(lr) or lr < 0:
            raise InvalidArgumentError(f"learning rate must be a finite number >= 0, got {lr}")
        self._s.base_lr = float(lr)

    @property
    def base_learning_rate(self) -> float:
        return float(self._s.base_lr)

    @property
    def step(self) -> int:
        return int(self._s.step)

    @step.setter
    def step(self, v: int) -> None:
        self._s.step = int(v)

    @property
    def micro_step(self) -> int:
        """Gradient accumulation (``accumulate=k``): micro-batches accumulated since the last
        update (0..k-1; 0 right after an update, and always 0 without accumulation)."""
        i = self._names.get(ACCUM_COUNT)
        return 0 if i is None else int(self._s.get(i))

    @property
    def epoch(self) -> int:
        return int(self._s.epoch)

    @epoch.setter
    def epoch(self, v: int) -> None:
        self._s.epoch = int(v)

    @property
    def seed(self) -> int:
        return int(self._s.seed)

    @seed.setter
    def seed(self, v: int) -> None:
        self._s.seed = int(v)

    @property
    def threads(self) -> int:
        return self._s.threads

    @threads.setter
    def threads(self, n: int) -> None:
        self._s.threads = _threads(n)

    @property
    def max_memory(self) -> int:
        """The memory limit (bytes) every plan of this session is checked against."""
        return int(self._s.max_memory)

    @max_memory.setter
    def max_memory(self, n: Optional[int]) -> None:
        self._s.max_memory = _max_memory(n)

    def memory_info(self) -> Dict[str, int]:
        """Planned arena bytes: params, grads, optimizer, activations, workspace, eval_cache
        (the eval program's packed conv weights, made at its first run; README), total;
        grads_in_arena: the part of grads planned in the activation arena (README; the arena is
        activations + grads_in_arena);
        for a session whose plan recomputes activations (``memory_budget``) also the recompute
        plan: memory_budget, arena_unconstrained, recomputed_tensors, recomputed_bytes,
        recompute_nodes (and auto = 1 when ``"auto"`` chose it)."""
        info = self._s.memory_info()
        if self._recompute is None:   # loaded from a file: its plan, if it has one
            try:
                plan = fileformat.load(self._path).meta.get("recompute")
            except Exception:   # the file changed since: no plan to report
                plan = None
            self._recompute = dict(plan) if isinstance(plan, dict) else {}
        info.update({k: v for k, v in self._recompute.items() if k != "arena"})
        return info

    # ---- profiling -----------------------------------------------------------------
    @property
    def profiling(self) -> bool:
        """Per-node timing in the runtime (off by default; ``EDGETRAIN_PROFILE=1`` switches it
        on at load). Setting it to True (again) zeroes the counters."""
        return self._s.profiling

    @profiling.setter
    def profiling(self, on: bool) -> None:
        self._s.profiling = bool(on)

    @_serialised
    def profile(self, by: str = "op") -> Dict[str, Dict[str, float]]:
        """Cumulative node timings since profiling was switched on.

        ``by="op"`` groups by op type, ``by="node"`` gives one row per node
        (``"<id> <op> <layer>"``). Each row: ``ms`` (total), ``calls``, ``ms_per_call``.
        Rows are ordered by decreasing time.
        """
        if by not in ("op", "node"):
            raise InvalidArgumentError(f"profile(by=...) must be 'op' or 'node', got {by!r}")
        rows: Dict[str, Dict[str, float]] = {}
        for i, (op, layer, ns, calls) in enumerate(self._s.profile()):
            if not calls:
                continue
            key = op if by == "op" else f"{i} {op} {layer}".rstrip()
            r = rows.setdefault(key, {"ms": 0.0, "calls": 0})
            r["ms"] += ns / 1e6
            r["calls"] += calls
        for r in rows.values():
            r["ms_per_call"] = r["ms"] / r["calls"]
        return dict(sorted(rows.items(), key=lambda kv: -kv[1]["ms"]))

    @_serialised
    def eval_segments(self) -> List[Dict[str, object]]:
        """The eval program's image-first segments for the current input shapes: runs of large
        convolutions, adds and activations that each image goes through before the next, one
        image per thread (docs/threads.md). Each: ``nodes`` (node ids ``first`` .. ``last``,
        ``count`` of them), the ``layers`` of the first and last node, and its ``pairs``: a
        pointwise convolution and the depthwise one reading its output, run a block of
        ``channels`` at a time (``layers``: theirs)."""
        layers = [layer for _, layer, _, _ in self._s.profile()]
        pairs = self._s.eval_pairs()
        return [{"first": a, "last": b, "count": n, "layers": (layers[a], layers[b]),
                 "pairs": [{"layers": (layers[p], layers[d]), "channels": c}
                           for p, d, c in pairs if a <= p <= b]}
                for a, b, n in self._s.eval_segments()]

    @_serialised
    def node_groups(self, program: str = "train") -> List[Dict[str, object]]:
        """The concurrent groups of the ``train`` (or ``grad``) program for the current input
        shapes: consecutive independent small nodes -- a convolution's input and weight
        gradients at small planes, runs of small optimizer updates -- that a run hands out side
        by side, each on one thread (docs/threads.md). Each: ``nodes`` (node ids ``first`` ..
        ``last``, ``count`` of them) and the ``layers`` of the first and last node."""
        if program not in ("train", "grad"):
            raise InvalidArgumentError(f"program must be 'train' or 'grad', got {program!r}")
        if not self._s.has_program(program):
            return []
        layers = [layer for _, layer, _, _ in self._s.profile()]
        return [{"first": a, "last": b, "count": n, "layers": (layers[a], layers[b])}
                for a, b, n in self._s.node_groups(program)]

    @_serialised
    def summary(self) -> str:
        from .export import graph_summary

        return graph_summary(self.to_graph())

    @_serialised
    def __repr__(self) -> str:
        return (f"TrainSession(mode={self.mode!r}, inputs={self.input_shapes()}, "
                f"step={self.step}, threads={self.threads})")


def _threads(n: Optional[int]) -> int:
    if n is None:
        return 0  # the runtime picks all available cores
    n = _int_arg("threads", n)
    limit = _native.thread_limit()
    if not 1 <= n <= limit:
        raise InvalidArgumentError(f"threads must be in 1..{limit} (the runtime's limit on this "
                                   f"machine, a few per online core), got {n}")
    return n


def _max_memory(n: Optional[int]) -> int:
    if n is None:
        return 0  # the runtime's default: half the physical memory
    n = _int_arg("max_memory", n)
    if not 1 <= n < 2 ** 64:
        raise InvalidArgumentError(f"max_memory must be a byte count >= 1, got {n}")
    return n


def _int_arg(what: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise InvalidArgumentError(f"{what} must be an integer, got {n!r}")
    return int(n)


def _as_input(name: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iu" and arr.dtype not in (np.int32, np.int64):
        arr = arr.astype(np.int64)
    elif arr.dtype not in (np.float32, np.int32, np.int64):
        raise DTypeError(f"input {name!r}: unsupported dtype {arr.dtype} "
                         "(use float32 data and int64 labels)")
    return np.ascontiguousarray(arr)
