"""Training curves: a CSV and a PNG (loss per step, test accuracy per epoch).

The PNG is drawn with matplotlib's Agg backend when matplotlib is installed; otherwise a small
built-in writer draws the two panels as polylines on a white canvas (no text) and encodes the PNG
with zlib, so ``edgetrain train`` always leaves a picture behind.
"""
from __future__ import annotations

import csv
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np


@dataclass
class Curve:
    """What a training run records: loss (and running accuracy) per step, test accuracy per
    epoch."""
    steps: List[int] = field(default_factory=list)
    losses: List[float] = field(default_factory=list)
    train_acc: List[float] = field(default_factory=list)
    epoch_steps: List[int] = field(default_factory=list)
    epochs: List[float] = field(default_factory=list)  # fractional for a mid-epoch end
    test_acc: List[float] = field(default_factory=list)

    def add_step(self, step: int, loss: float, acc: float) -> None:
        self.steps.append(int(step))
        self.losses.append(float(loss))
        self.train_acc.append(float(acc))

    def add_epoch(self, step: int, epoch: float, acc: float) -> None:
        self.epoch_steps.append(int(step))
        self.epochs.append(float(epoch))
        self.test_acc.append(float(acc))

    def truncate(self, step: int) -> None:
        """Keep what was recorded up to ``step`` (inclusive): the state of a checkpoint."""
        keep = [k for k, s in enumerate(self.steps) if s <= step]
        self.steps = [self.steps[k] for k in keep]
        self.losses = [self.losses[k] for k in keep]
        self.train_acc = [self.train_acc[k] for k in keep]
        keep = [k for k, s in enumerate(self.epoch_steps) if s <= step]
        self.epoch_steps = [self.epoch_steps[k] for k in keep]
        self.epochs = [self.epochs[k] for k in keep]
        self.test_acc = [self.test_acc[k] for k in keep]


CSV_HEADER = ["step", "loss", "train_accuracy", "epoch", "test_accuracy"]


def write_csv(path: str, curve: Curve) -> None:
    """One row per step (``step, loss, train_accuracy``); the rows that end an evaluated epoch also
    carry ``epoch, test_accuracy``."""
    evals = dict(zip(curve.epoch_steps, zip(curve.epochs, curve.test_acc)))
    rows = []
    for s, l, a in zip(curve.steps, curve.losses, curve.train_acc):
        e = evals.pop(s, None)
        rows.append([s, f"{l:.6g}", f"{a:.6g}", "" if e is None else f"{e[0]:.6g}",
                     "" if e is None else f"{e[1]:.6g}"])
    for s, (e, acc) in sorted(evals.items()):  # evaluations at steps without a loss row
        rows.append([s, "", "", f"{e:.6g}", f"{acc:.6g}"])
    rows.sort(key=lambda r: r[0])
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        w.writerows(rows)
    os.replace(tmp, path)


def read_csv(path: str) -> Curve:
    """Read a CSV written by :func:`write_csv`."""
    curve = Curve()
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != CSV_HEADER:
            raise ValueError(f"{path}: not a training-curve CSV (header {reader.fieldnames})")
        for row in reader:
            step = int(row["step"])
            if row["loss"]:
                curve.add_step(step, float(row["loss"]), float(row["train_accuracy"] or "nan"))
            if row["test_accuracy"]:
                curve.add_epoch(step, float(row["epoch"]), float(row["test_accuracy"]))
    return curve


def plot_curve(path: str, curve: Curve, title: str = "", backend: str = "auto") -> str:
    """Write the PNG; returns the backend used (``"matplotlib"`` or ``"builtin"``)."""
    if backend not in ("auto", "matplotlib", "builtin"):
        raise ValueError(f"plot_curve: unknown backend {backend!r}")
    if backend in ("auto", "matplotlib"):
        try:
            _plot_matplotlib(path, curve, title)
            return "matplotlib"
        except ImportError:
            if backend == "matplotlib":
                raise
    _plot_builtin(path, curve)
    return "builtin"


def _plot_matplotlib(path: str, curve: Curve, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    if curve.steps:
        ax1.plot(curve.steps, curve.losses, lw=0.7, color="tab:blue", label="loss")
        if len(curve.losses) >= 20:
            k = max(5, len(curve.losses) // 50)
            smooth = np.convolve(curve.losses, np.ones(k) / k, mode="valid")
            ax1.plot(curve.steps[k - 1:], smooth, lw=1.5, color="tab:orange", label=f"mean of {k}")
            ax1.legend(loc="upper right", fontsize=8)
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss")
    ax1.grid(alpha=0.3)
    if curve.epochs:
        acc = [100 * a for a in curve.test_acc]
        ax2.plot(curve.epochs, acc, "o-", color="tab:green")
        ax2.annotate(f"{acc[-1]:.2f}%", (curve.epochs[-1], acc[-1]), textcoords="offset points",
                     xytext=(-10, -14), ha="right", fontsize=8)
        ax2.set_ylim(max(0.0, min(acc) - 5.0), 100.0)
        ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("test accuracy (%)")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")


# ---------------------------------------------------------------- built-in PNG writer

def write_png(path: str, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image [H, W, 3] as a PNG (filter 0 on every row, zlib level 6)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, c = rgb.shape
    if c != 3:
        raise ValueError("write_png: expected [H, W, 3]")
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6))
           + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


def _draw_polyline(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, color, width: int = 1):
    """Draw connected segments through pixel coordinates (xs, ys) by dense sampling."""
    h, w, _ = img.shape
    if len(xs) == 1:
        xs, ys = np.repeat(xs, 2), np.repeat(ys, 2)
    for k in range(len(xs) - 1):
        n = int(max(abs(xs[k + 1] - xs[k]), abs(ys[k + 1] - ys[k]))) + 2
        px = np.rint(np.linspace(xs[k], xs[k + 1], n)).astype(int)
        py = np.rint(np.linspace(ys[k], ys[k + 1], n)).astype(int)
        for d in range(-(width // 2), width - width // 2):
            ok = (px >= 0) & (px < w) & (py + d >= 0) & (py + d < h)
            img[py[ok] + d, px[ok]] = color


def _panel(img, box: Tuple[int, int, int, int], x: Sequence[float], y: Sequence[float], color,
           marker: bool = False):
    x0, y0, x1, y1 = box
    img[y0:y1 + 1, [x0, x1]] = (90, 90, 90)  # frame
    img[[y0, y1], x0:x1 + 1] = (90, 90, 90)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    good = np.isfinite(x) & np.isfinite(y)
    x, y = x[good], y[good]
    if not len(x):
        return
    for frac in (0.25, 0.5, 0.75):  # light grid
        img[int(y0 + frac * (y1 - y0)), x0 + 1:x1] = (225, 225, 225)
    xlo, xhi = x.min(), x.max()
    ylo, yhi = y.min(), y.max()
    xspan = xhi - xlo or 1.0
    yspan = yhi - ylo or 1.0
    px = x0 + 4 + (x - xlo) / xspan * (x1 - x0 - 8)
    py = y1 - 4 - (y - ylo) / yspan * (y1 - y0 - 8)
    _draw_polyline(img, px, py, color, width=2)
    if marker:
        for cx, cy in zip(np.rint(px).astype(int), np.rint(py).astype(int)):
            img[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3] = color


def _plot_builtin(path: str, curve: Curve, width: int = 800, height: int = 320) -> None:
    img = np.full((height, width, 3), 255, np.uint8)
    half = width // 2
    _panel(img, (20, 20, half - 20, height - 20), curve.steps, curve.losses, (31, 119, 180))
    _panel(img, (half + 20, 20, width - 20, height - 20), curve.epochs, curve.test_acc,
           (44, 160, 44), marker=True)
    write_png(path, img)
