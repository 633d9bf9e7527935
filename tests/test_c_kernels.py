"""The C kernel/runtime test binary (every SIMD variant against __ref), built and run natively
and, for arm64 (NEON paths), cross-compiled static and run under qemu-aarch64-static."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"


def _run_make(*args, timeout=900):
    proc = subprocess.run(["make", "-s", "-C", str(KERNELS), *args], capture_output=True,
                          text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


def _arm64_tools():
    have = shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64-static")
    if not have and os.environ.get("EDGETRAIN_REQUIRE_ARM64") == "1":
        pytest.fail("aarch64-linux-gnu-gcc / qemu-aarch64-static missing but required (CI)")
    return have


def test_kernels_host():
    out = _run_make("BUILD=build/pytest-host", "test")
    assert " 0 failed" in out


def test_kernels_no_openmp():
    """No OpenMP anywhere: the library is compiled without -fopenmp and references no OpenMP
    runtime symbol (every kernel loop runs on the thread pool, docs/threads.md)."""
    out = _run_make("-n", "-B", "BUILD=build/pytest-host", "build/pytest-host/libedgetrain.a")
    assert "-fopenmp" not in out
    _run_make("BUILD=build/pytest-host", "build/pytest-host/libedgetrain.a")
    nm = shutil.which("nm")
    if nm:
        syms = subprocess.run([nm, "-u", str(KERNELS / "build/pytest-host/libedgetrain.a")],
                              capture_output=True, text=True).stdout
        assert "GOMP_" not in syms and "omp_get_" not in syms


def test_kernels_arm64_qemu():
    if not _arm64_tools():
        pytest.skip("no aarch64 cross compiler / qemu on this machine")
    out = _run_make("TARGET=aarch64", "BUILD=build/pytest-aarch64", "test", timeout=1800)
    assert "best ISA: neon" in out
    assert " 0 failed" in out
    # every family with a NEON row in its variant table tested it against __ref
    for family in ("gemm", "dwconv2d", "maxpool2d_k2s2", "act", "optim"):
        assert f"  variants {family}: ref neon\n" in out, family
