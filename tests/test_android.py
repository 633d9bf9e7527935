"""android/: the et_train trainer (host build and static arm64 build run under qemu), its parity
with the Python TrainSession, prepare_and_run.sh, and its behaviour on bad input.

arm64 tests need aarch64-linux-gnu-gcc and qemu-aarch64-static: skipped without them, failed when
EDGETRAIN_REQUIRE_ARM64=1 (CI). Tests that export a model need the built Python extension.
"""
import gzip
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ANDROID = ROOT / "android"
REQUIRE_ARM64 = os.environ.get("EDGETRAIN_REQUIRE_ARM64") == "1"
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
STEP_RE = re.compile(r"^step (\d+): loss (\S+)$", re.M)
SPLITMIX_GAMMA = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1
MEAN, STD = 0.1307, 0.3081


# ---- helpers ---------------------------------------------------------------------------------
def _arm64_tools():
    missing = [t for t in ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-strip", "qemu-aarch64-static")
               if not shutil.which(t)]
    if missing:
        msg = f"{', '.join(missing)} not found (apt-get install gcc-aarch64-linux-gnu qemu-user-static)"
        if REQUIRE_ARM64:
            pytest.fail(msg + " but EDGETRAIN_REQUIRE_ARM64=1")
        pytest.skip(msg)


def _python_session():
    """The Python side, or skip (fail in CI) when the extension is not built."""
    try:
        import edgetrain as et
        from edgetrain.models import LeNet  # noqa: F401

        return et
    except Exception as e:  # ImportError, or a half-built extension
        if REQUIRE_ARM64:
            pytest.fail(f"edgetrain is not importable: {e}")
        pytest.skip(f"edgetrain's Python session is not available: {e}")


def _make(target):
    proc = subprocess.run(["make", "-s", "-C", str(ANDROID), f"TARGET={target}", "all"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    out = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ANDROID),
                          f"TARGET={target}", "print-binary"], capture_output=True, text=True)
    path = Path(out.stdout.strip())
    assert path.is_file(), out.stdout + out.stderr
    return path


def _run(cmd, timeout=600, cwd=None):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-2000:]}"
    return proc


def _losses(stdout):
    return {int(n): float(v) for n, v in STEP_RE.findall(stdout)}


def splitmix64_order(n, seed, epoch):
    """et_train's shuffled order (android/mnist_idx.h): Fisher-Yates driven by splitmix64."""
    state = (seed + epoch * (n - 1) * SPLITMIX_GAMMA) & MASK64
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        state = (state + SPLITMIX_GAMMA) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        j = z % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def _lut():
    return ((np.arange(256, dtype=np.float64) / 255.0 - MEAN) / STD).astype(np.float32)


def _read_idx(path):
    raw = Path(path).read_bytes()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _write_idx(path, arr, magic=None):
    arr = np.asarray(arr, np.uint8)
    magic = magic if magic is not None else 0x800 + arr.ndim
    Path(path).write_bytes(struct.pack(">I", magic) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
                           + arr.tobytes())


# ---- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def host_bin():
    return _make("host")


@pytest.fixture(scope="module")
def arm64_bin():
    _arm64_tools()
    return _make("aarch64")


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """Real MNIST, gunzipped into MindSpore's layout MNIST_Data/{train,test}."""
    for src in (ROOT / "data" / "mnist", ROOT.parent / "shared" / "data" / "mnist"):
        if all((src / (f + ".gz")).is_file() for f in MNIST_FILES):
            break
    else:
        pytest.skip("MNIST not found in data/mnist or ../shared/data/mnist")
    dst = tmp_path_factory.mktemp("mnist") / "MNIST_Data"
    for f in MNIST_FILES:
        sub = dst / ("train" if f.startswith("train") else "test")
        sub.mkdir(parents=True, exist_ok=True)
        with gzip.open(src / (f + ".gz"), "rb") as zin, open(sub / f, "wb") as out:
            shutil.copyfileobj(zin, out)
    return dst


@pytest.fixture
def tiny_mnist(tmp_path):
    """A small MNIST-shaped data set (flat layout): 96 train, 40 test images."""
    rng = np.random.default_rng(0)
    d = tmp_path / "tiny"
    d.mkdir()
    for prefix, n in (("train", 96), ("t10k", 40)):
        _write_idx(d / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(d / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    return d


@pytest.fixture(scope="module")
def lenet_etm(tmp_path_factory):
    """LeNet exported from Python with the contract of the brief (batch 32, SGD momentum)."""
    et = _python_session()
    from edgetrain import nn, optim
    from edgetrain.models import LeNet

    et.manual_seed(0)
    model = LeNet()
    sess = et.TrainSession.from_module(
        model, inputs={"data": (32, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((32,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4),
        threads=1)
    path = tmp_path_factory.mktemp("model") / "lenet.etm"
    sess.SaveToFile(str(path))
    return path


# ---- 1. builds -------------------------------------------------------------------------------
def _elf_info(path):
    data = Path(path).read_bytes()
    assert data[:4] == b"\x7fELF", "not an ELF file"
    assert data[4] == 2 and data[5] == 1, "not a 64-bit little-endian ELF"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    e_phoff, e_shoff = struct.unpack_from("<QQ", data, 32)
    e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from("<HHHH", data, 54)
    ptypes = [struct.unpack_from("<I", data, e_phoff + k * e_phentsize)[0] for k in range(e_phnum)]
    stypes = [struct.unpack_from("<I", data, e_shoff + k * e_shentsize + 4)[0]
              for k in range(e_shnum)]
    return {"type": e_type, "machine": e_machine, "interp": 3 in ptypes,
            "dynamic": 2 in ptypes, "symtab": 2 in stypes}


def test_build_aarch64_static(arm64_bin, record_property, capsys):
    info = _elf_info(arm64_bin)
    assert info["machine"] == 183, f"e_machine {info['machine']}, expected 183 (EM_AARCH64)"
    assert not info["interp"] and not info["dynamic"], "et_train must be fully static"
    assert not info["symtab"], "et_train must be stripped"
    size = arm64_bin.stat().st_size
    record_property("et_train_aarch64_stripped_bytes", size)
    with capsys.disabled():
        print(f"\n[android] static aarch64 et_train, stripped: {size} bytes ({size / 1024:.0f} KiB)")
    assert size < 8 * 1024 * 1024
    proc = _run(["qemu-aarch64-static", arm64_bin, "--help"])
    assert proc.returncode == 0 and "usage: et_train" in proc.stdout


def test_build_host(host_bin):
    info = _elf_info(host_bin)
    assert info["machine"] in (62, 183)  # x86-64 or an arm64 host
    proc = _run([host_bin, "--help"])
    assert proc.returncode == 0 and "usage: et_train" in proc.stdout


def test_cmake_host_build(tmp_path):
    """The CMake path (the one the NDK uses) configures and builds on the host."""
    if not shutil.which("cmake"):
        pytest.skip("cmake not installed")
    build = tmp_path / "cmake"
    proc = _run(["cmake", "-S", ANDROID, "-B", build, "-DCMAKE_BUILD_TYPE=Release"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _run(["cmake", "--build", build, "-j", str(os.cpu_count() or 2)], timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    exe = build / "et_train"
    assert _run([exe, "--help"]).returncode == 0
    # The CMake library holds exactly the objects of kernels/sources.txt.
    listed = [ln.strip() for ln in (ROOT / "kernels" / "sources.txt").read_text().splitlines()
              if ln.strip() and not ln.strip().startswith("#")]
    ar = _run(["ar", "t", build / "libedgetrain.a"]).stdout.split()
    assert sorted(Path(s).stem for s in listed) == sorted(Path(o).name.split(".")[0] for o in ar)


def test_cmake_cross_aarch64_static(tmp_path):
    """The CMake path cross compiles (as with the NDK toolchain file) to a static arm64 binary."""
    _arm64_tools()
    if not shutil.which("cmake"):
        pytest.skip("cmake not installed")
    build = tmp_path / "cmake-aarch64"
    proc = _run(["cmake", "-S", ANDROID, "-B", build, "-DCMAKE_SYSTEM_NAME=Linux",
                 "-DCMAKE_SYSTEM_PROCESSOR=aarch64", "-DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc",
                 "-DEDGETRAIN_STATIC=ON"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _run(["cmake", "--build", build, "-j", str(os.cpu_count() or 2)], timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    info = _elf_info(build / "et_train")
    assert info["machine"] == 183 and not info["interp"]
    assert _run(["qemu-aarch64-static", build / "et_train", "--help"]).returncode == 0


# ---- data reader and sample order (no model needed) ------------------------------------------
def test_check_data_matches_numpy(host_bin, mnist_dir):
    proc = _run([host_bin, "--check-data", "-d", mnist_dir, "--seed", "1234"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "train: 60000 images" in out and "test: 10000 images" in out
    lut = _lut()
    for split, prefix in (("train", "train"), ("test", "t10k")):
        sub = "train" if prefix == "train" else "test"
        images = _read_idx(mnist_dir / sub / f"{prefix}-images-idx3-ubyte")
        mean = float(lut[images].astype(np.float64).mean())
        got = float(re.search(rf"^{split}: mean\(x\) = (\S+),", out, re.M).group(1))
        assert got == pytest.approx(mean, abs=1e-8)
    for epoch in (0, 1):
        got = [int(v) for v in re.search(rf"^order epoch {epoch}: (.*)$", out, re.M).group(1).split()]
        assert got == splitmix64_order(60000, 1234, epoch)[:8]


def test_check_data_under_qemu(arm64_bin, tiny_mnist, host_bin):
    host = _run([host_bin, "--check-data", "-d", tiny_mnist, "--seed", "9"])
    arm = _run(["qemu-aarch64-static", arm64_bin, "--check-data", "-d", tiny_mnist, "--seed", "9"])
    assert host.returncode == 0 and arm.returncode == 0, host.stderr + arm.stderr
    assert host.stdout == arm.stdout
    assert "order epoch 0: " + " ".join(map(str, splitmix64_order(96, 9, 0)[:8])) in host.stdout


# ---- 4. bad input: documented exit codes, one-line messages, never a crash --------------------
BAD_ARGS = [
    [],
    ["-f"],
    ["-f", "m.etm"],
    ["-f", "m.etm", "-d", "D", "-b", "0"],
    ["-f", "m.etm", "-d", "D", "-b", "12x"],
    ["-f", "m.etm", "-d", "D", "-x"],
    ["-f", "m.etm", "-d", "D", "-e", "1", "-i", "5"],
    ["-f", "m.etm", "-d", "D", "--seed", "-1"],
    ["-f", "m.etm", "-d", "D", "--std", "0"],
    ["-f", "m.etm", "-d", "D", "--mean", "nan"],
    ["-f", "m.etm", "-d", "D", "stray"],
    ["-f", "m.etm", "-d", "D", "--eval-only", "-i", "3"],
    ["-f", "m.etm", "-d", "D", "-t", "-2"],
    ["-f", "m.etm", "-d", "D", "-i", "99999999999999999999999"],
    ["-f", "m.etm", "-d", "D", "--mask-threshold", "inf"],
    ["-f", "m.etm", "-d", "D", "--mask-threshold"],
]


@pytest.mark.parametrize("args", BAD_ARGS, ids=lambda a: " ".join(a) or "(none)")
def test_bad_arguments(host_bin, args):
    proc = _run([host_bin, *args])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("et_train: error: ") and "usage: et_train" in proc.stderr


def _bad_inputs(tmp_path, tiny_mnist, model):
    """(args, expected exit code, text the message must contain)."""
    garbage = tmp_path / "garbage.etm"
    garbage.write_bytes(b"this is not a model" * 10)
    empty = tmp_path / "empty.etm"
    empty.write_bytes(b"")
    gz_dir = tmp_path / "gz"
    gz_dir.mkdir()
    for f in MNIST_FILES:
        with gzip.open(gz_dir / (f + ".gz"), "wb") as out:
            out.write((tiny_mnist / f).read_bytes())
    trunc_dir = tmp_path / "trunc"
    shutil.copytree(tiny_mnist, trunc_dir)
    p = trunc_dir / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    magic_dir = tmp_path / "magic"
    shutil.copytree(tiny_mnist, magic_dir)
    (magic_dir / "t10k-labels-idx1-ubyte").write_bytes(
        (magic_dir / "t10k-images-idx3-ubyte").read_bytes())
    label_dir = tmp_path / "label"
    shutil.copytree(tiny_mnist, label_dir)
    _write_idx(label_dir / "train-labels-idx1-ubyte", np.full(96, 10))
    cases = [
        (["-f", tmp_path / "missing.etm", "-d", tiny_mnist], 3, "missing.etm"),
        (["-f", model, "-d", tmp_path / "no_such_dir"], 3, "no_such_dir"),
        (["-f", model, "-d", gz_dir], 3, "gunzip"),
        (["-f", model, "-d", trunc_dir], 3, "truncated"),
        (["-f", model, "-d", magic_dir], 3, "bad magic"),
        (["-f", model, "-d", label_dir], 3, "not a digit"),
        (["-f", garbage, "-d", tiny_mnist], 4, "garbage.etm"),
        (["-f", empty, "-d", tiny_mnist], 4, "empty.etm"),
    ]
    if model != garbage:  # a real model: truncations of it are corrupt files
        raw = Path(model).read_bytes()
        for cut in (10, 64, 100, len(raw) // 2, len(raw) - 1):
            t = tmp_path / f"trunc_{cut}.etm"
            t.write_bytes(raw[:cut])
            cases.append((["-f", t, "-d", tiny_mnist], 4, t.name))
        flipped = bytearray(raw)
        flipped[len(raw) // 2] ^= 0xFF
        f = tmp_path / "flipped.etm"
        f.write_bytes(bytes(flipped))
        cases.append((["-f", f, "-d", tiny_mnist], 4, "flipped.etm"))
    return cases


def _check_bad_inputs(cmd_prefix, tmp_path, tiny_mnist, model):
    for args, code, text in _bad_inputs(tmp_path, tiny_mnist, model):
        proc = _run([*cmd_prefix, *args, "-i", "2", "-p", "1", "-s", tmp_path / "out.etm"])
        shown = " ".join(map(str, args))
        assert proc.returncode == code, f"{shown}: exit {proc.returncode}, {proc.stderr}"
        assert proc.stderr.startswith("et_train: error: "), f"{shown}: {proc.stderr!r}"
        assert text in proc.stderr, f"{shown}: {proc.stderr!r}"
        assert len(proc.stderr.strip().splitlines()) == 1, f"{shown}: {proc.stderr!r}"


def test_bad_inputs_host(host_bin, tmp_path, tiny_mnist):
    _check_bad_inputs([host_bin], tmp_path, tiny_mnist, tmp_path / "garbage.etm")


def test_bad_inputs_host_real_model(host_bin, tmp_path, tiny_mnist, lenet_etm):
    _check_bad_inputs([host_bin], tmp_path, tiny_mnist, lenet_etm)


def test_bad_inputs_qemu(arm64_bin, tmp_path, tiny_mnist):
    _check_bad_inputs(["qemu-aarch64-static", arm64_bin], tmp_path, tiny_mnist,
                      tmp_path / "garbage.etm")


def test_bad_batch_for_data(host_bin, tmp_path, tiny_mnist, lenet_etm):
    """A batch larger than the training set is an argument error, not a crash."""
    proc = _run([host_bin, "-f", lenet_etm, "-d", tiny_mnist, "-b", "500", "-i", "1"])
    assert proc.returncode == 2 and "fewer than one batch" in proc.stderr


def test_max_memory_and_thread_limits(host_bin, tmp_path, tiny_mnist, lenet_etm):
    """--max-memory bounds the plan (refused at load, naming the limit); threads above the
    runtime's bound are refused by the runtime, not crashed on."""
    base = [host_bin, "-f", lenet_etm, "-d", tiny_mnist, "-i", "1", "-s", tmp_path / "o.etm"]
    proc = _run([*base, "--max-memory", "100000"])
    assert proc.returncode == 5 and "memory limit of 100000 bytes" in proc.stderr, proc.stderr
    proc = _run([*base, "--max-memory", "0"])
    assert proc.returncode == 2 and "byte count" in proc.stderr
    proc = _run([*base, "--max-memory", str(1 << 30)])
    assert proc.returncode == 0, proc.stderr
    proc = _run([*base, "-t", "1024"])
    assert proc.returncode == 4 and "per online core" in proc.stderr, proc.stderr


# ---- training -------------------------------------------------------------------------------
def _python_losses(et, model_path, images, labels, steps, batch, pad=0, threads=1):
    sess = et.TrainSession.load(str(model_path), threads=threads)
    sess.Train()
    lut = _lut()
    losses = []
    for k in range(steps):
        idx = np.arange(k * batch, (k + 1) * batch) % len(labels)
        x = lut[images[idx]].reshape(batch, 1, 28, 28)
        if pad:
            x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=lut[0])
        out = sess.RunGraph({"data": x, "label": labels[idx].astype(np.int64)})
        losses.append(float(np.asarray(out["loss"]).reshape(-1)[0]))
    return sess, losses


def _accuracy(sess, images, labels, batch=1000):
    lut = _lut()
    sess.Eval()
    n = len(labels)
    correct = 0
    for start in range(0, n, batch):
        b = min(batch, n - start)
        sess.Resize({"data": (b, 1, 28, 28), "label": (b,)})
        x = lut[images[start:start + b]].reshape(b, 1, 28, 28)
        out = sess.RunGraph({"data": x})["output"]
        correct += int((np.argmax(out, axis=1) == labels[start:start + b]).sum())
    return correct / n


def test_lenet_qemu_matches_python(arm64_bin, mnist_dir, lenet_etm, tmp_path, capsys):
    """200 LeNet steps at batch 32 under qemu (arm64, NEON) match the Python session on x86
    step by step, and the model et_train saves is as good as the one Python trains.

    Training LeNet with SGD momentum is chaotic: a 1-ulp difference grows past 1e-3 within
    ~60-100 steps. The match holds because the kernels compute the same bits on every ISA
    (-ffp-contract=off in every build, one GEMM K split, the same epilogues; pinned by
    kernels/tests/test_gemm.c), so the losses agree to the printed precision, not just to rtol.
    Both sides use the same thread count (2: qemu-user runs guest threads in parallel), since
    conv2d's batch-parallel weight gradient sums per-thread partials."""
    et = _python_session()
    steps, batch, threads = 200, 32, 2
    saved = tmp_path / "lenet_arm64.etm"
    proc = _run(["qemu-aarch64-static", arm64_bin, "-f", lenet_etm, "-d", mnist_dir,
                 "-i", steps, "-b", batch, "-t", threads, "-p", 1, "-s", saved,
                 "--test-limit", 2000], timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "isa neon" in proc.stdout
    c_losses = _losses(proc.stdout)
    assert sorted(c_losses) == list(range(1, steps + 1))
    seconds = float(re.search(r"^time: (\S+) s, (\S+) ms/step", proc.stdout, re.M).group(1))
    with capsys.disabled():
        print(f"\n[android] qemu-aarch64: {steps} LeNet steps at batch {batch}: {seconds:.1f} s "
              f"({1e3 * seconds / steps:.1f} ms/step)")

    train_x = _read_idx(mnist_dir / "train" / "train-images-idx3-ubyte")
    train_y = _read_idx(mnist_dir / "train" / "train-labels-idx1-ubyte")
    test_x = _read_idx(mnist_dir / "test" / "t10k-images-idx3-ubyte")
    test_y = _read_idx(mnist_dir / "test" / "t10k-labels-idx1-ubyte")
    py_sess, py_losses = _python_losses(et, lenet_etm, train_x, train_y, steps, batch,
                                        threads=threads)
    np.testing.assert_allclose([c_losses[k + 1] for k in range(steps)], py_losses, rtol=1e-3)

    arm_sess = et.TrainSession.load(str(saved), threads=1)
    assert arm_sess.step == steps
    acc_arm = _accuracy(arm_sess, test_x, test_y)
    acc_py = _accuracy(py_sess, test_x, test_y)
    assert abs(acc_arm - acc_py) <= 0.002, (acc_arm, acc_py)
    assert acc_arm > 0.8
    # et_train's own evaluation (first 2000 test images, arm64) agrees with Python's.
    c_acc = float(re.search(r"^accuracy = (\S+)$", proc.stdout, re.M).group(1))
    assert abs(c_acc - _accuracy(arm_sess, test_x[:2000], test_y[:2000])) <= 0.002


def test_resume_continues_exactly(host_bin, mnist_dir, lenet_etm, tmp_path):
    """A run resumed from its checkpoint prints the same losses as an uninterrupted run."""
    common = ["-f", lenet_etm, "-d", mnist_dir, "-i", 30, "-t", 1, "-p", 1, "--seed", 5,
              "--test-limit", 0]
    full = _run([host_bin, *common, "-s", tmp_path / "full.etm"])
    assert full.returncode == 0, full.stderr
    part = _run([host_bin, *common, "-c", 20, "-s", tmp_path / "part.etm"])
    assert part.returncode == 0, part.stderr
    ckpt = tmp_path / "part.etm.ckpt"
    assert ckpt.is_file()
    resumed = _run([host_bin, *common, "-r", ckpt, "-s", tmp_path / "resumed.etm"])
    assert resumed.returncode == 0, resumed.stderr
    lf, lr = _losses(full.stdout), _losses(resumed.stdout)
    assert sorted(lr) == list(range(21, 31))
    assert all(lr[k] == lf[k] for k in lr), (lf, lr)
    assert (tmp_path / "resumed.etm").read_bytes() == (tmp_path / "full.etm").read_bytes()


def test_shuffled_order_matches_python(host_bin, mnist_dir, lenet_etm, tmp_path):
    """--seed: the documented splitmix64 + Fisher-Yates order, reproduced in Python."""
    et = _python_session()
    steps, batch, seed = 5, 32, 77
    proc = _run([host_bin, "-f", lenet_etm, "-d", mnist_dir, "-i", steps, "-t", 1, "-p", 1,
                 "--seed", seed, "--test-limit", 0, "-s", tmp_path / "shuffled.etm"])
    assert proc.returncode == 0, proc.stderr
    train_x = _read_idx(mnist_dir / "train" / "train-images-idx3-ubyte")
    train_y = _read_idx(mnist_dir / "train" / "train-labels-idx1-ubyte")
    order = np.array(splitmix64_order(len(train_y), seed, 0))
    _, py = _python_losses(et, lenet_etm, train_x[order], train_y[order], steps, batch)
    c = _losses(proc.stdout)
    np.testing.assert_allclose([c[k + 1] for k in range(steps)], py, rtol=1e-5)


def test_lenet5_padded_input_matches_mnist_dataset(host_bin, mnist_dir, tmp_path):
    """A 32x32 model (LeNet-5) gets MNIST padded by 2 with the background value, exactly as
    MnistDataset(pad=2) gives it, and -b re-plans the file's batch."""
    et = _python_session()
    from edgetrain import nn, optim
    from edgetrain.data import MnistDataset
    from edgetrain.models import LeNet5

    et.manual_seed(1)
    model = LeNet5()
    sess = et.TrainSession.from_module(
        model, inputs={"data": (8, 1, 32, 32)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((8,), "int64")}, optimizer=optim.SGD(model.parameters(), lr=0.05),
        threads=1)
    path = tmp_path / "lenet5.etm"
    sess.SaveToFile(str(path))
    steps, batch = 6, 16
    proc = _run([host_bin, "-f", path, "-d", mnist_dir, "-i", steps, "-b", batch, "-t", 1,
                 "-p", 1, "--test-limit", 100, "-s", tmp_path / "out.etm"])
    assert proc.returncode == 0, proc.stderr
    assert "input data [16,1,32,32]" in proc.stdout
    ds = MnistDataset(str(mnist_dir), train=True, pad=2)
    py = et.TrainSession.load(str(path), threads=1)
    py.Resize({"data": (batch, 1, 32, 32), "label": (batch,)})
    py.Train()
    losses = []
    for k in range(steps):
        x, y = ds.get_batch(np.arange(k * batch, (k + 1) * batch))
        losses.append(float(np.asarray(py.RunGraph({"data": x, "label": y})["loss"]).reshape(-1)[0]))
    c = _losses(proc.stdout)
    np.testing.assert_allclose([c[k + 1] for k in range(steps)], losses, rtol=1e-5)


# ---- 3. prepare_and_run.sh ---------------------------------------------------------------------
def _script(args, timeout=1800):
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ANDROID / "prepare_and_run.sh"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode >= 0
    return proc


def _mnist_src():
    for src in (ROOT / "data" / "mnist", ROOT.parent / "shared" / "data" / "mnist"):
        if (src / "train-images-idx3-ubyte.gz").is_file():
            return src
    pytest.skip("MNIST not found")


@pytest.mark.parametrize("target", ["x86", "arm64-qemu"])
def test_prepare_and_run(target, tmp_path):
    if target == "arm64-qemu":
        _arm64_tools()
    _python_session()
    proc = _script(["-D", _mnist_src(), "-t", target, "-i", 20, "-w", tmp_path,
                    "--test-limit", 500])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "accuracy = " in proc.stdout and re.search(r"^time: ", proc.stdout, re.M)
    trained = tmp_path / "lenet_trained.etm"
    assert f"trained model: {trained}" in proc.stdout
    et = _python_session()
    assert et.TrainSession.load(str(trained), threads=1).step == 20
    for f in MNIST_FILES:
        sub = "train" if f.startswith("train") else "test"
        assert (tmp_path / "MNIST_Data" / sub / f).is_file()


def test_prepare_and_run_arm64_dry_run(tmp_path):
    _arm64_tools()
    model = tmp_path / "any.etm"
    model.write_bytes(b"not needed for a dry run")
    proc = _script(["-D", _mnist_src(), "-t", "arm64", "-m", model, "-i", 20, "-w", tmp_path,
                    "--dry-run"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("adb ")]
    kinds = [ln.split()[1] for ln in lines]
    assert kinds[0] == "shell" and kinds[-1] == "pull" and kinds[-2] == "shell"
    assert kinds.count("push") == 6  # et_train, the model, four MNIST files
    assert any("/data/local/tmp/edgetrain/et_train" in ln for ln in lines if " push " in ln)
    assert "./et_train -f any.etm -d MNIST_Data" in lines[-2] and "-i 20" in lines[-2]
    assert "any_trained.etm" in lines[-1]


def test_prepare_and_run_errors(tmp_path):
    assert _script(["-t", "x86"]).returncode != 0
    proc = _script(["-D", tmp_path / "nope", "-t", "x86"])
    assert proc.returncode == 1 and "not found" in proc.stderr
    proc = _script(["-D", tmp_path, "-t", "mips"])
    assert proc.returncode == 1 and "unknown target" in proc.stderr
    proc = _script(["-D", tmp_path, "-t", "x86", "--dry-run"])
    assert proc.returncode == 1 and "--dry-run" in proc.stderr


def test_prepare_and_run_builds_edgetrain_itself(tmp_path):
    """On a fresh clone (no .venv, no built extension) the script runs `make build` itself instead
    of failing with "is edgetrain built?". The tree is a copy of android/ beside the real kernels/
    and a stand-in top-level Makefile whose `build` makes .venv/bin/python (this test's own
    Python, which has edgetrain) and records that it ran."""
    tree = tmp_path / "clone"
    shutil.copytree(ANDROID, tree / "android", ignore=shutil.ignore_patterns("build"))
    os.symlink(ROOT / "kernels", tree / "kernels")
    (tree / "Makefile").write_text(
        "build:\n\tmkdir -p .venv/bin\n"
        f"\tprintf '#!/bin/sh\\nexec {sys.executable} \"$$@\"\\n' > .venv/bin/python\n"
        "\tchmod +x .venv/bin/python\n\techo \"$(PYTHON)\" > built-by-make\n")
    env = dict(os.environ, PYTHON="/bin/false")
    proc = subprocess.run(["bash", str(tree / "android" / "prepare_and_run.sh"), "-D",
                           str(_mnist_src()), "-t", "x86", "-i", "3", "-w", str(tmp_path / "w"),
                           "--test-limit", "50"], capture_output=True, text=True, timeout=900,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "edgetrain is not built: make -C" in proc.stdout
    assert (tree / "built-by-make").read_text().strip() == "/bin/false"
    assert "exported" in proc.stdout and "accuracy = " in proc.stdout
    assert (tmp_path / "w" / "lenet_trained.etm").is_file()
