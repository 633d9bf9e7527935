"""Build of the edgetrain native extension.

The C sources come from kernels/sources.txt — the same list the standalone C build
(kernels/Makefile) and the Android build (android/) read, so the builds cannot drift.
No OpenMP: the kernels run on edgetrain's own thread pool (POSIX threads).
No -march flags: x86 SIMD variants are compiled with target attributes and chosen at run time.
"""
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
KERNELS = HERE / "kernels"


def c_sources():
    lines = (KERNELS / "sources.txt").read_text().splitlines()
    return [str(Path("kernels") / s.strip()) for s in lines if s.strip() and not s.startswith("#")]


# -ffp-contract=off: no implicit FMA contraction, so plain C computes the same bits on x86 and
# aarch64 (explicit FMA intrinsics only); kernels/Makefile and android/ use the same policy.
# The kernels run on edgetrain's own thread pool (POSIX threads, kernels/src/threadpool.c), no
# OpenMP.
compile_args = ["-O3", "-ffp-contract=off", "-fno-strict-aliasing", "-Wno-unused-function",
                "-pthread"]
link_args = ["-pthread"]
# Runtime allocations are rare (load / resize / save), so they are always counted: the tests
# check that a training step makes none.
macros = [("ET_DEBUG_ALLOC", "1"), ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
include_dirs = [str(KERNELS / "include"), str(KERNELS / "src"), str(KERNELS / "runtime"),
                np.get_include()]

extensions = [
    Extension("edgetrain._native", ["edgetrain/_native.pyx"] + c_sources(),
              include_dirs=include_dirs, define_macros=macros,
              extra_compile_args=compile_args, extra_link_args=link_args),
    # the data pipeline's hot loops (no C runtime inside)
    Extension("edgetrain.data._batch", ["edgetrain/data/_batch.pyx"],
              include_dirs=[np.get_include()], define_macros=macros[1:],
              extra_compile_args=compile_args, extra_link_args=link_args),
]

setup(
    ext_modules=cythonize(extensions, compiler_directives={
        "language_level": 3, "boundscheck": False, "wraparound": False, "cdivision": True},
        quiet=True),
)
