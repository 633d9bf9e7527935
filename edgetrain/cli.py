"""The ``edgetrain`` command: train, eval, export and info.

::

    edgetrain train lenet --data data/mnist --epochs 2 --out lenet.etm
    edgetrain train lenet5 --iterations 3000 --batch-size 32 --optimizer adam --lr 1e-3
    edgetrain train lenet --resume lenet.ckpt.etm --epochs 4 --out lenet.etm
    edgetrain eval lenet.etm --data data/mnist
    edgetrain export lenet.etm --inference-only -o lenet_infer.etm
    edgetrain info lenet.etm

``--epochs`` and ``--iterations`` are totals: a run resumed from a checkpoint continues the step
and epoch counters and stops at the same target, on the same data order as an uninterrupted run.
Errors (missing data, corrupt model, bad argument values) print one line to stderr and exit with
status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

import numpy as np

EXIT_ERROR = 2
MODEL_CHOICES = ("lenet", "lenet5", "mobilenetv1", "mobilenetv2")
# image side each model is trained at on MNIST (LeNet-5 gets MNIST padded by 2, as MindSpore's)
MODEL_IMAGE_SIZE = {"lenet": 28, "lenet5": 32, "mobilenetv1": 28, "mobilenetv2": 28}


class CLIError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


def default_data_dir() -> Optional[str]:
    """The repository's ``data/mnist`` (a fresh clone trains without ``--data``)."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "mnist")
    return here if os.path.isdir(here) else None


# ---------------------------------------------------------------- argument parsing

def _int_at_least(lo: int, what: str):
    """An argparse type: an integer >= lo."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "an integer >= 0")


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgetrain",
                                description="Train, evaluate and inspect edgetrain models.")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train a model on MNIST",
                       description="Train a model on MNIST with the C runtime.")
    t.add_argument("model", choices=MODEL_CHOICES, help="model to train")
    t.add_argument("--data", default=None,
                   help="MNIST folder (IDX files flat, or in train/ and test/); "
                        "default: the repository's data/mnist")
    t.add_argument("--epochs", type=_positive_int, default=None,
                   help="train until this many epochs are done (default 1)")
    t.add_argument("--iterations", type=_positive_int, default=None,
                   help="train until this many steps are done (instead of --epochs)")
    t.add_argument("--batch-size", type=_positive_int, default=None,
                   help="training batch size (default 64; a resumed run keeps the checkpoint's)")
    t.add_argument("--test-batch-size", type=_positive_int, default=None,
                   help="evaluation batch size (default: the training batch size)")
    t.add_argument("--threads", type=_positive_int, default=None,
                   help="runtime threads (default: all cores)")
    t.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    t.add_argument("--lr", type=_nonneg_float, default=None,
                   help="learning rate (default 0.01 for sgd, 0.001 for adam)")
    t.add_argument("--momentum", type=_nonneg_float, default=0.9, help="SGD momentum / Adam beta1")
    t.add_argument("--lr-schedule", choices=("constant", "inv", "cosine"), default="cosine",
                   help="learning-rate schedule over the whole run, applied by the runtime: "
                        "cosine annealing to 0 (default), MNN/Caffe 'inv' (gamma 1e-4, "
                        "power 0.75) or constant")
    t.add_argument("--weight-decay", type=_nonneg_float, default=5e-4)
    t.add_argument("--seed", type=_nonneg_int, default=0,
                   help="seed for initial weights, data order and dropout")
    t.add_argument("--num-workers", type=_nonneg_int, default=1,
                   help="data loader threads (0: load in the training thread)")
    t.add_argument("--checkpoint-every", type=_nonneg_int, default=0, metavar="STEPS",
                   help="save <out stem>.ckpt.etm every STEPS steps (0: never)")
    t.add_argument("--resume", default=None, metavar="CKPT",
                   help="continue from a checkpoint (steps, epochs, optimizer state)")
    t.add_argument("--out", default="model.etm",
                   help="trained model; <stem>.png and <stem>.csv hold the training curve")
    t.add_argument("--log-every", type=_positive_int, default=100, metavar="STEPS",
                   help="progress line interval when stdout is not a terminal")
    t.add_argument("--no-eval", action="store_true", help="skip the per-epoch test accuracy")
    t.add_argument("--limit", type=_positive_int, default=None, help=argparse.SUPPRESS)

    e = sub.add_parser("eval", help="test accuracy of a model on MNIST")
    e.add_argument("model_file", metavar="MODEL.etm")
    e.add_argument("--data", default=None, help="MNIST folder (default: data/mnist)")
    e.add_argument("--batch-size", type=_positive_int, default=None,
                   help="evaluation batch size (default: the model's planned batch)")
    e.add_argument("--threads", type=_positive_int, default=None)
    e.add_argument("--limit", type=_positive_int, default=None, help=argparse.SUPPRESS)

    x = sub.add_parser("export", help="re-save a model, e.g. for inference only")
    x.add_argument("model_file", metavar="MODEL.etm")
    x.add_argument("-o", "--output", required=True, metavar="OUT.etm")
    x.add_argument("--inference-only", action="store_true",
                   help="keep only the eval program and weights (BatchNorm folded)")

    i = sub.add_parser("info", help="layers, parameters, programs and planned memory")
    i.add_argument("model_file", metavar="MODEL.etm")
    add_federate_parser(sub)
    return p


# ---------------------------------------------------------------- helpers

def _import_edgetrain():
    try:
        import edgetrain
        return edgetrain
    except ImportError as e:
        raise CLIError(f"cannot load edgetrain's runtime: {e}") from None


def _data_dir(path: Optional[str]) -> str:
    if path is None:
        path = default_data_dir()
        if path is None:
            raise CLIError("no --data given and the repository's data/mnist is not present")
    if not os.path.isdir(path):
        raise CLIError(f"{path}: data folder not found")
    return path


def _load_session(path: str, threads: Optional[int]):
    et = _import_edgetrain()
    if not os.path.exists(path):
        raise CLIError(f"{path}: model file not found")
    if os.path.isdir(path):
        raise CLIError(f"{path}: is a folder, not a model file")
    return et.TrainSession.load(path, threads=threads)


def prepare_output(path: str, flag: str = "--out") -> None:
    """Create the folder of ``path`` and check that files can be written there, before any
    training: a run must never end with a model it cannot save."""
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CLIError(f"{flag} {path}: is a folder; give a file name such as {path}/model.etm")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise CLIError(f"{flag} {path}: cannot create the folder {folder}: "
                       f"{e.strerror or e}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".edgetrain-probe-"):
            pass
    except OSError as e:
        raise CLIError(f"{flag} {path}: cannot write in the folder {folder}: "
                       f"{e.strerror or e}") from None


def _stem(path: str) -> str:
    root, ext = os.path.splitext(path)
    return root if ext == ".etm" else path


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024.0
    return str(n)


def _planned_shape(sess, name: str):
    shapes = sess.input_shapes()
    if name not in shapes:
        raise CLIError(f"the model has no input named {name!r} (inputs: {', '.join(shapes)})")
    return tuple(shapes[name])


def _resize(sess, batch: int, image_shape) -> None:
    """Re-plan for ``batch`` images (and labels, when the model has a label input)."""
    from .errors import EdgetrainError

    data = (batch,) + tuple(image_shape)
    try:
        sess.Resize({"data": data, "label": (batch,)})
    except EdgetrainError:  # an inference-only model has no label tensor
        sess.Resize({"data": data})


def evaluate(sess, dataset, batch_size: int, restore_train: bool = False) -> float:
    """Accuracy of ``sess`` on ``dataset`` in batches of ``batch_size``; the last partial batch is
    run after a ``Resize``. Restores the planned shapes (and the train program) afterwards."""
    from .data import DataLoader

    sess.Eval()
    planned = _planned_shape(sess, "data")
    feed_label = "label" in sess.input_shapes()
    image_shape = tuple(planned[1:])
    correct = total = 0
    current = planned[0]
    try:
        for x, y in DataLoader(dataset, batch_size=batch_size):
            if x.shape[1:] != image_shape:
                raise CLIError(f"the model expects images of shape {list(image_shape)}, "
                               f"the data has {list(x.shape[1:])}")
            if len(x) != current:
                _resize(sess, len(x), image_shape)
                current = len(x)
            feeds = {"data": x, "label": y} if feed_label else {"data": x}
            logits = sess.RunGraph(feeds)["output"]
            correct += int(np.sum(np.argmax(logits, axis=1) == y))
            total += len(y)
    finally:
        if current != planned[0]:
            _resize(sess, planned[0], image_shape)
        if restore_train:
            sess.Train()
    return correct / max(total, 1)


class Progress:
    """One status line: ``\\r``-rewritten on a terminal, a printed line every ``log_every`` steps
    otherwise."""

    def __init__(self, stream, log_every: int):
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.log_every = log_every
        self._last_draw = 0.0
        self._width = 0
        self.reset_window()

    def reset_window(self):
        self.win_images = 0
        self.win_start = time.perf_counter()
        self.loss_sum = 0.0
        self.loss_n = 0
        self.correct = 0
        self.seen = 0

    def update(self, step: int, total: int, epoch: int, loss: float, correct: int, n: int,
               force: bool = False):
        self.win_images += n
        self.loss_sum += loss
        self.loss_n += 1
        self.correct += correct
        self.seen += n
        now = time.perf_counter()
        due = (now - self._last_draw >= 0.1) if self.tty else (step % self.log_every == 0)
        if not (due or force):
            return
        ips = self.win_images / max(now - self.win_start, 1e-9)
        text = (f"epoch {epoch + 1} step {step}/{total}  loss {self.loss_sum / self.loss_n:.4f}  "
                f"acc {self.correct / max(self.seen, 1):.4f}  {ips:,.0f} img/s")
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._last_draw = now
        # the loss/acc shown are means since the previous line; the speed too
        self.win_images = 0
        self.win_start = now
        self.loss_sum, self.loss_n, self.correct, self.seen = 0.0, 0, 0, 0

    def line(self, text: str):
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()


# ---------------------------------------------------------------- commands

def cmd_train(args, out=None) -> int:
    out = out or sys.stdout
    et = _import_edgetrain()
    from . import nn, optim
    from .data import DataLoader, MnistDataset
    from .models import get_model
    from .plot import Curve, plot_curve, read_csv, write_csv

    data_dir = _data_dir(args.data)
    if args.epochs is not None and args.iterations is not None:
        raise CLIError("give --epochs or --iterations, not both")
    size = MODEL_IMAGE_SIZE[args.model]
    pad = (size - 28) // 2
    train_ds = MnistDataset(data_dir, train=True, pad=pad, limit=args.limit)
    test_ds = None if args.no_eval else MnistDataset(data_dir, train=False, pad=pad,
                                                      limit=args.limit)
    prepare_output(args.out)  # model, checkpoint and curve all go next to --out
    stem = _stem(args.out)
    ckpt_path = stem + ".ckpt.etm"
    curve = Curve()

    if args.resume:
        sess = _load_session(args.resume, args.threads)
        planned = _planned_shape(sess, "data")
        if tuple(planned[1:]) != (1, size, size):
            raise CLIError(f"{args.resume}: the checkpoint's input is {list(planned[1:])}, "
                           f"{args.model} on MNIST needs [1, {size}, {size}]")
        batch = planned[0]
        if args.batch_size is not None and args.batch_size != batch:
            _resize(sess, args.batch_size, planned[1:])
            batch = args.batch_size
        if args.lr is not None:
            sess.learning_rate = args.lr
        if os.path.exists(stem + ".csv"):
            try:
                curve = read_csv(stem + ".csv")
                curve.truncate(sess.step)
            except (ValueError, KeyError, OSError):
                curve = Curve()
        out.write(f"resumed {args.resume}: step {sess.step}, epoch {sess.epoch}\n")
    else:
        batch = args.batch_size or 64
        nn.init.manual_seed(args.seed)
        num_classes = 10
        if args.model in ("mobilenetv1", "mobilenetv2"):
            model = get_model(args.model, num_classes=num_classes, in_channels=1, input_size=size)
        else:
            model = get_model(args.model, num_classes=num_classes)
        lr = args.lr if args.lr is not None else (0.01 if args.optimizer == "sgd" else 0.001)
        if args.optimizer == "sgd":
            opt = optim.SGD(model.parameters(), lr=lr, momentum=args.momentum,
                            weight_decay=args.weight_decay)
        else:
            opt = optim.Adam(model.parameters(), lr=lr, betas=(args.momentum, 0.999),
                             weight_decay=args.weight_decay)
        sched = _make_schedule(args, opt, len(train_ds) // batch)
        sess = et.TrainSession.from_module(
            model, inputs={"data": (batch, 1, size, size)}, loss=nn.CrossEntropyLoss(),
            labels={"label": ((batch,), "int64")}, optimizer=opt, scheduler=sched,
            threads=args.threads, seed=args.seed)

    if len(train_ds) < batch:
        raise CLIError(f"only {len(train_ds)} training images for a batch of {batch}")
    loader = DataLoader(train_ds, batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=args.num_workers, seed=args.seed)
    steps_per_epoch = len(loader)
    if args.iterations is not None:
        total_steps = args.iterations
    else:
        total_steps = (args.epochs or 1) * steps_per_epoch
    test_batch = args.test_batch_size or batch

    progress = Progress(out, args.log_every)
    sess.Train()
    out.write(f"training {args.model} on {len(train_ds)} images ({steps_per_epoch} steps of "
              f"{batch} per epoch) to step {total_steps}, lr {sess.learning_rate:g}, "
              f"threads {sess.threads}\n")
    out.flush()
    step = sess.step
    epoch_start = time.perf_counter()
    try:
        while step < total_steps:
            epoch, start = divmod(step, steps_per_epoch)
            batches = loader.iter_epoch(epoch, start=start)
            try:
                for x, y in batches:
                    result = sess.RunGraph({"data": x, "label": y})
                    before, step = step, sess.step
                    if step == before:  # runtimes that do not count steps themselves
                        step = before + 1
                        sess.step = step
                    loss = float(result["loss"])
                    if not np.isfinite(loss):
                        raise CLIError(f"the loss became {loss} at step {step}; "
                                       f"try a lower --lr")
                    correct = int(np.sum(np.argmax(result["output"], axis=1) == y))
                    curve.add_step(step, loss, correct / len(y))
                    progress.update(step, total_steps, epoch, loss, correct, len(y),
                                    force=step == total_steps)
                    epoch_done = step % steps_per_epoch == 0
                    if epoch_done:
                        sess.epoch = step // steps_per_epoch
                    if args.checkpoint_every and step % args.checkpoint_every == 0:
                        sess.SaveToFile(ckpt_path)
                    if epoch_done or step == total_steps:
                        _end_of_epoch(sess, args, progress, curve, test_ds, test_batch, step,
                                      steps_per_epoch, epoch_start, epoch_done)
                        epoch_start = time.perf_counter()
                    if step >= total_steps:
                        break
            finally:
                batches.close()
    except KeyboardInterrupt:
        progress.line(f"interrupted at step {step}; saving {ckpt_path}")
        sess.SaveToFile(ckpt_path)
        raise

    sess.SaveToFile(args.out)
    write_csv(stem + ".csv", curve)
    backend = plot_curve(stem + ".png", curve, title=f"edgetrain {args.model}")
    progress.line(f"saved {args.out} (step {sess.step}, epoch {sess.epoch}); curve in "
                  f"{stem}.png ({backend}) and {stem}.csv")
    return 0


def _end_of_epoch(sess, args, progress, curve, test_ds, test_batch, step, steps_per_epoch,
                  epoch_start, epoch_done):
    seconds = time.perf_counter() - epoch_start
    label = f"epoch {step // steps_per_epoch}" if epoch_done else f"step {step}"
    if test_ds is None:
        progress.line(f"{label} done in {seconds:.1f} s")
        return
    t = time.perf_counter()
    acc = evaluate(sess, test_ds, test_batch, restore_train=True)
    curve.add_epoch(step, step // steps_per_epoch if epoch_done else step / steps_per_epoch, acc)
    progress.line(f"{label}: test accuracy {acc:.4f} on {len(test_ds)} images; "
                  f"train {seconds:.1f} s, test {time.perf_counter() - t:.1f} s")


def cmd_eval(args, out=None) -> int:
    out = out or sys.stdout
    from .data import MnistDataset

    data_dir = _data_dir(args.data)
    sess = _load_session(args.model_file, args.threads)
    planned = _planned_shape(sess, "data")
    if len(planned) != 4 or planned[1] != 1 or planned[2] != planned[3] or planned[2] < 28:
        raise CLIError(f"{args.model_file}: input shape {list(planned)} is not an MNIST image "
                       f"batch [N, 1, S, S] with S >= 28")
    ds = MnistDataset(data_dir, train=False, pad=(planned[2] - 28) // 2, limit=args.limit)
    t = time.perf_counter()
    acc = evaluate(sess, ds, args.batch_size or planned[0])
    correct = int(round(acc * len(ds)))
    out.write(f"test accuracy: {acc:.4f} ({correct}/{len(ds)}) in "
              f"{time.perf_counter() - t:.2f} s\n")
    return 0


def cmd_export(args, out=None) -> int:
    out = out or sys.stdout
    sess = _load_session(args.model_file, 1)
    if os.path.abspath(args.output) == os.path.abspath(args.model_file):
        raise CLIError("the output would overwrite the input model; choose another -o")
    prepare_output(args.output, "-o")
    sess.SaveToFile(args.output, inference_only=args.inference_only)
    kind = "inference-only" if args.inference_only else "full training state"
    out.write(f"wrote {args.output} ({kind}, {os.path.getsize(args.output):,} bytes)\n")
    return 0


def _programs(sess) -> List[str]:
    progs = getattr(sess, "programs", None)
    if progs is not None:
        return list(progs() if callable(progs) else progs)
    native = getattr(sess, "_s", None)
    if native is not None and hasattr(native, "has_program"):
        return [p for p in ("eval", "grad", "train") if native.has_program(p)]
    return []


def cmd_info(args, out=None) -> int:
    out = out or sys.stdout
    sess = _load_session(args.model_file, 1)
    params = sess.get_parameters(include_buffers=False)
    trainable = set(sess.trainable_parameters())
    n_params = sum(int(v.size) for v in params.values())
    n_train = sum(int(v.size) for k, v in params.items() if k in trainable)
    programs = _programs(sess)
    lines = [f"model: {args.model_file} ({os.path.getsize(args.model_file):,} bytes)",
             f"inputs: " + ", ".join(f"{k} {list(v)}" for k, v in sess.input_shapes().items()),
             f"outputs: {', '.join(sess.output_names)}",
             f"programs: {', '.join(programs) or '?'}",
             f"parameters: {n_params:,} ({n_train:,} trainable) in {len(params)} tensors",
             f"step {sess.step}, epoch {sess.epoch}"]
    if "train" in programs:  # inference-only files have no optimizer
        lines.append(f"learning rate: {sess.learning_rate:g}")
    mem = sess.memory_info()
    lines.append("planned memory: " + ", ".join(f"{k} {_human_bytes(int(v))}"
                                                 for k, v in mem.items()))
    lines.append("")
    lines.append(sess.summary().rstrip())
    out.write("\n".join(lines) + "\n")
    return 0


from .cli_federate import add_federate_parser, cmd_federate  # noqa: E402 (Flower: lazily)

COMMANDS = {"train": cmd_train, "eval": cmd_eval, "export": cmd_export, "info": cmd_info,
            "federate": cmd_federate}


def _user_errors():
    """Exceptions that are the user's (data, files, arguments), reported without a traceback."""
    errors = [CLIError, OSError, ValueError]
    try:
        from .errors import EdgetrainError
        errors.append(EdgetrainError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _one_line(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    text = " ".join(text.split())
    return text or type(e).__name__


def _make_schedule(args, opt, steps_per_epoch: int):
    """The --lr-schedule over the run's planned steps (stored in the model file)."""
    from . import optim

    if args.lr_schedule == "inv":
        return optim.lr_scheduler.InvLR(opt, gamma=1e-4, power=0.75)
    if args.lr_schedule == "cosine":
        total = args.iterations or (args.epochs or 1) * max(1, steps_per_epoch)
        return optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0.0)
    return None


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        sys.stderr.write("edgetrain: interrupted\n")
        return 130
    except _user_errors() as e:
        if args.debug:
            raise
        sys.stdout.flush()
        sys.stderr.write(f"edgetrain {args.command}: error: {_one_line(e)}\n")
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
