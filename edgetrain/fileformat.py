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
PROGRAM_HEAD, PROGRAM_OUTPUT = 16, 12
ALIGN = 64
FLAG_INFERENCE_ONLY = 1

# Byte offsets of the fields inside each record (docs/format.md), named as the C enums of
# kernels/runtime/runtime_internal.h without the ET_ prefix (tests/test_mirrors.py checks them).
HDR_MAGIC, HDR_MAJOR, HDR_MINOR, HDR_FILE_SIZE = 0, 8, 12, 16
HDR_NSECTIONS, HDR_FLAGS, HDR_TABLE_CRC, HDR_CRC, HDR_ZERO = 24, 28, 32, 36, 40
SENT_TYPE, SENT_RESERVED, SENT_OFFSET, SENT_SIZE, SENT_CRC, SENT_RESERVED2 = 0, 4, 8, 16, 24, 28
TREC_NAME_OFF, TREC_NAME_LEN, TREC_DTYPE, TREC_KIND, TREC_NDIM, TREC_FLAGS = 0, 4, 8, 9, 10, 11
TREC_OWNER, TREC_SHAPE, TREC_DATA_OFF, TREC_DATA_SIZE, TREC_ZERO = 12, 16, 64, 72, 80
NREC_OP, NREC_N_IN, NREC_N_OUT, NREC_N_IATTR, NREC_N_FATTR, NREC_ZERO = 0, 2, 3, 4, 5, 6
NREC_IN, NREC_OUT, NREC_IATTR, NREC_FATTR = 8, 40, 56, 184
NREC_LAYER_OFF, NREC_LAYER_LEN = 216, 220
PREC_KIND, PREC_N_NODES, PREC_N_INPUTS, PREC_N_OUTPUTS = 0, 4, 8, 12
POUT_NAME_OFF, POUT_NAME_LEN, POUT_TENSOR = 0, 4, 8
SREC_STEP, SREC_EPOCH, SREC_SEED, SREC_RNG_COUNTER, SREC_BASE_LR = 0, 8, 16, 24, 32
SREC_SCHED_KIND, SREC_SCHED_F, SREC_SCHED_I, SREC_WARMUP = 36, 40, 64, 112
SREC_OPT_KIND, SREC_MAX_BATCH, SREC_ZERO = 116, 120, 124

STRINGS, TENSORS, NODES, PROGRAMS, STATE, DATA, META = 1, 2, 3, 4, 5, 6, 7
REQUIRED = (STRINGS, TENSORS, NODES, PROGRAMS, STATE, DATA)
DTYPE_CODES, CODE_DTYPES = ir.DTYPE_CODES, ir.CODE_DTYPES
NONE32 = 0xFFFFFFFF


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _put(buf: bytearray, off: int, fmt: str, *values) -> None:
    """Write little-endian ``values`` (struct ``fmt``) at byte ``off`` of a record."""
    struct.pack_into("<" + fmt, buf, off, *values)


def _get(buf: bytes, off: int, fmt: str):
    """Read little-endian struct ``fmt`` at byte ``off`` of a record (one value or a tuple)."""
    got = struct.unpack_from("<" + fmt, buf, off)
    return got[0] if len(got) == 1 else got


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
    return bytes(dumps_buffer(graph, inference_only=inference_only))


def dumps_buffer(graph: ir.Graph, *, inference_only: bool = False) -> bytearray:
    """The bytes of :func:`dumps` in a new bytearray, built in place: the tensor data is
    copied once, straight into the file's DATA section (a training session of a large model
    is loaded from this without a second transient copy of its weights)."""
    from .ops import OP_BY_NAME  # the op table gives the numeric op ids

    strings = _Strings()
    data_end = 0
    stored = []   # (offset in DATA, tensor) of every tensor with data, in file order
    tensors = bytearray(struct.pack("<II", len(graph.tensors), 0))
    for t in graph.tensors:
        off, ln = strings.ref(t.name)
        flags = (1 if t.trainable else 0) | (2 if t.is_output else 0)
        shape = list(t.shape) + [0] * (ir.MAX_DIMS - len(t.shape))
        data_off = data_size = 0
        if t.kind in ir.KINDS_WITH_DATA:
            data_size = _stored_array(t).nbytes
            data_off, data_end = _align(data_end), _align(data_end) + data_size
            stored.append((data_off, t))
        owner = NONE32 if t.owner is None else t.owner
        r = bytearray(TENSOR_RECORD)
        _put(r, TREC_NAME_OFF, "I", off)
        _put(r, TREC_NAME_LEN, "I", ln)
        _put(r, TREC_DTYPE, "B", DTYPE_CODES[t.dtype])
        _put(r, TREC_KIND, "B", t.kind)
        _put(r, TREC_NDIM, "B", len(t.shape))
        _put(r, TREC_FLAGS, "B", flags)
        _put(r, TREC_OWNER, "I", owner)
        _put(r, TREC_SHAPE, f"{ir.MAX_DIMS}q", *shape)
        _put(r, TREC_DATA_OFF, "Q", data_off)
        _put(r, TREC_DATA_SIZE, "Q", data_size)
        tensors += r

    nodes = bytearray(struct.pack("<II", len(graph.nodes), 0))
    for n in graph.nodes:
        op = OP_BY_NAME[n.op].id
        ins = list(n.inputs) + [-1] * (ir.MAX_INPUTS - len(n.inputs))
        outs = list(n.outputs) + [-1] * (ir.MAX_OUTPUTS - len(n.outputs))
        ia = [int(v) for v in n.iattr] + [0] * (ir.MAX_IATTR - len(n.iattr))
        fa = [float(v) for v in n.fattr] + [0.0] * (ir.MAX_FATTR - len(n.fattr))
        loff, lln = strings.ref(n.layer)
        r = bytearray(NODE_RECORD)
        _put(r, NREC_OP, "H", op)
        _put(r, NREC_N_IN, "B", len(n.inputs))
        _put(r, NREC_N_OUT, "B", len(n.outputs))
        _put(r, NREC_N_IATTR, "B", len(n.iattr))
        _put(r, NREC_N_FATTR, "B", len(n.fattr))
        _put(r, NREC_IN, f"{ir.MAX_INPUTS}i", *ins)
        _put(r, NREC_OUT, f"{ir.MAX_OUTPUTS}i", *outs)
        _put(r, NREC_IATTR, f"{ir.MAX_IATTR}q", *ia)
        _put(r, NREC_FATTR, f"{ir.MAX_FATTR}f", *fa)
        _put(r, NREC_LAYER_OFF, "I", loff)
        _put(r, NREC_LAYER_LEN, "I", lln)
        nodes += r

    programs = bytearray(struct.pack("<II", len(graph.programs), 0))
    for kind in sorted(graph.programs):
        p = graph.programs[kind]
        head = bytearray(PROGRAM_HEAD)
        _put(head, PREC_KIND, "I", kind)
        _put(head, PREC_N_NODES, "I", len(p.nodes))
        _put(head, PREC_N_INPUTS, "I", len(p.inputs))
        _put(head, PREC_N_OUTPUTS, "I", len(p.outputs))
        programs += head
        programs += struct.pack(f"<{len(p.nodes)}I", *p.nodes)
        programs += struct.pack(f"<{len(p.inputs)}I", *p.inputs)
        for name, tid in p.outputs.items():
            off, ln = strings.ref(name)
            r = bytearray(PROGRAM_OUTPUT)
            _put(r, POUT_NAME_OFF, "I", off)
            _put(r, POUT_NAME_LEN, "I", ln)
            _put(r, POUT_TENSOR, "I", tid)
            programs += r

    sections = [(STRINGS, bytes(strings.buf)), (TENSORS, bytes(tensors)), (NODES, bytes(nodes)),
                (PROGRAMS, bytes(programs)), (STATE, _state_record(graph.state)),
                (DATA, data_end)]
    if graph.meta:
        sections.append((META, json.dumps(graph.meta, sort_keys=True).encode("utf-8")))
    out, data_pos = _assemble(sections, FLAG_INFERENCE_ONLY if inference_only else 0)
    for off, t in stored:
        _write_array(out, data_pos + off, _stored_array(t))
    _seal(out, len(sections))
    return out


def _stored_array(t: ir.TensorDef) -> np.ndarray:
    """The data of a tensor of a kind with data, as the contiguous array the file stores."""
    if t.data is None:
        raise ValueError(f"tensor {t.name!r} of kind {ir.KIND_NAMES[t.kind]} has no data")
    arr = np.ascontiguousarray(t.data, dtype=ir.NUMPY_DTYPE[t.dtype])
    if arr.size != t.numel:
        raise ValueError(f"tensor {t.name!r}: data has {arr.size} elements, shape {t.shape}")
    return arr


def _write_array(out: bytearray, pos: int, arr: np.ndarray) -> None:
    """Copy ``arr`` (little endian) into ``out`` at byte ``pos``, with no temporary copy."""
    if arr.nbytes:
        dst = np.frombuffer(out, dtype=arr.dtype.newbyteorder("<"), count=arr.size, offset=pos)
        dst[...] = arr.reshape(-1)


def _state_record(s: ir.TrainState) -> bytes:
    r = bytearray(STATE_SIZE)
    _put(r, SREC_STEP, "Q", s.step)
    _put(r, SREC_EPOCH, "Q", s.epoch)
    _put(r, SREC_SEED, "Q", s.seed)
    _put(r, SREC_RNG_COUNTER, "Q", s.rng_counter)
    _put(r, SREC_BASE_LR, "f", s.base_lr)
    _put(r, SREC_SCHED_KIND, "I", s.sched_kind)
    _put(r, SREC_SCHED_F, "6f", *[float(v) for v in s.sched_f])
    _put(r, SREC_SCHED_I, "6q", *[int(v) for v in s.sched_i])
    _put(r, SREC_WARMUP, "I", s.warmup)
    _put(r, SREC_OPT_KIND, "I", s.opt_kind)
    _put(r, SREC_MAX_BATCH, "I", s.max_batch)
    return bytes(r)


def _assemble(sections: List[Tuple[int, object]], flags: int) -> Tuple[bytearray, int]:
    """The file in one zeroed buffer: header, section table, then each payload at its
    64-byte aligned offset. A payload given as an int (the DATA section) is only reserved:
    the caller writes it, then :func:`_seal` puts in the CRCs. Returns the buffer and the
    position of the reserved payload."""
    pos = _align(HEADER_SIZE + SECTION_ENTRY_SIZE * len(sections))
    entries, body, reserved = [], 0, 0
    for kind, payload in sections:
        size = payload if isinstance(payload, int) else len(payload)
        entries.append((kind, pos + body, size, payload))
        body = _align(body + size)
    out = bytearray(pos + body)
    for i, (kind, off, size, payload) in enumerate(entries):
        e = HEADER_SIZE + SECTION_ENTRY_SIZE * i
        _put(out, e + SENT_TYPE, "I", kind)
        _put(out, e + SENT_OFFSET, "Q", off)
        _put(out, e + SENT_SIZE, "Q", size)
        if isinstance(payload, int):
            reserved = off
        else:
            out[off:off + size] = payload
    out[HDR_MAGIC:HDR_MAGIC + len(MAGIC)] = MAGIC
    _put(out, HDR_MAJOR, "I", VERSION_MAJOR)
    _put(out, HDR_MINOR, "I", VERSION_MINOR)
    _put(out, HDR_FILE_SIZE, "Q", len(out))
    _put(out, HDR_NSECTIONS, "I", len(sections))
    _put(out, HDR_FLAGS, "I", flags)
    return out, reserved


def _seal(out: bytearray, n_sections: int) -> None:
    """Section CRCs, then the table's and the header's CRC, once every payload is written."""
    view = memoryview(out)
    for i in range(n_sections):
        e = HEADER_SIZE + SECTION_ENTRY_SIZE * i
        off, size = _get(out, e + SENT_OFFSET, "Q"), _get(out, e + SENT_SIZE, "Q")
        _put(out, e + SENT_CRC, "I", zlib.crc32(view[off:off + size]))
    table = view[HEADER_SIZE:HEADER_SIZE + SECTION_ENTRY_SIZE * n_sections]
    _put(out, HDR_TABLE_CRC, "I", zlib.crc32(table))
    _put(out, HDR_CRC, "I", zlib.crc32(view[:HDR_CRC]))
    view.release()


# ---------------------------------------------------------------------------------------
# reading (tools only; the C reader validates for execution)


def _fail(msg: str):
    raise ModelFormatError(f"invalid .etm file: {msg}")


def loads(buf: bytes) -> ir.Graph:
    """Parse ``.etm`` bytes into a Graph (tensor data included)."""
    from .ops import OPS

    buf = bytes(buf)
    if len(buf) < HEADER_SIZE or buf[HDR_MAGIC:HDR_MAGIC + len(MAGIC)] != MAGIC:
        _fail("not an edgetrain model (bad magic)")
    major, size = _get(buf, HDR_MAJOR, "I"), _get(buf, HDR_FILE_SIZE, "Q")
    nsec, flags = _get(buf, HDR_NSECTIONS, "I"), _get(buf, HDR_FLAGS, "I")
    if major != VERSION_MAJOR:
        _fail(f"unsupported version {major}")
    if _get(buf, HDR_CRC, "I") != zlib.crc32(buf[:HDR_CRC]):
        _fail("header checksum mismatch")
    if size != len(buf):
        _fail(f"file size {len(buf)} differs from the header's {size}")
    if not 1 <= nsec <= 64 or HEADER_SIZE + nsec * SECTION_ENTRY_SIZE > len(buf):
        _fail("bad section count")
    table = buf[HEADER_SIZE:HEADER_SIZE + nsec * SECTION_ENTRY_SIZE]
    if zlib.crc32(table) != _get(buf, HDR_TABLE_CRC, "I"):
        _fail("section table checksum mismatch")
    secs: Dict[int, bytes] = {}
    for i in range(nsec):
        e = table[i * SECTION_ENTRY_SIZE:(i + 1) * SECTION_ENTRY_SIZE]
        kind, off, ln = _get(e, SENT_TYPE, "I"), _get(e, SENT_OFFSET, "Q"), _get(e, SENT_SIZE, "Q")
        crc = _get(e, SENT_CRC, "I")
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
        r = tb[8 + i * TENSOR_RECORD:8 + (i + 1) * TENSOR_RECORD]
        noff, nlen = _get(r, TREC_NAME_OFF, "I"), _get(r, TREC_NAME_LEN, "I")
        dt, kind = _get(r, TREC_DTYPE, "B"), _get(r, TREC_KIND, "B")
        ndim, tflags = _get(r, TREC_NDIM, "B"), _get(r, TREC_FLAGS, "B")
        owner = _get(r, TREC_OWNER, "I")
        shape = _get(r, TREC_SHAPE, f"{ir.MAX_DIMS}q")[:ndim]
        doff, dsize = _get(r, TREC_DATA_OFF, "Q"), _get(r, TREC_DATA_SIZE, "Q")
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
        r = nb[8 + i * NODE_RECORD:8 + (i + 1) * NODE_RECORD]
        op = _get(r, NREC_OP, "H")
        nin, nout = _get(r, NREC_N_IN, "B"), _get(r, NREC_N_OUT, "B")
        nia, nfa = _get(r, NREC_N_IATTR, "B"), _get(r, NREC_N_FATTR, "B")
        if op >= len(ops):
            _fail(f"node {i}: unknown op {op}")
        ins = list(_get(r, NREC_IN, f"{ir.MAX_INPUTS}i")[:nin])
        outs = list(_get(r, NREC_OUT, f"{ir.MAX_OUTPUTS}i")[:nout])
        ia = list(_get(r, NREC_IATTR, f"{ir.MAX_IATTR}q")[:nia])
        fa = list(_get(r, NREC_FATTR, f"{ir.MAX_FATTR}f")[:nfa])
        layer = string(_get(r, NREC_LAYER_OFF, "I"), _get(r, NREC_LAYER_LEN, "I"))
        g.nodes.append(ir.Node(ops[op].name, ins, outs, ia, fa, layer))
    pb = secs[PROGRAMS]
    (count, _) = struct.unpack_from("<II", pb, 0)
    pos = 8
    for _ in range(count):
        kind, nn_ = _get(pb, pos + PREC_KIND, "I"), _get(pb, pos + PREC_N_NODES, "I")
        ni, no = _get(pb, pos + PREC_N_INPUTS, "I"), _get(pb, pos + PREC_N_OUTPUTS, "I")
        pos += PROGRAM_HEAD
        prog = ir.Program(kind)
        prog.nodes = list(struct.unpack_from(f"<{nn_}I", pb, pos)); pos += 4 * nn_
        prog.inputs = list(struct.unpack_from(f"<{ni}I", pb, pos)); pos += 4 * ni
        for _o in range(no):
            off, ln = _get(pb, pos + POUT_NAME_OFF, "I"), _get(pb, pos + POUT_NAME_LEN, "I")
            tid = _get(pb, pos + POUT_TENSOR, "I")
            pos += PROGRAM_OUTPUT
            prog.outputs[string(off, ln)] = tid
        g.programs[kind] = prog
    _parse_state(secs[STATE], g.state)
    if META in secs:
        g.meta = _parse_meta(secs[META])
    g.meta["_inference_only"] = bool(flags & FLAG_INFERENCE_ONLY)
    return g


def _parse_state(r: bytes, s: ir.TrainState) -> None:
    s.step, s.epoch = _get(r, SREC_STEP, "Q"), _get(r, SREC_EPOCH, "Q")
    s.seed, s.rng_counter = _get(r, SREC_SEED, "Q"), _get(r, SREC_RNG_COUNTER, "Q")
    s.base_lr, s.sched_kind = _get(r, SREC_BASE_LR, "f"), _get(r, SREC_SCHED_KIND, "I")
    s.sched_f, s.sched_i = list(_get(r, SREC_SCHED_F, "6f")), list(_get(r, SREC_SCHED_I, "6q"))
    s.warmup, s.opt_kind = _get(r, SREC_WARMUP, "I"), _get(r, SREC_OPT_KIND, "I")
    s.max_batch = _get(r, SREC_MAX_BATCH, "I")  # minor 1; zero in minor 0


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
