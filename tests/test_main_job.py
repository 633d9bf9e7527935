"""The README's main job the way a new user runs it: `make run` in a fresh clone, into an output
folder that does not exist yet (only shorter: RUN_LENGTH="--iterations 20")."""
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_make_run_on_a_fresh_clone(tmp_path):
    if shutil.which("git") is None or not os.path.exists(os.path.join(REPO, ".git")):
        pytest.fail("the main-job test needs git and a git checkout of the repository")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", REPO, str(clone)], check=True)
    # the working tree's uncommitted changes are part of what is tested
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=REPO, capture_output=True,
                          check=True).stdout
    if diff:
        subprocess.run(["git", "apply", "--whitespace=nowarn"], cwd=clone, input=diff, check=True)
    assert not (clone / "out").exists() and not (clone / ".venv").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    r = subprocess.run(["make", "run", "RUN_LENGTH=--iterations 20"], cwd=clone, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "test accuracy" in r.stdout
    for name in ("lenet.etm", "lenet.png", "lenet.csv"):
        assert (clone / "out" / name).stat().st_size > 0, name
    check = ("import edgetrain as et; s = et.TrainSession.load('out/lenet.etm'); "
             "assert s.step == 20, s.step")
    subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c", check], cwd=clone, env=env,
                   check=True)


def test_unwritable_out_fails_before_training(tmp_path, capsys):
    from edgetrain import cli
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = cli.main(["train", "lenet", "--iterations", "1", "--out", str(blocker / "m.etm")])
    out, err = capsys.readouterr()
    assert code == 2
    assert "cannot create the folder" in err
    assert "training" not in out  # refused before any step
    code = cli.main(["train", "lenet", "--iterations", "1", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and "is a folder" in err
