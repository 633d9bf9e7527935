"""The Python op table and the C enum list the same ops in the same order (STYLE.md rule 1)."""
from edgetrain import _native, ops


def test_python_and_c_op_tables_agree():
    c_names = _native.op_names()
    py_names = [op.name for op in ops.OPS]
    assert py_names == c_names
    for i, op in enumerate(ops.OPS):
        assert op.id == i
        assert ops.OP_BY_NAME[op.name] is op


def test_op_names_documented():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[1] / "docs" / "ops.md").read_text()
    for op in ops.OPS:
        assert f"| {op.name} |" in doc, f"op {op.name} missing from docs/ops.md"
