"""What ``edgetrain train / eval / predict`` read: the data, its preprocessing, the model.

- Data (``--data``): an MNIST folder (IDX files), an image folder with one sub-folder per class
  (torchvision's ImageFolder layout) or MNN's ``path label`` list file (images under
  ``--image-root``, default the list file's folder).
- Preprocessing: channels, input size (h, w) and per-channel mean/scale in pixel units
  (``x = (pixel - mean) * scale``). Training stores it, the model name and the class names in the
  model file's META section (``edgetrain_cli``), so eval and predict repeat it.
- The model: a zoo name, an ``.etm`` file with a training program, or ``package.module:factory``.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .data import DataError, ImageDataset, ImageFolder, MnistDataset, Subset
from .data.dataset import check_regular_file
from .data.image import IMAGE_EXTENSIONS, decode_image, image_header
from .data.mnist import MNIST_MEAN, MNIST_STD, find_mnist_file

META_KEY = "edgetrain_cli"
ZOO = ("lenet", "lenet5", "mobilenetv1", "mobilenetv2")
# zoo models whose dense layers fix the input side (MNIST's 28, MindSpore LeNet-5's 32)
ZOO_SIZE = {"lenet": 28, "lenet5": 32}
# default normalisation in pixel units: MNIST's statistics; [-1, 1] for other images
MNIST_NORM = ([MNIST_MEAN * 255.0], [1.0 / (MNIST_STD * 255.0)])
IMAGE_NORM = ([127.5], [1.0 / 127.5])


class CLIError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


# ---------------------------------------------------------------- argparse value types

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


def _positive_float(text: str) -> float:
    v = _nonneg_float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return v


def _float_where(text: str, ok, what: str) -> float:
    """``text`` as a finite float for which ``ok(v)`` holds, else an error naming ``what``."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(v) or not ok(v):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return v


def _nonneg_float(text: str) -> float:
    return _float_where(text, lambda v: v >= 0, "a finite number >= 0")


def _finite_float(text: str) -> float:
    return _float_where(text, lambda v: True, "a finite number")


def qat_bits(text: str) -> Tuple[int, int]:
    """``--qat-bits W[,A]``: weight and activation bits, 2..8 each (A defaults to W)."""
    parts = text.split(",")
    try:
        bits = [int(p) for p in parts]
    except ValueError:
        bits = []
    if len(bits) not in (1, 2) or not all(2 <= b <= 8 for b in bits):
        raise argparse.ArgumentTypeError(f"expected W or W,A with bits from 2 to 8 (e.g. 8 or "
                                         f"4,8), got {text!r}")
    return bits[0], bits[-1]


def init_from_file(sess, path: str, threads: Optional[int]) -> int:
    """``--init``: copy every parameter and buffer of the model file at ``path`` that ``sess``
    has under the same name (a float model initialising its QAT version); returns the count.
    A model with none of them, or a shape mismatch, is a one-line error."""
    src = load_session(path, threads).get_parameters()
    own = sess.get_parameters()
    common = {k: v for k, v in src.items() if k in own}
    params = set(sess.get_parameters(include_buffers=False))
    if not params & set(common):
        raise CLIError(f"--init {path}: no parameter name in common with the model")
    bad = [k for k, v in common.items() if v.shape != own[k].shape]
    if bad:
        raise CLIError(f"--init {path}: {bad[0]} has shape {common[bad[0]].shape}, the model "
                       f"{own[bad[0]].shape}")
    missing = sorted(params - set(common))
    if missing:
        raise CLIError(f"--init {path}: parameter {missing[0]} is not in the file")
    sess.set_parameters(common)
    return len(common)


# ---------------------------------------------------------------- preprocessing

@dataclass
class Preprocess:
    """How images become the model's input: ``(pixel - mean) * scale`` per channel, at
    ``size = (h, w)`` with ``channels`` 1 (gray) or 3 (RGB)."""
    channels: int
    size: Tuple[int, int]
    mean: List[float]
    scale: List[float]

    def __post_init__(self):
        self.size = (int(self.size[0]), int(self.size[1]))
        self.mean = [float(v) for v in self.mean] * (self.channels if len(self.mean) == 1 else 1)
        self.scale = [float(v) for v in self.scale] * (self.channels if len(self.scale) == 1 else 1)
        for name, v in (("--mean", self.mean), ("--scale", self.scale)):
            if len(v) != self.channels:
                raise CLIError(f"{name} has {len(v)} values for {self.channels} channels")
        if not all(np.isfinite(self.mean + self.scale)) or 0.0 in self.scale:
            raise CLIError("--mean and --scale must be finite and --scale non-zero")
        if self.channels not in (1, 3) or min(self.size) < 1:
            raise CLIError(f"bad input: {self.channels} channels at {self.size}")

    @property
    def color(self) -> str:
        return "gray" if self.channels == 1 else "rgb"

    @property
    def shape(self) -> Tuple[int, int, int]:
        return (self.channels,) + self.size

    def to_meta(self) -> Dict:
        return {"channels": self.channels, "size": list(self.size), "mean": self.mean,
                "scale": self.scale}

    @classmethod
    def from_meta(cls, d) -> Optional["Preprocess"]:
        try:
            return cls(int(d["channels"]), tuple(d["size"]), list(d["mean"]), list(d["scale"]))
        except (KeyError, TypeError, ValueError, CLIError):
            return None

    def load_images(self, paths: Sequence[str]) -> np.ndarray:
        """float32 [N, C, H, W] of image files, resized to the model's input."""
        mean = np.asarray(self.mean, np.float32).reshape(-1, 1, 1)
        scale = np.asarray(self.scale, np.float32).reshape(-1, 1, 1)
        return np.stack([(decode_image(p, self.color, self.size).astype(np.float32) - mean)
                         * scale for p in paths]).astype(np.float32)


# ---------------------------------------------------------------- data sources

@dataclass
class DataSource:
    """One ``--data`` argument, recognised but not yet decoded."""
    path: str
    kind: str                          # "mnist", "folder" or "list"
    image_root: Optional[str] = None   # list files: where the listed paths start
    classes: Optional[List[str]] = None
    num_classes: int = 10
    first_image: Optional[str] = None
    _probe: Optional[ImageDataset] = field(default=None, repr=False)

    def header(self) -> Tuple[int, Tuple[int, int]]:
        """Channels and (h, w) of the data's first image (MNIST: 1, 28x28)."""
        if self.kind == "mnist":
            return 1, (28, 28)
        return image_header(self.first_image)

    def default_norm(self):
        return MNIST_NORM if self.kind == "mnist" else IMAGE_NORM

    def dataset(self, prep: Preprocess, train: bool = True, limit: Optional[int] = None):
        """The samples as ``(float32 [C, H, W], int64 label)`` under ``prep``; MNIST gives its
        train or test split, the other kinds all their images."""
        if self.kind == "mnist":
            ds = self._mnist(prep, train)
        else:
            n = len(self._probe)
            in_memory = n * int(np.prod(prep.shape)) <= (256 << 20) and limit is None
            kw = dict(color=prep.color, size=prep.size, mean=prep.mean, scale=prep.scale)
            if self.kind == "folder":
                ds = ImageFolder(self.path, **kw)
            else:
                ds = ImageDataset(self.image_root, self.path, num_classes=self.num_classes, **kw)
            if in_memory:
                ds.load_all()
        if limit is not None and limit < len(ds):
            ds = Subset(ds, np.arange(limit))
        return ds

    def _mnist(self, prep: Preprocess, train: bool):
        side = prep.size[0]
        if prep.channels != 1:
            raise CLIError(f"{self.path}: MNIST is grayscale; it cannot feed {prep.channels} "
                           f"channels (use image data for --channels 3)")
        if prep.size[0] != prep.size[1] or side < 28 or (side - 28) % 2:
            raise CLIError(f"{self.path}: MNIST images are 28x28 (padded evenly to a larger "
                           f"square at most); the model takes {prep.size[0]}x{prep.size[1]}")
        if (prep.mean, prep.scale) == MNIST_NORM:
            mean, std = MNIST_MEAN, MNIST_STD
        else:
            mean, std = prep.mean[0] / 255.0, 1.0 / (prep.scale[0] * 255.0)
        return MnistDataset(self.path, train=train, mean=mean, std=std, pad=(side - 28) // 2)


def open_source(path: Optional[str], image_root: Optional[str] = None,
                flag: str = "--data") -> DataSource:
    """Recognise ``path`` as MNIST, an image folder or a list file (default: data/mnist)."""
    if path is None:
        path = default_data_dir()
        if path is None:
            raise CLIError(f"no {flag} given and the repository's data/mnist is not present")
    if not os.path.exists(path):
        raise CLIError(f"{flag} {path}: not found")
    if not os.path.isdir(path):
        check_regular_file(path, "list file")
        return _list_source(path, image_root or os.path.dirname(os.path.abspath(path)))
    if image_root is not None:
        raise CLIError(f"--image-root is for a list file; {path} is a folder")
    try:
        find_mnist_file(path, "train", "images-idx3-ubyte")
        return DataSource(path, "mnist")
    except DataError:
        pass
    try:
        find_mnist_file(path, "t10k", "images-idx3-ubyte")
        return DataSource(path, "mnist")
    except DataError:
        pass
    subdirs = [e for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")]
    if not subdirs:
        raise CLIError(f"{flag} {path}: neither MNIST (train-images-idx3-ubyte[.gz] not found) nor an image folder with one "
                       f"sub-folder per class ({', '.join(IMAGE_EXTENSIONS)} images)")
    probe = ImageFolder(path)
    return DataSource(path, "folder", classes=list(probe.classes),
                      num_classes=len(probe.classes), first_image=probe.entries[0][0],
                      _probe=probe)


def _list_source(path: str, root: str) -> DataSource:
    probe = ImageDataset(root, path)
    for _, lineno, label in probe.entries:
        if np.ndim(label):
            raise CLIError(f"{path}:{lineno}: several labels on one line; the command line "
                           f"trains single-label classification")
    top = max(int(e[2]) for e in probe.entries)
    return DataSource(path, "list", image_root=root, num_classes=top + 1,
                      first_image=probe.entries[0][0], _probe=probe)


def default_data_dir() -> Optional[str]:
    """The repository's ``data/mnist`` (a fresh clone trains without ``--data``)."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                        "mnist")
    return here if os.path.isdir(here) else None


def resolve_preprocess(args, source: DataSource, fixed_shape=None) -> Preprocess:
    """Channels, size and normalisation: flags first, then a shape the model fixes
    (``(C, H, W)`` or ``(None, S, S)``), then the data."""
    data_ch, data_size = source.header()
    fixed_ch, fixed_size = (fixed_shape[0], tuple(fixed_shape[1:])) if fixed_shape else (None, None)
    channels = args.channels or fixed_ch or data_ch
    if fixed_ch is not None and channels != fixed_ch:
        raise CLIError(f"--channels {args.channels}: the model takes {fixed_ch} channels")
    size = image_size_flag(args.image_size) if args.image_size else (fixed_size or data_size)
    if fixed_size and size != fixed_size:
        raise CLIError(f"--image-size {size[0]} {size[1]}: the model takes "
                       f"{fixed_size[0]}x{fixed_size[1]} images")
    mean, scale = source.default_norm()
    return Preprocess(channels, size, args.mean or mean, args.scale or scale)


def image_size_flag(values) -> Tuple[int, int]:
    """``--image-size S`` or ``--image-size H W`` as ``(h, w)``."""
    if len(values) > 2:
        raise CLIError(f"--image-size takes one side or H W, got {len(values)} numbers")
    return (int(values[0]), int(values[-1]))


def split_for_validation(ds, fraction: float, seed: int):
    """``(train, val)`` Subsets: a seeded permutation, the first ``fraction`` held out."""
    n = len(ds)
    n_val = int(round(n * fraction))
    if not 0 < n_val < n:
        raise CLIError(f"--val-split {fraction}: leaves {n_val} of {n} samples for validation")
    order = np.random.default_rng(seed).permutation(n)
    return Subset(ds, np.sort(order[n_val:])), Subset(ds, np.sort(order[:n_val]))


# ---------------------------------------------------------------- models

@dataclass
class ModelSpec:
    """A ``train`` model argument: ``kind`` is "zoo", "file" or "factory"."""
    text: str
    kind: str
    name: str
    factory: Optional[Callable] = None
    session: object = None      # "file": the loaded program

    def fixed_shape(self):
        """``(C, H, W)`` a file fixes, ``(None, S, S)`` for LeNet's sizes, else None."""
        if self.kind == "file":
            return tuple(self.session.input_shapes()["data"][1:])
        if self.name in ZOO_SIZE:
            return (None, ZOO_SIZE[self.name], ZOO_SIZE[self.name])
        return None

    def build(self, num_classes: int, prep: Preprocess):
        """A fresh ``nn.Module`` for zoo names and factories."""
        from .models import get_model

        if self.kind == "zoo":
            if self.name == "lenet":
                return get_model("lenet", num_classes=num_classes, in_channels=prep.channels)
            if self.name == "lenet5":
                return get_model("lenet5", num_classes=num_classes, num_channel=prep.channels)
            return get_model(self.name, num_classes=num_classes, in_channels=prep.channels,
                             input_size=max(prep.size))
        return _call_factory(self, num_classes=num_classes, in_channels=prep.channels)


def resolve_model(text: str, threads: Optional[int] = None) -> ModelSpec:
    """Recognise a zoo name, an ``.etm`` file or ``package.module:factory``."""
    key = text.lower().replace("-", "").replace("_", "")
    if key in ZOO:
        return ModelSpec(text, "zoo", key)
    if text.endswith(".etm") or os.path.isfile(text):
        return _file_spec(text, threads)
    if ":" in text:
        return ModelSpec(text, "factory", text, factory=_import_factory(text))
    raise CLIError(f"model {text!r}: not a zoo name ({', '.join(ZOO)}), an .etm file or "
                   f"package.module:factory")


def _file_spec(path: str, threads: Optional[int]) -> ModelSpec:
    sess = load_session(path, threads)
    if "train" not in programs(sess):
        raise CLIError(f"{path}: has no training program (an inference-only file?); train a "
                       f"file saved with its optimizer state")
    shapes = sess.input_shapes()
    if "data" not in shapes or "label" not in shapes or len(shapes["data"]) != 4:
        raise CLIError(f"{path}: the command line trains image classifiers with inputs "
                       f"'data' [N, C, H, W] and 'label' [N]; this file has "
                       + ", ".join(f"{k} {list(v)}" for k, v in shapes.items()))
    name = read_meta(path).get("model_name") or os.path.basename(path)
    return ModelSpec(path, "file", name, session=sess)


def _import_factory(text: str) -> Callable:
    module_name, _, attr = text.partition(":")
    if not module_name or not attr:
        raise CLIError(f"model {text!r}: expected package.module:factory")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise CLIError(f"model {text}: cannot import {module_name} ({e}); run from the folder "
                       f"that holds it or add it to PYTHONPATH") from None
    except Exception as e:  # the user's module failed while importing
        raise CLIError(f"model {text}: importing {module_name} raised "
                       f"{type(e).__name__}: {e}") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise CLIError(f"model {text}: {module_name} has no attribute {attr!r}")
    if not callable(factory):
        raise CLIError(f"model {text}: {attr} is not callable")
    return factory


def _call_factory(spec: ModelSpec, **offer):
    """Call the factory with those of ``offer``'s keywords its signature accepts."""
    from . import nn

    try:
        params = inspect.signature(spec.factory).parameters
        takes_all = any(p.kind == p.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in offer.items() if takes_all or k in params}
    except (TypeError, ValueError):
        kwargs = {}
    try:
        model = spec.factory(**kwargs)
    except Exception as e:
        raise CLIError(f"model {spec.text}: the factory raised {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise CLIError(f"model {spec.text}: the factory returned {type(model).__name__}, not an "
                       f"edgetrain.nn.Module")
    return model


# ---------------------------------------------------------------- model files

def load_session(path: str, threads: Optional[int]):
    """Load a model file; a missing path, a folder or a FIFO/device is a one-line error."""
    import edgetrain as et

    if not os.path.exists(path):
        raise CLIError(f"{path}: model file not found")
    if os.path.isdir(path):
        raise CLIError(f"{path}: is a folder, not a model file")
    try:
        check_regular_file(path, "model file")
    except DataError as e:
        raise CLIError(str(e)) from None
    return et.TrainSession.load(path, threads=threads)


def programs(sess) -> List[str]:
    return [p for p in ("eval", "grad", "train") if sess._s.has_program(p)]


def read_meta(path: str) -> Dict:
    """The ``edgetrain_cli`` entry of a model file's META (empty if absent or unreadable)."""
    from . import fileformat

    try:
        meta = fileformat.load(path).meta
    except (Exception, RecursionError):  # the C reader has already judged the file
        return {}
    entry = meta.get(META_KEY) if isinstance(meta, dict) else None
    return entry if isinstance(entry, dict) else {}


def cli_meta(name: str, prep: Preprocess, classes: Optional[List[str]]) -> Dict:
    return {META_KEY: {"model_name": name, "preprocess": prep.to_meta(),
                       "classes": list(classes) if classes else None}}


def read_class_names(path: str) -> List[str]:
    """One class name per line (blank lines ignored)."""
    try:
        check_regular_file(path, "class-name file")
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError, DataError) as e:
        raise CLIError(f"--classes {path}: cannot read ({e})") from None
    if not names:
        raise CLIError(f"--classes {path}: no class names in it")
    return names
