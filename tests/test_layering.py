"""Imports inside ``edgetrain`` go one way, from higher layers to the same or lower ones.

The order (low to high) is ``errors; ir, _native; ops, fileformat; tensor_ops; tracing; nn,
optim; autodiff, export, models; session; federated; cli``. ``data`` and ``plot`` need nothing
but the standard library and numpy, so they sit at the bottom, and ``data`` never imports the
compiled runtime. Every import statement counts, at module top or inside a function.
"""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "edgetrain")

# Module (or package: it covers its submodules) -> layer. A new module must be added here.
LAYERS = [
    ("edgetrain.errors",),
    ("edgetrain.ir", "edgetrain._native", "edgetrain.data", "edgetrain.plot"),
    ("edgetrain.ops",),
    ("edgetrain.fileformat",),  # reads op ids from the op table
    ("edgetrain.tensor_ops",),
    ("edgetrain.tracing",),
    ("edgetrain.nn", "edgetrain.optim"),
    ("edgetrain.autodiff", "edgetrain.export", "edgetrain.models", "edgetrain.onnx_export",
     "edgetrain.quant", "edgetrain.convert", "edgetrain.onnx_qdq", "edgetrain.recompute"),
    ("edgetrain.session", "edgetrain"),  # the package re-exports TrainSession (lazily)
    ("edgetrain.federated",),
    ("edgetrain.cli_inputs",),
    ("edgetrain.cli_federate", "edgetrain.cli_convert"),
    ("edgetrain.cli", "edgetrain.__main__"),
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}
PACKAGES = ("edgetrain.data", "edgetrain.nn", "edgetrain.optim", "edgetrain.models",
            "edgetrain.federated", "edgetrain.convert")
# (importer, imported) prefixes that are refused whatever the layers say
FORBIDDEN = [("edgetrain.data", "edgetrain._native"), ("edgetrain.data", "edgetrain.session")]


def layer_of(module: str):
    """Layer of ``module`` (a dotted edgetrain name), or None when the table lacks it."""
    if module in LEVEL:
        return LEVEL[module]
    for pkg in PACKAGES:
        if module.startswith(pkg + "."):
            return LEVEL[pkg]
    return None


def module_names(root: str):
    """``(dotted name, path, is_package)`` of every .py file under ``root``."""
    base = os.path.basename(root)
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), os.path.dirname(root))
            parts = rel[:-3].split(os.sep)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            assert parts[0] == base
            yield ".".join(parts), os.path.join(dirpath, f), is_pkg


def imported_modules(tree: ast.AST, module: str, is_pkg: bool, known):
    """``(line, dotted name)`` of every edgetrain module ``tree`` imports, at any depth."""
    package = module if is_pkg else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            for a in node.names:  # ``from pkg import submodule`` imports the submodule
                sub = f"{target}.{a.name}"
                yield node.lineno, sub if sub in known else target


def violations(root: str = ROOT):
    """Messages naming each import that points to a higher layer (or a forbidden module)."""
    mods = list(module_names(root))
    known = {name for name, _, _ in mods} | set(LEVEL)  # with compiled ones (_native)
    out = []
    for name, path, is_pkg in mods:
        mine = layer_of(name)
        if mine is None:
            out.append(f"{name}: module missing from the LAYERS table of {__file__}")
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        for line, target in sorted(set(imported_modules(tree, name, is_pkg, known))):
            if target != "edgetrain" and not target.startswith("edgetrain."):
                continue
            theirs = layer_of(target)
            where = f"{os.path.relpath(path, os.path.dirname(root))}:{line}: {name} imports {target}"
            if theirs is None:
                out.append(f"{where}, which is missing from the LAYERS table")
            elif theirs > mine:
                out.append(f"{where} (layer {theirs} > {mine}: imports go downwards only)")
            for src, dst in FORBIDDEN:
                if (name == src or name.startswith(src + ".")) and \
                        (target == dst or target.startswith(dst + ".")):
                    out.append(f"{where} ({src} must never import {dst})")
    return out


def test_imports_go_one_way():
    bad = violations()
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def _write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_checker_finds_upward_and_forbidden_imports(tmp_path):
    """The checker itself can fail: lazy, relative and absolute upward imports are reported."""
    pkg = tmp_path / "edgetrain"
    _write(pkg, "__init__.py", "from . import nn\n")
    _write(pkg, "errors.py", "")
    _write(pkg, "_native.py", "")
    _write(pkg, "session.py", "")
    _write(pkg, "tracing.py", "def f():\n    from .nn import functional\n")
    _write(pkg, "nn/__init__.py", "from . import functional\n")
    _write(pkg, "nn/functional.py", "from .. import tracing, errors\n")
    _write(pkg, "ir.py", "import edgetrain.tracing\n")
    _write(pkg, "data/__init__.py", "def g():\n    from .. import _native\n")
    _write(pkg, "data/x.py", "def h():\n    from ..session import TrainSession\n")
    bad = violations(str(pkg))
    assert any("edgetrain.tracing imports edgetrain.nn.functional" in m for m in bad), bad
    assert any("edgetrain.ir imports edgetrain.tracing" in m for m in bad), bad
    assert any("edgetrain.data imports edgetrain._native" in m and "never" in m for m in bad)
    assert any("edgetrain.data.x imports edgetrain.session" in m for m in bad), bad
    assert not any("nn.functional imports" in m for m in bad), bad
    assert len(bad) == 5, bad  # data.x -> session: upward and forbidden
    _write(pkg, "extra.py", "")
    assert any("edgetrain.extra: module missing" in m for m in violations(str(pkg)))


@pytest.mark.parametrize("package", ["edgetrain.data", "edgetrain.nn"])
def test_imports_without_the_runtime(package):
    """``edgetrain.data`` and ``edgetrain.nn`` load neither the compiled runtime nor session."""
    code = (f"import sys, {package}\n"
            "print(sorted(m for m in ('edgetrain._native', 'edgetrain.session') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(ROOT), check=True).stdout.strip()
    assert out == "[]", f"importing {package} loaded {out}"
