"""Read an ONNX file into plain Python data, checking everything on the way.

:func:`read_model` turns a ``.onnx`` path, its bytes or an ``onnx.ModelProto`` into an
:class:`OnnxGraph`: graph inputs with their shapes, initializers as numpy arrays, nodes with
decoded attributes, in topological order. Nothing past this module sees a protobuf. Every
defect is an :mod:`edgetrain.errors` exception that names the file, the node and its op:
an empty file or bytes that are not an ONNX model, an unsupported IR version or opset, a
missing initializer, tensor data shorter (or longer) than its dims, a cycle, or external data
that is not beside the model. Nodes out of topological order are sorted (``OnnxGraph.sorted``
says so). External data is read only from files inside the model's folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import ModelFormatError, ModelIOError, UnsupportedError

# The default-domain opsets whose semantics for the mapped ops this converter follows
# (opsets 19-23 changed them only by admitting more element types; AveragePool's new
# dilations attribute is checked).
MIN_OPSET, MAX_OPSET = 9, 23
MIN_IR_VERSION = 3
DEFAULT_DOMAINS = ("", "ai.onnx")
# Largest tensor accepted (elements); bounds every allocation made from a file's dims.
MAX_ELEMENTS = 1 << 31
MAX_RANK = 8

# TensorProto.DataType -> numpy dtype (little endian) and the typed field holding its values.
_DTYPES = {
    1: (np.dtype("<f4"), "float_data"),
    2: (np.dtype("u1"), "int32_data"),
    3: (np.dtype("i1"), "int32_data"),
    4: (np.dtype("<u2"), "int32_data"),
    5: (np.dtype("<i2"), "int32_data"),
    6: (np.dtype("<i4"), "int32_data"),
    7: (np.dtype("<i8"), "int64_data"),
    9: (np.dtype("?"), "int32_data"),
    10: (np.dtype("<f2"), "int32_data"),
    11: (np.dtype("<f8"), "double_data"),
    12: (np.dtype("<u4"), "uint64_data"),
    13: (np.dtype("<u8"), "uint64_data"),
}
_DTYPE_NAMES = {0: "UNDEFINED", 8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16"}


@dataclass
class OnnxNode:
    index: int  # position in the file
    name: str  # the file's node name, or "<op>_<index>" when it has none
    op: str
    domain: str
    inputs: List[str]  # "" = absent optional input
    outputs: List[str]
    attrs: Dict[str, object] = field(default_factory=dict)

    def where(self, file: str) -> str:
        return f"{file}: node '{self.name}' ({self.op})"


@dataclass
class OnnxGraph:
    file: str  # the path, or "<bytes>" for a model given as bytes
    opset: int
    ir_version: int
    producer: str
    inputs: List[Tuple[str, Optional[Tuple[Optional[int], ...]]]]  # (name, shape or None)
    outputs: List[str]
    initializers: Dict[str, np.ndarray]
    nodes: List[OnnxNode]
    sorted: bool = False  # True when the file's nodes were out of topological order

    def producers(self) -> Dict[str, OnnxNode]:
        return {o: n for n in self.nodes for o in n.outputs if o}

    def tensor_names(self) -> List[str]:
        names = [n for n, _ in self.inputs]
        for nd in self.nodes:
            names += [o for o in nd.outputs if o]
        return names


def _text(v) -> str:
    """A protobuf string field as str: the runtime hands back bytes when the field holds
    invalid UTF-8 (a corrupt file)."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _onnx():
    try:
        import onnx  # noqa: F401
    except ImportError as e:  # pragma: no cover - the extra is missing
        raise ImportError("reading ONNX files needs the onnx package: "
                          "pip install 'edgetrain[onnx]'") from e
    return onnx


# ------------------------------------------------------------------------------------
# the file
# ------------------------------------------------------------------------------------
def read_model(src) -> OnnxGraph:
    """An :class:`OnnxGraph` from a path, bytes, an ``onnx.ModelProto`` or an object with a
    ``model_proto`` (the dynamo exporter's ``ONNXProgram``)."""
    onnx = _onnx()
    base_dir = None
    if hasattr(src, "model_proto"):
        src = src.model_proto
    if isinstance(src, onnx.ModelProto):
        file, model = "<ModelProto>", src
    else:
        if isinstance(src, (bytes, bytearray, memoryview)):
            file, data = "<bytes>", bytes(src)
        elif isinstance(src, (str, os.PathLike)):
            file = os.fspath(src)
            data = _read_file(file)
            base_dir = os.path.dirname(os.path.abspath(file))
        else:
            raise TypeError(f"from_onnx expects a path, bytes or an onnx.ModelProto, got "
                            f"{type(src).__name__}")
        model = _parse(onnx, file, data)
    return _graph_of(model, file, base_dir)


def _read_file(file: str) -> bytes:
    if os.path.isdir(file):
        raise ModelIOError(f"{file}: is a folder, not an ONNX file")
    try:
        with open(file, "rb") as f:
            return f.read()
    except OSError as e:
        raise ModelIOError(f"{file}: cannot read the ONNX file: {e.strerror or e}") from None


def _parse(onnx, file: str, data: bytes):
    if not data:
        raise ModelFormatError(f"{file}: empty file (0 bytes), not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # the protobuf runtime's decode errors have no common base
        raise ModelFormatError(f"{file}: not an ONNX model ({len(data)} bytes that do not decode "
                               f"as an ONNX protobuf: {e}); truncated or not a .onnx file?"
                               ) from None
    if not model.HasField("graph") or not model.opset_import:
        raise ModelFormatError(f"{file}: not an ONNX model ({len(data)} bytes decode, but there "
                               "is no graph or no opset); truncated or not a .onnx file?")
    return model


def _graph_of(model, file: str, base_dir: Optional[str]) -> OnnxGraph:
    if model.ir_version < MIN_IR_VERSION:
        raise ModelFormatError(f"{file}: IR version {model.ir_version} is not supported "
                               f"(need {MIN_IR_VERSION} or newer)")
    opset = _default_opset(model, file)
    g = model.graph
    if g.sparse_initializer:
        raise UnsupportedError(f"{file}: sparse initializers are not supported "
                               f"('{_text(g.sparse_initializer[0].values.name)}')")
    inits: Dict[str, np.ndarray] = {}
    for t in g.initializer:
        name = _text(t.name)
        if not name:
            raise ModelFormatError(f"{file}: an initializer has no name")
        if name in inits:
            raise ModelFormatError(f"{file}: initializer '{name}' is defined twice")
        inits[name] = decode_tensor(t, f"{file}: initializer '{name}'", base_dir)
    inputs = []
    for vi in g.input:
        name = _text(vi.name)
        if name in inits:  # IR < 4 lists initializers among the inputs
            continue
        if not name or name in dict(inputs):
            raise ModelFormatError(f"{file}: a graph input has no name or a repeated one "
                                   f"('{name}')")
        inputs.append((name, _input_shape(vi, name, file)))
    if not inputs:
        raise ModelFormatError(f"{file}: the graph has no input")
    nodes = [_node(n, i, file, base_dir) for i, n in enumerate(g.node)]
    if not nodes:
        raise ModelFormatError(f"{file}: the graph has no node")
    outputs = [_text(o.name) for o in g.output]
    if not outputs or any(not o for o in outputs):
        raise ModelFormatError(f"{file}: the graph has no (named) output")
    order, resorted = _topological(nodes, [n for n, _ in inputs], inits, file)
    produced = {o for n in order for o in n.outputs if o} | set(inits) | {n for n, _ in inputs}
    for o in outputs:
        if o not in produced:
            raise ModelFormatError(f"{file}: graph output '{o}' is produced by no node")
    return OnnxGraph(file, opset, int(model.ir_version), _text(model.producer_name), inputs,
                     outputs, inits, order, resorted)


def _default_opset(model, file: str) -> int:
    versions = [int(o.version) for o in model.opset_import
                if _text(o.domain) in DEFAULT_DOMAINS]
    if not versions:
        raise ModelFormatError(f"{file}: the model imports no opset of the default ONNX domain")
    v = max(versions)
    if not MIN_OPSET <= v <= MAX_OPSET:
        raise UnsupportedError(f"{file}: opset {v} is not supported (edgetrain reads opsets "
                               f"{MIN_OPSET}..{MAX_OPSET}); re-export with e.g. opset_version=17")
    return v


def _input_shape(vi, name: str, file: str):
    tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
    if tt is None:
        raise UnsupportedError(f"{file}: graph input '{name}' is not a tensor")
    if tt.elem_type not in (0, 1):
        raise UnsupportedError(f"{file}: graph input '{name}' has element type "
                               f"{_dtype_name(tt.elem_type)}; only float32 inputs are supported")
    if not tt.HasField("shape"):
        return None
    dims = []
    for d in tt.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None)
    if len(dims) > MAX_RANK:
        raise UnsupportedError(f"{file}: graph input '{name}' has rank {len(dims)}")
    return tuple(dims)


def _dtype_name(code: int) -> str:
    if code in _DTYPES:
        return _DTYPES[code][0].name
    return _DTYPE_NAMES.get(code, f"type {code}")


# ------------------------------------------------------------------------------------
# nodes
# ------------------------------------------------------------------------------------
def _node(n, index: int, file: str, base_dir) -> OnnxNode:
    op = _text(n.op_type)
    node = OnnxNode(index, _text(n.name) or f"{op or 'node'}_{index}", op, _text(n.domain),
                    [_text(i) for i in n.input], [_text(o) for o in n.output])
    if not op:
        raise ModelFormatError(f"{file}: node {index} ('{node.name}') has no op type")
    if not any(node.outputs):
        raise ModelFormatError(f"{node.where(file)}: has no output")
    for a in n.attribute:
        name = _text(a.name)
        if not name:
            raise ModelFormatError(f"{node.where(file)}: an attribute has no name")
        node.attrs[name] = _attr(a, f"{node.where(file)}: attribute '{name}'", base_dir)
    return node


def _attr(a, where: str, base_dir):
    kind = a.type
    if kind == 1:
        return float(a.f)
    if kind == 2:
        return int(a.i)
    if kind == 3:
        return _text(bytes(a.s))
    if kind == 4:
        return decode_tensor(a.t, where, base_dir)
    if kind == 6:
        return [float(v) for v in a.floats]
    if kind == 7:
        return [int(v) for v in a.ints]
    if kind == 8:
        return [_text(bytes(s)) for s in a.strings]
    if kind in (5, 9, 10, 11, 12, 13, 14):  # graphs, tensors, sparse tensors, type protos
        return _Unreadable(kind)
    raise ModelFormatError(f"{where}: unknown attribute type {kind}")


class _Unreadable:
    """An attribute kind no mapped op takes (a sub-graph...): kept so that the op's
    handler can reject it by name."""

    def __init__(self, kind: int):
        self.kind = kind

    def __repr__(self) -> str:
        return f"<attribute of type {self.kind}>"


def _topological(nodes: List[OnnxNode], inputs: List[str], inits: Dict, file: str):
    """Nodes in an order where every input is produced first (the file's order when it
    already is one); (nodes, whether they had to be sorted)."""
    producer: Dict[str, OnnxNode] = {}
    for nd in nodes:
        for o in nd.outputs:
            if not o:
                continue
            if o in producer:
                raise ModelFormatError(f"{nd.where(file)}: output '{o}' is also written by node "
                                       f"'{producer[o].name}' ({producer[o].op})")
            if o in inits or o in inputs:
                raise ModelFormatError(f"{nd.where(file)}: output '{o}' overwrites a graph input "
                                       "or initializer")
            producer[o] = nd
    known = set(inputs) | set(inits) | {""}
    for nd in nodes:
        for i in nd.inputs:
            if i not in known and i not in producer:
                raise ModelFormatError(f"{nd.where(file)}: reads '{i}', which is not a graph "
                                       "input, an initializer or any node's output (a missing "
                                       "initializer?)")
    done = set(known)
    order: List[OnnxNode] = []
    pending = list(nodes)
    while pending:
        rest = []
        for nd in pending:
            if all(i in done for i in nd.inputs):
                order.append(nd)
                done.update(o for o in nd.outputs if o)
            else:
                rest.append(nd)
        if len(rest) == len(pending):
            names = ", ".join(f"'{n.name}' ({n.op})" for n in rest[:5])
            raise ModelFormatError(f"{file}: the graph has a cycle through node(s) {names}")
        pending = rest
    resorted = [n.index for n in order] != [n.index for n in nodes]
    return order, resorted


# ------------------------------------------------------------------------------------
# tensors
# ------------------------------------------------------------------------------------
def decode_tensor(t, where: str, base_dir: Optional[str]) -> np.ndarray:
    """A TensorProto as a numpy array (own memory), its data length checked against its dims
    before anything is allocated."""
    code = int(t.data_type)
    if code not in _DTYPES:
        raise UnsupportedError(f"{where}: element type {_dtype_name(code)} is not supported")
    dtype, typed_field = _DTYPES[code]
    dims = [int(d) for d in t.dims]
    if len(dims) > MAX_RANK or any(d < 0 for d in dims):
        raise ModelFormatError(f"{where}: invalid dims {dims}")
    numel = 1
    for d in dims:
        numel *= d
    if numel > MAX_ELEMENTS:
        raise ModelFormatError(f"{where}: dims {dims} ({numel} elements) exceed the "
                               f"{MAX_ELEMENTS}-element limit")
    if t.HasField("segment"):
        raise UnsupportedError(f"{where}: segmented tensors are not supported")
    if t.data_location == 1:
        raw = _external(t, where, base_dir, numel * dtype.itemsize)
    elif t.raw_data or (numel and not len(getattr(t, typed_field))):
        raw = bytes(t.raw_data)
    else:
        raw = None
    if raw is not None:
        need = numel * dtype.itemsize
        if len(raw) != need:
            what = "shorter" if len(raw) < need else "longer"
            raise ModelFormatError(f"{where}: data is {what} than its dims: {len(raw)} bytes, "
                                   f"dims {dims} of {dtype.name} need {need}")
        return np.frombuffer(raw, dtype=dtype).reshape(dims).copy()
    values = getattr(t, typed_field)
    if len(values) != numel:
        what = "shorter" if len(values) < numel else "longer"
        raise ModelFormatError(f"{where}: data is {what} than its dims: {len(values)} values, "
                               f"dims {dims} need {numel}")
    if code == 10:  # float16 bits stored in int32_data
        arr = np.array(values, dtype=np.int64).astype(np.uint16).view(np.float16)
    else:
        try:
            arr = np.array(values, dtype=np.float64 if dtype.kind == "f" else np.int64)
        except OverflowError:
            raise ModelFormatError(f"{where}: a value does not fit its type") from None
        arr = arr.astype(dtype)
    return arr.reshape(dims)


def _external(t, where: str, base_dir: Optional[str], nbytes: int) -> bytes:
    """The bytes of an external-data tensor, read only from a file inside ``base_dir``."""
    info = {_text(e.key): _text(e.value) for e in t.external_data}
    loc = info.get("location", "")
    if base_dir is None:
        raise ModelFormatError(f"{where}: stored in external file '{loc}'; load the model from "
                               "its path so that the file beside it can be found")
    if not loc or os.path.isabs(loc) or loc.startswith(("/", "\\")) or ":" in loc:
        raise ModelFormatError(f"{where}: external data location '{loc}' is not a file name "
                               "beside the model")
    norm = os.path.normpath(loc)
    if norm == ".." or norm.startswith(".." + os.sep) or norm.startswith("../"):
        raise ModelFormatError(f"{where}: external data location '{loc}' leaves the model's "
                               "folder")
    root = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(root, norm))
    if os.path.commonpath([root, path]) != root:
        raise ModelFormatError(f"{where}: external data location '{loc}' leaves the model's "
                               "folder (through a link)")
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else nbytes
    except ValueError:
        raise ModelFormatError(f"{where}: external data offset/length are not integers") from None
    if offset < 0 or length != nbytes:
        raise ModelFormatError(f"{where}: external data length {length} at offset {offset} does "
                               f"not match its dims ({nbytes} bytes)")
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            raw = f.read(nbytes)
    except OSError as e:
        raise ModelIOError(f"{where}: cannot read external data '{loc}': {e.strerror or e}"
                           ) from None
    if len(raw) != nbytes:
        raise ModelFormatError(f"{where}: external file '{loc}' is shorter than its dims "
                               f"({len(raw)} of {nbytes} bytes from offset {offset})")
    return raw
