"""Int8 eval (issue 14): edgetrain's int8 `.etm` vs its fp32 `.etm` vs ONNX Runtime, same run.

LeNet: a QAT LeNet (`QConfig(8, 8, quantize_input=True)`) trained a few steps on real MNIST (so
the observers' scales are realistic), then, at batch 64 on 1 thread, interleaved step by step:

    edgetrain         its int8 file (`SaveToFile(inference_only=True, int8=True)`), loaded
    edgetrain_fp32    the fp32 inference file of the same float weights (a plain LeNet session)
    onnxruntime_fp32  the fp32 ONNX export of those float weights
    onnxruntime_qdq   edgetrain's own QDQ export (`export_onnx(int8=True)`: U8 activations, S8
                      per-channel weights; ORT fuses it into QLinearConv / QGemm)
    onnxruntime_s8s8  `onnxruntime.quantization.quantize_static` of the fp32 ONNX: QDQ format,
                      S8 activations and S8 weights, per channel, MinMax calibration on MNIST
                      training images (CALIB of them)

MobileNetV2 (width 1.0, 1-channel 28x28 MNIST input, 10 classes, batch 32, 1 thread): the same
rows except onnxruntime_qdq. edgetrain's MobileNetV2 int8 file runs today, but its eval keeps
the Conv+BN folds, depthwise convolutions and residual adds in float fake-quant simulation
(docs/int8.md), so it is expected to be slower than fp32 until the int8 ops land.

Ratios printed at the end: row time / edgetrain int8 time (> 1: the int8 file is faster).
The "fp32 eval" lines compare edgetrain fp32 with ORT fp32 from the same rounds.

Settings, the same for every row: 1 thread. ORT: intra_op_num_threads=1, inter_op_num_threads=1,
ORT_SEQUENTIAL, default graph optimizations (ORT_ENABLE_ALL), CPU provider, and
`session.intra_op.allow_spinning` / `session.inter_op.allow_spinning` = ORT_SPIN. edgetrain's
pool spins 20 us before it sleeps (docs/threads.md) and ORT's default ("1") spins and then
blocks too; at 1 thread neither has a worker thread (the caller runs every kernel), so the
setting changes nothing here -- it is fixed so that 2-thread runs would compare like with like.
Warm-up: every row runs WARMUP rounds before the timed rounds, and each round runs one step of
each row in turn (neighbours in time on a shared machine). Inside the timed region: one
`RunGraph({"x": x})` / `InferenceSession.run(None, {"x": x})` on the same float32 batch, which
includes each framework's copy of the input and of the output (both return new arrays).
"""
import time

import numpy as np
import pytest

from conftest import QUICK, record

ORT_SPIN = "1"
CALIB = 64 if QUICK else 320
WARMUP = 1 if QUICK else 3
CASES = {  # model: (batch, QAT steps before export, timed rounds)
    "lenet": (8, 5, 3) if QUICK else (64, 100, 100),
    "mobilenetv2": (2, 1, 2) if QUICK else (32, 100, 40),
}


def _mnist(n):
    from pathlib import Path

    from edgetrain.data import MnistDataset

    ds = MnistDataset(str(Path(__file__).resolve().parents[1] / "data" / "mnist"), train=True)
    return ds.get_batch(np.arange(n))


def _model(name):
    from edgetrain.models import LeNet, MobileNetV2

    if name == "lenet":
        return LeNet()
    return MobileNetV2(num_classes=10, width_mult=1.0, input_size=28, in_channels=1)


def _build_files(name, batch, steps, d):
    """Train a QAT model on MNIST; write its int8 .etm, its QDQ ONNX (LeNet), and the fp32
    .etm / ONNX of the same float weights."""
    import edgetrain as et
    from edgetrain import nn, optim, quant

    et.manual_seed(0)
    tb = 64 if name == "lenet" else max(batch, 8)
    model = _model(name)
    sess = et.TrainSession.from_module(
        model, inputs={"x": (None, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"y": ((None,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.02 if name == "lenet" else 0.01,
                            momentum=0.9),
        quantize=quant.QConfig(8, 8, quantize_input=True), threads=2, seed=7,
        max_batch=max(tb, batch))
    x, y = _mnist(max(tb * steps, CALIB, batch))
    sess.Train()
    for i in range(steps):
        sess.RunGraph({"x": x[i * tb:(i + 1) * tb], "y": y[i * tb:(i + 1) * tb]})
    sess.Eval()
    files = {"int8": d / "int8.etm", "fp32": d / "fp32.etm", "fp32_onnx": d / "fp32.onnx"}
    sess.SaveToFile(files["int8"], inference_only=True, int8=True)
    if name == "lenet":
        files["qdq_onnx"] = d / "qdq.onnx"
        sess.export_onnx(files["qdq_onnx"], inference_only=True, int8=True)
    # The same float weights (and BatchNorm statistics) in a plain fp32 session.
    fmodel = _model(name)
    fp = et.TrainSession.from_module(fmodel, inputs={"x": (None, 1, 28, 28)},
                                     max_batch=max(tb, batch))
    want = fp.get_parameters()
    qat = sess.get_parameters()
    missing = [k for k in want if k not in qat]
    assert not missing, f"QAT session lacks float tensors {missing[:5]}"
    fp.set_parameters({k: qat[k] for k in want})
    fp.SaveToFile(files["fp32"], inference_only=True)
    fp.export_onnx(files["fp32_onnx"], inference_only=True)
    return files, x[:CALIB], x[:batch]


def _ort_s8s8(fp32_onnx, out, calib):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": calib[i:i + 32]} for i in range(0, len(calib), 32)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(fp32_onnx), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=True)
    return out


def _ort_session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", ORT_SPIN)
    so.add_session_config_entry("session.inter_op.allow_spinning", ORT_SPIN)
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _steps(name, tmp_path):
    import edgetrain as et

    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    ort.set_default_logger_severity(3)
    batch, steps, _ = CASES[name]
    files, calib, x = _build_files(name, batch, steps, tmp_path)
    files["s8s8_onnx"] = _ort_s8s8(files["fp32_onnx"], tmp_path / "s8s8.onnx", calib)
    s_int8 = et.TrainSession.load(files["int8"], threads=1)
    s_fp32 = et.TrainSession.load(files["fp32"], threads=1)
    feeds = {"x": x}
    rows = {
        "edgetrain": lambda: s_int8.RunGraph(feeds),
        "edgetrain_fp32": lambda: s_fp32.RunGraph(feeds),
    }
    onnx_rows = [("onnxruntime_fp32", "fp32_onnx"), ("onnxruntime_qdq", "qdq_onnx"),
                 ("onnxruntime_s8s8", "s8s8_onnx")]
    sessions = {}
    for row, key in onnx_rows:
        if key in files:
            sessions[row] = _ort_session(files[key])
            rows[row] = (lambda s: lambda: s.run(None, feeds))(sessions[row])
    # Every row must give finite logits of the same shape (argmax agreement with the fp32 file
    # goes to extra_info).
    outs = {r: np.asarray(list(f().values())[0] if r.startswith("edgetrain") else f()[0])
            for r, f in rows.items()}
    ref = outs["edgetrain_fp32"]
    for r, o in outs.items():
        assert o.shape == ref.shape, (r, o.shape, ref.shape)
        assert np.isfinite(o).all(), r
    return rows, outs, (s_int8, s_fp32, sessions)


def _interleaved(benchmark, rows, rounds):
    times = {r: [] for r in rows}

    def one_round():
        for r, step in rows.items():
            t0 = time.perf_counter()
            step()
            times[r].append(time.perf_counter() - t0)

    for _ in range(WARMUP):
        one_round()
    for t in times.values():
        t.clear()
    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    return {r: float(np.median(t)) for r, t in times.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_int8_eval(benchmark, name, tmp_path):
    """Int8 and fp32 eval of the same trained model, edgetrain vs ORT, interleaved rounds."""
    rows, outs, live = _steps(name, tmp_path)
    batch, _, rounds = CASES[name]
    med = _interleaved(benchmark, rows, rounds)
    label = f"int8 eval {name} b{batch} t1"
    for r, s in med.items():
        record(label, r, s)
        benchmark.extra_info[f"{r}_median_ms"] = s * 1e3
    record(f"fp32 eval {name} b{batch} t1", "edgetrain", med["edgetrain_fp32"])
    record(f"fp32 eval {name} b{batch} t1", "onnxruntime", med["onnxruntime_fp32"])
    # argmax agreement of each row with edgetrain's fp32 file on the timed MNIST batch
    fp_arg = outs["edgetrain_fp32"].argmax(1)
    for r, o in outs.items():
        if r != "edgetrain_fp32":
            agree = float((o.argmax(1) == fp_arg).mean())
            benchmark.extra_info[f"{r}_argmax_agree_fp32"] = agree
            record(f"int8 eval {name} argmax = fp32 file's", f"agree_{r}", agree)
    del live
