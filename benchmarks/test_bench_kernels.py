"""GEMM and convolution kernels: edgetrain vs numpy's OpenBLAS (gemm) and PyTorch (conv)."""
import numpy as np
import pytest

from edgetrain import _native
from conftest import QUICK, blas_threads, median_seconds, record

GEMM_SIZES = [64] if QUICK else [256, 512, 1024, 2048]
# (M, N, K) from LeNet and MobileNet layers as im2col GEMMs / linear layers
GEMM_SHAPES = [(20, 576, 25), (50, 64, 500)] if QUICK else [
    (20, 576 * 64, 25), (50, 64 * 64, 500), (64, 500, 800), (64, 10, 500),
    (96, 1024, 16), (144, 1024, 24), (320, 16, 960)]
THREADS = [1, 2]


def _gflops(m, n, k, seconds):
    return 2.0 * m * n * k / seconds / 1e9


def _bench_gemm(benchmark, impl, m, n, k, threads, label):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    if impl == "edgetrain":
        benchmark(lambda: _native.gemm(a, b, c, threads=threads))
    else:
        with blas_threads(threads):
            benchmark(lambda: np.matmul(a, b, out=c))
    s = median_seconds(benchmark)
    if s:
        record(f"gemm {label} t{threads}", impl, s)
        benchmark.extra_info["gflops"] = _gflops(m, n, k, s)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("size", GEMM_SIZES)
@pytest.mark.parametrize("impl", ["edgetrain", "numpy"])
def test_gemm_square(benchmark, impl, size, threads):
    _bench_gemm(benchmark, impl, size, size, size, threads, f"{size}^3")


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("impl", ["edgetrain", "numpy"])
def test_gemm_model_shapes(benchmark, impl, shape, threads):
    m, n, k = shape
    _bench_gemm(benchmark, impl, m, n, k, threads, f"{m}x{n}x{k}")


CONV_CASES = {
    "lenet_conv1": ((64, 1, 28, 28), (20, 1, 5, 5), 1, 0, 1),
    "lenet_conv2": ((64, 20, 12, 12), (50, 20, 5, 5), 1, 0, 1),
    "mbv2_pw": ((32, 96, 16, 16), (24, 96, 1, 1), 1, 0, 1),
    "mbv2_dw": ((32, 144, 16, 16), (144, 1, 3, 3), 1, 1, 144),
}
if QUICK:
    CONV_CASES = {"lenet_conv2_small": ((2, 20, 12, 12), (50, 20, 5, 5), 1, 0, 1)}


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("case", sorted(CONV_CASES))
@pytest.mark.parametrize("direction", ["fwd", "bwd"])
@pytest.mark.parametrize("impl", ["edgetrain", "torch"])
def test_conv(benchmark, impl, case, direction, threads):
    xs, ws, stride, pad, groups = CONV_CASES[case]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32)
    if impl == "edgetrain":
        k = _native.Conv2dKernel(xs, ws, (stride, stride), (pad,) * 4, (1, 1), groups, threads)
        y = np.empty(k.out_shape, np.float32)
        dx, dw = np.empty_like(x), np.empty_like(w)
        if direction == "fwd":
            benchmark(lambda: k.forward(x, w, y))
        else:
            dy = rng.standard_normal(k.out_shape, dtype=np.float32)
            benchmark(lambda: (k.backward_input(dy, w, dx), k.backward_weight(dy, x, dw)))
    else:
        torch = pytest.importorskip("torch")  # benchmarks only; CI installs it
        torch.set_num_threads(threads)
        tx = torch.from_numpy(x).requires_grad_(direction == "bwd")
        tw = torch.from_numpy(w).requires_grad_(direction == "bwd")
        conv = torch.nn.functional.conv2d
        if direction == "fwd":
            def run():
                with torch.no_grad():
                    conv(tx, tw, None, stride, pad, 1, groups)
            benchmark(run)
        else:
            out = conv(tx, tw, None, stride, pad, 1, groups)
            dy = torch.randn_like(out)
            benchmark(lambda: torch.autograd.grad(out, (tx, tw), dy, retain_graph=True))
    s = median_seconds(benchmark)
    if s:
        record(f"conv {case} {direction} t{threads}", impl, s)
