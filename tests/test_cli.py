"""The edgetrain command line (train / eval / export / info) and the training-curve writer."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from edgetrain import cli
from edgetrain.plot import Curve, plot_curve, read_csv, write_csv, write_png

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST = os.path.join(REPO, "data", "mnist")
if not os.path.isdir(MNIST):
    MNIST = os.path.join(os.path.dirname(REPO), "shared", "data", "mnist")


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def train_args(tmp_path, out, *extra, iterations=6):
    return ["train", "lenet", "--data", MNIST, "--limit", 160, "--batch-size", 16,
            "--iterations", iterations, "--threads", 1, "--num-workers", 0, "--seed", 3,
            "--out", tmp_path / out, *extra]


# --------------------------------------------------------------------------- train / resume

def test_train_writes_model_png_csv_and_checkpoint(tmp_path, capsys):
    code, out, err = run(capsys, *train_args(tmp_path, "m.etm", "--checkpoint-every", 4,
                                             "--log-every", 2))
    assert code == 0, err
    for name in ("m.etm", "m.png", "m.csv", "m.ckpt.etm"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "step 2/6" in out and "loss" in out and "img/s" in out  # periodic lines (not a tty)
    assert "test accuracy" in out
    with open(tmp_path / "m.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert rows[-1]["test_accuracy"] != ""  # evaluated at the end of the run

    import edgetrain as et
    assert et.TrainSession.load(str(tmp_path / "m.etm")).step == 6
    assert et.TrainSession.load(str(tmp_path / "m.ckpt.etm")).step == 4


def test_resume_continues_exactly(tmp_path, capsys):
    """A job stopped after a checkpoint and resumed with the same command ends bit-identical
    to the uninterrupted job (step count, optimizer state, schedule, data order, curve)."""
    import shutil
    import edgetrain as et
    code, _, err = run(capsys, *train_args(tmp_path, "m.etm", "--checkpoint-every", 5,
                                           iterations=8))
    assert code == 0, err
    shutil.copy(tmp_path / "m.etm", tmp_path / "uninterrupted.etm")
    assert et.TrainSession.load(str(tmp_path / "m.ckpt.etm")).step == 5
    code, out, err = run(capsys, *train_args(tmp_path, "m.etm", "--resume",
                                             tmp_path / "m.ckpt.etm", iterations=8))
    assert code == 0, err
    assert "resumed" in out and "step 5" in out
    full = et.TrainSession.load(str(tmp_path / "uninterrupted.etm"))
    resumed = et.TrainSession.load(str(tmp_path / "m.etm"))
    assert resumed.step == full.step == 8
    a, b = full.get_parameters(), resumed.get_parameters()
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "m.csv"))]
    assert steps == list(range(1, 9))  # the curve carries over the first run's rows


def test_epochs_and_lenet5_padding(tmp_path, capsys):
    code, out, err = run(capsys, "train", "lenet5", "--data", MNIST, "--limit", 64,
                         "--batch-size", 32, "--epochs", 2, "--optimizer", "adam",
                         "--threads", 1, "--num-workers", 2, "--out", tmp_path / "l5.etm")
    assert code == 0, err
    assert out.count("test accuracy") == 2  # one evaluation per epoch
    code, out, err = run(capsys, "info", tmp_path / "l5.etm")
    assert code == 0, err
    assert "[32, 1, 32, 32]" in out and "61,684" in out and "epoch 2" in out


# --------------------------------------------------------------------------- eval / export / info

@pytest.fixture
def trained(tmp_path, capsys):
    code, _, err = run(capsys, *train_args(tmp_path, "t.etm", "--no-eval", iterations=3))
    assert code == 0, err
    return tmp_path / "t.etm"


def test_eval_export_info(trained, tmp_path, capsys):
    code, out, err = run(capsys, "eval", trained, "--data", MNIST, "--limit", 50)
    assert code == 0, err
    assert out.startswith("test accuracy: ") and "/50)" in out  # 50 = 3 batches of 16 + 2
    code, out, err = run(capsys, "info", trained)
    assert code == 0, err
    for word in ("parameters: 431,080", "programs:", "train", "planned memory", "step 3",
                 "train concurrent groups (independent small nodes side by side): "):
        assert word in out, word
    small = tmp_path / "infer.etm"
    code, out, err = run(capsys, "export", trained, "--inference-only", "-o", small)
    assert code == 0, err
    assert small.stat().st_size < trained.stat().st_size
    code, out, err = run(capsys, "info", small)
    assert code == 0, err and "eval" in out
    assert "concurrent groups" not in out  # no train or grad program
    code, out, err = run(capsys, "eval", small, "--data", MNIST, "--limit", 20, "--batch-size", 7)
    assert code == 0, err and "/20)" in out


# --------------------------------------------------------------------------- errors: exit 2, one line

def assert_one_line_error(code, err, *words):
    assert code == 2
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_missing_data_dir(tmp_path, capsys):
    code, _, err = run(capsys, "train", "lenet", "--data", tmp_path / "nope", "--iterations", 1)
    assert_one_line_error(code, err, "nope", "not found")


def test_data_dir_without_mnist(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "train", "lenet", "--data", tmp_path / "empty", "--iterations", 1)
    assert_one_line_error(code, err, "train-images-idx3-ubyte", "not found")


def test_truncated_mnist_file(tmp_path, capsys):
    import gzip
    d = tmp_path / "bad"
    d.mkdir()
    for name in os.listdir(MNIST):
        if name.endswith(".gz"):
            data = open(os.path.join(MNIST, name), "rb").read()
            if name.startswith("train-images"):
                data = gzip.compress(gzip.decompress(data)[:5000])
            (d / name).write_bytes(data)
    code, _, err = run(capsys, "train", "lenet", "--data", d, "--iterations", 1)
    assert_one_line_error(code, err, "train-images-idx3-ubyte.gz", "truncated")


@pytest.mark.parametrize("command", ["eval", "info", "export"])
def test_corrupt_and_missing_model(tmp_path, capsys, command):
    bad = tmp_path / "bad.etm"
    bad.write_bytes(b"ETM0" + os.urandom(200))
    extra = {"eval": ["--data", MNIST], "export": ["-o", tmp_path / "o.etm"], "info": []}[command]
    code, _, err = run(capsys, command, bad, *extra)
    assert_one_line_error(code, err, "error")
    code, _, err = run(capsys, command, tmp_path / "missing.etm", *extra)
    assert_one_line_error(code, err, "missing.etm", "not found")


def test_argument_errors(tmp_path, capsys):
    code, _, err = run(capsys, "train", "lenet", "--data", MNIST, "--epochs", 1, "--iterations", 2)
    assert_one_line_error(code, err, "--epochs or --iterations")
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "lenet", "--batch-size", "0"])
    assert e.value.code == 2
    capsys.readouterr()
    code, _, err = run(capsys, "train", "resnet")
    assert_one_line_error(code, err, "'resnet'", "zoo name", "package.module:factory")


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgetrain", "eval", str(tmp_path / "x.etm"),
                           "--data", MNIST], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "x.etm" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "edgetrain", "--help"], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0 and "train" in proc.stdout and "--limit" not in proc.stdout


# --------------------------------------------------------------------------- plot / CSV

def sample_curve():
    c = Curve()
    for s in range(1, 101):
        c.add_step(s, 2.3 * np.exp(-s / 30) + 0.05 * np.sin(s), min(1.0, s / 80))
        if s % 25 == 0:
            c.add_epoch(s, s // 25, 0.5 + s / 250)
    return c


@pytest.mark.parametrize("backend", ["builtin", "matplotlib"])
def test_plot_png(tmp_path, backend):
    if backend == "matplotlib":
        pytest.importorskip("matplotlib")
    from PIL import Image
    path = str(tmp_path / f"{backend}.png")
    assert plot_curve(path, sample_curve(), title="t", backend=backend) == backend
    with Image.open(path) as im:
        im.load()
        arr = np.asarray(im.convert("RGB"))
    assert arr.shape[0] > 100 and arr.shape[1] > 200
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 3  # something was drawn
    empty = str(tmp_path / f"{backend}-empty.png")
    plot_curve(empty, Curve(), backend=backend)
    assert os.path.getsize(empty) > 0


def test_write_png_pixels(tmp_path):
    from PIL import Image
    img = np.zeros((3, 5, 3), np.uint8)
    img[1, 2] = (255, 10, 20)
    write_png(str(tmp_path / "p.png"), img)
    with Image.open(tmp_path / "p.png") as im:
        np.testing.assert_array_equal(np.asarray(im), img)


def test_csv_roundtrip_and_truncate(tmp_path):
    c = sample_curve()
    c.add_epoch(100, 4.0, 0.9)  # evaluation at a step that also has a loss row
    path = str(tmp_path / "c.csv")
    write_csv(path, c)
    back = read_csv(path)
    assert back.steps == c.steps and back.epochs == [1, 2, 3, 4]
    np.testing.assert_allclose(back.losses, c.losses, rtol=1e-5)
    back.truncate(60)
    assert back.steps[-1] == 60 and back.epochs == [1, 2]
    with pytest.raises(ValueError):
        (tmp_path / "x.csv").write_text("a,b\n1,2\n")
        read_csv(str(tmp_path / "x.csv"))
