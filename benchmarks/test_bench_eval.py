"""MobileNetV2 fp32 eval (issue 15): edgetrain's eval program vs ONNX Runtime, same run.

Model: MobileNetV2 width 1.0, 10 classes, BatchNorm statistics and affine parameters set to
random values (a fresh BatchNorm is nearly the identity; timing does not depend on them, but
the fused epilogue then does real work). Cases: 28x28 with in_channels=1 at batch 32 (MNIST
size) and 224x224 RGB at batch 8, each at 1 and 2 threads.

    edgetrain     the session's eval program (`sess.Eval(); sess.RunGraph({"x": x})`): conv2d
                  with BatchNorm and ReLU6 fused in its epilogue (export.fuse_conv_batchnorm)
    onnxruntime   the session's `export_onnx(path, inference_only=True)` (BatchNorm folded into
                  the Conv weights), `InferenceSession.run(None, {"x": x})`

Settings: edgetrain `threads=t`; ORT intra_op_num_threads=t, inter_op_num_threads=1,
ORT_SEQUENTIAL, ORT_ENABLE_ALL, CPU provider, default spinning. Warm-up: WARMUP rounds;
each round runs one step of each row in turn at 1 thread, a block of BLOCK steps of each at 2
threads (the first SETTLE of a block not counted), so both see the same machine; the
medians are recorded. Inside the timed region: one run on the same float32 batch, including
each framework's copy of the input and output. Ratio printed: ORT time / edgetrain time
(> 1: edgetrain is faster). QUICK mode (`make bench-quick`) runs tiny batches, two rounds.
"""
import time

import numpy as np
import pytest

from conftest import QUICK, record

WARMUP = 1 if QUICK else 3
# At 2 threads onnxruntime's pool keeps spinning after a run and takes a core from whatever
# runs next (edgetrain's pool then sees a late worker and backs off to one thread), so at 2
# threads each framework runs a block of BLOCK runs in turn and the first SETTLE of each block
# are not counted (as benchmarks/test_bench_training.py's paired rounds do).
# After a block the next framework starts PARK_S later, once the spinning threads have parked.
BLOCK, SETTLE, PARK_S = 6, 2, 0.05
CASES = {  # name: (input size, in_channels, batch, timed rounds)
    "28x28": (28, 1, 2 if QUICK else 32, 2 if QUICK else 20),
    "224x224": (224, 3, 1 if QUICK else 8, 2 if QUICK else 8),
}


def _model(size, in_channels):
    import edgetrain as et
    from edgetrain.models import MobileNetV2

    et.nn.init.manual_seed(0)
    m = MobileNetV2(num_classes=10, width_mult=1.0, input_size=size, in_channels=in_channels)
    r = np.random.RandomState(1)
    sd = m.state_dict()
    for k, v in sd.items():
        if k.endswith("running_mean"):
            sd[k] = (r.randn(*v.shape) * 0.1).astype(np.float32)
        elif k.endswith("running_var"):
            sd[k] = r.uniform(0.5, 2.0, v.shape).astype(np.float32)
    m.load_state_dict(sd)
    return m


def _ort_session(path, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_mobilenetv2_eval(benchmark, case, threads, tmp_path):
    import edgetrain as et

    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    size, in_ch, batch, rounds = CASES[case]
    sess = et.TrainSession.from_module(_model(size, in_ch), inputs={"x": (None, in_ch, size, size)},
                                       threads=threads, max_batch=batch)
    sess.Eval()
    path = tmp_path / "m.onnx"
    sess.export_onnx(path, inference_only=True)
    ort_s = _ort_session(path, threads)
    x = np.random.RandomState(0).randn(batch, in_ch, size, size).astype(np.float32)
    rows = {"edgetrain": lambda: sess.RunGraph({"x": x})["output"],
            "onnxruntime": lambda: ort_s.run(None, {"x": x})[0]}
    outs = {r: np.asarray(f()) for r, f in rows.items()}
    np.testing.assert_allclose(outs["onnxruntime"], outs["edgetrain"], rtol=1e-3, atol=1e-3)
    times = {r: [] for r in rows}
    block, settle = (1, 0) if threads == 1 or QUICK else (BLOCK, SETTLE)

    def one_round():
        for r, step in rows.items():
            for k in range(block):
                t0 = time.perf_counter()
                step()
                if k >= settle:
                    times[r].append(time.perf_counter() - t0)
            if block > 1:
                time.sleep(PARK_S)

    for _ in range(WARMUP):
        one_round()
    for t in times.values():
        t.clear()
    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    label = f"fp32 eval mobilenetv2 {case} b{batch} t{threads}"
    for r, t in times.items():
        med = float(np.median(t))
        record(label, r, med)
        benchmark.extra_info[f"{r}_median_ms"] = med * 1e3
