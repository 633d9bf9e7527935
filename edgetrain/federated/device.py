"""Clients without Python: a round's local training runs in ``et_train`` (android/) on a
device, driven from the host.

For each round the host writes the round's model — the task's training program with the global
weights, the FedProx anchors and the round's learning rate — as an ``.etm``, pushes it (and,
once, the client's shard as MNIST IDX files) to the device, runs ``et_train`` for the local
epochs or steps, and pulls the trained model back; its parameters are the client's update.

The transport is pluggable (:class:`Transport`):

- :class:`AdbTransport` — a phone over ``adb`` (push / shell / pull under
  ``/data/local/tmp``), with the static arm64 ``et_train`` (``make -C android TARGET=aarch64``);
- :class:`LocalTransport` — a folder on this machine, the binary run directly (the host build)
  or under an emulator prefix such as ``["qemu-aarch64-static"]`` (the static arm64 build):
  the stand-in for a phone in the tests.

:class:`DeviceTrainer` has :func:`task.train_round`'s signature, so it plugs into
:func:`apps.client_app` as ``trainer``.
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import DeviceError, InvalidArgumentError
from . import task as T

STEP_RE = re.compile(r"^step (\d+): loss (\S+)$", re.M)
IDX_IMAGES, IDX_LABELS = 0x00000803, 0x00000801


def write_idx(path: str, array: np.ndarray, magic: int) -> None:
    """An MNIST IDX file (big-endian dims, uint8 data)."""
    a = np.ascontiguousarray(array, np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        f.write(struct.pack(f">{a.ndim}I", *a.shape))
        f.write(a.tobytes())


# ---- transports -----------------------------------------------------------------------------
class Transport:
    """Moves files to and from a device folder and runs commands there."""

    def push(self, local: str, remote_name: str) -> None:
        raise NotImplementedError

    def pull(self, remote_name: str, local: str) -> None:
        raise NotImplementedError

    def run(self, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
        """Run ``et_train`` with ``args`` (remote file names) in the device folder."""
        raise NotImplementedError


class LocalTransport(Transport):
    """A folder on this machine; ``binary`` run with an optional ``prefix`` (an emulator)."""

    def __init__(self, binary: str, prefix: Sequence[str] = (), workdir: Optional[str] = None):
        if not os.path.isfile(binary):
            raise InvalidArgumentError(f"et_train binary not found: {binary} (build it with "
                                       "make -C android [TARGET=aarch64])")
        self.binary, self.prefix = os.path.abspath(binary), list(prefix)
        for tool in self.prefix[:1]:
            if not shutil.which(tool):
                raise InvalidArgumentError(f"{tool} not found (apt-get install qemu-user-static)")
        self.dir = workdir or tempfile.mkdtemp(prefix="et-device-")
        os.makedirs(self.dir, exist_ok=True)

    def push(self, local, remote_name):
        shutil.copyfile(local, os.path.join(self.dir, remote_name))

    def pull(self, remote_name, local):
        shutil.copyfile(os.path.join(self.dir, remote_name), local)

    def run(self, args, timeout):
        return subprocess.run(self.prefix + [self.binary] + list(args), cwd=self.dir,
                              capture_output=True, text=True, timeout=timeout)


class AdbTransport(Transport):
    """One Android device over adb (``serial`` picks it when several are attached)."""

    def __init__(self, binary: str, serial: Optional[str] = None,
                 remote_dir: str = "/data/local/tmp/edgetrain-fed", adb: str = "adb"):
        self.adb = [adb] + (["-s", serial] if serial else [])
        self.remote_dir = remote_dir
        self._call(["shell", f"mkdir -p {remote_dir}"])
        self._call(["push", binary, f"{remote_dir}/et_train"])
        self._call(["shell", f"chmod 755 {remote_dir}/et_train"])

    def _call(self, args, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.adb + list(args), capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise DeviceError(f"adb {' '.join(args)}: {(proc.stderr or proc.stdout).strip()}")
        return proc

    def push(self, local, remote_name):
        self._call(["push", local, f"{self.remote_dir}/{remote_name}"])

    def pull(self, remote_name, local):
        self._call(["pull", f"{self.remote_dir}/{remote_name}", local])

    def run(self, args, timeout):
        cmd = f"cd {self.remote_dir} && ./et_train " + " ".join(args)
        return subprocess.run(self.adb + ["shell", cmd], capture_output=True, text=True,
                              timeout=timeout)


# ---- the client ---------------------------------------------------------------------------
class DeviceTrainer:
    """A round of local training in et_train on one device.

    ``raw_data(pid) -> (uint8 images [n, 28, 28], labels [n])`` gives the client's shard (pushed
    once). Called like :func:`task.train_round`.
    """

    def __init__(self, transport: Transport, raw_data: Callable[[int], Tuple[np.ndarray,
                                                                        np.ndarray]],
                 threads: int = 1, timeout: float = 1800):
        self.transport, self.raw_data = transport, raw_data
        self.threads, self.timeout = int(threads), float(timeout)
        self._pushed: Dict[int, int] = {}
        self.last_output = ""

    def _push_data(self, pid: int) -> int:
        if pid not in self._pushed:
            images, labels = self.raw_data(pid)
            with tempfile.TemporaryDirectory() as d:
                for name, arr, magic in (("train-images-idx3-ubyte", images, IDX_IMAGES),
                                         ("train-labels-idx1-ubyte", labels, IDX_LABELS)):
                    write_idx(os.path.join(d, name), arr, magic)
                    self.transport.push(os.path.join(d, name), name)
            self._pushed[pid] = len(labels)
        return self._pushed[pid]

    def round_model(self, task: T.Task, params: Mapping[str, np.ndarray], lr: float,
                    prox_mu: float, seed: int, path: str) -> None:
        """Write the round's model: program, global weights, anchors, learning rate, seed."""
        sess = T.new_session(task, prox_mu)
        T.load_global(sess, params, prox_mu)
        sess.learning_rate = float(lr)
        sess.seed = seed
        sess.SaveToFile(path)

    def __call__(self, task: T.Task, data, params: Mapping[str, np.ndarray], *, lr: float,
                 prox_mu: float = 0.0, epochs: int = 1, steps: int = 0, server_round: int = 0,
                 client: int = 0):
        from ..session import TrainSession

        n = self._push_data(client)
        seed = T.shuffle_seed(task, server_round, client)
        with tempfile.TemporaryDirectory() as d:
            model = os.path.join(d, "round.etm")
            self.round_model(task, params, lr, prox_mu, seed, model)
            self.transport.push(model, "round.etm")
            length = ["-i", str(steps)] if steps > 0 else ["-e", str(epochs)]
            args = ["-f", "round.etm", "-d", ".", *length, "-t", str(self.threads), "-p", "1",
                    "--seed", str(seed), "--test-limit", "0", "-s", "trained.etm"]
            proc = self.transport.run(args, self.timeout)
            self.last_output = proc.stdout
            if proc.returncode != 0:
                raise DeviceError(f"et_train exited with {proc.returncode}: "
                                  f"{(proc.stderr or proc.stdout).strip()[-500:]}")
            self.transport.pull("trained.etm", os.path.join(d, "trained.etm"))
            new = TrainSession.load(os.path.join(d, "trained.etm"), threads=1).get_parameters()
        T.check_parameters(params, new, "device client")
        losses = [float(v) for _, v in STEP_RE.findall(proc.stdout)]
        # et_train prints no training accuracy: the host measures the trained model on the shard
        acc = T.Evaluator(task, data)(new)["accuracy"] if data is not None else float("nan")
        metrics = {"loss": float(np.mean(losses)) if losses else float("nan"),
                   "accuracy": acc, "num-examples": int(n), "steps": len(losses)}
        return new, metrics
