"""The command line on a user's own data and model: the README's "Your own data and model"
commands on a generated 3-class PNG folder, predict, fine-tuning, interrupts (SIGTERM resume is
bit-identical) and every CLI error of that section."""
import csv
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import edgetrain as et
from edgetrain import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("circle", "square", "stripes")


def make_shapes(root, n=20, size=16, seed=0):
    """Three classes told apart by colour and pattern: a red top half, a green left half, blue
    stripes, on noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 70, (size, size, 3)).astype(np.uint8)
            region = (np.s_[: size // 2, :], np.s_[:, : size // 2], np.s_[::2, :])[k]
            img[region + (k,)] += 150
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    return root


def readme_section():
    text = open(os.path.join(REPO, "README.md")).read()
    section = text.split("### Your own data and model", 1)[1].split("\n## ", 1)[0]
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    bash = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [shlex.split(line.split("#")[0]) for line in bash.splitlines() if line.strip()]
    return python, commands


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    assert code == 2, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    make_shapes(tmp_path / "shapes")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    python, _ = readme_section()
    (tmp_path / "mymodels.py").write_text(python)
    yield tmp_path
    sys.modules.pop("mymodels", None)


# --------------------------------------------------------------------------- the README

def test_readme_own_data_and_model_commands(workdir, capsys):
    _, commands = readme_section()
    assert [c[:2] for c in commands] == [["edgetrain", "train"]] * 2 + [
        ["edgetrain", "eval"], ["edgetrain", "predict"], ["edgetrain", "train"]]
    outputs = []
    for argv in commands:
        code, out, err = run(capsys, *argv[1:], *(["--threads", 1] if argv[1] != "predict"
                                                  else []))
        assert code == 0, (argv, err)
        outputs.append(out)
    for name in ("shapes-mnv2.etm", "shapes.etm", "shapes.png", "shapes.csv", "tuned.etm"):
        assert (workdir / "out" / name).stat().st_size > 0, name
    # MobileNetV2 trained on 3-channel 16x16 images with 3 classes
    mnv2 = et.TrainSession.load("out/shapes-mnv2.etm")
    assert mnv2.input_shapes()["data"] == (16, 3, 16, 16)
    # the own model learns: well above chance (1/3) on all 60 images
    acc = float(re.search(r"test accuracy: ([0-9.]+) \((\d+)/60\)", outputs[2]).group(1))
    assert acc >= 0.8, outputs[2]
    for name in CLASSES:
        assert f"  {name}: " in outputs[2]
    lines = outputs[3].splitlines()
    assert len(lines) == 2 and lines[0].startswith("shapes/circle/000.png: circle ")
    assert lines[1].startswith("shapes/stripes/001.png: stripes ")
    probs = [float(v) for v in re.findall(r" ([01]\.\d{3})", lines[0])]
    assert len(probs) == 2 and probs[0] >= probs[1]
    # fine-tuning a file restarts the step counter and keeps the names
    assert "step 5" in outputs[4] and et.TrainSession.load("out/tuned.etm").step == 5
    code, out, _ = run(capsys, "info", "out/tuned.etm")
    assert "trained as: mymodels:small_cnn, classes circle, square, stripes" in out


def test_predict_matches_eval_preprocessing_and_class_file(workdir, capsys):
    code, _, err = run(capsys, "train", "mymodels:small_cnn", "--data", "shapes", "--epochs", 6,
                       "--batch-size", 12, "--optimizer", "adam", "--lr", 0.01, "--mean", 100,
                       "--scale", 0.02, "--threads", 1, "--no-eval", "--out", "m.etm")
    assert code == 0, err
    code, out, err = run(capsys, "predict", "m.etm", "shapes/square/003.png", "--top-k", 1)
    assert code == 0, err
    stored = out.split(": ")[1].split()[0]
    # the same image through the session by hand, with the stored normalisation
    from PIL import Image
    x = (np.asarray(Image.open("shapes/square/003.png").convert("RGB"), np.float32)
         .transpose(2, 0, 1)[None] - 100.0) * 0.02
    sess = et.TrainSession.load("m.etm")
    sess.Eval()
    sess.Resize({"data": (1, 3, 16, 16), "label": (1,)})
    assert CLASSES[int(np.argmax(sess.RunGraph({"data": x})["output"]))] == stored
    (workdir / "names.txt").write_text("a\nb\nc\n")
    code, out, err = run(capsys, "predict", "m.etm", "shapes/square/003.png", "--classes",
                         "names.txt", "--top-k", 3)
    assert code == 0 and sorted(p.split()[0] for p in out.split(": ")[1].split(", ")) == \
        ["a", "b", "c"]
    (workdir / "two.txt").write_text("a\nb\n")
    code, _, err = run(capsys, "predict", "m.etm", "shapes/square/003.png", "--classes",
                       "two.txt")
    assert_one_line_error(code, err, "2 names for a model with 3 outputs")


def test_list_file_gray_and_eval_of_mnist_shapes_elsewhere(workdir, capsys):
    lines = [f"{c}/{i:03d}.png {k}" for k, c in enumerate(CLASSES) for i in range(12)]
    (workdir / "shapes" / "train.txt").write_text("\n".join(lines) + "\n")
    code, out, err = run(capsys, "train", "lenet", "--data", "shapes/train.txt", "--channels", 1,
                         "--iterations", 4, "--batch-size", 9, "--threads", 1, "--out", "g.etm")
    assert code == 0, err
    assert et.TrainSession.load("g.etm").input_shapes()["data"] == (9, 1, 28, 28)
    # eval resizes another folder's 16x16 RGB images to the model's 1x28x28
    code, out, err = run(capsys, "eval", "g.etm", "--data", "shapes")
    assert code == 0 and "(" in out and "/60)" in out, err
    (workdir / "bad.txt").write_text("../outside.png 0\n")
    code, _, err = run(capsys, "train", "lenet", "--data", "bad.txt", "--image-root", "shapes",
                       "--iterations", 1)
    assert_one_line_error(code, err, "bad.txt:1", "leaves the image folder")


# --------------------------------------------------------------------------- interrupts

def _train_cmd(out, *extra):
    return [sys.executable, "-m", "edgetrain", "train", "lenet", "--data", "shapes",
            "--channels", "1", "--iterations", "120", "--batch-size", "8", "--threads", "1",
            "--num-workers", "0", "--no-eval", "--log-every", "1", "--out", out, *extra]


def test_sigterm_checkpoints_and_resume_is_bit_identical(workdir):
    env = dict(os.environ, PYTHONPATH=REPO)
    full = subprocess.run(_train_cmd("full.etm"), cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    proc = subprocess.Popen(_train_cmd("cut.etm"), cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "step 5/120" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    held = et.TrainSession.load(str(workdir / "cut.ckpt.etm")).step
    assert 5 <= held < 120
    assert f"interrupted by SIGTERM: cut.ckpt.etm holds step {held}" in rest
    with open(workdir / "cut.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, held + 1))
    again = subprocess.run(_train_cmd("cut.etm", "--resume", "cut.ckpt.etm"), cwd=workdir,
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    a = et.TrainSession.load(str(workdir / "full.etm"))
    b = et.TrainSession.load(str(workdir / "cut.etm"))
    assert a.step == b.step == 120
    pa, pb = a.get_parameters(), b.get_parameters()
    for k in pa:
        assert np.array_equal(pa[k], pb[k]), k
    with open(workdir / "cut.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 121))
    # Ctrl-C: the same checkpoint, exit status 130
    proc = subprocess.Popen(_train_cmd("int.etm"), cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "step 3/120" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted by Ctrl-C: int.ckpt.etm holds step" in rest
    # resuming a finished run says so and fails
    done = subprocess.run(_train_cmd("cut.etm", "--resume", "cut.etm"), cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "already reached" in done.stderr


# --------------------------------------------------------------------------- errors

def test_model_spec_errors(workdir, capsys):
    (workdir / "broken.py").write_text("raise RuntimeError('boom')\n")
    (workdir / "notmod.py").write_text("def f(num_classes):\n    return 3\n"
                                       "def g(**kw):\n    raise ValueError('no way')\n"
                                       "x = 5\n")
    base = ["--data", "shapes", "--iterations", 1, "--batch-size", 4]
    cases = [("nosuchmodule:f", "cannot import nosuchmodule"),
             ("mymodels:nope", "has no attribute 'nope'"),
             ("broken:f", "importing broken raised RuntimeError: boom"),
             ("notmod:f", "returned int, not an edgetrain.nn.Module"),
             ("notmod:g", "the factory raised ValueError: no way"),
             ("notmod:x", "x is not callable"),
             ("resnet", "not a zoo name"),
             ("missing.etm", "missing.etm: model file not found")]
    for spec, words in cases:
        code, _, err = run(capsys, "train", spec, *base)
        assert_one_line_error(code, err, words)
    # lenet's dense layers are sized for 28x28
    code, _, err = run(capsys, "train", "lenet", *base, "--image-size", 16)
    assert_one_line_error(code, err, "the model takes 28x28")
    for mod in ("broken", "notmod"):
        sys.modules.pop(mod, None)


def test_file_model_errors(workdir, capsys):
    code, _, err = run(capsys, "train", "mymodels:small_cnn", "--data", "shapes", "--iterations",
                       1, "--batch-size", 4, "--no-eval", "--out", "m.etm")
    assert code == 0, err
    code, _, err = run(capsys, "export", "m.etm", "--inference-only", "-o", "inf.etm")
    assert code == 0, err
    code, _, err = run(capsys, "train", "inf.etm", "--data", "shapes", "--iterations", 1)
    assert_one_line_error(code, err, "has no training program")
    code, _, err = run(capsys, "train", "lenet", "--data", "shapes", "--iterations", 1,
                       "--resume", "m.etm")
    assert_one_line_error(code, err, "is of model 'mymodels:small_cnn', not 'lenet'")
    two = workdir / "two"
    make_shapes(two, n=4)
    for extra in ("a", "b", "c", "d"):
        (two / extra).mkdir()
        shutil.copy(two / "circle" / "000.png", two / extra / "x.png")
    code, _, err = run(capsys, "train", "m.etm", "--data", two, "--iterations", 1)
    assert_one_line_error(code, err, "3 outputs but the data has 7 classes")
    code, _, err = run(capsys, "train", "m.etm", "--data", "shapes", "--channels", 1)
    assert_one_line_error(code, err, "takes 3 channels")


def test_fifo_and_data_errors(workdir, capsys, tmp_path):
    fifo = workdir / "pipe.etm"
    os.mkfifo(fifo)
    for argv in (["info", fifo], ["eval", fifo, "--data", "shapes"],
                 ["train", "lenet", "--data", fifo, "--iterations", 1]):
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, "not a regular file")
    (workdir / "empty").mkdir()
    code, _, err = run(capsys, "train", "lenet", "--data", "empty", "--iterations", 1)
    assert_one_line_error(code, err, "neither MNIST", "sub-folder per class")
    code, _, err = run(capsys, "train", "lenet", "--data", "shapes", "--val-split", 0.2,
                       "--val-data", "shapes", "--iterations", 1)
    assert_one_line_error(code, err, "--val-data or --val-split")
    other = make_shapes(workdir / "other", n=2)
    os.rename(other / "square", other / "triangle")
    code, _, err = run(capsys, "train", "lenet", "--data", "shapes", "--val-data", other,
                       "--iterations", 1)
    assert_one_line_error(code, err, "classes", "differ")
    mnist = os.path.join(REPO, "data", "mnist")
    code, _, err = run(capsys, "train", "mobilenetv2", "--data", mnist, "--channels", 3,
                       "--iterations", 1, "--limit", 64)
    assert_one_line_error(code, err, "MNIST is grayscale")
