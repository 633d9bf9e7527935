"""edgetrain.federated on Flower's deployment runtime: a SuperLink and two SuperNodes on loopback
(separate processes, insecure HTTP on free ports), the app project ``edgetrain/federated/
flwr_app`` submitted with ``flwr run``, with DP clipping (``fixedclipping_mod`` on the
SuperNodes) active. The global model must be written, improve, and equal the in-process
simulation's with the same seed and options, bit for bit. A second run on the same SuperLink
aggregates with SecAgg+ (``secaggplus_mod`` on the SuperNodes): its round-1 model equals plain
FedAvg's within SecAgg+'s stochastic quantization.

Every process is started in its own session and its whole group is killed in ``finally``.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import edgetrain as et

ROOT = Path(__file__).resolve().parents[1]
DATA = str(ROOT / "data" / "mnist")
APP = ROOT / "edgetrain" / "federated" / "flwr_app"
BIN = Path(sys.executable).parent


def _need_flower():
    if not (BIN / "flower-superlink").exists():
        if os.environ.get("CI"):
            pytest.fail("flwr is not installed (make test installs it)")
        pytest.skip("flwr not installed (pip install 'edgetrain[federated]')")


def _free_ports(n):
    socks, ports = [], []
    for _ in range(n):  # the OS picks free ports; held until all are chosen (no duplicates)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _wait_port(port, proc, log, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"process exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"nothing listens on {port} after {timeout} s: {log.read_text()[-2000:]}")


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    end = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:  # the group too: each SuperNode's SuperExec and its app processes
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        p.wait()


def test_superlink_and_two_supernodes_on_loopback(tmp_path):
    _need_flower()
    link, n0, n1 = _free_ports(3)
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\n'
        f'address = "127.0.0.1:{link}"\ninsecure = true\n')
    env = dict(os.environ, FLWR_HOME=str(home), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    procs, logs = [], []

    def start(name, *args):
        log = tmp_path / f"{name}.log"
        logs.append(log)
        f = open(log, "w")
        procs.append(subprocess.Popen([str(BIN / args[0]), *args[1:]], stdout=f,
                                      stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                      start_new_session=True))
        f.close()
        return procs[-1], log

    out, out_sa = tmp_path / "out", tmp_path / "out-secagg"
    try:
        p, log = start("superlink", "flower-superlink", "--insecure", "--port", str(link))
        _wait_port(link, p, log)
        for i, port in enumerate((n0, n1)):
            p, log = start(f"supernode{i}", "flower-supernode", "--insecure", "--superlink",
                           f"127.0.0.1:{link}", "--port", str(port), "--node-config",
                           f"partition-id={i} num-partitions=2")
            _wait_port(port, p, log)
        cfg = (f'data="{DATA}" out="{out}" rounds=2 num-clients=2 partition="iid" '
               f'local-steps=10 train-limit=1500 test-limit=500 dp-clip=0.5')
        run = subprocess.run([str(BIN / "flwr"), "run", str(APP), "loopback", "--run-config",
                              cfg, "--stream"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=100)
        text = run.stdout + run.stderr
        assert run.returncode == 0, text[-3000:]
        cfg = (f'data="{DATA}" out="{out_sa}" rounds=1 num-clients=2 partition="iid" '
               f'local-steps=10 train-limit=1500 test-limit=500 secagg=true')
        run = subprocess.run([str(BIN / "flwr"), "run", str(APP), "loopback", "--run-config",
                              cfg, "--stream"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=100)
        text = run.stdout + run.stderr
        assert run.returncode == 0, text[-3000:]
    finally:
        _stop(procs)
    assert all(p.poll() is not None for p in procs)
    log = (out / "federate.log").read_text()
    # DP through the deployment runtime: Flower's fixedclipping_mod on each SuperNode
    assert log.startswith("differential privacy: client-side fixed clipping of each update to "
                          "L2 norm 0.5"), log
    lines = [ln for ln in log.splitlines() if ln.startswith("round ")]
    assert [ln.split(":")[0] for ln in lines] == ["round 0/2", "round 1/2", "round 2/2"], lines
    acc = [float(ln.split("test accuracy ")[1].split("%")[0]) for ln in lines]
    assert acc[2] > acc[0] + 20 and acc[2] > acc[1], acc
    assert '"round": 2' in (out / "federate.json").read_text()
    deployed = et.TrainSession.load(out / "global.etm").get_parameters()

    # the same federation simulated in process: the same global model, bit for bit
    from edgetrain.federated import task as T
    from edgetrain.federated.simulation import run_federation

    sim = run_federation(T.Task(), DATA, clients=2, rounds=2, out_dir=str(tmp_path / "sim"),
                         partition_spec="iid", local_steps=10, train_limit=1500, test_limit=500,
                         backend="inprocess", dp_clip=0.5, stream=open(os.devnull, "w"))
    assert sorted(deployed) == sorted(sim["arrays"])
    for k, v in sim["arrays"].items():
        np.testing.assert_array_equal(deployed[k], v)

    # SecAgg+ through the deployment runtime: the masked sum, unmasked, is FedAvg's aggregate
    log = (out_sa / "federate.log").read_text()
    assert log.startswith("secure aggregation: SecAgg+ among 2 clients"), log
    assert "round 1/1" in log and "failed" not in log, log
    secure = et.TrainSession.load(out_sa / "global.etm").get_parameters()
    plain = run_federation(T.Task(), DATA, clients=2, rounds=1, out_dir=str(tmp_path / "plain"),
                           partition_spec="iid", local_steps=10, train_limit=1500,
                           test_limit=500, backend="inprocess", stream=open(os.devnull, "w"))
    diff = max(float(np.abs(secure[k] - v).max()) for k, v in plain["arrays"].items())
    assert 0 < diff < 1e-4, diff  # stochastic rounding of [-8, 8] to 2**22 levels
