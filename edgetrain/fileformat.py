"""The ``.etm`` file: write an :class:`~edgetrain.ir.Graph` to bytes and read it back.

The byte layout is specified in ``docs/format.md``; the C reader (``kernels/runtime/format.c``)
is the authority on validity. This module is the Python writer used at export and the reader
used by tools (``edgetrain info``, inference-only export).
"""
from __future__ import annotations

import json
import os
import re
import struct
import zlib
from typing import Dict, List, Tuple

import numpy as np

from . import ir
from .errors import ModelFormatError, ModelIOError

MAGIC = b"EDGETRN\0"
VERSION_MAJOR, VERSION_MINOR = 1, 1
HEADER_SIZE, SECTION_ENTRY_SIZE = 64, 32
TENSOR_RECORD, NODE_RECORD, STATE_SIZE = 96, 224, 128
ALIGN = 64
FLAG_INFERENCE_ONLY = 1

STRINGS, TENSORS, NODES, PROGRAMS, STATE, DATA, META = 1, 2, 3, 4, 5, 6, 7
REQUIRED = (STRINGS, TENSORS, NODES, PROGRAMS, STATE, DATA)
DTYPE_CODES = {ir.F32: 0, ir.I32: 1, ir.I64: 2, ir.U8: 3, ir.I8: 4}
CODE_DTYPES = {v: k for k, v in DTYPE_CODES.items()}
NONE32 = 0xFFFFFFFF


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class _Strings:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.index: Dict[str, Tuple[int, int]] = {}

    def ref(self, s: str) -> Tuple[int, int]:
        if not s:
            return (0, 0)
        if s not in self.index:
            b = s.encode("utf-8")
            self.index[s] = (len(self.buf), len(b))
            self.buf += b
        return self.index[s]


def dumps(graph: ir.Graph, *, inference_only: bool = False) -> bytes:
    """Serialise ``graph`` to the bytes of a ``.etm`` file."""
    from .ops import OP_BY_NAME  # the op table gives the numeric op ids

    strings = _Strings()
    data = bytearray()
    tensors = bytearray(struct.pack("<II", len(graph.tensors), 0))
    for t in graph.tensors:
        off, ln = strings.ref(t.name)
        flags = (1 if t.trainable else 0) | (2 if t.is_output else 0)
        shape = list(t.shape) + [0] * (ir.MAX_DIMS - len(t.shape))
        data_off = data_size = 0
        if t.kind in ir.KINDS_WITH_DATA:
            if t.data is None:
                raise ValueError(f"tensor {t.name!r} of kind {ir.KIND_NAMES[t.kind]} has no data")
            arr = np.ascontiguousarray(t.data, dtype=ir.NUMPY_DTYPE[t.dtype])
            if arr.size != t.numel:
                raise ValueError(f"tensor {t.name!r}: data has {arr.size} elements, shape {t.shape}")
            data += b"\0" * (_align(len(data)) - len(data))
            data_off, data_size = len(data), arr.nbytes
            data += arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        owner = NONE32 if t.owner is None else t.owner
        tensors += struct.pack("<IIBBBBI6qQQ16x", off, ln, DTYPE_CODES[t.dtype], t.kind,
                               len(t.shape), flags, owner, *shape, data_off, data_size)

    nodes = bytearray(struct.pack("<II", len(graph.nodes), 0))
    for n in graph.nodes:
        op = OP_BY_NAME[n.op].id
        ins = list(n.inputs) + [-1] * (ir.MAX_INPUTS - len(n.inputs))
        outs = list(n.outputs) + [-1] * (ir.MAX_OUTPUTS - len(n.outputs))
        ia = [int(v) for v in n.iattr] + [0] * (ir.MAX_IATTR - len(n.iattr))
        fa = [float(v) for v in n.fattr] + [0.0] * (ir.MAX_FATTR - len(n.fattr))
        loff, lln = strings.ref(n.layer)
        nodes += struct.pack("<HBBBBH8i4i16q8fII", op, len(n.inputs), len(n.outputs),
                             len(n.iattr), len(n.fattr), 0, *ins, *outs, *ia, *fa, loff, lln)

    programs = bytearray(struct.pack("<II", len(graph.programs), 0))
    for kind in sorted(graph.programs):
        p = graph.programs[kind]
        programs += struct.pack("<IIII", kind, len(p.nodes), len(p.inputs), len(p.outputs))
        programs += struct.pack(f"<{len(p.nodes)}I", *p.nodes)
        programs += struct.pack(f"<{len(p.inputs)}I", *p.inputs)
        for name, tid in p.outputs.items():
            off, ln = strings.ref(name)
            programs += struct.pack("<III", off, ln, tid)

    s = graph.state
    state = struct.pack("<QQQQfI6f6qIII4x", s.step, s.epoch, s.seed, s.rng_counter,
                        s.base_lr, s.sched_kind, *[float(v) for v in s.sched_f],
                        *[int(v) for v in s.sched_i], s.warmup, s.opt_kind, s.max_batch)
    assert len(state) == STATE_SIZE

    sections = [(STRINGS, bytes(strings.buf)), (TENSORS, bytes(tensors)), (NODES, bytes(nodes)),
                (PROGRAMS, bytes(programs)), (STATE, state), (DATA, bytes(data))]
    if graph.meta:
        sections.append((META, json.dumps(graph.meta, sort_keys=True).encode("utf-8")))
    return _assemble(sections, FLAG_INFERENCE_ONLY if inference_only else 0)


def _assemble(sections: List[Tuple[int, bytes]], flags: int) -> bytes:
    table = bytearray()
    body = bytearray()
    pos = _align(HEADER_SIZE + SECTION_ENTRY_SIZE * len(sections))
    for kind, payload in sections:
        table += struct.pack("<IIQQII", kind, 0, pos + len(body), len(payload),
                             zlib.crc32(payload), 0)
        body += payload
        body += b"\0" * (_align(len(body)) - len(body))
    total = pos + len(body)
    head = MAGIC + struct.pack("<IIQIII", VERSION_MAJOR, VERSION_MINOR, total, len(sections),
                               flags, zlib.crc32(bytes(table)))
    head += struct.pack("<I", zlib.crc32(head))
    head += b"\0" * (HEADER_SIZE - len(head))
    out = head + bytes(table)
    out += b"\0" * (pos - len(out))
    return out + bytes(body)


# ---------------------------------------------------------------------------------------
# reading (tools only; the C reader validates for execution)


def _fail(msg: str):
    raise ModelFormatError(f"invalid .etm file: {msg}")


def loads(buf: bytes) -> ir.Graph:
    """Parse ``.etm`` bytes into a Graph (tensor data included)."""
    from .ops import OPS

    buf = bytes(buf)
    if len(buf) < HEADER_SIZE or buf[:8] != MAGIC:
        _fail("not an edgetrain model (bad magic)")
    major, _minor, size, nsec, flags, table_crc = struct.unpack_from("<IIQIII", buf, 8)
    if major != VERSION_MAJOR:
        _fail(f"unsupported version {major}")
    if struct.unpack_from("<I", buf, 36)[0] != zlib.crc32(buf[:36]):
        _fail("header checksum mismatch")
    if size != len(buf):
        _fail(f"file size {len(buf)} differs from the header's {size}")
    if not 1 <= nsec <= 64 or HEADER_SIZE + nsec * SECTION_ENTRY_SIZE > len(buf):
        _fail("bad section count")
    table = buf[HEADER_SIZE:HEADER_SIZE + nsec * SECTION_ENTRY_SIZE]
    if zlib.crc32(table) != table_crc:
        _fail("section table checksum mismatch")
    secs: Dict[int, bytes] = {}
    for i in range(nsec):
        kind, _r, off, ln, crc, _r2 = struct.unpack_from("<IIQQII", table, i * SECTION_ENTRY_SIZE)
        if off + ln > len(buf):
            _fail(f"section {kind} outside the file")
        payload = buf[off:off + ln]
        if zlib.crc32(payload) != crc:
            _fail(f"section {kind} checksum mismatch")
        secs[kind] = payload
    for k in REQUIRED:
        if k not in secs:
            _fail(f"missing section {k}")
    try:
        return _parse_sections(secs, flags, OPS)
    except struct.error as e:
        _fail(f"truncated section ({e})")


def _parse_sections(secs, flags, ops) -> ir.Graph:
    strings = secs[STRINGS]

    def string(off, ln):
        if off + ln > len(strings):
            _fail("string reference outside STRINGS")
        return strings[off:off + ln].decode("utf-8")

    g = ir.Graph()
    data = secs[DATA]
    tb = secs[TENSORS]
    (count, _) = struct.unpack_from("<II", tb, 0)
    for i in range(count):
        rec = struct.unpack_from("<IIBBBBI6qQQ", tb, 8 + i * TENSOR_RECORD)
        noff, nlen, dt, kind, ndim, tflags, owner = rec[:7]
        shape = rec[7:7 + ndim]
        doff, dsize = rec[13], rec[14]
        dtype = CODE_DTYPES.get(dt) or _fail(f"tensor {i}: bad dtype {dt}")
        arr = None
        if kind in ir.KINDS_WITH_DATA:
            if doff + dsize > len(data):
                _fail(f"tensor {i}: data outside DATA")
            arr = np.frombuffer(data, dtype=np.dtype(ir.NUMPY_DTYPE[dtype]).newbyteorder("<"),
                                count=dsize // np.dtype(ir.NUMPY_DTYPE[dtype]).itemsize,
                                offset=doff).astype(ir.NUMPY_DTYPE[dtype]).reshape(shape)
        t = g.add_tensor(string(noff, nlen), dtype, kind, shape, trainable=bool(tflags & 1),
                         data=arr, owner=None if owner == NONE32 else owner)
        t.is_output = bool(tflags & 2)
    nb = secs[NODES]
    (count, _) = struct.unpack_from("<II", nb, 0)
    for i in range(count):
        rec = struct.unpack_from("<HBBBBH8i4i16q8fII", nb, 8 + i * NODE_RECORD)
        op, nin, nout, nia, nfa = rec[:5]
        if op >= len(ops):
            _fail(f"node {i}: unknown op {op}")
        ins, outs = list(rec[6:6 + nin]), list(rec[14:14 + nout])
        ia, fa = list(rec[18:18 + nia]), list(rec[34:34 + nfa])
        g.nodes.append(ir.Node(ops[op].name, ins, outs, ia, fa, string(rec[42], rec[43])))
    pb = secs[PROGRAMS]
    (count, _) = struct.unpack_from("<II", pb, 0)
    pos = 8
    for _ in range(count):
        kind, nn_, ni, no = struct.unpack_from("<IIII", pb, pos)
        pos += 16
        prog = ir.Program(kind)
        prog.nodes = list(struct.unpack_from(f"<{nn_}I", pb, pos)); pos += 4 * nn_
        prog.inputs = list(struct.unpack_from(f"<{ni}I", pb, pos)); pos += 4 * ni
        for _o in range(no):
            off, ln, tid = struct.unpack_from("<III", pb, pos); pos += 12
            prog.outputs[string(off, ln)] = tid
        g.programs[kind] = prog
    st = struct.unpack_from("<QQQQfI6f6qII", secs[STATE], 0)
    s = g.state
    s.step, s.epoch, s.seed, s.rng_counter, s.base_lr, s.sched_kind = st[:6]
    s.sched_f, s.sched_i = list(st[6:12]), list(st[12:18])
    s.warmup, s.opt_kind = st[18], st[19]
    s.max_batch = struct.unpack_from("<I", secs[STATE], 120)[0]  # minor 1; zero in minor 0
    if META in secs:
        g.meta = _parse_meta(secs[META])
    g.meta["_inference_only"] = bool(flags & FLAG_INFERENCE_ONLY)
    return g


META_MAX_DEPTH = 64  # nesting of JSON arrays/objects in META (deeper: ModelFormatError)
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def _parse_meta(raw: bytes) -> dict:
    """The META section: a JSON object, nested at most META_MAX_DEPTH deep (checked before
    ``json.loads``, which would recurse). Text that is not JSON is ignored, as before."""
    depth = deepest = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub(b"", raw)):
        depth += 1 if m.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    if deepest > META_MAX_DEPTH:
        _fail(f"section 7 (META): JSON nested {deepest} levels deep, more than {META_MAX_DEPTH}")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except ValueError:
        return {}
    if not isinstance(meta, dict):
        _fail(f"section 7 (META): a JSON {type(meta).__name__}, expected an object")
    return meta


def load(path) -> ir.Graph:
    try:
        with open(path, "rb") as f:
            return loads(f.read())
    except OSError as e:
        raise ModelIOError(f"cannot read model file {path!s}: {e.strerror or e}") from e


def save_atomic(path, payload: bytes, context: str = "save") -> None:
    """Replace ``path`` with ``payload`` atomically, through the C runtime's one writer
    (kernels/runtime/atomic_file.c): a unique temporary file next to the target, fsync, rename,
    fsync of the folder; ``ModelIOError`` naming the cause on failure, the old file unchanged."""
    from . import _native

    _native.save_bytes_atomic(os.fspath(path), bytes(payload), context)
