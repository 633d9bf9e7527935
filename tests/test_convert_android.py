"""A model exported from PyTorch and converted on the command line (`edgetrain convert`)
trains under qemu arm64 through android/prepare_and_run.sh, and the trained file loads back."""
import io

import numpy as np
import pytest

from conftest import mnist_arrays
from test_android import _arm64_tools, _mnist_src, _script

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def test_converted_model_trains_under_qemu_arm64(tmp_path):
    _arm64_tools()
    import torch.nn as tnn

    import edgetrain as et
    from edgetrain.cli import main

    torch.manual_seed(0)
    net = tnn.Sequential(tnn.Conv2d(1, 6, 5), tnn.BatchNorm2d(6), tnn.ReLU(), tnn.MaxPool2d(2),
                         tnn.Conv2d(6, 8, 5, 2), tnn.ReLU(), tnn.Flatten(),
                         tnn.Linear(8 * 4 * 4, 10))
    buf = io.BytesIO()
    torch.onnx.export(net.train(), (torch.randn(8, 1, 28, 28),), buf, dynamo=False,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      opset_version=17, input_names=["input"])
    onnx_path, model = tmp_path / "cnn.onnx", tmp_path / "cnn.etm"
    onnx_path.write_bytes(buf.getvalue())
    assert main(["convert", str(onnx_path), "-o", str(model), "--input", "input:16x1x28x28",
                 "--lr", "0.05", "--momentum", "0.9"]) == 0
    proc = _script(["-D", _mnist_src(), "-t", "arm64-qemu", "-m", model, "-i", 6, "-b", 16,
                    "-w", tmp_path, "--test-limit", 200])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trained = tmp_path / "cnn_trained.etm"
    assert f"trained model: {trained}" in proc.stdout
    sess = et.TrainSession.load(str(trained), threads=1)
    assert sess.step == 6
    before = et.TrainSession.load(str(model), threads=1).get_parameters()
    after = sess.get_parameters()
    assert not np.array_equal(before["7.weight"], after["7.weight"])
    # the same 6 sequential batches in the Python session on x86 give the same weights
    x, y = mnist_arrays(True)
    ref = et.TrainSession.load(str(model), threads=1)
    ref.Train()
    for k in range(6):
        ref.RunGraph({"data": x[16 * k:16 * (k + 1)], "label": y[16 * k:16 * (k + 1)]})
    for name, v in ref.get_parameters().items():
        np.testing.assert_allclose(after[name], v, rtol=1e-4, atol=1e-6, err_msg=name)
