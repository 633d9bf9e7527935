"""edgetrain.federated: partitions, FedProx inside the optimizer (against PyTorch), Flower's
FedAvg / FedProx / FedAdam driving TrainSession clients (in-process grid), the et_train device
client (host build and arm64 under qemu), and ``edgetrain federate`` on Flower's simulation
runtime (Ray).

Flower is installed by ``make test`` (TEST_DEPS): without it the Flower tests skip locally and
fail in CI (CI=true). arm64 tests need aarch64-linux-gnu-gcc and qemu-aarch64-static (skipped
without them, failed with EDGETRAIN_REQUIRE_ARM64=1, as in test_android.py).
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.errors import InvalidArgumentError, ModelFormatError, ShapeError
from edgetrain.federated import partition, parse_partition
from edgetrain.federated import task as T

ROOT = Path(__file__).resolve().parents[1]
DATA = str(ROOT / "data" / "mnist")
REQUIRE_ARM64 = os.environ.get("EDGETRAIN_REQUIRE_ARM64") == "1"


def _flwr():
    try:
        import flwr  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("flwr is not installed (make test installs it)")
        pytest.skip("flwr not installed (pip install 'edgetrain[federated]')")


# ---- partitions -------------------------------------------------------------------------------
LABELS = np.random.default_rng(1).integers(0, 10, 3000)


def _check_split(parts, n):
    allidx = np.concatenate(parts)
    assert len(allidx) == n and len(np.unique(allidx)) == n  # disjoint, covering
    assert all(len(p) > 0 for p in parts)


@pytest.mark.parametrize("spec", ["iid", "dirichlet:0.5", "dirichlet:100", "classes:2", "classes:1"])
def test_partition_disjoint_covering_deterministic(spec):
    parts = partition(LABELS, 10, spec, seed=3)
    _check_split(parts, len(LABELS))
    again = partition(LABELS, 10, spec, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = partition(LABELS, 10, spec, seed=4)
    assert any(not np.array_equal(a, b) for a, b in zip(parts, other))


def test_partition_label_skew():
    iid = partition(LABELS, 10, "iid", seed=0)
    assert max(len(p) for p in iid) - min(len(p) for p in iid) <= 1
    for p in iid:  # every IID client sees every class
        assert len(np.unique(LABELS[p])) == 10
    for k in (1, 2, 3):
        parts = partition(LABELS, 10, f"classes:{k}", seed=0)
        assert all(len(np.unique(LABELS[p])) == k for p in parts)

    def skew(spec):  # mean total-variation distance of a client's label histogram to the global
        glob = np.bincount(LABELS, minlength=10) / len(LABELS)
        return np.mean([0.5 * np.abs(np.bincount(LABELS[p], minlength=10) / len(p) - glob).sum()
                        for p in partition(LABELS, 10, spec, seed=0)])

    assert skew("dirichlet:0.1") > skew("dirichlet:0.5") > skew("dirichlet:100") > 0
    assert skew("dirichlet:100") < 0.1 and skew("dirichlet:0.1") > 0.5


@pytest.mark.parametrize("spec", ["dirichlet", "dirichlet:0", "dirichlet:-1", "classes:1.5",
                                  "classes:0", "iid:3", "shards:2", "dirichlet:x"])
def test_partition_bad_specs(spec):
    with pytest.raises(InvalidArgumentError):
        parse_partition(spec)


def test_partition_bad_arguments():
    with pytest.raises(InvalidArgumentError, match="only 10 classes"):
        partition(LABELS, 4, "classes:11")
    with pytest.raises(InvalidArgumentError, match="cannot be split"):
        partition(LABELS[:3], 4, "iid")
    with pytest.raises(InvalidArgumentError):
        partition(LABELS, 0, "iid")


# ---- FedProx in the optimizer update, against PyTorch ---------------------------------------
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_fedprox_term_matches_torch(kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    mu = 0.5
    nn.init.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    sd = {k: np.array(v) for k, v in m.state_dict().items()}
    make = {"sgd": lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3, prox_mu=mu),
            "adam": lambda p: optim.Adam(p, lr=0.01, weight_decay=1e-3, prox_mu=mu),
            "adamw": lambda p: optim.AdamW(p, lr=0.01, weight_decay=1e-2, prox_mu=mu)}[kind]
    sess = et.TrainSession.from_module(m, {"x": (4, 6)}, loss=nn.CrossEntropyLoss(),
                                       labels={"y": ((4,), "int64")},
                                       optimizer=make(m.parameters()), threads=1)
    anchor = {k: (v + rng.normal(0, 0.3, v.shape)).astype(np.float32) for k, v in sd.items()}
    for k, v in anchor.items():
        sess.set_tensor(f"prox_anchor:{k}", v)
    tm = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()
    tm.load_state_dict({k: torch.tensor(v, dtype=torch.float64) for k, v in sd.items()})
    tanchor = {k: torch.tensor(v, dtype=torch.float64) for k, v in anchor.items()}
    topt = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
            "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-3),
            "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=1e-2)}[kind](
        tm.parameters())
    sess.Train()
    for _ in range(6):
        x = rng.normal(size=(4, 6)).astype(np.float32)
        y = rng.integers(0, 3, 4)
        sess.RunGraph({"x": x, "y": y})
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tm(torch.tensor(x, dtype=torch.float64)),
                                                 torch.tensor(y))
        loss = loss + mu / 2 * sum(((p - tanchor[n]) ** 2).sum() for n, p in tm.named_parameters())
        loss.backward()
        topt.step()
    got = sess.get_parameters()
    for n, p in tm.named_parameters():
        np.testing.assert_allclose(got[n], p.detach().numpy(), rtol=1e-5, atol=2e-6)
        assert np.abs(got[n] - sd[n]).max() > 1e-3  # it trained


def test_fedprox_structure_and_checks():
    m = nn.Linear(3, 2)
    g = et.export.build_graph(m, {"x": (2, 3)}, loss=nn.MSELoss(),
                              labels={"y": ((2, 2), "float32")},
                              optimizer=optim.SGD(m.parameters(), lr=0.1, prox_mu=0.2))
    upd = [g.nodes[n] for n in g.programs[et.ir.TRAIN].nodes if g.nodes[n].op == "sgd_update"]
    for node in upd:
        anchor = g.tensors[node.inputs[3]]
        assert anchor.name.startswith("prox_anchor:") and anchor.kind == et.ir.OPTSTATE
        np.testing.assert_array_equal(anchor.data, g.tensors[node.inputs[0]].data)
        assert node.fattr[4] == pytest.approx(0.2)
    plain = et.export.build_graph(m, {"x": (2, 3)}, loss=nn.MSELoss(),
                                  labels={"y": ((2, 2), "float32")},
                                  optimizer=optim.SGD(m.parameters(), lr=0.1))
    assert all(len(plain.nodes[n].fattr) == 4 for n in plain.programs[et.ir.TRAIN].nodes
               if plain.nodes[n].op == "sgd_update")  # files without FedProx are unchanged
    with pytest.raises(ValueError, match="prox_mu"):
        optim.SGD(m.parameters(), lr=0.1, prox_mu=-1.0)
    # a file whose update has prox_mu but lost its anchor is rejected by the C runtime
    for node in upd:
        node.inputs[3] = -1
    with pytest.raises(ModelFormatError, match="prox_mu 0.2 needs a prox_anchor"):
        et.TrainSession.from_graph(g)


def test_variable_local_work_is_seeded_and_in_range():
    from edgetrain.federated.simulation import VariableLocalWork

    work = VariableLocalWork(10, 100)
    steps = [[work.steps(TASK, r, c) for c in range(5)] for r in range(1, 6)]
    assert all(10 <= n <= 100 for row in steps for n in row)
    assert len({n for row in steps for n in row}) > 5  # clients and rounds differ
    assert steps == [[VariableLocalWork(10, 100).steps(TASK, r, c) for c in range(5)]
                     for r in range(1, 6)]  # the same for every run with this seed
    other = T.Task(batch_size=32, lr=0.05, threads=1, seed=1)
    assert steps != [[work.steps(other, r, c) for c in range(5)] for r in range(1, 6)]
    seen = []
    work = VariableLocalWork(3, 3, trainer=lambda task, data, params, **kw: seen.append(kw))
    work(TASK, None, {}, lr=0.1, epochs=1, steps=0, server_round=2, client=1)
    assert seen[0]["steps"] == 3 and seen[0]["client"] == 1
    with pytest.raises(InvalidArgumentError, match="1 <= min <= max"):
        VariableLocalWork(5, 4)


def test_stragglers_are_seeded_and_dropped_only_by_fedavg():
    from edgetrain.federated.simulation import StragglerDropped, Stragglers

    drop = Stragglers(50, 0.5, drop=True)
    steps = [[drop.steps(TASK, r, c) for c in range(10)] for r in range(1, 11)]
    flat = [n for row in steps for n in row]
    assert all(1 <= n <= 50 for n in flat)
    late = [n for n in flat if n < 50]
    assert 30 <= len(late) <= 70 and len(set(late)) > 10  # about half, random partial work
    keep = Stragglers(50, 0.5, drop=False)
    assert steps == [[keep.steps(TASK, r, c) for c in range(10)] for r in range(1, 11)]
    assert all(Stragglers(50, 0.0, True).steps(TASK, r, 0) == 50 for r in range(20))
    assert all(Stragglers(50, 1.0, True).steps(TASK, r, 0) < 50 for r in range(20))
    seen = []
    record = lambda task, data, params, **kw: seen.append(kw["steps"])  # noqa: E731
    r, c = next((r, c) for r in range(1, 11) for c in range(10) if steps[r - 1][c] < 50)
    Stragglers(50, 0.5, drop=False, trainer=record)(TASK, None, {}, steps=0, server_round=r,
                                                   client=c)
    assert seen == [steps[r - 1][c]]
    with pytest.raises(StragglerDropped, match=f"{steps[r - 1][c]} of 50 local steps"):
        Stragglers(50, 0.5, drop=True, trainer=record)(TASK, None, {}, server_round=r, client=c)
    with pytest.raises(InvalidArgumentError, match="fraction"):
        Stragglers(50, 1.5, drop=True)
    with pytest.raises(InvalidArgumentError, match="at least 2"):
        Stragglers(1, 0.5, drop=True)


# ---- Flower apps in process ------------------------------------------------------------------
TASK = T.Task(batch_size=32, lr=0.05, threads=1)


@pytest.fixture(scope="module")
def shards():
    _flwr()
    from edgetrain.federated.simulation import MnistShards

    return MnistShards(DATA, TASK, "dirichlet:0.5", 3, seed=0, limit=2400)


def _run(tmp_path, strategy="fedavg", rounds=3, mu=0.0, trainer=None, shards_fn=None, **kw):
    from edgetrain.federated.simulation import run_federation

    out = []

    class Stream:
        def write(self, s):
            out.append(s)

        def flush(self):
            pass

    res = run_federation(TASK, DATA, clients=3, rounds=rounds, out_dir=str(tmp_path),
                         partition_spec="dirichlet:0.5", strategy=strategy, mu=mu,
                         backend="inprocess", train_limit=2400, test_limit=500, stream=Stream(),
                         trainer=trainer, **kw)
    return res, "".join(out)


def test_fedavg_improves_and_is_weighted_by_examples(tmp_path, shards):
    res, log = _run(tmp_path, rounds=3)
    acc = [a for _, a, _ in res["history"]]
    assert [r for r, _, _ in res["history"]] == [0, 1, 2, 3]
    assert acc[0] < 0.2 and acc[3] > 0.7 and acc[3] > acc[1] + 0.05, acc
    assert len(re.findall(r"^round \d/3: .*test accuracy", log, re.M)) == 4
    for f in ("global.etm", "federate.csv", "federate.png", "federate.json"):
        assert (tmp_path / f).stat().st_size > 0
    saved = et.TrainSession.load(tmp_path / "global.etm").get_parameters()
    assert all(np.array_equal(saved[k], res["arrays"][k]) for k in saved)

    # round 1 by hand: the clients' updates averaged with their example counts as weights
    g = T.initial_parameters(TASK)
    ups = [T.train_round(TASK, shards(i, 3), g, lr=TASK.lr, server_round=1, client=i)
           for i in range(3)]
    counts = np.array([m["num-examples"] for _, m in ups], np.float64)
    assert len(set(counts)) == 3  # Dirichlet shards of different sizes
    avg = {k: sum(p[k] * c for (p, _), c in zip(ups, counts)) / counts.sum() for k in g}
    res1, _ = _run(tmp_path / "one", rounds=1)
    for k in g:
        np.testing.assert_allclose(res1["arrays"][k], avg[k], rtol=1e-5, atol=1e-6)


def test_resume_continues_the_saved_run(tmp_path, shards):
    with pytest.raises(InvalidArgumentError, match="nothing to resume"):
        _run(tmp_path, rounds=1, resume=True)
    _run(tmp_path, rounds=1)
    res, log = _run(tmp_path, rounds=1, resume=True)
    assert [r for r, _, _ in res["history"]] == [1, 2] and "round 2/2" in log
    straight, _ = _run(tmp_path / "straight", rounds=2)
    for k, v in straight["arrays"].items():  # same seeds per absolute round: the same model
        np.testing.assert_array_equal(res["arrays"][k], v)


def test_fedprox_and_fedadam(tmp_path, shards):
    avg, _ = _run(tmp_path / "avg", rounds=1)
    prox, log = _run(tmp_path / "prox", strategy="fedprox", rounds=1, mu=1.0)
    adam, _ = _run(tmp_path / "adam", strategy="fedadam", rounds=1, server_lr=0.01)
    g = T.initial_parameters(TASK)

    def dist(p):
        return np.sqrt(sum(float(((p[k] - g[k]) ** 2).sum()) for k in g))

    assert 0 < dist(prox["arrays"]) < 0.9 * dist(avg["arrays"])  # the term holds clients back
    # FedAdam: the server takes an Adam step of size ~eta per coordinate from the global model
    step = max(float(np.abs(adam["arrays"][k] - g[k]).max()) for k in g)
    assert 0.005 < step < 0.0125
    with pytest.raises(InvalidArgumentError, match="mu"):
        _run(tmp_path / "bad", strategy="fedprox", rounds=1, mu=0.0)


def test_failing_client_is_dropped_and_mismatch_named(tmp_path, shards):
    def trainer(task, data, params, **kw):
        if kw["client"] == 1:
            raise RuntimeError("battery died")
        if kw["client"] == 2:  # this device was given another model (LeNet-5: 32x32 inputs)
            return T.train_round(T.Task(model="lenet5"), data, params, **kw)
        return T.train_round(task, data, params, **kw)

    res, log = _run(tmp_path, rounds=2, trainer=trainer)
    # both are dropped, every round goes on with client 0, and the server's log says why
    fails = re.findall(r"^round \d/2: .*, 2 client\(s\) failed \((.*)\) \(", log, re.M)
    assert len(fails) == 2, log
    assert "RuntimeError: battery died" in fails[0]
    assert re.search(r"ShapeError: client: (model does not match|parameter '\w+\.\w+' has "
                     r"shape)", fails[0]), fails[0]
    assert res["history"][-1][1] > res["history"][0][1] + 0.2
    g = T.initial_parameters(TASK)
    bad = dict(g, **{"fc1.weight": g["fc1.weight"][:10]})
    with pytest.raises(ShapeError, match="fc1.weight"):
        T.train_round(TASK, shards(0, 3), bad, lr=0.1, steps=1)
    with pytest.raises(ShapeError, match="conv9.weight"):
        T.train_round(TASK, shards(0, 3), dict(g, **{"conv9.weight": g["fc1.bias"]}), lr=0.1,
                      steps=1)


def test_failed_save_keeps_the_last_round(tmp_path, shards, monkeypatch):
    """A save of the global model that fails (here: a full disk, the C writer's fault hook)
    stops the server with the cause named; the files of the last saved round stay whole, and
    the run resumes from them."""
    import errno

    from edgetrain.errors import ModelIOError

    _run(tmp_path, rounds=1)
    saved = {f: (tmp_path / f).read_bytes() for f in ("global.etm", "federate.json")}
    monkeypatch.setenv("EDGETRAIN_SAVE_FAULT", f"write:{errno.ENOSPC}:global.etm")
    with pytest.raises(ModelIOError, match="the disk is full.*unchanged"):
        _run(tmp_path, rounds=1, resume=True)
    assert {f: (tmp_path / f).read_bytes() for f in saved} == saved
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
    monkeypatch.delenv("EDGETRAIN_SAVE_FAULT")
    res, log = _run(tmp_path, rounds=1, resume=True)
    assert [r for r, _, _ in res["history"]] == [1, 2] and "round 2/2" in log


@pytest.mark.slow
def test_ten_dirichlet_clients_reach_98_percent(tmp_path):
    """Issue 16: 10 clients, Dirichlet(0.5) label skew over all of MNIST's training set, LeNet,
    FedAvg, 1 local epoch per round: >= 98.0 % central test accuracy (full test set) within 20
    rounds. Runs in blocks of 4 rounds, each resuming the last (bit for bit the uninterrupted
    run, see test_resume_continues_the_saved_run), and stops at the first block that gets
    there (measured: 98.10 % at round 6, 98.44 % at round 8; docs/federated.md)."""
    _flwr()
    from edgetrain.federated.simulation import run_federation

    acc = []
    for block in range(5):
        res = run_federation(T.Task(), DATA, clients=10, rounds=4, out_dir=str(tmp_path),
                             partition_spec="dirichlet:0.5", local_epochs=1, resume=block > 0,
                             backend="inprocess", stream=open(os.devnull, "w"))
        acc += [a for r, a, _ in res["history"] if r > len(acc)]  # not the resumed round
        if max(acc) >= 0.980:
            break
    assert max(acc) >= 0.980, acc
    assert (tmp_path / "federate.csv").read_text().count("\n") == len(acc) + 2  # header, round 0


@pytest.mark.slow
def test_fedprox_beats_fedavg_under_the_papers_straggler_protocol(tmp_path):
    """Issue 16: FedProx beats FedAvg on 2-classes-per-client shards at the same round count,
    in the FedProx paper's setting (section 5.1): 90 % of the clients of a round are
    stragglers that finish a random part of their 50 local steps; FedAvg drops their work,
    FedProx aggregates it with mu = 0.1. Measured (docs/federated.md, section f): round 6
    FedAvg 20.2 %, FedProx 71.0 %. The gain is the partial work: mu = 0 keeping it does as
    well (the same table), so this is not a claim for the proximal term itself."""
    _flwr()
    from edgetrain.federated.simulation import Stragglers, run_federation

    task = T.Task(batch_size=32, lr=0.1, threads=1, seed=0)
    acc = {}
    for strat, mu in (("fedavg", 0.0), ("fedprox", 0.1)):
        res = run_federation(task, DATA, clients=10, rounds=6, out_dir=str(tmp_path / strat),
                             partition_spec="classes:2", strategy=strat, mu=mu,
                             backend="inprocess", train_limit=5000, test_limit=2000,
                             stream=open(os.devnull, "w"),
                             trainer=Stragglers(50, 0.9, drop=strat == "fedavg"))
        acc[strat] = [a for _, a, _ in res["history"]]
    assert acc["fedavg"][0] == acc["fedprox"][0]  # the same initial model
    assert acc["fedprox"][-1] >= acc["fedavg"][-1] + 0.30, acc
    assert acc["fedprox"][-1] >= 0.60, acc


# ---- the et_train device client --------------------------------------------------------------
def _make(target):
    proc = subprocess.run(["make", "-s", "-C", str(ROOT / "android"), f"TARGET={target}", "all"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(ROOT / "android" / "build" / target / "et_train")


def _arm64():
    missing = [t for t in ("aarch64-linux-gnu-gcc", "qemu-aarch64-static") if not shutil.which(t)]
    if missing:
        if REQUIRE_ARM64:
            pytest.fail(f"{missing} not found but EDGETRAIN_REQUIRE_ARM64=1")
        pytest.skip(f"{missing} not found (apt-get install gcc-aarch64-linux-gnu qemu-user-static)")
    return _make("aarch64")


def test_device_client_round_on_qemu_matches_python(tmp_path, shards):
    from edgetrain.cli_federate import MixedTrainer
    from edgetrain.federated.device import DeviceTrainer, LocalTransport

    task = T.Task(batch_size=8, lr=0.05, threads=1)
    from edgetrain.federated.simulation import MnistShards
    sh = MnistShards(DATA, task, "iid", 3, seed=0, limit=300)
    g = T.initial_parameters(task)
    kw = dict(lr=0.05, prox_mu=0.1, steps=3, server_round=2, client=0)
    py, _ = T.train_round(task, sh(0, 3), g, **kw)
    host = DeviceTrainer(LocalTransport(_make("host"), workdir=str(tmp_path / "host")), sh.raw)
    arm = DeviceTrainer(LocalTransport(_arm64(), ["qemu-aarch64-static"],
                                       workdir=str(tmp_path / "arm")), sh.raw)
    for dev in (host, arm):
        upd, m = dev(task, sh(0, 3), g, **kw)
        assert m["steps"] == 3 and m["num-examples"] == 100
        for k in g:  # the same update as the Python client, bit for bit (x86 and arm64)
            np.testing.assert_array_equal(upd[k], py[k], err_msg=k)
        assert any(not np.array_equal(upd[k], g[k]) for k in g)
    assert "isa neon" in arm.last_output

    # a Flower round: two Python clients and the arm64 device client
    from edgetrain.federated.apps import client_app, server_app
    from edgetrain.federated.grid import InProcessGrid
    from flwr.app import Context, RecordDict

    results, lines = [], []

    class Stream:
        write = lines.append

        def flush(self):
            pass

    server = server_app(task, lambda: T.Evaluator(task, sh(1, 3)), num_clients=3, rounds=1,
                        out_dir=str(tmp_path / "out"), local_steps=3, stream=Stream(),
                        results=results)
    client = client_app(task, sh, MixedTrainer(arm))
    server(InProcessGrid(client, 3), Context(1, 0, {}, RecordDict(), {}))
    ups = [T.train_round(task, sh(i, 3), g, lr=task.lr, steps=3, server_round=1, client=i)[0]
           for i in range(3)]
    for k in g:
        np.testing.assert_allclose(results[0]["arrays"][k], sum(u[k] for u in ups) / 3,
                                   rtol=1e-5, atol=1e-6)
    assert "failed" not in "".join(lines)


# ---- the command line on Flower's simulation runtime ---------------------------------------
def test_cli_federate_on_ray(tmp_path):
    _flwr()
    pytest.importorskip("ray") if not os.environ.get("CI") else None
    out = tmp_path / "fed"
    cmd = [sys.executable, "-m", "edgetrain", "federate", "--clients", "3", "--rounds", "2",
           "--partition", "dirichlet:0.5", "--data", DATA, "--model", "lenet",
           "--local-steps", "10", "--train-limit", "1500", "--test-limit", "500",
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = re.findall(r"^round (\d)/2: .*test accuracy ([\d.]+)%", proc.stdout, re.M)
    assert [r for r, _ in lines] == ["0", "1", "2"], proc.stdout
    assert float(lines[2][1]) > float(lines[0][1]) + 20
    csv = (out / "federate.csv").read_text().splitlines()
    assert csv[0].startswith("step,loss") and len(csv) == 4
    assert (out / "federate.png").read_bytes()[:4] == b"\x89PNG"
    assert et.TrainSession.load(out / "global.etm").get_parameters()
    bad = subprocess.run(cmd[:-2] + ["--partition", "shards:3", "--out", str(out)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "unknown partition" in bad.stderr


def test_core_imports_without_flower():
    code = ("import sys, edgetrain, edgetrain.cli, edgetrain.federated, edgetrain.federated.task; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('flwr', 'ray')], 'flwr'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_device_errors_are_clear(tmp_path):
    from edgetrain.errors import DeviceError
    from edgetrain.federated.device import DeviceTrainer, LocalTransport

    with pytest.raises(InvalidArgumentError, match="et_train binary not found"):
        LocalTransport(str(tmp_path / "missing"))
    fake = tmp_path / "et_train"
    fake.write_text("#!/bin/sh\necho 'et_train: error: cannot read round.etm' >&2\nexit 3\n")
    fake.chmod(0o755)
    task = T.Task(batch_size=4)
    raw = (np.zeros((8, 28, 28), np.uint8), np.arange(8) % 10)
    dev = DeviceTrainer(LocalTransport(str(fake), workdir=str(tmp_path / "d")), lambda pid: raw)
    with pytest.raises(DeviceError, match="exited with 3: et_train: error: cannot read"):
        dev(task, None, T.initial_parameters(task), lr=0.1, steps=1)


# ---- FedAdam's resumable server state, SecAgg+, differential privacy ---------------------------
def test_fedadam_resume_restores_server_moments(tmp_path, shards):
    straight, _ = _run(tmp_path / "straight", strategy="fedadam", rounds=2, server_lr=0.01)
    _run(tmp_path / "split", strategy="fedadam", rounds=1, server_lr=0.01)
    assert (tmp_path / "split" / "federate_opt.npz").stat().st_size > 0
    resumed, log = _run(tmp_path / "split", strategy="fedadam", rounds=1, server_lr=0.01,
                        resume=True)
    assert "round 2/2" in log
    for k, v in straight["arrays"].items():  # moments and bias correction of round 2 restored
        np.testing.assert_array_equal(resumed["arrays"][k], v)
    # without the moments, round 2 would start Adam afresh: a different model
    (tmp_path / "split").rename(tmp_path / "fresh")
    import json
    state = json.loads((tmp_path / "fresh" / "federate.json").read_text())
    state["round"] = 1
    (tmp_path / "fresh" / "federate.json").write_text(json.dumps(state))
    (tmp_path / "fresh" / "federate_opt.npz").unlink()
    with pytest.raises(InvalidArgumentError, match="federate_opt.npz, which is missing"):
        _run(tmp_path / "fresh", strategy="fedadam", rounds=1, server_lr=0.01, resume=True)


def test_secagg_gives_the_fedavg_aggregate(tmp_path, shards):
    plain, _ = _run(tmp_path / "plain", rounds=1)
    sec, log = _run(tmp_path / "sec", rounds=2, secagg=True)
    assert "SecAgg+ among 3 clients" in log and "failed" not in log
    one, _ = _run(tmp_path / "sec1", rounds=1, secagg=True)
    diff = max(float(np.abs(one["arrays"][k] - plain["arrays"][k]).max()) for k in plain["arrays"])
    # SecAgg+ quantizes [-8, 8] to 2**22 levels (and the weights to 1/1000 steps): close to,
    # but not bit-equal to, the plain weighted mean
    assert 0 < diff < 1e-4, diff
    acc = [a for _, a, _ in sec["history"]]
    assert acc[2] > acc[0] + 0.4 and acc[2] > acc[1], acc
    assert et.TrainSession.load(tmp_path / "sec" / "global.etm").get_parameters()
    with pytest.raises(InvalidArgumentError, match="fedavg or fedprox"):
        _run(tmp_path / "bad", rounds=1, secagg=True, strategy="fedadam")
    with pytest.raises(InvalidArgumentError, match="not supported"):
        _run(tmp_path / "bad", rounds=1, secagg=True, dp_clip=1.0)


def test_dp_clipping_bounds_the_update_and_noise_is_as_configured(tmp_path, shards):
    g = T.initial_parameters(TASK)

    def norm(p):
        return np.sqrt(sum(float(((p[k].astype(np.float64) - g[k]) ** 2).sum()) for k in g))

    plain, _ = _run(tmp_path / "plain", rounds=1)
    assert norm(plain["arrays"]) > 0.6  # so a clip at 0.3 is active
    clipped, log = _run(tmp_path / "clip", rounds=1, dp_clip=0.3)
    assert "clipping of each update to L2 norm 0.3" in log
    # each client's update is clipped to 0.3, so is their weighted mean
    assert 0.15 < norm(clipped["arrays"]) <= 0.3 + 1e-5, norm(clipped["arrays"])
    # a client's own update, through the ClientApp with Flower's fixedclipping_mod
    from flwr.app import ConfigRecord, RecordDict
    from flwr.app.message_type import MessageType
    from edgetrain.federated.apps import client_app, client_mods, from_record, to_record
    from edgetrain.federated.grid import InProcessGrid

    app = client_app(TASK, shards, mods=client_mods(dp=True))
    grid = InProcessGrid(app, 3)
    msg = grid.create_message(RecordDict({"arrays": to_record(g), "config": ConfigRecord(
        {"lr": 0.05, "local-epochs": 1, "round": 1, "clipping_norm": 0.25})}),
        MessageType.TRAIN, list(grid.get_node_ids())[0], "1")
    reply = grid.send_and_receive([msg])[0]
    assert not reply.has_error(), reply.error if reply.has_error() else ""
    np.testing.assert_allclose(norm(from_record(reply.content["arrays"])), 0.25, rtol=1e-4)

    noisy, log = _run(tmp_path / "noise", rounds=1, dp_clip=0.3, dp_noise=2.0)
    assert "noise multiplier 2 (std 0.2 on the aggregate of 3 clients)" in log
    d = np.concatenate([(noisy["arrays"][k] - clipped["arrays"][k]).ravel() for k in g])
    assert abs(float(d.std()) - 2.0 * 0.3 / 3) < 0.01 and abs(float(d.mean())) < 0.01
    with pytest.raises(InvalidArgumentError, match="needs a clipping norm"):
        _run(tmp_path / "bad", rounds=1, dp_noise=1.0)


def test_cli_federate_privacy_flags(tmp_path):
    _flwr()
    base = [sys.executable, "-m", "edgetrain", "federate", "--clients", "3", "--rounds", "1",
            "--data", DATA, "--local-steps", "5", "--train-limit", "900", "--test-limit", "200",
            "--backend", "inprocess"]
    proc = subprocess.run(base + ["--dp-clip", "1.0", "--dp-noise", "0.1", "--out",
                                  str(tmp_path / "dp")], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "L2 norm 1, Gaussian noise multiplier 0.1" in proc.stdout
    proc = subprocess.run(base + ["--secagg", "--out", str(tmp_path / "sa")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SecAgg+ among 3 clients" in proc.stdout and (tmp_path / "sa" / "global.etm").exists()
    bad = subprocess.run(base + ["--secagg", "--strategy", "fedadam"], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "fedavg or fedprox" in bad.stderr
