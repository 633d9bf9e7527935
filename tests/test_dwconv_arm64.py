"""fp32 models with depthwise convolutions trained by et_train on x86 and on arm64 under qemu
(tests/test_android.py builds both binaries) give the same bits: every printed loss, every
saved parameter and BatchNorm buffer, and the eval program's outputs (the convolutions carry
their BatchNorm and ReLU6 as a fused epilogue), and the inference-only file's outputs (BatchNorm
folded into the convolutions).

The depthwise kernels follow one float-operation order on every ISA (fmaf chains, the
weight gradient in the AVX-512 lane structure: kernels/src/conv2d_depthwise.c, file top; the
kernel family "dwbits" pins each variant to __ref byte for byte). Two models:
  mobilenetv2  MobileNetV2 width 0.25 on MNIST's 28x28: depthwise planes 14x14 ... 1x1, stride
               1 and 2 (the AVX-512 flat path on x86, the row drivers on NEON);
  dw56         the image upsampled to 56x56: depthwise planes above the flat path's 1024
               elements (the AVX-512 padded-plane path, the stride-2 scatter of the input
               gradient), channel multiplier 2, a 5x5 kernel with bias.
"""
import re

import numpy as np
import pytest

from test_android import (_lut, _python_session, _read_idx, _run, arm64_bin,  # noqa: F401
                          host_bin, mnist_dir)

STEPS, BATCH, TEST_N, THREADS = 4, 8, 24, 2


def _model(name):
    from edgetrain import nn
    from edgetrain.models import MobileNetV2
    import edgetrain.nn.functional as F

    if name == "mobilenetv2":
        return MobileNetV2(num_classes=10, in_channels=1, width_mult=0.25, input_size=28)

    def block(cin, cout, k, s, groups, bias):
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=bias),
                             nn.BatchNorm2d(cout), nn.ReLU6())

    class Dw56(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = block(1, 8, 3, 1, 1, False)
            self.dw1 = block(8, 8, 3, 1, 8, False)      # 56x56, stride 1
            self.dw2 = block(8, 16, 3, 2, 8, False)     # multiplier 2, 56x56 -> 28x28
            self.dw3 = block(16, 16, 5, 2, 16, True)    # 5x5 with bias, 28x28 -> 14x14
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.dw3(self.dw2(self.dw1(self.stem(x))))
            return self.fc(F.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    return Dw56()


def _export(name, path):
    et = _python_session()
    from edgetrain import nn, optim

    et.manual_seed(0)
    model = _model(name)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (BATCH, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((BATCH,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.05, momentum=0.9), threads=1)
    sess.SaveToFile(str(path))
    return et, sess


def _bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def _eval_outputs(cmd, path, mnist_dir, out):
    proc = _run(cmd + ["-f", path, "-d", mnist_dir, "--eval-only", "--test-limit", TEST_N,
                       "-t", THREADS, "--save-outputs", out], timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    return np.fromfile(out, np.float32).reshape(TEST_N, 10)


@pytest.mark.parametrize("name", ["mobilenetv2", "dw56"])
def test_depthwise_model_trains_and_evaluates_bit_identically(name, host_bin, arm64_bin,  # noqa: F811
                                                              mnist_dir, tmp_path):
    path = tmp_path / f"{name}.etm"
    et, exported = _export(name, path)
    from edgetrain import ir

    # the model has depthwise convolutions, and the eval program fuses their BatchNorm + ReLU6
    g = exported.to_graph()
    ev = [g.nodes[n] for n in g.programs[ir.EVAL].nodes]
    assert any(n.op == "conv2d" and len(n.inputs) > 3 for n in ev), [n.op for n in ev]
    assert not any(n.op.startswith("batchnorm") for n in ev), sorted({n.op for n in ev})

    cmds = {"x86": [host_bin], "arm64": ["qemu-aarch64-static", arm64_bin]}
    out, saved = {}, {}
    for isa, cmd in cmds.items():
        saved[isa] = tmp_path / f"{name}_{isa}.etm"
        proc = _run(cmd + ["-f", path, "-d", mnist_dir, "-i", STEPS, "-b", BATCH,
                           "-t", THREADS, "-p", 1, "-s", saved[isa], "--limit", STEPS * BATCH,
                           "--test-limit", 0], timeout=1800)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        out[isa] = proc.stdout
    assert "isa neon" in out["arm64"]
    steps = {isa: re.findall(r"^step \d+: loss (\S+)$", o, re.M) for isa, o in out.items()}
    assert len(steps["x86"]) == STEPS and steps["arm64"] == steps["x86"], steps
    losses = [float(v) for v in steps["x86"]]
    assert np.all(np.isfinite(losses)) and len(set(losses)) > 1

    # every parameter and buffer, bit for bit (and training changed them)
    start = exported.get_parameters()
    got = {isa: et.TrainSession.load(str(p), threads=1) for isa, p in saved.items()}
    px, pa = (got[isa].get_parameters() for isa in ("x86", "arm64"))
    assert px.keys() == pa.keys() == start.keys()
    dw_keys = [k for k in px if k.endswith("weight") and px[k].ndim == 4 and px[k].shape[1] == 1]
    assert dw_keys, sorted(px)
    for k in px:
        assert np.array_equal(_bits(px[k]), _bits(pa[k])), k
    assert all(not np.array_equal(px[k], start[k]) for k in dw_keys)

    # the eval program (fused conv + BatchNorm + ReLU6) on both, and Python's Eval() on x86
    ex = _eval_outputs(cmds["x86"], saved["x86"], mnist_dir, tmp_path / "ev_x86.f32")
    ea = _eval_outputs(cmds["arm64"], saved["x86"], mnist_dir, tmp_path / "ev_arm64.f32")
    assert np.all(np.isfinite(ex)) and np.array_equal(_bits(ex), _bits(ea))
    x = _lut()[_read_idx(mnist_dir / "test" / "t10k-images-idx3-ubyte")[:TEST_N]]
    s = got["x86"]
    s.Eval()
    py = np.concatenate([s.RunGraph({"data": x[i:i + BATCH].reshape(-1, 1, 28, 28)})["output"]
                         for i in range(0, TEST_N, BATCH)])
    assert np.array_equal(_bits(py), _bits(ex))

    # the inference-only file (BatchNorm folded into the convolutions' weights and bias)
    inf = tmp_path / f"{name}_inference.etm"
    s.SaveToFile(str(inf), inference_only=True)
    ix = _eval_outputs(cmds["x86"], inf, mnist_dir, tmp_path / "inf_x86.f32")
    ia = _eval_outputs(cmds["arm64"], inf, mnist_dir, tmp_path / "inf_arm64.f32")
    assert np.array_equal(_bits(ix), _bits(ia))
    np.testing.assert_allclose(ix, ex, rtol=1e-4, atol=1e-4)
