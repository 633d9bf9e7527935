"""Issue 12's four model families trained a few steps by et_train under qemu arm64 (NEON) and
natively on x86 (tests/test_android.py builds both binaries): the same losses within 1e-5.

The classifiers (ResNet-18 layout, ViT-tiny, row LSTM) take integer labels [B] and
CrossEntropyLoss; the U-Net takes an f32 label input shaped like the image, [B, 1, 28, 28], with
BCEWithLogitsLoss (as tests/test_model_families.py), which et_train feeds with the digit mask
(pixel/255 > 0.5, tests/families.py seg_target). Also here: that mask is bit-identical to
seg_target, a U-Net trained by et_train gives the Python session's losses on the same batches
(and its IoU), and a label input that is neither class indices nor a mask is a clear error.
"""
import re

import numpy as np
import pytest

from test_android import (_losses, _lut, _python_session, _read_idx, _run, arm64_bin,  # noqa: F401
                          host_bin, mnist_dir)

STEPS, BATCH = 3, 4


def _export(name, path, batch=BATCH):
    """Family `name` exported with seed 0, AdamW, one thread: the U-Net with BCEWithLogitsLoss
    and an f32 mask label, the others with CrossEntropyLoss and integer labels."""
    et = _python_session()
    from edgetrain import nn, optim
    from families import FAMILIES

    et.manual_seed(0)
    model = FAMILIES[name](nn, et.cat)
    if name == "unet":
        loss, labels = nn.BCEWithLogitsLoss(), {"target": ((batch, 1, 28, 28), "float32")}
    else:
        loss, labels = nn.CrossEntropyLoss(), {"label": ((batch,), "int64")}
    sess = et.TrainSession.from_module(
        model, inputs={"data": (batch, 1, 28, 28)}, loss=loss, labels=labels,
        optimizer=optim.AdamW(model.parameters(), lr=1e-3), threads=1)
    sess.SaveToFile(str(path))
    return et


@pytest.mark.parametrize("name", ["resnet18", "unet", "vit", "lstm"])
def test_family_trains_the_same_under_qemu_arm64(name, arm64_bin, host_bin, mnist_dir,  # noqa: F811
                                                 tmp_path):
    path = tmp_path / f"{name}.etm"
    _export(name, path)
    losses = {}
    for isa, cmd in (("x86", [host_bin]), ("arm64", ["qemu-aarch64-static", arm64_bin])):
        proc = _run(cmd + ["-f", path, "-d", mnist_dir, "-i", STEPS, "-b", BATCH, "-t", 1,
                           "-p", 1, "-s", tmp_path / f"{name}_{isa}.etm", "--test-limit", 0],
                    timeout=1800)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        assert ("target: input 'target' gets the digit mask" in proc.stdout) == (name == "unet")
        losses[isa] = _losses(proc.stdout)
        assert sorted(losses[isa]) == list(range(1, STEPS + 1)), proc.stdout[-2000:]
    x86 = [losses["x86"][k] for k in range(1, STEPS + 1)]
    arm = [losses["arm64"][k] for k in range(1, STEPS + 1)]
    assert np.all(np.isfinite(x86))
    np.testing.assert_allclose(arm, x86, rtol=0, atol=1e-5, err_msg=name)


def test_mask_rule_is_seg_target():
    """et_train's mask (pixel >= 128, android/mnist_idx.h ET_MNIST_MASK_MIN) equals seg_target
    of the normalised pixel for each of the 256 byte values."""
    from families import seg_target

    np.testing.assert_array_equal(seg_target(_lut()),
                                  (np.arange(256) >= 128).astype(np.float32))


def test_unet_et_train_matches_python_session(host_bin, mnist_dir, tmp_path):  # noqa: F811
    """A U-Net trained by et_train on x86 prints the Python session's losses on the same batches
    (images and seg_target masks: step 1 to the printed digits, the next steps within 1e-5),
    and its IoU and pixel accuracy on the first 100 test images are Python's for the model it
    saved."""
    from families import seg_target

    path, saved = tmp_path / "unet.etm", tmp_path / "unet_trained.etm"
    et = _export("unet", path)
    proc = _run([host_bin, "-f", path, "-d", mnist_dir, "-i", STEPS, "-b", BATCH, "-t", 1,
                 "-p", 1, "-s", saved, "--test-limit", 100])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    c = _losses(proc.stdout)
    assert sorted(c) == list(range(1, STEPS + 1)), proc.stdout

    lut = _lut()
    images = _read_idx(mnist_dir / "train" / "train-images-idx3-ubyte")
    sess = et.TrainSession.load(str(path), threads=1)
    sess.Train()
    py = []
    for k in range(STEPS):
        x = lut[images[k * BATCH:(k + 1) * BATCH]].reshape(BATCH, 1, 28, 28)
        out = sess.RunGraph({"data": x, "target": seg_target(x)})
        py.append(float(np.asarray(out["loss"]).reshape(-1)[0]))
    assert f"step 1: loss {py[0]:.6f}" in proc.stdout, (proc.stdout, py)
    np.testing.assert_allclose([c[k + 1] for k in range(STEPS)], py, rtol=0, atol=1e-5)

    trained = et.TrainSession.load(str(saved), threads=1)
    trained.Eval()
    x = lut[_read_idx(mnist_dir / "test" / "t10k-images-idx3-ubyte")[:100]].reshape(100, 1, 28, 28)
    pred, target = trained.predict(x) > 0.0, seg_target(x) > 0.5
    iou = float(re.search(r"^iou = (\S+) ", proc.stdout, re.M).group(1))
    pix = float(re.search(r"^pixel accuracy = (\S+)$", proc.stdout, re.M).group(1))
    assert iou == pytest.approx((pred & target).sum() / (pred | target).sum(), abs=1e-6)
    assert pix == pytest.approx((pred == target).mean(), abs=1e-6)
    assert not re.search(r"^accuracy = ", proc.stdout, re.M)
    # An inference-only U-Net has no label input: its image-shaped output makes it a mask model.
    inference = tmp_path / "unet_inference.etm"
    trained.SaveToFile(str(inference), inference_only=True)
    ev = _run([host_bin, "-f", inference, "-d", mnist_dir, "--eval-only", "--test-limit", 100])
    assert ev.returncode == 0, ev.stdout + ev.stderr
    assert "target: the digit mask (no label input" in ev.stdout
    inf = et.TrainSession.load(str(inference), threads=1)  # BatchNorm folded: its own logits
    pred = inf.predict(x) > 0.0
    assert float(re.search(r"^iou = (\S+) ", ev.stdout, re.M).group(1)) == pytest.approx(
        (pred & target).sum() / (pred | target).sum(), abs=1e-6)


def test_label_input_neither_classes_nor_mask_is_a_clear_error(host_bin, arm64_bin,  # noqa: F811
                                                               mnist_dir, tmp_path):
    """An f32 label that is not shaped like the image (here [B, 10], MSELoss) is refused at load
    with exit 4 and one line naming the input, its shape and what et_train feeds."""
    et = _python_session()
    from edgetrain import nn, optim

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    sess = et.TrainSession.from_module(
        model, inputs={"data": (BATCH, 1, 28, 28)}, loss=nn.MSELoss(),
        labels={"target": ((BATCH, 10), "float32")},
        optimizer=optim.SGD(model.parameters(), lr=0.1), threads=1)
    path = tmp_path / "mse.etm"
    sess.SaveToFile(str(path))
    for cmd in ([host_bin], ["qemu-aarch64-static", arm64_bin]):
        proc = _run(cmd + ["-f", path, "-d", mnist_dir, "-i", 1, "-s", tmp_path / "out.etm"])
        assert proc.returncode == 4, proc.stdout + proc.stderr
        assert proc.stderr == ("et_train: error: label input 'target' is f32 [4,10]; et_train "
                               "feeds an f32 label as the digit mask, shaped like the image "
                               "input [4,1,28,28] (or integer class indices [4])\n")
        assert not (tmp_path / "out.etm").exists()
