"""Image datasets: an image folder plus a list file (MNN's ImageDataset), or a folder with one
sub-folder per class (torchvision's ImageFolder).

The list file has one sample per line, ``relative/path.jpg label[,label...]`` (the path may
contain spaces; the labels are the last whitespace-separated field). Blank lines and lines
starting with ``#`` are skipped. Paths stay inside the image folder unless
``allow_outside_root=True``. Every problem is reported as a :class:`DataError` naming the list
file, the line number and the image path.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .dataset import DataError, Dataset, check_index, check_regular_file

_CHANNELS = {"gray": 1, "rgb": 3, "bgr": 3}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm")


def stays_inside(rel: str) -> bool:
    """True if ``rel`` is a relative path that does not leave its folder through ``..``."""
    if os.path.isabs(rel) or os.path.splitdrive(rel)[0]:
        return False
    norm = os.path.normpath(rel)
    return norm != ".." and not norm.startswith(".." + os.sep)


def image_header(path: str) -> Tuple[int, Tuple[int, int]]:
    """``(channels, (height, width))`` of an image file, read from its header: 1 channel for a
    grayscale image (or a palette of grays), 3 otherwise."""
    from PIL import Image, UnidentifiedImageError

    check_regular_file(path, "image")
    try:
        with Image.open(path) as im:
            if im.mode == "P":
                channels = 1 if _palette_is_gray(im) else 3
            else:
                channels = 1 if im.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
            return channels, (im.size[1], im.size[0])
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from None


def _palette_is_gray(im) -> bool:
    pal = im.getpalette() or []
    return all(pal[k] == pal[k + 1] == pal[k + 2] for k in range(0, len(pal) - 2, 3))


def decode_image(path: str, color: str, size: Optional[Tuple[int, int]], where: str = "") \
        -> np.ndarray:
    """Read ``path`` as uint8 [C, H, W] in ``color`` (gray/rgb/bgr), resized to ``size=(h, w)``
    (bilinear) unless None. ``where`` prefixes error messages (e.g. ``list.txt:7: ``)."""
    from PIL import Image, UnidentifiedImageError

    name = f"{where}{path}"
    try:
        check_regular_file(path, "image")
        with Image.open(path) as im:
            im = im.convert("L" if color == "gray" else "RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            pixels = np.asarray(im, dtype=np.uint8)
    except DataError as e:
        raise DataError(f"{where}{e}") from None
    except FileNotFoundError:
        raise DataError(f"{name}: image not found") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{name}: image too large ({e})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{name}: unreadable image ({e})") from None
    if pixels.ndim == 2:
        return pixels[None]
    chw = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(chw[::-1] if color == "bgr" else chw)


def _per_channel(v, channels: int, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, channels)
    if a.size != channels:
        raise ValueError(f"ImageDataset: {name} has {a.size} values for {channels} channels")
    return a.reshape(channels, 1, 1)


class ImageDataset(Dataset):
    """Images under ``root`` listed in ``list_file``.

    A sample is ``(float32 [C, H, W], label)``: C is 1 for ``color="gray"``, 3 for ``"rgb"`` and
    ``"bgr"``; images are resized to ``size=(h, w)`` (bilinear) unless ``size`` is None. Pixel
    values become ``(pixel - mean) * scale`` per channel (defaults: mean 0, scale 1/255). The label
    is an int64 scalar for a one-label line and an int64 vector for a multi-label line. Labels are
    checked against ``num_classes`` if given. ``in_memory=True`` decodes every image once at
    construction (and reports unreadable images then); otherwise images are read when needed.
    A listed path that is absolute or leaves ``root`` through ``..`` is refused unless
    ``allow_outside_root=True``.
    """

    def __init__(self, root: str, list_file: str, color: str = "rgb",
                 size: Optional[Tuple[int, int]] = None, scale: Sequence[float] = (1 / 255.0,),
                 mean: Sequence[float] = (0.0,), in_memory: bool = False,
                 num_classes: Optional[int] = None, allow_outside_root: bool = False):
        self.list_file = list_file
        self.allow_outside_root = bool(allow_outside_root)
        self._configure(root, color, size, scale, mean, num_classes)
        self.entries: List[Tuple[str, int, np.ndarray]] = self._parse_list()
        self._cache: Optional[List[np.ndarray]] = None
        if in_memory:
            self.load_all()

    def load_all(self) -> None:
        """Decode every image now and keep the pixels (uint8) in memory."""
        self._cache = [self._decode(k) for k in range(len(self.entries))]

    def _configure(self, root, color, size, scale, mean, num_classes) -> None:
        try:
            from PIL import Image  # noqa: F401
        except ImportError:  # pragma: no cover - Pillow is a dependency
            raise ImportError("ImageDataset needs Pillow (pip install Pillow)") from None
        if color not in _CHANNELS:
            raise ValueError(f"ImageDataset: color must be one of {sorted(_CHANNELS)}, got {color!r}")
        self.root = root
        self.color = color
        self.channels = _CHANNELS[color]
        if size is not None:
            size = (int(size[0]), int(size[1]))
            if min(size) < 1:
                raise ValueError(f"ImageDataset: bad size {size}")
        self.size = size
        self._scale = _per_channel(scale, self.channels, "scale")
        self._mean = _per_channel(mean, self.channels, "mean")
        self.num_classes = num_classes

    def _where(self, lineno: int, path: Optional[str] = None) -> str:
        where = f"{self.list_file}:{lineno}"
        return f"{where}: {path}" if path is not None else where

    def _read_lines(self) -> List[str]:
        check_regular_file(self.list_file, "list file")
        try:
            with open(self.list_file, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise DataError(f"{self.list_file}: list file not found") from None
        except OSError as e:
            raise DataError(f"{self.list_file}: cannot read list file ({e})") from None
        try:
            return raw.decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            lineno = raw.count(b"\n", 0, e.start) + 1
            raise DataError(f"{self.list_file}:{lineno}: not UTF-8 text (byte "
                            f"0x{raw[e.start]:02x})") from None

    def _parse_list(self):
        lines = self._read_lines()
        if not os.path.isdir(self.root):
            raise DataError(f"{self.root}: image folder not found (list file {self.list_file})")
        entries = []
        for lineno, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.rsplit(None, 1)
            if len(parts) != 2:
                raise DataError(f"{self._where(lineno, text)}: missing label "
                                f"(expected 'path label[,label...]')")
            rel, label_text = parts
            labels = []
            for tok in label_text.split(","):
                try:
                    value = int(tok)
                except ValueError:
                    raise DataError(f"{self._where(lineno, rel)}: bad label {label_text!r} "
                                    f"(expected integers separated by commas)") from None
                if value < 0 or (self.num_classes is not None and value >= self.num_classes):
                    limit = f"0..{self.num_classes - 1}" if self.num_classes else ">= 0"
                    raise DataError(f"{self._where(lineno, rel)}: label {value} out of range "
                                    f"({limit})")
                labels.append(value)
            if not self.allow_outside_root and not stays_inside(rel):
                raise DataError(f"{self._where(lineno, rel)}: path leaves the image folder "
                                f"{self.root} (pass allow_outside_root=True to allow it)")
            path = os.path.join(self.root, rel)
            if os.path.exists(path) and not os.path.isfile(path):
                raise DataError(f"{self._where(lineno, rel)}: not a regular file ({path})")
            if not os.path.isfile(path):
                raise DataError(f"{self._where(lineno, rel)}: image not found ({path})")
            label = np.int64(labels[0]) if len(labels) == 1 else np.asarray(labels, np.int64)
            entries.append((path, lineno, label))
        if not entries:
            raise DataError(f"{self.list_file}: no samples listed")
        return entries

    def _decode(self, k: int) -> np.ndarray:
        """Read, convert and resize image ``k``; return uint8 [C, H, W] in the output channel
        order."""
        path, lineno, _ = self.entries[k]
        return decode_image(path, self.color, self.size, self._prefix(lineno))

    def _prefix(self, lineno: int) -> str:
        return f"{self.list_file}:{lineno}: "

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index):
        k = check_index(index, len(self))
        pixels = self._cache[k] if self._cache is not None else self._decode(k)
        x = (pixels.astype(np.float32) - self._mean) * self._scale
        return x.astype(np.float32, copy=False), self.entries[k][2]


class ImageFolder(ImageDataset):
    """A folder with one sub-folder per class, as torchvision's ImageFolder reads it.

    ``root/<class>/<image>`` with classes sorted by name (label k is ``classes[k]``) and images
    sorted within each class; files whose extension is not in ``extensions`` (png, jpg, jpeg,
    bmp, pgm, ppm by default, any case) are skipped, as are hidden files and folders. The other
    arguments are :class:`ImageDataset`'s; ``classes`` and ``class_to_idx`` are as torchvision's.
    """

    def __init__(self, root: str, color: str = "rgb", size: Optional[Tuple[int, int]] = None,
                 scale: Sequence[float] = (1 / 255.0,), mean: Sequence[float] = (0.0,),
                 in_memory: bool = False, extensions: Sequence[str] = IMAGE_EXTENSIONS):
        self.list_file = root
        self.allow_outside_root = False
        self.extensions = tuple(e.lower() for e in extensions)
        self.classes = self._find_classes(root)
        self.class_to_idx = {c: k for k, c in enumerate(self.classes)}
        self._configure(root, color, size, scale, mean, len(self.classes))
        self.entries = self._scan()
        self._cache = None
        if in_memory:
            self.load_all()

    @staticmethod
    def _find_classes(root: str) -> List[str]:
        if not os.path.isdir(root):
            raise DataError(f"{root}: image folder not found")
        try:
            names = sorted(e.name for e in os.scandir(root)
                           if e.is_dir() and not e.name.startswith("."))
        except OSError as e:
            raise DataError(f"{root}: cannot list the folder ({e.strerror or e})") from None
        if not names:
            raise DataError(f"{root}: no class sub-folders (expected {root}/<class>/<image>)")
        return names

    def _scan(self):
        entries = []
        for label, name in enumerate(self.classes):
            paths = []
            for dirpath, dirnames, filenames in os.walk(os.path.join(self.root, name)):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                paths += [os.path.join(dirpath, f) for f in filenames
                          if not f.startswith(".") and f.lower().endswith(self.extensions)]
            for path in sorted(paths):
                if not os.path.isfile(path):
                    raise DataError(f"{path}: not a regular file")
                entries.append((path, 0, np.int64(label)))
        if not entries:
            raise DataError(f"{self.root}: no images ({', '.join(self.extensions)}) in its "
                            f"class sub-folders")
        return entries

    def _prefix(self, lineno: int) -> str:
        return ""
