"""The graph IR: what tracing builds, autodiff extends and ``fileformat`` writes.

A :class:`Graph` is a flat list of tensors and nodes plus up to three programs (eval, grad,
train), each an ordered list of node indices. It mirrors the ``.etm`` file one to one
(``docs/format.md``): the C runtime loads exactly this structure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

# dtypes (docs/format.md, TENSORS.dtype)
F32, I32, I64, U8, I8 = "f32", "i32", "i64", "u8", "i8"
DTYPES = (F32, I32, I64, U8, I8)
NUMPY_DTYPE = {F32: np.float32, I32: np.int32, I64: np.int64, U8: np.uint8, I8: np.int8}
DTYPE_CODES = {F32: 0, I32: 1, I64: 2, U8: 3, I8: 4}  # enum et_dtype (tests/test_mirrors.py)
CODE_DTYPES = {v: k for k, v in DTYPE_CODES.items()}

# tensor kinds (docs/format.md, TENSORS.kind)
INPUT, PARAM, BUFFER, GRAD, OPTSTATE, CONST, ACT = range(7)
KIND_NAMES = ("input", "param", "buffer", "grad", "optstate", "const", "act")
KINDS_WITH_DATA = (PARAM, BUFFER, OPTSTATE, CONST)

# program kinds
EVAL, GRAD_PROGRAM, TRAIN = 0, 1, 2
PROGRAM_NAMES = ("eval", "grad", "train")

MAX_DIMS, MAX_INPUTS, MAX_OUTPUTS, MAX_IATTR, MAX_FATTR = 6, 8, 4, 16, 8


@dataclass
class TensorDef:
    index: int
    name: str
    dtype: str
    kind: int
    shape: tuple
    trainable: bool = False
    data: Optional[np.ndarray] = None
    owner: Optional[int] = None  # PARAM index for GRAD / OPTSTATE tensors
    is_output: bool = False

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass
class Node:
    op: str  # name in edgetrain.ops.OPS
    inputs: List[int]  # tensor indices, -1 = absent optional input
    outputs: List[int]  # tensor indices, -1 = absent optional output
    iattr: List[int] = field(default_factory=list)
    fattr: List[float] = field(default_factory=list)
    layer: str = ""  # module path, for error messages


@dataclass
class Program:
    kind: int
    nodes: List[int] = field(default_factory=list)
    inputs: List[int] = field(default_factory=list)
    outputs: Dict[str, int] = field(default_factory=dict)


@dataclass
class TrainState:
    """STATE section: counters, RNG, learning rate and schedule."""
    step: int = 0
    epoch: int = 0
    seed: int = 0x5EED
    rng_counter: int = 0
    base_lr: float = 0.0
    sched_kind: int = 0  # 0 constant, 1 step, 2 multistep, 3 exponential, 4 cosine, 5 inv
    sched_f: List[float] = field(default_factory=lambda: [0.0] * 6)
    sched_i: List[int] = field(default_factory=lambda: [0] * 6)
    warmup: int = 0
    opt_kind: int = 0  # 0 none, 1 sgd, 2 adam, 3 adamw
    max_batch: int = 0  # largest batch fed without an explicit Resize; 0 = the inputs' batch


class Graph:
    def __init__(self) -> None:
        self.tensors: List[TensorDef] = []
        self.nodes: List[Node] = []
        self.programs: Dict[int, Program] = {}
        self.state = TrainState()
        self.meta: dict = {}

    # -- building ------------------------------------------------------------------
    def add_tensor(self, name: str, dtype: str, kind: int, shape: Sequence[int], *,
                   trainable: bool = False, data: Optional[np.ndarray] = None,
                   owner: Optional[int] = None) -> TensorDef:
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}")
        shape = tuple(int(d) for d in shape)
        if len(shape) > MAX_DIMS:
            raise ValueError(f"tensor {name!r}: rank {len(shape)} > {MAX_DIMS}")
        if data is not None:
            data = np.ascontiguousarray(data, dtype=NUMPY_DTYPE[dtype]).reshape(shape)
        t = TensorDef(len(self.tensors), name, dtype, kind, shape, trainable, data, owner)
        self.tensors.append(t)
        return t

    def add_node(self, node: Node) -> int:
        if len(node.inputs) > MAX_INPUTS or len(node.outputs) > MAX_OUTPUTS:
            raise ValueError(f"node {node.op}: too many inputs/outputs")
        if len(node.iattr) > MAX_IATTR or len(node.fattr) > MAX_FATTR:
            raise ValueError(f"node {node.op}: too many attributes")
        self.nodes.append(node)
        return len(self.nodes) - 1

    # -- queries --------------------------------------------------------------------
    def find(self, name: str) -> Optional[TensorDef]:
        for t in self.tensors:
            if t.name == name:
                return t
        return None

    def of_kind(self, kind: int) -> List[TensorDef]:
        return [t for t in self.tensors if t.kind == kind]
