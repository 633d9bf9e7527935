"""Saves that cannot corrupt and that name the real cause (issues 10 and 17).

Both save kinds (full training state and ``inference_only``) go through the one C writer
(kernels/runtime/atomic_file.c), so every test runs for both. Causes that a test cannot create
for real (a folder root may not write to, a full quota) use the writer's test hook
``EDGETRAIN_SAVE_FAULT=<step>:<errno>[:<file name>]``; when the tests run as root, a tiny tmpfs
also gives a real full disk and a real read-only file system.
"""
import errno
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import edgetrain as et
from edgetrain import fileformat, nn, optim
from edgetrain.errors import InvalidArgumentError, ModelIOError

F = nn.functional
KINDS = ("full", "inference")


class Tiny(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.fc1 = nn.Linear(12, width)
        self.fc2 = nn.Linear(width, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def make_session(width=16, seed=2):
    et.manual_seed(seed)
    model = Tiny(width)
    return et.TrainSession.from_module(
        model, inputs={"data": (4, 12)}, loss=nn.CrossEntropyLoss(), labels={"label": ((4,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=0.1, momentum=0.9), threads=1)


def save(sess, path, kind):
    sess.SaveToFile(path, inference_only=(kind == "inference"))


def train_once(sess):
    rng = np.random.default_rng(0)
    sess.Train()
    sess.RunGraph({"data": rng.standard_normal((4, 12), dtype=np.float32),
                   "label": rng.integers(0, 3, 4).astype(np.int64)})


def temporaries(folder):
    return sorted(p.name for p in Path(folder).iterdir() if ".tmp." in p.name)


def check_failure(excinfo, target, phrase):
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, ModelIOError) and isinstance(excinfo.value, OSError)
    assert phrase in msg, msg
    assert str(target) in msg, f"the message must name the target: {msg}"
    assert "unchanged" in msg, msg
    assert ".tmp." not in msg, f"the message names a temporary file: {msg}"


@pytest.fixture
def sess():
    return make_session()


# ---- the causes, each with its own message --------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_missing_folder(tmp_path, sess, kind):
    target = tmp_path / "no-such-folder" / "model.etm"
    with pytest.raises(ModelIOError) as e:
        save(sess, target, kind)
    check_failure(e, target, f"the folder '{tmp_path / 'no-such-folder'}' does not exist")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", KINDS)
def test_path_is_a_folder(tmp_path, sess, kind):
    target = tmp_path / "model.etm"
    target.mkdir()
    (target / "inside").write_bytes(b"keep")
    with pytest.raises(ModelIOError) as e:
        save(sess, target, kind)
    check_failure(e, target, "is a folder")
    assert (target / "inside").read_bytes() == b"keep"
    with pytest.raises(ModelIOError) as e:
        save(sess, str(tmp_path / "new") + "/", kind)
    check_failure(e, str(tmp_path / "new") + "/", "the path ends with '/', so it is a folder")
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("kind", KINDS)
def test_path_is_a_fifo(tmp_path, sess, kind):
    target = tmp_path / "model.etm"
    os.mkfifo(target)
    with pytest.raises(ModelIOError) as e:
        save(sess, target, kind)
    check_failure(e, target, "is not a regular file")
    assert target.is_fifo() and temporaries(tmp_path) == []


@pytest.mark.parametrize("kind", KINDS)
def test_parent_is_a_file(tmp_path, sess, kind):
    (tmp_path / "file").write_bytes(b"x")
    target = tmp_path / "file" / "model.etm"
    with pytest.raises(ModelIOError) as e:
        save(sess, target, kind)
    check_failure(e, target, "is not a folder")


FAULTS = [
    ("open", errno.EACCES, "is not writable (permission denied)"),
    ("open", errno.EPERM, "is not writable (permission denied)"),
    ("open", errno.EROFS, "is on a read-only file system"),
    ("open", errno.ENOSPC, "the disk is full"),
    ("open", errno.EMFILE, os.strerror(errno.EMFILE)),
    ("write", errno.ENOSPC, "the disk is full"),
    ("write", errno.EDQUOT, "the disk quota is exceeded"),
    ("write", errno.EIO, os.strerror(errno.EIO)),
    ("fsync", errno.ENOSPC, "the disk is full"),
    ("fsync", errno.EIO, os.strerror(errno.EIO)),
    ("rename", errno.EACCES, "is not writable (permission denied)"),
    ("rename", errno.EROFS, "is on a read-only file system"),
    ("rename", errno.EBUSY, os.strerror(errno.EBUSY)),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("step,err,phrase", FAULTS, ids=[f"{s}-{errno.errorcode[e]}" for s, e, _ in FAULTS])
def test_injected_failures_keep_the_old_file(tmp_path, sess, kind, step, err, phrase, monkeypatch):
    target = tmp_path / "model.etm"
    save(sess, target, kind)
    before = target.read_bytes()
    train_once(sess)
    monkeypatch.setenv("EDGETRAIN_SAVE_FAULT", f"{step}:{err}:model.etm")
    with pytest.raises(ModelIOError) as e:
        save(sess, target, kind)
    check_failure(e, target, phrase)
    if phrase in ("is not writable (permission denied)", "is on a read-only file system"):
        assert f"the folder '{tmp_path}'" in str(e.value)
    assert target.read_bytes() == before
    assert temporaries(tmp_path) == []
    monkeypatch.delenv("EDGETRAIN_SAVE_FAULT")
    save(sess, target, kind)  # the hook is gone: the save works
    assert target.read_bytes() != before
    et.TrainSession.load(target, threads=1)


def test_fault_hook_rejects_nonsense(tmp_path, sess, monkeypatch):
    monkeypatch.setenv("EDGETRAIN_SAVE_FAULT", "wirte:28")
    with pytest.raises(ModelIOError) as e:
        save(sess, tmp_path / "m.etm", "full")
    assert "EDGETRAIN_SAVE_FAULT" in str(e.value)


# ---- the same causes for real (root only: a tiny tmpfs) ---------------------------------------
@pytest.fixture
def tiny_tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the injected failures cover "
                    "the same messages")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("kind", KINDS)
def test_real_disk_full(tiny_tmpfs, kind):
    sess = make_session()
    target = tiny_tmpfs / "model.etm"
    save(sess, target, kind)
    before = target.read_bytes()
    st = os.statvfs(tiny_tmpfs)
    (tiny_tmpfs / "filler").write_bytes(b"\0" * max(st.f_bavail * st.f_frsize - 1024, 0))
    train_once(sess)
    with pytest.raises(ModelIOError) as e:
        save(sess, target, kind)
    check_failure(e, target, "the disk is full")
    assert target.read_bytes() == before
    assert temporaries(tiny_tmpfs) == []


@pytest.mark.parametrize("kind", KINDS)
def test_real_read_only_file_system(tiny_tmpfs, kind):
    sess = make_session()
    target = tiny_tmpfs / "model.etm"
    save(sess, target, kind)
    before = target.read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], check=True)
    with pytest.raises(ModelIOError) as e:
        save(sess, target, kind)
    check_failure(e, target, f"the folder '{tiny_tmpfs}' is on a read-only file system")
    assert target.read_bytes() == before


@pytest.fixture
def unwritable_folder(tmp_path):
    """A folder this process cannot create files in: mode 0555, or for root (who ignores the
    mode) the immutable attribute."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    r = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"root and no immutable attribute here ({r.stderr.strip()}); the injected "
                    "EACCES/EPERM failures cover the message")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


@pytest.mark.parametrize("kind", KINDS)
def test_real_folder_not_writable(unwritable_folder, sess, kind):
    folder = unwritable_folder
    with pytest.raises(ModelIOError) as e:
        save(sess, folder / "model.etm", kind)
    check_failure(e, folder / "model.etm", f"the folder '{folder}' is not writable")


# ---- what a save keeps ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode,umask", [(0o600, 0o022), (0o640, 0o077), (0o664, 0o022)])
def test_permissions_are_kept(tmp_path, sess, kind, mode, umask):
    target = tmp_path / "model.etm"
    save(sess, target, kind)
    target.chmod(mode)
    old = os.umask(umask)
    try:
        save(sess, target, kind)
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o7777 == mode


@pytest.mark.parametrize("kind", KINDS)
def test_new_files_follow_the_umask(tmp_path, sess, kind):
    old = os.umask(0o027)
    try:
        save(sess, tmp_path / "new.etm", kind)
    finally:
        os.umask(old)
    assert (tmp_path / "new.etm").stat().st_mode & 0o7777 == 0o640


@pytest.mark.parametrize("kind", KINDS)
def test_symlink_is_written_through(tmp_path, sess, kind):
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "model.etm"
    save(sess, real, kind)
    link = tmp_path / "link.etm"
    link.symlink_to(Path("real") / "model.etm")  # relative, as users make them
    chain = tmp_path / "chain.etm"
    chain.symlink_to("link.etm")
    sess.step = 41
    save(sess, chain, kind)
    assert chain.is_symlink() and os.readlink(chain) == "link.etm"
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / "model.etm")
    assert et.TrainSession.load(real, threads=1).step == (41 if kind == "full" else 0)
    assert temporaries(tmp_path) == [] and temporaries(tmp_path / "real") == []


@pytest.mark.parametrize("kind", KINDS)
def test_dangling_symlink_creates_its_target(tmp_path, sess, kind):
    link = tmp_path / "link.etm"
    link.symlink_to("made.etm")
    save(sess, link, kind)
    assert link.is_symlink() and (tmp_path / "made.etm").is_file()
    et.TrainSession.load(link, threads=1)


def test_symlink_loop_is_named(tmp_path, sess):
    a, b = tmp_path / "a.etm", tmp_path / "b.etm"
    a.symlink_to("b.etm")
    b.symlink_to("a.etm")
    with pytest.raises(ModelIOError) as e:
        save(sess, a, "full")
    check_failure(e, a, "too many symbolic links")


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path, sess):
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        names = {
            f".model.etm.tmp.{dead.pid}.0123456789abcdef": False,   # ours, dead: removed
            f"model.etm.tmp.{dead.pid}": False,                     # the old writer's name, dead: removed
            f".model.etm.tmp.{alive.pid}.0123456789abcdef": True,   # a live writer's: kept
            f".other.etm.tmp.{dead.pid}.0123456789abcdef": True,    # another target's: kept
            f".model.etm.tmp.{dead.pid}.not-hex": True,             # not our pattern: kept
            f".model.etm.tmp.x{dead.pid}.0123456789abcdef": True,
        }
        for n in names:
            (tmp_path / n).write_bytes(b"partial")
        save(sess, tmp_path / "model.etm", "full")
        for n, kept in names.items():
            assert (tmp_path / n).exists() == kept, n
    finally:
        alive.kill()
        alive.wait()


def test_planted_symlink_at_the_old_temporary_name_is_not_followed(tmp_path, sess):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / f"model.etm.tmp.{os.getpid()}").symlink_to(victim)
    save(sess, tmp_path / "model.etm", "full")
    assert victim.read_bytes() == b"precious"
    et.TrainSession.load(tmp_path / "model.etm", threads=1)


# ---- paths Python must refuse before C sees them ----------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_nul_in_path(tmp_path, sess, kind, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidArgumentError) as e:
        save(sess, "model\0.etm", kind)
    assert isinstance(e.value, ValueError) and "NUL" in str(e.value)
    with pytest.raises(InvalidArgumentError):
        et.TrainSession.load("model\0.etm")
    with pytest.raises(InvalidArgumentError):
        fileformat.save_atomic("x\0y", b"abc")
    assert list(tmp_path.iterdir()) == []


def test_save_atomic_is_the_c_writer(tmp_path):
    """fileformat.save_atomic (inference-only saves) uses the C writer and its messages."""
    target = tmp_path / "blob.bin"
    fileformat.save_atomic(target, b"abc" * 1000)
    assert target.read_bytes() == b"abc" * 1000
    with pytest.raises(ModelIOError) as e:
        fileformat.save_atomic(tmp_path / "nope" / "blob.bin", b"abc")
    check_failure(e, tmp_path / "nope" / "blob.bin", "does not exist")


# ---- the writer emits only what the reader accepts -------------------------------------------
def _fix_crcs(b: bytearray):
    nsec = struct.unpack_from("<I", b, 24)[0]
    for i in range(nsec):
        e = 64 + 32 * i
        off, size = struct.unpack_from("<QQ", b, e + 8)
        struct.pack_into("<I", b, e + 24, zlib.crc32(bytes(b[off:off + size])))
    struct.pack_into("<I", b, 32, zlib.crc32(bytes(b[64:64 + 32 * nsec])))
    struct.pack_into("<I", b, 36, zlib.crc32(bytes(b[:36])))


def _tensors_offset(b):
    nsec = struct.unpack_from("<I", b, 24)[0]
    for i in range(nsec):
        typ, _, off = struct.unpack_from("<IIQ", b, 64 + 32 * i)
        if typ == 2:
            return off
    raise AssertionError("no TENSORS section")


LATER_MINOR = fileformat.VERSION_MINOR + 1


def as_later_minor_with_reserved_bits(data: bytes) -> bytes:
    """A file of a later minor than this reader's: reserved header flag bits and tensor flag
    bits set (a later minor may define them)."""
    b = bytearray(data)
    struct.pack_into("<I", b, 12, LATER_MINOR)
    flags = struct.unpack_from("<I", b, 28)[0]
    struct.pack_into("<I", b, 28, flags | 0x40 | 0x100)               # bits 1.x does not define
    t = _tensors_offset(b)
    n = struct.unpack_from("<I", b, t)[0]
    for i in range(n):
        b[t + 8 + 96 * i + 11] |= 0x80                                # tensor flag bit 7
        b[t + 8 + 96 * i + 80] = 0x5A                                 # reserved tensor bytes
    b[40] = 7                                                         # reserved header bytes
    _fix_crcs(b)
    return bytes(b)


@pytest.mark.parametrize("kind", ["full", "inference-file"])
def test_later_minor_file_with_reserved_bits_saves_a_loadable_file(tmp_path, sess, kind):
    src = tmp_path / "src.etm"
    sess.SaveToFile(src, inference_only=(kind != "full"))
    v11 = tmp_path / "v11.etm"
    v11.write_bytes(as_later_minor_with_reserved_bits(src.read_bytes()))
    loaded = et.TrainSession.load(v11, threads=1)       # a later minor loads (reserved bits ignored)
    out = tmp_path / "out.etm"
    loaded.SaveToFile(out)
    again = et.TrainSession.load(out, threads=1)        # ... and what we write loads too
    b = out.read_bytes()
    major, minor = struct.unpack_from("<II", b, 8)
    flags = struct.unpack_from("<I", b, 28)[0]
    assert (major, minor) == (fileformat.VERSION_MAJOR, fileformat.VERSION_MINOR)
    assert flags == (0 if kind == "full" else 1), "only the flag bits this version defines"
    t = _tensors_offset(b)
    n = struct.unpack_from("<I", b, t)[0]
    assert all(b[t + 8 + 96 * i + 11] & ~3 == 0 for i in range(n))
    for name, v in sess.get_parameters().items():
        np.testing.assert_array_equal(again.get_parameters()[name], v)


# ---- kill -9 in the middle of saves ----------------------------------------------------------
# A single-threaded helper process forks one writer per trial (fork from a clean process is cheap
# and safe, unlike a fork of the pytest process) and reaps it after the test has killed it.
ZYGOTE = """
import os, sys
import edgetrain as et
sess = et.TrainSession.load(sys.argv[1], threads=1)
for line in sys.stdin:
    trial = int(line)
    pid = os.fork()
    if pid == 0:
        try:
            i = 0
            while True:
                sess.step = trial * 100000 + i
                sess.SaveToFile(sys.argv[2])
                i += 1
        finally:
            os._exit(1)
    print(pid, flush=True)
    os.waitpid(pid, 0)
    print("reaped", flush=True)
"""


def test_kill_9_during_saves_leaves_a_loadable_file(tmp_path):
    """Writers saving in a loop are killed at random moments: the file always loads, and the
    next save removes the temporaries the dead writers left."""
    sess = make_session(width=2048)                                # ~0.3 MB per file
    target = tmp_path / "model.etm"
    sess.SaveToFile(target)
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "model.etm"
    sess.SaveToFile(src)
    zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(src), str(target)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=Path(__file__).parents[1])
    rnd = np.random.default_rng(5)
    trials, stale_seen = 30, 0
    try:
        for trial in range(1, trials + 1):
            zygote.stdin.write(f"{trial}\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            time.sleep(float(rnd.uniform(0.005, 0.04)))
            os.kill(pid, signal.SIGKILL)
            assert zygote.stdout.readline().strip() == "reaped"
            loaded = et.TrainSession.load(target, threads=1)
            assert loaded.step == 0 or loaded.step // 100000 <= trial
            left = temporaries(tmp_path)
            for name in left:  # .<name>.tmp.<pid>.<16 random hex digits>
                assert re.fullmatch(rf"\.model\.etm\.tmp\.{pid}\.[0-9a-f]{{16}}", name), name
            stale_seen += bool(left)
            sess.SaveToFile(target)
            assert temporaries(tmp_path) == [], "the next save removes the dead writer's temporary"
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
    print(f"{stale_seen} of {trials} kills left a temporary file")
    assert stale_seen > 0, "no kill landed during a save: the test did not test anything"
