"""et_train (android/) trains a QAT file and evaluates an int8 file, on x86 and on arm64 under
qemu (tests/test_android.py builds both binaries).

(a) A QAT LeNet (``QConfig(8, 8, quantize_input=True)``) trained a few steps on an MNIST slice
    by et_train prints the same losses on x86 and arm64 (to the printed digits) and the Python
    session's within 1e-5 (as tests/test_families_arm64.py); the file it saves loads in Python
    and resumes.
(b) The int8 file exported from it, run by ``et_train --eval-only --save-outputs``, gives the
    QAT session's ``Eval()`` logits bit for bit (and so its accuracy) on x86 and on arm64 with
    ``-cpu max`` (sdot: the neondot GEMM row) and ``-cpu cortex-a53`` (no sdot: the plain neon
    row); the last test batch is a partial one (re-planned).
(c) An int8 file is refused for training, and a corrupt one at load, with a one-line message.
"""
import re

import numpy as np
import pytest

from test_android import (_losses, _lut, _python_session, _read_idx, _run, arm64_bin,  # noqa: F401
                          host_bin, mnist_dir)

STEPS, BATCH, TEST_N = 8, 16, 100
QEMU = {"arm64-max": ("max", "neondot"), "arm64-a53": ("cortex-a53", "neon")}


def _export_qat(path):
    et = _python_session()
    from edgetrain import nn, optim, quant
    from edgetrain.models import LeNet

    et.manual_seed(0)
    model = LeNet()
    sess = et.TrainSession.from_module(
        model, inputs={"data": (BATCH, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((BATCH,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        quantize=quant.QConfig(8, 8, quantize_input=True),
        threads=1)
    sess.SaveToFile(str(path))
    return et


def _batches(mnist_dir, split, n):
    name = "train/train" if split == "train" else "test/t10k"
    x = _lut()[_read_idx(mnist_dir / f"{name}-images-idx3-ubyte")[:n]].reshape(n, 1, 28, 28)
    y = _read_idx(mnist_dir / f"{name}-labels-idx1-ubyte")[:n].astype(np.int64)
    return x, y


def _eval(sess, x):
    sess.Eval()
    return np.concatenate([sess.RunGraph({"data": x[i:i + BATCH]})["output"]
                           for i in range(0, len(x), BATCH)])


@pytest.fixture(scope="module")
def trained(host_bin, arm64_bin, mnist_dir, tmp_path_factory):  # noqa: F811
    """The QAT file, et_train's runs on x86 and arm64 ({isa: (stdout, saved file)}) and the
    Python session on the same batches: its losses of steps 1..STEPS + 1 and its parameters
    after STEPS steps."""
    d = tmp_path_factory.mktemp("int8_arm64")
    path = d / "qat.etm"
    et = _export_qat(path)
    runs = {}
    for isa, cmd in (("x86", [host_bin]),
                     ("arm64", ["qemu-aarch64-static", "-cpu", "max", arm64_bin])):
        saved = d / f"qat_{isa}.etm"
        proc = _run(cmd + ["-f", path, "-d", mnist_dir, "-i", STEPS, "-t", 1, "-p", 1,
                           "--limit", STEPS * BATCH, "--test-limit", 0, "-s", saved],
                    timeout=1800)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        runs[isa] = (proc.stdout, saved)
    x, y = _batches(mnist_dir, "train", (STEPS + 1) * BATCH)
    py = et.TrainSession.load(str(path), threads=1)
    py.Train()
    losses, params = [], None
    for k in range(STEPS + 1):
        if k == STEPS:
            params = py.get_parameters()
        j = slice(k * BATCH, (k + 1) * BATCH)
        losses.append(float(py.RunGraph({"data": x[j], "label": y[j]})["loss"]))
    return et, runs, losses, params, (x, y)


def test_qat_file_trains_the_same_on_x86_arm64_and_python(trained):
    et, runs, losses, want, (x, y) = trained
    lines = {isa: re.findall(r"^step \d+: loss \S+$", out, re.M) for isa, (out, _) in runs.items()}
    assert len(lines["x86"]) == STEPS and lines["arm64"] == lines["x86"], lines
    assert "isa neondot" in runs["arm64"][0]
    c = _losses(runs["x86"][0])
    assert np.all(np.isfinite(losses)) and losses[STEPS - 1] < losses[0]
    np.testing.assert_allclose([c[k + 1] for k in range(STEPS)], losses[:STEPS], rtol=0,
                               atol=1e-5)
    j = slice(STEPS * BATCH, (STEPS + 1) * BATCH)
    for isa, (_, saved) in runs.items():
        s = et.TrainSession.load(str(saved), threads=1)
        assert s.step == STEPS
        got = s.get_parameters()
        # the observers ran in et_train: its scales are the Python session's (to float noise)
        for k in ("conv1.input_fake_quant.scale", "fc2.activation_post_process.scale",
                  "conv2.weight_fake_quant.scale", "fc1.weight"):
            np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-6, err_msg=(isa, k))
        s.Train()   # ... and the file resumes in Python: step STEPS + 1 as the Python session's
        nxt = float(s.RunGraph({"data": x[j], "label": y[j]})["loss"])
        assert s.step == STEPS + 1
        np.testing.assert_allclose(nxt, losses[STEPS], rtol=0, atol=1e-5, err_msg=isa)


@pytest.fixture(scope="module")
def int8_file(trained, mnist_dir):  # noqa: F811
    """The int8 file of the x86-trained QAT model and the QAT session's Eval() logits on the
    first TEST_N test images."""
    et, runs, _, _, _ = trained
    saved = runs["x86"][1]
    qat = et.TrainSession.load(str(saved), threads=1)
    x, y = _batches(mnist_dir, "test", TEST_N)
    logits = _eval(qat, x)
    path = saved.parent / "int8.etm"
    qat.SaveToFile(str(path), inference_only=True, int8=True)
    assert np.array_equal(_eval(et.TrainSession.load(str(path), threads=1), x).view(np.uint32),
                          logits.view(np.uint32))
    return et, path, logits, y


@pytest.mark.parametrize("isa", ["x86", "arm64-max", "arm64-a53"])
def test_int8_file_eval_only_equals_python_eval(isa, int8_file, host_bin, arm64_bin,  # noqa: F811
                                                mnist_dir, tmp_path):
    et, path, logits, y = int8_file
    if isa == "x86":
        cmd = [host_bin]
    else:
        cmd = ["qemu-aarch64-static", "-cpu", QEMU[isa][0], arm64_bin]
    out = tmp_path / "outputs.f32"
    proc = _run(cmd + ["-f", path, "-d", mnist_dir, "--eval-only", "--test-limit", TEST_N,
                       "--save-outputs", out], timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    if isa != "x86":
        assert f", isa {QEMU[isa][1]}, " in proc.stdout, proc.stdout
    got = np.fromfile(out, np.float32).reshape(TEST_N, 10)
    assert np.array_equal(got.view(np.uint32), logits.view(np.uint32)), isa
    acc = float(re.search(r"^accuracy = (\S+)$", proc.stdout, re.M).group(1))
    assert acc == pytest.approx(np.mean(logits.argmax(1) == y), abs=1e-6)
    assert f"outputs: {out}" in proc.stdout


def test_et_train_refuses_int8_files_for_training_and_bad_ones(int8_file, host_bin,  # noqa: F811
                                                               arm64_bin, mnist_dir, tmp_path):
    et, path, _, _ = int8_file
    from edgetrain import fileformat

    g = fileformat.load(str(path))
    t = g.find("fc2.multiplier")
    t.data = np.array(t.data).copy()
    t.data.flat[0] = 0.0
    bad = tmp_path / "bad_int8.etm"
    bad.write_bytes(fileformat.dumps(g, inference_only=True))
    for cmd in ([host_bin], ["qemu-aarch64-static", arm64_bin]):
        proc = _run(cmd + ["-f", path, "-d", mnist_dir, "-i", 1, "-s", tmp_path / "o.etm"])
        assert proc.returncode == 4, proc.stdout + proc.stderr
        assert proc.stderr == ("et_train: error: the model has no training program "
                               "(inference-only file?); only --eval-only works with it\n")
        proc = _run(cmd + ["-f", bad, "-d", mnist_dir, "--eval-only", "--test-limit", 10])
        assert proc.returncode == 4, proc.stdout + proc.stderr
        assert proc.stderr.startswith(f"et_train: error: {bad}: cannot load model: ")
        assert "multipliers must be finite and > 0" in proc.stderr
        assert proc.stderr.count("\n") == 1 and not (tmp_path / "o.etm").exists()
        proc = _run(cmd + ["-f", path, "-d", mnist_dir, "--eval-only", "--test-limit", 0,
                           "--save-outputs", tmp_path / "x.f32"])
        assert proc.returncode == 2 and "--save-outputs writes the test outputs" in proc.stderr
        proc = _run(cmd + ["-f", path, "-d", mnist_dir, "--eval-only", "--test-limit", 10,
                           "--save-outputs", tmp_path / "no_dir" / "x.f32"])
        assert proc.returncode == 3 and "--save-outputs" in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def mobilenet_int8(mnist_dir, tmp_path_factory):  # noqa: F811
    """A QAT MobileNetV2 (width 0.35, every layer integer) trained a few steps in Python, its
    int8 file and its Eval() logits on the first 48 test images."""
    et = _python_session()
    from edgetrain import nn, optim, quant
    from edgetrain.models import MobileNetV2

    et.manual_seed(1)
    model = MobileNetV2(num_classes=10, in_channels=1, width_mult=0.35, input_size=28)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (BATCH, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((BATCH,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        quantize=quant.QConfig(8, 8, quantize_input=True), threads=2)
    x, y = _batches(mnist_dir, "train", BATCH * 6)
    sess.Train()
    for i in range(6):
        sess.RunGraph({"data": x[i * BATCH:(i + 1) * BATCH], "label": y[i * BATCH:(i + 1) * BATCH]})
    xt, _ = _batches(mnist_dir, "test", 48)
    logits = _eval(sess, xt)
    path = tmp_path_factory.mktemp("mnv2_int8") / "mnv2_int8.etm"
    sess.SaveToFile(str(path), inference_only=True, int8=True)
    return path, logits


@pytest.mark.parametrize("isa", ["x86", "arm64-max", "arm64-a53"])
def test_mobilenetv2_int8_file_eval_only_equals_python_eval(isa, mobilenet_int8, host_bin,  # noqa: F811
                                                            arm64_bin, mnist_dir, tmp_path):
    """qclamp, qadd, qglobal_avgpool and the direct depthwise qconv2d on arm64 too."""
    path, logits = mobilenet_int8
    cmd = [host_bin] if isa == "x86" else ["qemu-aarch64-static", "-cpu", QEMU[isa][0], arm64_bin]
    out = tmp_path / "outputs.f32"
    proc = _run(cmd + ["-f", path, "-d", mnist_dir, "--eval-only", "--test-limit", len(logits),
                       "--save-outputs", out], timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    got = np.fromfile(out, np.float32).reshape(logits.shape)
    assert np.array_equal(got.view(np.uint32), logits.view(np.uint32)), isa
