"""An eval program with an image-first segment (tests/test_segments.py) run by et_train on x86
and on arm64 under qemu (tests/test_android.py builds both binaries): the same output bits, the
same as Python's Eval() and as 1 thread.

Model: MNIST upsampled 4x to 112x112, then conv 3x3 (1 -> 32) + BatchNorm + ReLU6, depthwise
3x3 + BatchNorm + ReLU6 and a 1x1 projection to 16 channels: at batch 8 the first two outputs
are 12.8 MB each, so the three convolutions form one segment; then global pooling and a linear
layer at batch size.
"""
import numpy as np

from test_android import (_lut, _python_session, _read_idx, _run, arm64_bin,  # noqa: F401
                          host_bin, mnist_dir)
from test_segments import random_statistics

BATCH, TEST_N = 8, 16


def _export(path):
    et = _python_session()
    from edgetrain import nn, optim
    import edgetrain.nn.functional as F

    def cbr(cin, cout, k, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*(layers + [nn.ReLU6()] if act else layers))

    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(cbr(1, 32, 3), cbr(32, 32, 3, groups=32), cbr(32, 16, 1, act=False))
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = self.features(F.interpolate(x, scale_factor=4, mode="nearest"))
            return self.fc(F.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    et.manual_seed(0)
    model = random_statistics(Up(), 1)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (BATCH, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((BATCH,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.05), threads=2)
    sess.SaveToFile(str(path))
    return et, sess


def _bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def test_segment_eval_bits_x86_arm64_python(host_bin, arm64_bin, mnist_dir, tmp_path):  # noqa: F811
    path = tmp_path / "up.etm"
    et, sess = _export(path)
    x = _lut()[_read_idx(mnist_dir / "test" / "t10k-images-idx3-ubyte")[:TEST_N]].reshape(-1, 1, 28, 28)
    sess.Eval()
    assert [g["count"] for g in sess.eval_segments()] == [3], sess.eval_segments()
    py = np.concatenate([sess.RunGraph({"data": x[i:i + BATCH]})["output"] for i in range(0, TEST_N, BATCH)])
    # the segment is there: in the inference-only file (the eval program alone plans the arena)
    # the 112x112 activations inside it have no room in the arena
    inf = tmp_path / "up_inference.etm"
    sess.SaveToFile(str(inf), inference_only=True)
    s_inf = et.TrainSession.load(str(inf), threads=2)
    s_inf.RunGraph({"data": x[:BATCH]})
    assert s_inf.memory_info()["activations"] < BATCH * 32 * 112 * 112 * 4, s_inf.memory_info()

    outs = {}
    for name, cmd, threads in (("x86", [host_bin], 2), ("x86-t1", [host_bin], 1),
                               ("arm64", ["qemu-aarch64-static", arm64_bin], 2)):
        f = tmp_path / f"{name}.f32"
        proc = _run(cmd + ["-f", path, "-d", mnist_dir, "--eval-only", "--test-limit", TEST_N, "-b", BATCH,
                           "-t", threads, "--save-outputs", f], timeout=1800)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        outs[name] = np.fromfile(f, np.float32).reshape(TEST_N, 10)
    assert np.all(np.isfinite(outs["x86"]))
    for name in ("x86-t1", "arm64"):
        assert np.array_equal(_bits(outs[name]), _bits(outs["x86"])), name
    assert np.array_equal(_bits(py), _bits(outs["x86"]))
