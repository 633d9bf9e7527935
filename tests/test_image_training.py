"""ImageDataset + MobileNetV2 train end to end on a generated folder of PNGs with a list file."""
import numpy as np
import pytest

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.data import DataLoader, ImageDataset
from edgetrain.errors import LabelError
from edgetrain.models import MobileNetV2

CLASSES = 4


def _make_folder(root, n_per_class=24, size=24, seed=0):
    """Class k: a bright bar in one of four positions (top, bottom, left, right) plus noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    lines = []
    for k in range(CLASSES):
        (root / f"class{k}").mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            img = rng.integers(0, 90, (size, size, 3)).astype(np.uint8)
            w = size // 3
            sl = {0: np.s_[:w, :], 1: np.s_[-w:, :], 2: np.s_[:, :w], 3: np.s_[:, -w:]}[k]
            img[sl] = rng.integers(170, 255, 3).astype(np.uint8)
            rel = f"class{k}/img{i:03d}.png"
            Image.fromarray(img, "RGB").save(root / rel)
            lines.append(f"{rel} {k}")
    rng.shuffle(lines)
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root / "train.txt"


def test_image_dataset_mobilenetv2_accuracy_rises(tmp_path):
    list_file = _make_folder(tmp_path / "imgs", n_per_class=16)
    ds = ImageDataset(str(tmp_path / "imgs"), str(list_file), color="rgb", size=(32, 32),
                      mean=(127.5, 127.5, 127.5), scale=(1 / 127.5,) * 3, in_memory=True,
                      num_classes=CLASSES)
    assert len(ds) == 64
    x0, y0 = ds[0]
    assert x0.shape == (3, 32, 32) and x0.dtype == np.float32
    batch = 16
    train = DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, seed=0)

    et.manual_seed(0)
    model = MobileNetV2(num_classes=CLASSES, width_mult=0.35, input_size=32)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (batch, 3, 32, 32)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((batch,), "int64")},
        optimizer=optim.Adam(model.parameters(), lr=3e-3), threads=2)
    sess.Train()
    losses, accuracy = [], []
    for epoch in range(12):
        train.set_epoch(epoch)
        hits = 0
        for x, y in train:
            out = sess.RunGraph({"data": x, "label": y})
            losses.append(float(out["loss"]))
            hits += int((out["output"].argmax(1) == y).sum())
        accuracy.append(hits / (len(train) * batch))
    # training accuracy (on the batches as they are trained) rises from chance to near 100 %
    assert accuracy[0] < 0.6 and max(accuracy[-4:]) >= 0.9, accuracy
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4]), losses


def test_label_out_of_range_for_the_model(tmp_path):
    """A list file whose labels exceed the model's classes fails clearly at the session."""
    list_file = _make_folder(tmp_path / "imgs", n_per_class=2)
    ds = ImageDataset(str(tmp_path / "imgs"), str(list_file), size=(32, 32), in_memory=True)
    x, y = DataLoader(ds, batch_size=8).__iter__().__next__()
    model = MobileNetV2(num_classes=3, width_mult=0.35, input_size=32)  # labels go up to 3
    sess = et.TrainSession.from_module(
        model, inputs={"data": (8, 3, 32, 32)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((8,), "int64")}, optimizer=optim.SGD(model.parameters(), lr=0.1))
    sess.Train()
    y = y.copy()
    y[0] = 3
    with pytest.raises(LabelError, match="label"):
        sess.RunGraph({"data": x, "label": y})
