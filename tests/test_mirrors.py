"""Every value that Python mirrors from the C runtime equals the C definition.

The C headers are the one source of these facts (status codes, dtypes, tensor and program
kinds, activations, reductions, schedules, optimizer kinds, format limits and sizes); this test
reads them and compares each Python mirror, so a value changed on one side only fails here.
"""
import re
from pathlib import Path

import pytest

from edgetrain import errors, fileformat, ir, ops
from edgetrain.optim import lr_scheduler, optimizer

KERNELS = Path(__file__).resolve().parents[1] / "kernels"
HEADERS = [KERNELS / "include" / "edgetrain" / name
           for name in ("et_common.h", "et_kernels.h", "et_ops.h", "et_runtime.h")]
HEADERS.append(KERNELS / "runtime" / "runtime_internal.h")


def _c_text():
    text = "\n".join(p.read_text() for p in HEADERS)
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


C_TEXT = _c_text()


def c_enum(first: str):
    """Names -> values of the C enum whose first enumerator is ``first`` (C's implicit
    numbering applied; the trailing ``*_COUNT_`` sentinel is dropped)."""
    for body in re.findall(r"enum\s*\w*\s*\{([^}]*)\}", C_TEXT):
        names = [e.strip() for e in body.split(",") if e.strip()]
        if names and names[0].split("=")[0].strip() == first:
            out, nxt = {}, 0
            for e in names:
                name, _, value = (part.strip() for part in e.partition("="))
                nxt = int(value, 0) if value else nxt
                if not name.endswith("_COUNT_"):
                    out[name] = nxt
                nxt += 1
            return out
    raise AssertionError(f"no C enum starting with {first}")


def c_define(name: str) -> int:
    m = re.search(rf"#define\s+{name}\s+\(?\s*(0x[0-9a-fA-F]+|\d+)u?", C_TEXT)
    assert m, f"#define {name} not found in the C headers"
    return int(m.group(1), 0)


def values(enum):
    return list(enum.values())


def test_status_codes_map_to_exceptions():
    status = c_enum("ET_OK")
    assert sorted(errors.STATUS_ERRORS) == [v for k, v in status.items() if k != "ET_OK"]


def test_dtypes():
    dtypes = c_enum("ET_F32")
    assert fileformat.DTYPE_CODES == {ir.F32: dtypes["ET_F32"], ir.I32: dtypes["ET_I32"],
                                      ir.I64: dtypes["ET_I64"], ir.U8: dtypes["ET_U8"],
                                      ir.I8: dtypes["ET_I8"]}


def test_tensor_and_program_kinds():
    kinds = c_enum("ET_KIND_INPUT")
    assert [n[len("ET_KIND_"):].lower() for n in kinds] == list(ir.KIND_NAMES)
    assert values(kinds) == [ir.INPUT, ir.PARAM, ir.BUFFER, ir.GRAD, ir.OPTSTATE, ir.CONST, ir.ACT]
    progs = c_enum("ET_PROGRAM_EVAL")
    assert [n[len("ET_PROGRAM_"):].lower() for n in progs] == list(ir.PROGRAM_NAMES)
    assert values(progs) == [ir.EVAL, ir.GRAD_PROGRAM, ir.TRAIN]


def test_activation_kinds():
    acts = c_enum("ET_ACT_NONE")
    assert [n[len("ET_ACT_"):].lower() for n in acts] == list(ops.ACT_NAMES)
    assert values(acts) == [ops.ACT_NONE, ops.ACT_RELU, ops.ACT_RELU6, ops.ACT_LEAKY_RELU,
                            ops.ACT_SIGMOID, ops.ACT_TANH, ops.ACT_HARDSWISH]


def test_unary_functions():
    fns = c_enum("ET_UN_EXP")
    assert {n[len("ET_"):]: v for n, v in fns.items()} == {
        n: getattr(ops, n) for n in dir(ops) if n.startswith("UN_")}


def test_interpolation_modes():
    modes = c_enum("ET_INTERP_NEAREST")
    assert {n[len("ET_"):]: v for n, v in modes.items()} == {
        n: getattr(ops, n) for n in dir(ops) if n.startswith("INTERP_")}


def test_reduce_modes():
    assert c_enum("ET_REDUCE_SUM") == {"ET_REDUCE_SUM": ops.REDUCE_SUM,
                                       "ET_REDUCE_MEAN": ops.REDUCE_MEAN}


def test_pad_modes():
    assert c_enum("ET_PAD_CONSTANT") == {"ET_PAD_CONSTANT": ops.PAD_CONSTANT,
                                         "ET_PAD_REFLECT": ops.PAD_REFLECT,
                                         "ET_PAD_REPLICATE": ops.PAD_REPLICATE}


def test_schedule_kinds():
    sched = c_enum("ET_SCHED_CONSTANT")
    assert values(sched) == [lr_scheduler.SCHED_CONSTANT, lr_scheduler.SCHED_STEP,
                             lr_scheduler.SCHED_MULTISTEP, lr_scheduler.SCHED_EXPONENTIAL,
                             lr_scheduler.SCHED_COSINE, lr_scheduler.SCHED_INV]
    assert [n[len("ET_SCHED_"):] for n in sched] == [
        n[len("SCHED_"):] for n in ("SCHED_CONSTANT", "SCHED_STEP", "SCHED_MULTISTEP",
                                    "SCHED_EXPONENTIAL", "SCHED_COSINE", "SCHED_INV")]


def test_optimizer_kinds():
    assert values(c_enum("ET_OPTIM_NONE")) == [optimizer.OPT_NONE, optimizer.OPT_SGD,
                                               optimizer.OPT_ADAM, optimizer.OPT_ADAMW,
                                               optimizer.OPT_RMSPROP, optimizer.OPT_ADAGRAD]


@pytest.mark.parametrize("c_name, py_value", [
    ("ET_MAX_DIMS", ir.MAX_DIMS),
    ("ET_NODE_MAX_IN", ir.MAX_INPUTS),
    ("ET_NODE_MAX_OUT", ir.MAX_OUTPUTS),
    ("ET_NODE_MAX_IATTR", ir.MAX_IATTR),
    ("ET_NODE_MAX_FATTR", ir.MAX_FATTR),
    ("ET_FORMAT_MAJOR", fileformat.VERSION_MAJOR),
    ("ET_FORMAT_MINOR", fileformat.VERSION_MINOR),
    ("ET_ALIGN", fileformat.ALIGN),
    ("ET_HEADER_BYTES", fileformat.HEADER_SIZE),
    ("ET_SECTION_ENTRY_BYTES", fileformat.SECTION_ENTRY_SIZE),
    ("ET_TENSOR_RECORD_BYTES", fileformat.TENSOR_RECORD),
    ("ET_NODE_RECORD_BYTES", fileformat.NODE_RECORD),
    ("ET_STATE_BYTES", fileformat.STATE_SIZE),
    ("ET_PROGRAM_HEAD_BYTES", fileformat.PROGRAM_HEAD),
    ("ET_PROGRAM_OUTPUT_BYTES", fileformat.PROGRAM_OUTPUT),
    ("ET_NO_OWNER", fileformat.NONE32),
])
def test_limits_and_sizes(c_name, py_value):
    assert c_define(c_name) == py_value


def test_section_types():
    secs = c_enum("ET_SEC_STRINGS")
    assert values(secs) == [fileformat.STRINGS, fileformat.TENSORS, fileformat.NODES,
                            fileformat.PROGRAMS, fileformat.STATE, fileformat.DATA,
                            fileformat.META]


def test_the_checker_catches_a_one_sided_change(monkeypatch):
    """The parser really reads the C side: a changed Python value disagrees."""
    monkeypatch.setattr(ops, "REDUCE_MEAN", 2)
    with pytest.raises(AssertionError):
        test_reduce_modes()
    assert c_define("ET_MAX_DIMS") == 6 and c_enum("ET_OK")["ET_ERR_NOT_FOUND"] == 11


RECORD_FIELDS = [  # (first enumerator of the C enum, record size in C)
    ("ET_HDR_MAGIC", "ET_HEADER_BYTES"),
    ("ET_SENT_TYPE", "ET_SECTION_ENTRY_BYTES"),
    ("ET_TREC_NAME_OFF", "ET_TENSOR_RECORD_BYTES"),
    ("ET_NREC_OP", "ET_NODE_RECORD_BYTES"),
    ("ET_SREC_STEP", "ET_STATE_BYTES"),
    ("ET_PREC_KIND", "ET_PROGRAM_HEAD_BYTES"),
    ("ET_POUT_NAME_OFF", "ET_PROGRAM_OUTPUT_BYTES"),
]


@pytest.mark.parametrize("first, size", RECORD_FIELDS)
def test_record_field_offsets(first, size):
    """Each byte offset the Python codec uses (fileformat.TREC_DTYPE, ...) equals the C one
    (ET_TREC_DTYPE, ...), and the Python module has no offset of that record the C lacks."""
    fields = c_enum(first)
    assert len(fields) >= 3
    prefix = first[len("ET_"):].split("_")[0] + "_"
    py = {n: v for n, v in vars(fileformat).items() if n.startswith(prefix) and isinstance(v, int)}
    assert py == {n[len("ET_"):]: v for n, v in fields.items()}
    offsets = sorted(fields.values())
    assert offsets[0] == 0 and offsets[-1] < c_define(size)
    assert offsets == list(fields.values()), "fields in byte order"


def test_the_offset_checker_catches_a_one_sided_change(monkeypatch):
    monkeypatch.setattr(fileformat, "TREC_DTYPE", 9)
    with pytest.raises(AssertionError):
        test_record_field_offsets("ET_TREC_NAME_OFF", "ET_TENSOR_RECORD_BYTES")


def test_nll_reductions():
    assert c_enum("ET_REDUCTION_NONE") == {"ET_REDUCTION_NONE": ops.REDUCTION_NONE,
                                           "ET_REDUCTION_SUM": ops.REDUCTION_SUM,
                                           "ET_REDUCTION_MEAN": ops.REDUCTION_MEAN}
