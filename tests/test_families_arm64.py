"""Issue 12's model families trained a few steps by et_train under qemu arm64 (NEON) and
natively on x86 (tests/test_android.py builds both binaries): the same losses within 1e-5.

The U-Net is not here: et_train feeds one image input and one integer label input (MNIST
classification), and the U-Net's target is a float mask.
"""
import numpy as np
import pytest

from test_android import _losses, _python_session, _run, arm64_bin, host_bin, mnist_dir  # noqa: F401

STEPS, BATCH = 3, 4


@pytest.mark.parametrize("name", ["resnet18", "vit", "lstm"])
def test_family_trains_the_same_under_qemu_arm64(name, arm64_bin, host_bin, mnist_dir,  # noqa: F811
                                                 tmp_path):
    et = _python_session()
    from edgetrain import nn, optim
    from families import FAMILIES

    et.manual_seed(0)
    model = FAMILIES[name](nn, et.cat)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (BATCH, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((BATCH,), "int64")},
        optimizer=optim.AdamW(model.parameters(), lr=1e-3), threads=1)
    path = tmp_path / f"{name}.etm"
    sess.SaveToFile(str(path))
    losses = {}
    for isa, cmd in (("x86", [host_bin]), ("arm64", ["qemu-aarch64-static", arm64_bin])):
        proc = _run(cmd + ["-f", path, "-d", mnist_dir, "-i", STEPS, "-b", BATCH, "-t", 1,
                           "-p", 1, "-s", tmp_path / f"{name}_{isa}.etm", "--test-limit", 0],
                    timeout=1800)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        losses[isa] = _losses(proc.stdout)
        assert sorted(losses[isa]) == list(range(1, STEPS + 1)), proc.stdout[-2000:]
    x86 = [losses["x86"][k] for k in range(1, STEPS + 1)]
    arm = [losses["arm64"][k] for k in range(1, STEPS + 1)]
    assert np.all(np.isfinite(x86))
    np.testing.assert_allclose(arm, x86, rtol=0, atol=1e-5, err_msg=name)
