"""The ``edgetrain`` command: train, eval, predict, export and info.

::

    edgetrain train lenet --data data/mnist --epochs 2 --out lenet.etm
    edgetrain train mobilenetv2 --data shapes/ --val-split 0.2 --image-size 32 --out shapes.etm
    edgetrain train mymodels:small_cnn --data list.txt --image-root images/ --out mine.etm
    edgetrain train lenet.etm --data more_digits/ --out tuned.etm    # fine-tune a saved program
    edgetrain train lenet --resume lenet.ckpt.etm --epochs 4 --out lenet.etm
    edgetrain eval lenet.etm --data data/mnist
    edgetrain predict shapes.etm a.png b.png --top-k 3
    edgetrain export lenet.etm --inference-only -o lenet_infer.etm
    edgetrain train lenet --qat-bits 4,8 --init lenet.etm --out qat.etm   # QAT (docs/int8.md)
    edgetrain export qat.etm --inference-only --int8 -o lenet_int8.etm
    edgetrain info lenet.etm

``--epochs`` and ``--iterations`` are totals: a run resumed from a checkpoint continues the step
and epoch counters and stops at the same target, on the same data order as an uninterrupted run.
Ctrl-C or SIGTERM during training saves a checkpoint and exits with 130 or 143. Errors (missing
data, corrupt model, bad argument values) print one line to stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time
from typing import List, Optional

import numpy as np

from .cli_convert import add_convert_parser, cmd_convert, cmd_info_onnx, is_onnx_file
from .cli_federate import add_federate_parser, cmd_federate
from .cli_inputs import (CLIError, Preprocess, _finite_float, _nonneg_float, _nonneg_int,
                         _positive_float, _positive_int, cli_meta, default_data_dir, image_size_flag, load_session,
                         open_source, programs, read_class_names, read_meta, resolve_model,
                         resolve_preprocess, split_for_validation, qat_bits, init_from_file,
                         META_KEY)

EXIT_ERROR = 2


def _memory_budget(text: str):
    """--memory-budget: BYTES, 'auto' or 'none'."""
    if text.lower() in ("auto", "none"):
        return text.lower()
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a byte count (a positive integer), 'auto' "
                                         f"or 'none', got {text}") from None


def _budget_arg(value):
    """build_graph's memory_budget for --memory-budget (absent: 'auto')."""
    return None if value == "none" else ("auto" if value is None else value)

MODEL_CHOICES = ("lenet", "lenet5", "mobilenetv1", "mobilenetv2")
__all__ = ["main", "CLIError", "default_data_dir", "evaluate", "prepare_output"]


# ---------------------------------------------------------------- argument parsing

def _fraction(text: str) -> float:
    v = _nonneg_float(text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text}")
    return v


def _add_input_flags(p: argparse.ArgumentParser, stored: bool, image_root: bool = True) -> None:
    """--image-root, --channels, --image-size, --mean, --scale (train, eval, predict)."""
    note = " (default: what the model file stores)" if stored else ""
    if image_root:
        p.add_argument("--image-root", default=None, metavar="DIR",
                       help="folder the paths of a list file start from (default: the list "
                            "file's folder)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="1 (gray) or 3 (RGB); default: the model's, else the data's" + note)
    p.add_argument("--image-size", type=_positive_int, nargs="+", default=None, metavar="N",
                   help="input side (or H W); default: the model's, else the first image's"
                        + note)
    p.add_argument("--mean", type=_finite_float, nargs="+", default=None,
                   help="per-channel mean in pixel units 0..255, subtracted first (default: "
                        "MNIST's for MNIST, 127.5 for images)" + note)
    p.add_argument("--scale", type=_finite_float, nargs="+", default=None,
                   help="per-channel factor applied after the mean (default: 1/(255*0.3081) "
                        "for MNIST, 1/127.5 for images)" + note)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgetrain",
                                description="Train, evaluate and inspect edgetrain models.")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _train_parser(sub)

    e = sub.add_parser("eval", help="accuracy of a model on labelled data")
    e.add_argument("model_file", metavar="MODEL.etm")
    e.add_argument("--data", default=None,
                   help="MNIST folder (its test split), image folder or list file "
                        "(default: data/mnist)")
    _add_input_flags(e, stored=True)
    e.add_argument("--batch-size", type=_positive_int, default=None,
                   help="evaluation batch size (default: the model's planned batch)")
    e.add_argument("--threads", type=_positive_int, default=None)
    e.add_argument("--limit", type=_positive_int, default=None, help=argparse.SUPPRESS)

    r = sub.add_parser("predict", help="top classes of single images")
    r.add_argument("model_file", metavar="MODEL.etm")
    r.add_argument("images", nargs="+", metavar="IMAGE")
    r.add_argument("--top-k", type=_positive_int, default=3)
    r.add_argument("--classes", default=None, metavar="NAMES.txt",
                   help="class names, one per line (default: those stored at training)")
    _add_input_flags(r, stored=True, image_root=False)
    r.add_argument("--threads", type=_positive_int, default=None)

    x = sub.add_parser("export", help="re-save a model, e.g. for inference only")
    x.add_argument("model_file", metavar="MODEL.etm")
    x.add_argument("-o", "--output", required=True, metavar="OUT.etm")
    x.add_argument("--inference-only", action="store_true",
                   help="keep only the eval program and weights (BatchNorm folded)")
    x.add_argument("--onnx", action="store_true",
                   help="write the eval program as ONNX (needs the 'onnx' extra)")
    x.add_argument("--int8", action="store_true",
                   help="with --inference-only, for a QAT model: the int8 model (int8 weights, "
                        "the eval program's integer kernels; logits identical to its eval); "
                        "with --onnx: QDQ ONNX that onnxruntime runs with integer kernels")
    x.add_argument("--opset", type=_positive_int, default=17, help="ONNX opset (13-21)")

    i = sub.add_parser("info", help="layers, parameters, programs and planned memory")
    i.add_argument("model_file", metavar="MODEL.etm")
    add_federate_parser(sub)
    add_convert_parser(sub)
    return p


def _qat_output_bits(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if not 2 <= v <= 8:
        raise argparse.ArgumentTypeError(f"expected bits from 2 to 8, got {text!r}")
    return v


def _train_parser(sub) -> None:
    t = sub.add_parser("train", help="train a model",
                       description="Train a model with the C runtime.")
    t.add_argument("model", metavar="MODEL",
                   help=f"a zoo name ({', '.join(MODEL_CHOICES)}), a saved .etm program "
                        f"(fine-tuned from its weights and optimizer state, step counter "
                        f"restarted), or package.module:factory returning an edgetrain.nn.Module")
    t.add_argument("--data", default=None,
                   help="MNIST folder (IDX files), image folder (one sub-folder per class) or "
                        "list file ('path label' lines); default: the repository's data/mnist")
    _add_input_flags(t, stored=False)
    t.add_argument("--val-data", default=None, metavar="PATH",
                   help="held-out data for the per-epoch accuracy (default for MNIST: its test "
                        "split)")
    t.add_argument("--val-split", type=_fraction, default=None, metavar="FRACTION",
                   help="hold out this fraction of --data instead (chosen by --seed)")
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
    t.add_argument("--memory-budget", type=_memory_budget, default=None, metavar="BYTES",
                   help="bound the activation arena of a new model's training program: cheap "
                        "forward segments are recomputed in the backward (same results, more "
                        "time); 'auto' (the default) recomputes BatchNorm / elementwise "
                        "segments within 2%% of the step's work, 'none' keeps every "
                        "activation; 'info' shows the plan")
    t.add_argument("--optimizer", choices=("sgd", "adam", "rmsprop", "adagrad"), default="sgd")
    t.add_argument("--lr", type=_nonneg_float, default=None,
                   help="learning rate (default 0.01 for sgd and adagrad, 0.001 for adam and "
                        "rmsprop)")
    t.add_argument("--momentum", type=_nonneg_float, default=None,
                   help="SGD momentum / Adam beta1 (default 0.9) / RMSprop momentum (default 0)")
    t.add_argument("--clip-grad-norm", type=_positive_float, default=None, metavar="MAX_NORM",
                   help="scale the gradients to a global L2 norm of at most MAX_NORM before "
                        "each update (torch.nn.utils.clip_grad_norm_), inside the program")
    t.add_argument("--accumulate", type=_positive_int, default=None, metavar="K",
                   help="gradient accumulation: one update per K batches (gradients averaged), "
                        "so --batch-size B trains like batch K*B; steps count updates")
    t.add_argument("--lr-schedule", choices=("constant", "inv", "cosine"), default="cosine",
                   help="learning-rate schedule over the whole run, applied by the runtime: "
                        "cosine annealing to 0 (default), MNN/Caffe 'inv' (gamma 1e-4, "
                        "power 0.75) or constant")
    t.add_argument("--weight-decay", type=_nonneg_float, default=5e-4)
    t.add_argument("--seed", type=_nonneg_int, default=0,
                   help="seed for initial weights, data order, validation split and dropout")
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
    t.add_argument("--no-eval", action="store_true", help="skip the per-epoch accuracy")
    t.add_argument("--limit", type=_positive_int, default=None, help=argparse.SUPPRESS)
    t.add_argument("--qat-bits", type=qat_bits, default=None, metavar="W[,A]",
                   help="quantization-aware training: weights fake-quantized per channel to W "
                        "bits, activations per tensor to A bits (default W; 2..8); by default "
                        "the input is quantized too and the logits keep 8 bits (docs/int8.md's "
                        "recipe: the whole model runs in integers after 'export --int8')")
    t.add_argument("--qat-float-input", action="store_true",
                   help="with --qat-bits: leave the model's input float (the first layer keeps "
                        "its float fake-quant simulation, also in the int8 file)")
    t.add_argument("--qat-output-bits", type=_qat_output_bits, default=None, metavar="N",
                   help="with --qat-bits: bits of the last layer's output, the logits (2..8, "
                        "default 8)")
    t.add_argument("--qat-observer", choices=("ema", "minmax"), default=None,
                   help="with --qat-bits: scales from the moving average of min / max (ema, "
                        "default, constant 0.01) or from the running min / max")
    t.add_argument("--qat-observe-until", type=_nonneg_int, default=None, metavar="STEP",
                   help="with --qat-bits: stop the observers at this optimizer step (default: "
                        "never; scales then stay fixed)")
    t.add_argument("--qat-freeze-bn", type=_nonneg_int, default=None, metavar="STEP",
                   help="with --qat-bits: from this step on, Conv2d + BatchNorm2d pairs use "
                        "their running statistics and stop updating them (default: never)")
    t.add_argument("--init", default=None, metavar="MODEL.etm",
                   help="initial weights (and BatchNorm statistics) from a model file, e.g. "
                        "the float model a --qat-bits run starts from")


# ---------------------------------------------------------------- helpers

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
    shapes = {"data": (batch,) + tuple(image_shape)}
    if "label" in sess._names:  # inference-only files have no label tensor
        shapes["label"] = (batch,)
    sess.Resize(shapes)


def _run_eval(sess, batches, stop=None):
    """Run the eval program on each ``(x, y)`` of ``batches``; yield ``(logits, y)``. A smaller
    batch is re-planned by the runtime itself; a batch above the session's ``max_batch`` needs a
    ``Resize``, undone afterwards. Stops early (without error) once ``stop.signum`` is set."""
    sess.Eval()
    planned = _planned_shape(sess, "data")
    image_shape = tuple(planned[1:])
    resized = False
    try:
        for x, y in batches:
            if stop is not None and stop.signum:
                return
            if x.shape[1:] != image_shape:
                raise CLIError(f"the model expects images of shape {list(image_shape)}, "
                               f"the data has {list(x.shape[1:])}")
            if len(x) > sess.max_batch:
                _resize(sess, len(x), image_shape)
                resized = True
            yield sess.RunGraph({"data": x})["output"], y
    finally:
        if resized:
            _resize(sess, planned[0], image_shape)


def evaluate_counts(sess, dataset, batch_size: int, num_classes: int, stop=None):
    """``(correct, total)`` per class of ``sess`` on ``dataset``; None if ``stop`` fired."""
    from .data import DataLoader

    correct = np.zeros(num_classes, np.int64)
    total = np.zeros(num_classes, np.int64)
    for logits, y in _run_eval(sess, DataLoader(dataset, batch_size=batch_size), stop):
        if y.size and int(y.max()) >= num_classes:
            raise CLIError(f"label {int(y.max())} in the data, but the model has only "
                           f"{num_classes} classes")
        np.add.at(total, y, 1)
        np.add.at(correct, y[np.argmax(logits, axis=1) == y], 1)
    if stop is not None and stop.signum:
        return None
    return correct, total


def evaluate(sess, dataset, batch_size: int, restore_train: bool = False, stop=None):
    """Accuracy of ``sess`` on ``dataset`` in batches of ``batch_size`` (None if ``stop`` fired
    first); with ``restore_train`` the train program is selected again afterwards."""
    try:
        counts = evaluate_counts(sess, dataset, batch_size, _num_outputs(sess), stop)
    finally:
        if restore_train:
            sess.Train()
    return None if counts is None else counts[0].sum() / max(counts[1].sum(), 1)


def _num_outputs(sess) -> int:
    """Width of the model's ``output`` (its class count)."""
    return int(sess._s.info(sess._s.outputs()["output"])["shape"][-1])


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
        self.reset_window()
        self.win_start = now

    def line(self, text: str):
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()


class Interrupted(Exception):
    """Training stopped by a signal; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class StopSignals:
    """While training: SIGINT (Ctrl-C) and SIGTERM (what phones and job schedulers send) only set
    ``signum``; the loop checks it between steps, so the checkpoint it then saves holds a whole
    step. A second Ctrl-C raises KeyboardInterrupt at once."""

    NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}

    def __init__(self):
        self.signum = 0
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.NAMES:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        return False

    def _handle(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = self.signum or signum

    def check(self) -> None:
        if self.signum:
            raise Interrupted(self.signum)


# ---------------------------------------------------------------- train

def cmd_train(args, out=None) -> int:
    out = out or sys.stdout
    _import_edgetrain()
    if args.epochs is not None and args.iterations is not None:
        raise CLIError("give --epochs or --iterations, not both")
    if args.val_data is not None and args.val_split is not None:
        raise CLIError("give --val-data or --val-split, not both")
    source = open_source(args.data, args.image_root)
    spec = resolve_model(args.model, args.threads)
    _check_qat_flags(args, spec)
    resumed = _open_checkpoint(args, spec)
    prep = _train_preprocess(args, source, spec, resumed)
    train_ds, val_ds = _train_data(args, source, prep)
    prepare_output(args.out)  # model, checkpoint and curve all go next to --out
    if args.memory_budget is not None and (resumed is not None or spec.kind == "file"):
        raise CLIError("--memory-budget applies when a model is traced (a zoo model or a "
                       "factory); a saved model file keeps the plan it was exported with")
    if resumed is not None:
        sess, batch = _resumed_session(args, resumed)
    elif spec.kind == "file":
        sess, batch = _file_session(args, spec, source, prep)
    else:
        sess, batch = _new_session(args, spec, source, prep, len(train_ds))
    if args.init:
        init_from_file(sess, args.init, args.threads)
    _check_classes(sess, source, args.model)
    run = TrainRun(args, sess, batch, train_ds, val_ds, out, spec.name)
    if resumed is not None:
        run.resume_curve(args.resume)
    return run.run()


QAT_FLAGS = ("qat_float_input", "qat_output_bits", "qat_observer", "qat_observe_until",
             "qat_freeze_bn")


QCONFIG_INFO = ("quantize_input", "output_bits", "observer", "averaging_constant",
                "observe_until_step", "freeze_bn_step", "fold_bn")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _check_qat_flags(args, spec) -> None:
    if args.resume and (args.qat_bits or args.init):
        raise CLIError("--resume continues the checkpoint's own program and weights; drop "
                       "--qat-bits / --init")
    extra = [d for d in QAT_FLAGS if getattr(args, d) not in (None, False)]
    if extra and not args.qat_bits:
        raise CLIError(f"{_flag(extra[0])} sets up quantization-aware training: give --qat-bits "
                       f"W[,A] too" + (" (--resume keeps the checkpoint's)" if args.resume
                                       else ""))
    if args.qat_bits and spec.kind == "file":
        raise CLIError(f"--qat-bits needs a zoo or factory model to quantize, not the program "
                       f"{args.model}; start from the float weights with "
                       f"'edgetrain train <model name> --qat-bits ... --init {args.model}'")


def _import_edgetrain():
    try:
        import edgetrain
        return edgetrain
    except ImportError as e:
        raise CLIError(f"cannot load edgetrain's runtime: {e}") from None


def _open_checkpoint(args, spec):
    """``(session, cli meta)`` of ``--resume``, checked to be of the same model; or None."""
    if not args.resume:
        return None
    sess = load_session(args.resume, args.threads)
    meta = read_meta(args.resume)
    stored = meta.get("model_name")
    if stored and stored != spec.name:
        raise CLIError(f"--resume {args.resume}: the checkpoint is of model {stored!r}, not "
                       f"{spec.name!r}")
    return sess, meta


def _train_preprocess(args, source, spec, resumed) -> Preprocess:
    if resumed is None:
        return resolve_preprocess(args, source, spec.fixed_shape())
    sess, meta = resumed
    stored = Preprocess.from_meta(meta.get("preprocess") or {})
    if stored is not None and stored.shape == tuple(_planned_shape(sess, "data")[1:]):
        return stored  # the checkpoint's own preprocessing, whatever the flags say
    return resolve_preprocess(args, source, _planned_shape(sess, "data")[1:])


def _train_data(args, source, prep):
    """``(train, validation or None)`` datasets."""
    train = source.dataset(prep, train=True, limit=args.limit)
    val = None
    if args.val_split is not None:
        train, val = split_for_validation(train, args.val_split, args.seed)
    elif args.val_data is not None:
        held_out = open_source(args.val_data, flag="--val-data")
        if source.classes and held_out.classes and held_out.classes != source.classes:
            raise CLIError(f"--val-data {args.val_data}: classes {held_out.classes} differ from "
                           f"--data's {source.classes}")
        val = held_out.dataset(prep, train=False, limit=args.limit)
    elif source.kind == "mnist":
        val = source.dataset(prep, train=False, limit=args.limit)
    return train, None if args.no_eval else val


def _new_session(args, spec, source, prep, n_train: int):
    """A zoo or factory model traced into a training program."""
    import edgetrain as et
    from . import nn
    from .export import build_graph

    batch = args.batch_size or 64
    nn.init.manual_seed(args.seed)
    model = spec.build(source.num_classes, prep)
    qconfig = qat_config(args)
    if qconfig is not None:
        from .quant import prepare_qat
        model = prepare_qat(model, qconfig)
    opt = _make_optimizer(args, model)
    sched = _make_schedule(args, opt, n_train // batch // (args.accumulate or 1))
    try:
        graph = build_graph(model, inputs={"data": (batch,) + prep.shape},
                            loss=nn.CrossEntropyLoss(), labels={"label": ((batch,), "int64")},
                            optimizer=opt, scheduler=sched,
                            memory_budget=_budget_arg(getattr(args, "memory_budget", None)))
    except MemoryError as e:   # ResourceLimitError: the budget is below what recompute reaches
        raise CLIError(f"model {spec.text}: {_one_line(e)}") from None
    except (ValueError, TypeError, RuntimeError, AttributeError, IndexError, KeyError,
            NotImplementedError) as e:
        raise CLIError(f"model {spec.text}: cannot build its training program for input "
                       f"{[batch, *prep.shape]}: {_one_line(e)}") from None
    graph.state.seed = args.seed
    graph.meta.update(cli_meta(spec.name, prep, source.classes))
    if qconfig is not None:   # what the --qat-* flags chose, for 'info' and later readers
        graph.meta[META_KEY]["qconfig"] = dataclasses.asdict(qconfig)
    return et.TrainSession.from_graph(graph, threads=args.threads), batch


def qat_config(args):
    """The QConfig of the --qat-* flags (None without --qat-bits): docs/int8.md's recipe by
    default — input quantized (the whole model runs the int8 kernels) and 8-bit logits —
    changed by --qat-float-input, --qat-output-bits, --qat-observer, --qat-observe-until and
    --qat-freeze-bn."""
    if not args.qat_bits:
        return None
    from .quant import QConfig, QuantConfigError

    w, a = args.qat_bits
    try:
        return QConfig(weight_bits=w, act_bits=a, observer=args.qat_observer or "ema",
                       observe_until_step=args.qat_observe_until,
                       freeze_bn_step=args.qat_freeze_bn,
                       quantize_input=not args.qat_float_input,
                       output_bits=8 if args.qat_output_bits is None else args.qat_output_bits)
    except QuantConfigError as e:
        raise CLIError(f"--qat-*: {e}") from None


def _file_session(args, spec, source, prep):
    """A saved program fine-tuned from its weights and optimizer state; the step and epoch
    counters restart (``--resume`` continues them instead)."""
    import edgetrain as et

    graph = spec.session.to_graph()
    graph.meta.pop("_inference_only", None)
    classes = source.classes or read_meta(spec.text).get("classes")
    graph.meta.update(cli_meta(spec.name, prep, classes))
    graph.state.step = graph.state.epoch = 0
    sess = et.TrainSession.from_graph(graph, threads=args.threads)
    return _adjust(args, sess)


def _resumed_session(args, resumed):
    return _adjust(args, resumed[0])


def _adjust(args, sess):
    """Apply --batch-size and --lr to a loaded program; return ``(session, batch)``."""
    planned = _planned_shape(sess, "data")
    batch = planned[0]
    if args.batch_size is not None and args.batch_size != batch:
        _resize(sess, args.batch_size, planned[1:])
        batch = args.batch_size
    if args.lr is not None:
        sess.learning_rate = args.lr
    return sess, batch


def _check_classes(sess, source, what: str) -> None:
    k = _num_outputs(sess)
    if source.num_classes > k:
        raise CLIError(f"{what}: the model has {k} outputs but the data has "
                       f"{source.num_classes} classes")


def _make_optimizer(args, model):
    from . import optim

    name = args.optimizer
    lr = args.lr if args.lr is not None else (0.01 if name in ("sgd", "adagrad") else 0.001)
    step = dict(clip_grad_norm=args.clip_grad_norm, accumulate=args.accumulate or 1)
    wd = args.weight_decay
    if name == "rmsprop":
        return optim.RMSprop(model.parameters(), lr=lr, momentum=args.momentum or 0.0,
                             weight_decay=wd, **step)
    if name == "adagrad":
        return optim.Adagrad(model.parameters(), lr=lr, weight_decay=wd, **step)
    momentum = 0.9 if args.momentum is None else args.momentum
    if name == "sgd":
        return optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd, **step)
    return optim.Adam(model.parameters(), lr=lr, betas=(momentum, 0.999), weight_decay=wd,
                      **step)


def _accumulation(sess) -> int:
    """K of a program exported with gradient accumulation (``accumulate=K``), else 1."""
    from .errors import NotFoundError
    from .optim.optimizer import ACCUM_COUNT

    try:
        sess.get_tensor(ACCUM_COUNT)
    except NotFoundError:
        return 1
    return next((int(n.iattr[0]) for n in sess.to_graph().nodes if n.op == "accum_step"), 1)


def _make_schedule(args, opt, steps_per_epoch: int):
    """The --lr-schedule over the run's planned steps (stored in the model file)."""
    from . import optim

    if args.lr_schedule == "inv":
        return optim.lr_scheduler.InvLR(opt, gamma=1e-4, power=0.75)
    if args.lr_schedule == "cosine":
        total = args.iterations or (args.epochs or 1) * max(1, steps_per_epoch)
        return optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0.0)
    return None


class TrainRun:
    """The loop of ``edgetrain train`` and what it leaves: model, checkpoint, curve."""

    def __init__(self, args, sess, batch, train_ds, val_ds, out, name):
        from .data import DataLoader
        from .plot import Curve

        if len(train_ds) < batch:
            raise CLIError(f"only {len(train_ds)} training images for a batch of {batch}")
        self.args, self.sess, self.batch, self.val_ds, self.name = args, sess, batch, val_ds, name
        self.n_train = len(train_ds)
        self.loader = DataLoader(train_ds, batch_size=batch, shuffle=True, drop_last=True,
                                 num_workers=args.num_workers, seed=args.seed)
        self.k = _accumulation(sess)
        if args.accumulate is not None and args.accumulate != self.k:
            raise CLIError(f"--accumulate {args.accumulate}: the program was exported with "
                           f"{self.k} batch(es) per update; a saved program keeps it")
        if len(self.loader) < self.k:
            raise CLIError(f"only {len(self.loader)} batches per epoch for --accumulate {self.k}")
        self.steps_per_epoch = len(self.loader) // self.k  # updates
        self.total = args.iterations or (args.epochs or 1) * self.steps_per_epoch
        self.test_batch = args.test_batch_size or batch
        self.stem = _stem(args.out)
        self.ckpt = self.stem + ".ckpt.etm"
        self.progress = Progress(out, args.log_every)
        self.curve = Curve()
        self.stop = StopSignals()

    def resume_curve(self, ckpt: str) -> None:
        """Carry over the curve of the interrupted run up to the checkpoint's step."""
        from .plot import read_csv

        s = self.sess
        if s.step >= self.total:
            raise CLIError(f"--resume {ckpt}: the checkpoint is at step {s.step}, the target "
                           f"({self.total} steps) is already reached; raise --iterations or "
                           f"--epochs to train further")
        if os.path.exists(self.stem + ".csv"):
            try:
                self.curve = read_csv(self.stem + ".csv")
                self.curve.truncate(s.step)
            except (ValueError, KeyError, OSError):
                pass
        self.progress.line(f"resumed {ckpt}: step {s.step}, epoch {s.epoch}")

    def run(self) -> int:
        s = self.sess
        self.progress.line(
            f"training {self.name} on {self.n_train} images ({self.steps_per_epoch} steps of "
            f"{self.batch} per epoch) to step {self.total}, lr {s.learning_rate:g}, "
            f"threads {s.threads}")
        with self.stop:  # a signal while the model is saved waits for the save to end
            try:
                self._loop()
            except Interrupted as e:
                return self._interrupted(e.signum)
            return self._finish()

    def _loop(self) -> None:
        s = self.sess
        s.Train()
        self.epoch_start = time.perf_counter()
        while s.step < self.total:
            epoch, done = divmod(s.step, self.steps_per_epoch)
            # with accumulation, the micro-batches already in the accumulators are skipped
            batches = self.loader.iter_epoch(epoch, done * self.k + s.micro_step)
            try:
                for x, y in batches:
                    self.stop.check()
                    self._step(x, y)
                    if s.step >= self.total or (s.micro_step == 0 and
                                                s.step % self.steps_per_epoch == 0):
                        break  # the epoch's last update (batches left over with --accumulate)
            finally:
                batches.close()

    def _step(self, x, y) -> None:
        s, spe = self.sess, self.steps_per_epoch
        result = s.RunGraph({"data": x, "label": y})
        step = s.step
        loss = float(result["loss"])
        if not np.isfinite(loss):
            raise CLIError(f"the loss became {loss} at step {step}; try a lower --lr")
        if s.micro_step:  # --accumulate: a micro-batch, no update yet
            return
        correct = int(np.sum(np.argmax(result["output"], axis=1) == y))
        self.curve.add_step(step, loss, correct / len(y))
        self.progress.update(step, self.total, (step - 1) // spe, loss, correct, len(y),
                             force=step == self.total)
        epoch_done = step % spe == 0
        if epoch_done:
            s.epoch = step // spe
        if self.args.checkpoint_every and step % self.args.checkpoint_every == 0:
            self._checkpoint()
        if epoch_done or step == self.total:
            self._end_of_epoch(step, epoch_done)

    def _checkpoint(self) -> None:
        from .plot import write_csv

        self.sess.SaveToFile(self.ckpt)
        write_csv(self.stem + ".csv", self.curve)  # the curve of the steps the checkpoint holds

    def _end_of_epoch(self, step: int, epoch_done: bool) -> None:
        spe = self.steps_per_epoch
        seconds = time.perf_counter() - self.epoch_start
        label = f"epoch {step // spe}" if epoch_done else f"step {step}"
        if self.val_ds is None:
            self.progress.line(f"{label} done in {seconds:.1f} s")
        else:
            t = time.perf_counter()
            acc = evaluate(self.sess, self.val_ds, self.test_batch, restore_train=True,
                           stop=self.stop)
            if acc is None:
                self.progress.line(f"{label}: evaluation stopped by a signal")
            else:
                self.curve.add_epoch(step, step // spe if epoch_done else step / spe, acc)
                self.progress.line(f"{label}: test accuracy {acc:.4f} on {len(self.val_ds)} "
                                   f"images; train {seconds:.1f} s, test "
                                   f"{time.perf_counter() - t:.1f} s")
        self.epoch_start = time.perf_counter()

    def _interrupted(self, signum: int) -> int:
        s = self.sess
        self._checkpoint()
        name = StopSignals.NAMES.get(signum, f"signal {signum}")
        self.progress.line(f"interrupted by {name}: {self.ckpt} holds step {s.step} (epoch "
                           f"{s.epoch}); continue with the same command and --resume {self.ckpt}")
        return 128 + signum

    def _finish(self) -> int:
        from .plot import plot_curve, write_csv

        s = self.sess
        s.SaveToFile(self.args.out)
        write_csv(self.stem + ".csv", self.curve)
        backend = plot_curve(self.stem + ".png", self.curve, title=f"edgetrain {self.name}")
        self.progress.line(f"saved {self.args.out} (step {s.step}, epoch {s.epoch}); curve in "
                           f"{self.stem}.png ({backend}) and {self.stem}.csv")
        return 0


# ---------------------------------------------------------------- eval / predict

def _stored_preprocess(args, sess, meta, default_norm) -> Preprocess:
    """The model's input shape; mean/scale from the flags, else the model file, else
    ``default_norm``."""
    shape = _planned_shape(sess, "data")
    if len(shape) != 4:
        raise CLIError(f"the model's input {list(shape)} is not an image batch [N, C, H, W]")
    channels, size = shape[1], tuple(shape[2:])
    if args.channels and args.channels != channels:
        raise CLIError(f"--channels {args.channels}: the model takes {channels} channels")
    if args.image_size and image_size_flag(args.image_size) != size:
        raise CLIError(f"--image-size: the model takes {size[0]}x{size[1]} images")
    stored = Preprocess.from_meta(meta.get("preprocess") or {})
    mean, scale = (stored.mean, stored.scale) if stored else default_norm
    return Preprocess(channels, size, args.mean or mean, args.scale or scale)


def _class_names(meta, k: int) -> List[str]:
    names = meta.get("classes")
    if isinstance(names, list) and len(names) == k:
        return [str(n) for n in names]
    return [str(c) for c in range(k)]


def cmd_eval(args, out=None) -> int:
    out = out or sys.stdout
    sess = load_session(args.model_file, args.threads)
    meta = read_meta(args.model_file)
    source = open_source(args.data, args.image_root)
    prep = _stored_preprocess(args, sess, meta, source.default_norm())
    ds = source.dataset(prep, train=False, limit=args.limit)
    k = _num_outputs(sess)
    t = time.perf_counter()
    correct, total = evaluate_counts(sess, ds, args.batch_size or _planned_shape(sess, "data")[0],
                                     k)
    n, c = int(total.sum()), int(correct.sum())
    out.write(f"test accuracy: {c / max(n, 1):.4f} ({c}/{n}) in "
              f"{time.perf_counter() - t:.2f} s\n")
    if k <= 10:
        for name, ck, nk in zip(_class_names(meta, k), correct, total):
            if nk:
                out.write(f"  {name}: {ck}/{nk} ({ck / nk:.4f})\n")
    return 0


def cmd_predict(args, out=None) -> int:
    out = out or sys.stdout
    from .cli_inputs import IMAGE_NORM, MNIST_NORM

    sess = load_session(args.model_file, args.threads)
    meta = read_meta(args.model_file)
    channels = _planned_shape(sess, "data")[1]
    prep = _stored_preprocess(args, sess, meta, MNIST_NORM if channels == 1 else IMAGE_NORM)
    k = _num_outputs(sess)
    if args.classes:
        names = read_class_names(args.classes)
        if len(names) != k:
            raise CLIError(f"--classes {args.classes}: {len(names)} names for a model with {k} "
                           f"outputs")
    else:
        names = _class_names(meta, k)
    batch = _planned_shape(sess, "data")[0]
    chunks = ((prep.load_images(args.images[i:i + batch]), None)
              for i in range(0, len(args.images), batch))
    logits = np.concatenate([z for z, _ in _run_eval(sess, chunks)])
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    for path, p in zip(args.images, probs):
        top = np.argsort(-p, kind="stable")[:args.top_k]
        out.write(f"{path}: " + ", ".join(f"{names[c]} {p[c]:.3f}" for c in top) + "\n")
    return 0


# ---------------------------------------------------------------- export / info

def cmd_export(args, out=None) -> int:
    out = out or sys.stdout
    sess = load_session(args.model_file, 1)
    if os.path.abspath(args.output) == os.path.abspath(args.model_file):
        raise CLIError("the output would overwrite the input model; choose another -o")
    if args.int8 and not args.inference_only:
        raise CLIError("--int8 writes an int8 inference model (.etm, or QDQ ONNX with --onnx): "
                       "use it with --inference-only")
    prepare_output(args.output, "-o")
    if args.int8 and args.onnx:
        sess.export_onnx(args.output, opset=args.opset, inference_only=True, int8=True)
        kind = f"int8 QDQ ONNX opset {args.opset}"
    elif args.int8:
        sess.SaveToFile(args.output, inference_only=True, int8=True)
        kind = "int8 inference-only"
    elif args.onnx:
        sess.export_onnx(args.output, opset=args.opset, inference_only=args.inference_only)
        kind = f"ONNX opset {args.opset}" + (", BatchNorm folded" if args.inference_only else "")
    else:
        sess.SaveToFile(args.output, inference_only=args.inference_only)
        kind = "inference-only" if args.inference_only else "full training state"
    out.write(f"wrote {args.output} ({kind}, {os.path.getsize(args.output):,} bytes)\n")
    return 0


def cmd_info(args, out=None) -> int:
    out = out or sys.stdout
    if is_onnx_file(args.model_file):
        return cmd_info_onnx(args, out)
    sess = load_session(args.model_file, 1)
    params = sess.get_parameters(include_buffers=False)
    trainable = set(sess.trainable_parameters())
    n_params = sum(int(v.size) for v in params.values())
    n_train = sum(int(v.size) for k, v in params.items() if k in trainable)
    progs = programs(sess)
    lines = [f"model: {args.model_file} ({os.path.getsize(args.model_file):,} bytes)",
             "inputs: " + ", ".join(f"{k} {list(v)}" for k, v in sess.input_shapes().items()),
             f"outputs: {', '.join(sess.output_names)}",
             f"programs: {', '.join(progs)}",
             f"parameters: {n_params:,} ({n_train:,} trainable) in {len(params)} tensors",
             f"step {sess.step}, epoch {sess.epoch}"]
    if "train" in progs:  # inference-only files have no optimizer
        lines.append(f"learning rate: {sess.learning_rate:g}")
    meta = read_meta(args.model_file)
    if meta.get("model_name"):
        lines.append(f"trained as: {meta['model_name']}"
                     + (f", classes {', '.join(map(str, meta['classes']))}"
                        if isinstance(meta.get("classes"), list) else ""))
    qc = meta.get("qconfig")
    if isinstance(qc, dict):
        lines.append(f"trained with --qat-bits {qc.get('weight_bits')},{qc.get('act_bits')}: "
                     + ", ".join(f"{k} {qc[k]}" for k in QCONFIG_INFO if k in qc))
    mem = sess.memory_info()
    lines.append("planned memory: " + ", ".join(f"{k} {_human_bytes(int(v))}"
                                                 for k, v in mem.items()))
    segs = sess.eval_segments()
    if segs:
        lines.append("eval image-first segments (each image through them in turn): " + "; ".join(
            f"{g['layers'][0]} .. {g['layers'][1]} ({g['count']} nodes"
            + (f", {len(g['pairs'])} pointwise+depthwise pairs run a channel block at a time"
               if g["pairs"] else "") + ")" for g in segs))
    for prog in ("train", "grad"):
        groups = sess.node_groups(prog)
        if groups:
            lines.append(f"{prog} concurrent groups (independent small nodes side by side): "
                         f"{len(groups)} groups of {sum(g['count'] for g in groups)} nodes")
    plan = _recompute_plan(args.model_file)
    if plan:
        budget = _human_bytes(plan["memory_budget"])
        if plan.get("auto") == 1:
            budget = f"auto, {budget}"
        lines.append(f"recompute plan (memory_budget {budget}): "
                     f"{plan['recomputed_tensors']} activations "
                     f"({_human_bytes(plan['recomputed_bytes'])}) recomputed by "
                     f"{plan['recompute_nodes']} nodes; activation arena "
                     f"{_human_bytes(plan['arena_unconstrained'])} -> "
                     f"{_human_bytes(plan['arena'])}")
    lines.append("")
    lines.append(sess.summary().rstrip())
    out.write("\n".join(lines) + "\n")
    return 0


def _recompute_plan(path: str) -> dict:
    """The memory_budget plan in a file's META (edgetrain.recompute), or {}."""
    from . import fileformat
    try:
        plan = fileformat.load(path).meta.get("recompute")
    except (Exception, RecursionError):   # the C reader has already judged the file
        return {}
    keys = ("memory_budget", "recomputed_tensors", "recomputed_bytes", "recompute_nodes",
            "arena_unconstrained", "arena")
    if not isinstance(plan, dict) or not all(isinstance(plan.get(k), int) for k in keys):
        return {}
    return plan


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict,
            "export": cmd_export, "info": cmd_info, "federate": cmd_federate,
            "convert": cmd_convert}


def _user_errors():
    """Exceptions that are the user's (data, files, arguments), reported without a traceback."""
    from .errors import EdgetrainError
    return (CLIError, OSError, ValueError, EdgetrainError)


def _one_line(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    text = " ".join(text.split())
    return text or type(e).__name__


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
