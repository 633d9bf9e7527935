"""``edgetrain federate``: federated training of a model on MNIST split among simulated
clients, with Flower (``pip install edgetrain[federated]``).

::

    edgetrain federate --clients 10 --rounds 20 --partition dirichlet:0.5 --data data/mnist \\
        --model lenet
    edgetrain federate --strategy fedprox --mu 0.01 --partition classes:2 --local-epochs 1
    edgetrain federate --rounds 30 --resume --out out/federated   # continue a run
    edgetrain federate --device qemu    # client 0 trains in et_train (arm64 under qemu)
    edgetrain federate --secagg                        # Flower's SecAgg+
    edgetrain federate --dp-clip 1.0 --dp-noise 0.5    # central DP, client-side clipping

Prints one line per round (training loss, central test accuracy) and leaves in ``--out`` the
global model ``global.etm`` (saved every round), ``federate.json`` (for ``--resume``) and the
accuracy curve ``federate.csv`` / ``federate.png``. Flower is imported only here.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

DEVICE_CHOICES = ("local", "qemu", "adb")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_federate_parser(sub) -> None:
    from .cli_inputs import _int_at_least, _nonneg_float

    f = sub.add_parser("federate", help="federated training with Flower (simulated clients)",
                       description="Federated training on MNIST with Flower: each client "
                                   "trains on its own shard, the server aggregates.")
    f.add_argument("--model", default="lenet", choices=("lenet", "lenet5"))
    f.add_argument("--data", default=None, help="MNIST folder (default: data/mnist)")
    f.add_argument("--clients", type=_int_at_least(1, "--clients"), default=10)
    f.add_argument("--rounds", type=_int_at_least(1, "--rounds"), default=20)
    f.add_argument("--partition", default="iid",
                   help="iid, dirichlet:ALPHA or classes:K (default iid)")
    f.add_argument("--strategy", default="fedavg", choices=("fedavg", "fedprox", "fedadam"))
    f.add_argument("--mu", type=_nonneg_float, default=None,
                   help="FedProx proximal weight (default 0.01 with --strategy fedprox)")
    f.add_argument("--local-epochs", type=_int_at_least(1, "--local-epochs"), default=1)
    f.add_argument("--local-steps", type=_int_at_least(0, "--local-steps"), default=0,
                   help="train this many batches per round instead of --local-epochs")
    f.add_argument("--batch-size", type=_int_at_least(1, "--batch-size"), default=32)
    f.add_argument("--lr", type=_nonneg_float, default=0.05, help="client learning rate")
    f.add_argument("--momentum", type=_nonneg_float, default=0.0)
    f.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"))
    f.add_argument("--server-lr", type=_nonneg_float, default=0.01, help="FedAdam's eta")
    f.add_argument("--fraction", type=float, default=1.0,
                   help="fraction of the clients sampled per round")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--backend", default="ray", choices=("ray", "inprocess"),
                   help="Flower's simulation runtime (ray) or the in-process grid")
    f.add_argument("--train-limit", type=_int_at_least(1, "--train-limit"), default=None,
                   help="use the first N training images")
    f.add_argument("--test-limit", type=_int_at_least(1, "--test-limit"), default=None,
                   help="evaluate on the first N test images")
    f.add_argument("--out", default="out/federated", help="output folder")
    f.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    f.add_argument("--secagg", action="store_true",
                   help="secure aggregation with Flower's SecAgg+ (fedavg/fedprox, >= 2 clients)")
    f.add_argument("--dp-clip", type=_nonneg_float, default=0.0,
                   help="differential privacy: clip each client's update to this L2 norm "
                        "(Flower's fixedclipping_mod + client-side fixed clipping wrapper)")
    f.add_argument("--dp-noise", type=_nonneg_float, default=0.0,
                   help="DP noise multiplier (Gaussian noise of std NOISE*CLIP/clients on the "
                        "aggregate; needs --dp-clip)")
    f.add_argument("--device", choices=DEVICE_CHOICES, default=None,
                   help="client 0 trains in et_train: on this machine (local), the arm64 "
                        "build under qemu-aarch64-static (qemu) or a phone over adb")
    f.add_argument("--device-binary", default=None, help="et_train to use with --device")
    f.add_argument("--adb-serial", default=None)


def _et_train_binary(kind: str, given) -> str:
    if given:
        return given
    target = "host" if kind == "local" else "aarch64"
    proc = subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "android"), f"TARGET={target}",
                           "all"], capture_output=True, text=True)
    if proc.returncode != 0:
        from .cli_inputs import CLIError
        raise CLIError(f"building et_train ({target}) failed: {proc.stderr.strip()[-300:]}")
    return os.path.join(ROOT, "android", "build", target, "et_train")


class MixedTrainer:
    """Client ``device_client`` trains on the device, every other one in Python."""

    def __init__(self, device, device_client: int = 0):
        self.device, self.device_client = device, device_client

    def __call__(self, task, data, params, **kw):
        from .federated import task as T

        if kw.get("client") == self.device_client:
            return self.device(task, data, params, **kw)
        return T.train_round(task, data, params, **kw)


def cmd_federate(args, out=None) -> int:
    from .cli_inputs import CLIError, open_source

    out = out or sys.stdout
    try:
        import flwr  # noqa: F401
    except ImportError:
        raise CLIError("edgetrain federate needs Flower: pip install 'edgetrain[federated]'") \
            from None
    if args.backend == "ray" and not _has_ray():
        raise CLIError("the ray backend needs Ray: pip install 'flwr[simulation]' "
                       "(or use --backend inprocess)")
    from .federated import device as D
    from .federated.simulation import MnistShards, run_federation
    from .federated.task import Task

    source = open_source(args.data)
    if source.kind != "mnist":
        raise CLIError(f"--data {source.path}: federate simulates clients on MNIST shards; "
                       f"an {source.kind.replace('folder', 'image folder')} is not supported yet")
    data = source.path
    mu = args.mu if args.mu is not None else (0.01 if args.strategy == "fedprox" else 0.0)
    task = Task(model=args.model, batch_size=args.batch_size, optimizer=args.optimizer,
                lr=args.lr, momentum=args.momentum, seed=args.seed)
    trainer = None
    if args.device:
        binary = _et_train_binary(args.device, args.device_binary)
        if args.device == "adb":
            transport = D.AdbTransport(binary, serial=args.adb_serial)
        else:
            transport = D.LocalTransport(binary, ["qemu-aarch64-static"]
                                         if args.device == "qemu" else [])
        shards = MnistShards(data, task, args.partition, args.clients, args.seed,
                             args.train_limit)
        trainer = MixedTrainer(D.DeviceTrainer(transport, shards.raw))
    from .errors import InvalidArgumentError
    from .federated.apps import check_privacy_options

    try:
        check_privacy_options(args.strategy, args.clients, args.fraction, args.secagg,
                              args.dp_clip, args.dp_noise)
    except InvalidArgumentError as e:
        raise CLIError(str(e)) from None
    out.write(f"federate: {args.clients} clients, {args.partition} partition, "
              f"{args.strategy}{f' (mu {mu:g})' if mu else ''}, {args.rounds} rounds of "
              + (f"{args.local_steps} local steps" if args.local_steps else
                 f"{args.local_epochs} local epoch(s)")
              + f", {args.model}, backend {args.backend}\n")
    out.flush()
    t0 = time.perf_counter()
    res = run_federation(task, data, clients=args.clients, rounds=args.rounds, out_dir=args.out,
                         partition_spec=args.partition, strategy=args.strategy, mu=mu,
                         local_epochs=args.local_epochs, local_steps=args.local_steps,
                         server_lr=args.server_lr, fraction=args.fraction, resume=args.resume,
                         backend=args.backend, train_limit=args.train_limit,
                         test_limit=args.test_limit, stream=out, trainer=trainer,
                         secagg=args.secagg, dp_clip=args.dp_clip, dp_noise=args.dp_noise)
    rnd, acc, _ = res["history"][-1]
    out.write(f"global model after round {rnd}: test accuracy {100 * acc:.2f}% "
              f"({time.perf_counter() - t0:.1f} s); saved {os.path.join(args.out, 'global.etm')}"
              f", curve {os.path.join(args.out, 'federate.png')}\n")
    return 0


def _has_ray() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None
