"""edgetrain.data: IDX/MNIST parsing, ImageDataset, transforms, samplers and the DataLoader."""
import gc
import gzip
import os
import threading
import time

import numpy as np
import pytest

from edgetrain.data import (Compose, DataError, DataLoader, Dataset, ImageDataset, Lambda,
                            MnistDataset, Normalize, Pad, RandomCrop, RandomHorizontalFlip,
                            RandomSampler, SequentialSampler, Subset, SubsetRandomSampler,
                            TensorDataset, ToFloat, TransformDataset, collate, read_idx)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_MNIST = os.path.join(REPO, "data", "mnist")


# --------------------------------------------------------------------------- IDX / MNIST helpers

def idx_bytes(arr, magic=None):
    arr = np.asarray(arr, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | arr.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.tobytes()


def write(path, data, gz):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if gz:
        path += ".gz"
        data = gzip.compress(data)
    with open(path, "wb") as f:
        f.write(data)
    return path


def fake_mnist(n_train=50, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    return {"train": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                      rng.integers(0, 10, n_train, dtype=np.uint8)),
            "t10k": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                     rng.integers(0, 10, n_test, dtype=np.uint8))}


def write_mnist(root, data, gz=True, layout="flat"):
    paths = {}
    for prefix, (images, labels) in data.items():
        folder = root if layout == "flat" else os.path.join(root, "train" if prefix == "train" else "test")
        paths[prefix + "-images"] = write(os.path.join(folder, f"{prefix}-images-idx3-ubyte"),
                                          idx_bytes(images, 2051), gz)
        paths[prefix + "-labels"] = write(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"),
                                          idx_bytes(labels, 2049), gz)
    return paths


# --------------------------------------------------------------------------- IDX parsing

@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["flat", "split"])
def test_mnist_dataset_reads_both_layouts_gz_and_raw(tmp_path, gz, layout):
    data = fake_mnist()
    write_mnist(str(tmp_path), data, gz=gz, layout=layout)
    for train, prefix in ((True, "train"), (False, "t10k")):
        ds = MnistDataset(str(tmp_path), train=train, normalize=False)
        images, labels = data[prefix]
        assert len(ds) == len(labels)
        x, y = ds[3]
        assert x.shape == (1, 28, 28) and x.dtype == np.float32
        assert y.dtype == np.int64 and int(y) == labels[3]
        np.testing.assert_allclose(x[0], images[3] / 255.0, rtol=1e-6)
        assert ds.images.dtype == np.uint8  # stored compactly, converted per batch


def test_mnist_normalisation_default_and_custom(tmp_path):
    data = fake_mnist()
    write_mnist(str(tmp_path), data)
    images = data["train"][0]
    x, _ = MnistDataset(str(tmp_path))[0]
    np.testing.assert_allclose(x[0], (images[0] / 255.0 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-6)
    x, _ = MnistDataset(str(tmp_path), mean=0.5, std=0.5)[0]
    np.testing.assert_allclose(x[0], (images[0] / 255.0 - 0.5) / 0.5, rtol=1e-5, atol=1e-6)


def test_mnist_get_batch_matches_getitem_and_pads(tmp_path):
    write_mnist(str(tmp_path), fake_mnist())
    ds = MnistDataset(str(tmp_path))
    idx = np.array([4, 0, 17, 4])
    xb, yb = ds.get_batch(idx)
    assert xb.shape == (4, 1, 28, 28) and xb.dtype == np.float32 and yb.dtype == np.int64
    for k, i in enumerate(idx):
        x, y = ds[int(i)]
        np.testing.assert_array_equal(xb[k], x)
        assert yb[k] == y
    padded = MnistDataset(str(tmp_path), pad=2)
    xp, _ = padded.get_batch(idx)
    assert xp.shape == (4, 1, 32, 32)
    np.testing.assert_array_equal(xp[:, :, 2:30, 2:30], xb)
    background = (0.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(xp[:, :, :2, :], background, rtol=1e-6)
    np.testing.assert_allclose(xp[:, :, :, 30:], background, rtol=1e-6)


def test_read_idx_generic(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = write(str(tmp_path / "a-idx3-ubyte"), idx_bytes(arr), gz=False)
    np.testing.assert_array_equal(read_idx(p), arr)
    p = write(str(tmp_path / "b-idx3-ubyte"), idx_bytes(arr), gz=True)
    np.testing.assert_array_equal(read_idx(p), arr)


def corrupt(tmp_path, which, mutate, gz=True):
    root = str(tmp_path)
    paths = write_mnist(root, fake_mnist(), gz=gz)
    path = paths[which]
    with open(path, "rb") as f:
        raw = gzip.decompress(f.read()) if gz else f.read()
    raw = mutate(raw)
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if gz else raw)
    return root, path


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("which, mutate, message", [
    ("train-images", lambda b: b[:-100], "truncated"),
    ("train-images", lambda b: b[:10], "truncated header"),
    ("train-labels", lambda b: b[:2], "too short"),
    ("train-images", lambda b: b + b"xx", "unexpected bytes"),
    ("train-images", lambda b: (2049).to_bytes(4, "big") + b[4:], "bad magic"),
    ("train-labels", lambda b: b"\x12\x34\x56\x78" + b[4:], "bad magic"),
    ("train-labels", lambda b: b[:8] + bytes([12]) + b[9:], "not a digit"),
])
def test_bad_idx_files_raise_data_error_naming_the_path(tmp_path, gz, which, mutate, message):
    root, path = corrupt(tmp_path, which, mutate, gz)
    with pytest.raises(DataError) as e:
        MnistDataset(root, train=True)
    assert path in str(e.value) and message in str(e.value)
    assert isinstance(e.value, ValueError)


def test_count_mismatch_between_images_and_labels(tmp_path):
    data = fake_mnist()
    data["train"] = (data["train"][0], data["train"][1][:-1])
    paths = write_mnist(str(tmp_path), data)
    with pytest.raises(DataError, match="49 labels but .* 50 images") as e:
        MnistDataset(str(tmp_path))
    assert paths["train-labels"] in str(e.value)


def test_corrupt_gzip_and_missing_files(tmp_path):
    root = str(tmp_path)
    paths = write_mnist(root, fake_mnist())
    with open(paths["t10k-images"], "r+b") as f:
        f.truncate(200)  # cut the gzip stream
    with pytest.raises(DataError, match="gzip") as e:
        MnistDataset(root, train=False)
    assert paths["t10k-images"] in str(e.value)
    os.remove(paths["train-labels"])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.*not found"):
        MnistDataset(root, train=True)
    with pytest.raises(DataError, match="not found") as e:
        MnistDataset(str(tmp_path / "nowhere"))
    assert "nowhere" in str(e.value)


def test_wrong_image_size_rejected(tmp_path):
    data = fake_mnist()
    root = str(tmp_path)
    write_mnist(root, data)
    write(os.path.join(root, "train-images-idx3-ubyte"),
          idx_bytes(np.zeros((50, 27, 28), np.uint8), 2051), gz=True)
    with pytest.raises(DataError, match="27x28"):
        MnistDataset(root)


def test_real_mnist_matches_published_facts():
    train = MnistDataset(REAL_MNIST, train=True)
    test = MnistDataset(REAL_MNIST, train=False)
    assert len(train) == 60000 and len(test) == 10000
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(train.images.mean() / 255 - 0.1306604763) < 1e-8


def test_mnist_epoch_through_the_batch_path():
    """A full shuffled epoch goes through get_batch (speed: benchmarks/test_bench_data.py)."""
    ds = MnistDataset(REAL_MNIST, train=True)
    loader = DataLoader(ds, batch_size=64, shuffle=True, seed=0)
    n = 0
    for x, y in loader:
        assert x.dtype == np.float32 and x.shape[1:] == (1, 28, 28)
        n += len(y)
    assert n == 60000


# --------------------------------------------------------------------------- DataLoader

class CountingDataset(Dataset):
    """x = [i, i], y = i; counts calls; optional failure at one index."""

    def __init__(self, n, fail_at=None):
        self.n, self.fail_at, self.calls = n, fail_at, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.calls += 1
        if i == self.fail_at:
            raise RuntimeError(f"boom at {i}")
        return np.array([i, i], np.float64), i


def test_loader_batches_partial_and_drop_last():
    ds = CountingDataset(10)
    loader = DataLoader(ds, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.dtype == np.float32 and x.shape == (4, 2) and x.flags.c_contiguous
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2, 3]
    loader = DataLoader(ds, batch_size=4, drop_last=True)
    assert len(loader) == 2 and [len(y) for _, y in loader] == [4, 4]
    assert len(DataLoader(ds, batch_size=5, drop_last=True)) == 2
    assert len(DataLoader(ds, batch_size=20)) == 1 and len(DataLoader(ds, batch_size=20, drop_last=True)) == 0


def test_loader_uses_get_batch_fast_path():
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    y = np.arange(10, dtype=np.int32)

    class Spy(TensorDataset):
        def __getitem__(self, i):
            raise AssertionError("per-sample path used")

    batches = list(DataLoader(Spy(x, y), batch_size=4))
    np.testing.assert_array_equal(batches[2][0], x[8:])
    assert batches[0][1].dtype == np.int64


def all_batches(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


@pytest.mark.parametrize("make", [lambda: CountingDataset(23),
                                  lambda: TensorDataset(np.arange(46.).reshape(23, 2), np.arange(23))])
def test_loader_deterministic_across_workers_and_epochs(make):
    runs = {}
    for workers in (0, 1, 2, 3):
        loader = DataLoader(make(), batch_size=4, shuffle=True, seed=7, num_workers=workers, prefetch=2)
        runs[workers] = [all_batches(loader) for _ in range(3)]  # three epochs
    for workers in (1, 2, 3):
        for e in range(3):
            for (xa, ya), (xb, yb) in zip(runs[0][e], runs[workers][e]):
                np.testing.assert_array_equal(xa, xb)
                np.testing.assert_array_equal(ya, yb)
    order = [np.concatenate([y for _, y in runs[0][e]]) for e in range(3)]
    assert sorted(order[0].tolist()) == list(range(23))
    assert not np.array_equal(order[0], order[1]) and not np.array_equal(order[1], order[2])
    other = DataLoader(make(), batch_size=4, shuffle=True, seed=8)
    assert not np.array_equal(np.concatenate([y for _, y in other]), order[0])
    again = DataLoader(make(), batch_size=4, shuffle=True, seed=7)
    again.set_epoch(2)
    np.testing.assert_array_equal(np.concatenate([y for _, y in again]), order[2])
    resumed = DataLoader(make(), batch_size=4, shuffle=True, seed=7)
    tail = list(resumed.iter_epoch(1, start=2))
    np.testing.assert_array_equal(np.concatenate([y for _, y in tail]),
                                  np.concatenate([y for _, y in runs[0][1][2:]]))


def loader_threads():
    return [t for t in threading.enumerate() if t.name.startswith("edgetrain-loader")]


def test_loader_early_break_shuts_workers_down():
    before = len(loader_threads())
    loader = DataLoader(CountingDataset(1000), batch_size=4, num_workers=2, prefetch=2)
    it = iter(loader)
    next(it)
    assert len(loader_threads()) > before
    it.close()
    assert len(loader_threads()) == before
    for k, _ in enumerate(loader):
        if k == 3:
            break
    del _
    gc.collect()
    deadline = time.time() + 5
    while len(loader_threads()) > before and time.time() < deadline:
        time.sleep(0.01)
    assert len(loader_threads()) == before
    ds = CountingDataset(1000)
    it = iter(DataLoader(ds, batch_size=4, num_workers=2, prefetch=2))
    next(it)
    time.sleep(0.05)
    assert ds.calls <= 4 * (1 + 2 * 2 + 2)  # bounded prefetch, not the whole epoch


@pytest.mark.parametrize("workers", [0, 2])
def test_worker_exception_reraised_in_main_thread(workers):
    loader = DataLoader(CountingDataset(40, fail_at=13), batch_size=4, num_workers=workers)
    seen = []
    with pytest.raises(RuntimeError, match="boom at 13"):
        for _, y in loader:
            seen.append(y)
    assert len(seen) == 3  # batches 0..2 delivered in order before the failing one
    assert len(loader_threads()) == 0 or workers == 0


def test_loader_argument_errors():
    with pytest.raises(ValueError):
        DataLoader(CountingDataset(3), batch_size=0)
    with pytest.raises(ValueError):
        DataLoader(CountingDataset(3), shuffle=True, sampler=SequentialSampler(3))
    with pytest.raises(ValueError, match="cannot stack"):
        collate([(np.zeros(2), 0), (np.zeros(3), 1)])


def test_collate_nested_and_single():
    b = collate([((np.zeros(2, np.uint8), np.ones(3)), (1, 2.5)) for _ in range(4)])
    (x0, x1), (y0, y1) = b
    assert x0.shape == (4, 2) and x0.dtype == np.float32 and x1.dtype == np.float32
    assert y0.dtype == np.int64 and y1.dtype == np.float32
    single = collate([np.zeros(3) for _ in range(2)])
    assert single.shape == (2, 3) and single.dtype == np.float32


def test_tensor_dataset_and_subset():
    x, y = np.arange(12).reshape(6, 2), np.arange(6)
    ds = TensorDataset(x, y)
    assert len(ds) == 6 and ds[-1][1] == 5
    with pytest.raises(ValueError):
        TensorDataset(x, y[:5])
    with pytest.raises(IndexError):
        ds[6]
    sub = Subset(ds, [5, 1, 3])
    assert len(sub) == 3 and sub[0][1] == 5
    xb, yb = sub.get_batch([2, 0])
    assert yb.tolist() == [3, 5]
    assert not hasattr(Subset(CountingDataset(4), [0]), "get_batch")


# --------------------------------------------------------------------------- samplers

def test_samplers():
    s = SequentialSampler(5)
    assert len(s) == 5 and list(s) == [0, 1, 2, 3, 4]
    r = RandomSampler(100, seed=3)
    a, b = r.indices(0), r.indices(1)
    assert sorted(a.tolist()) == list(range(100)) and not np.array_equal(a, b)
    np.testing.assert_array_equal(a, RandomSampler(100, seed=3).indices(0))
    assert not np.array_equal(a, RandomSampler(100, seed=4).indices(0))
    r.set_epoch(1)
    assert list(r) == b.tolist()
    sub = SubsetRandomSampler([10, 20, 30, 40], seed=1)
    assert len(sub) == 4 and sorted(sub.indices(0).tolist()) == [10, 20, 30, 40]
    loader = DataLoader(CountingDataset(50), batch_size=3, sampler=sub)
    assert len(loader) == 2
    assert sorted(np.concatenate([y for _, y in loader]).tolist()) == [10, 20, 30, 40]


# --------------------------------------------------------------------------- transforms

def test_elementwise_transforms():
    x = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    f = ToFloat()(x)
    assert f.dtype == np.float32 and np.isclose(f.max(), 17 / 255)
    assert ToFloat(scale=2.0)(x)[1, 2, 2] == 34
    n = Normalize((0.5, 1.0), (0.5, 2.0))(f)
    np.testing.assert_allclose(n[0], (f[0] - 0.5) / 0.5, rtol=1e-6)
    np.testing.assert_allclose(n[1], (f[1] - 1.0) / 2.0, rtol=1e-6)
    nb = Normalize((0.5, 1.0), (0.5, 2.0)).apply_batch(np.stack([f, f]))
    np.testing.assert_allclose(nb[1], n, rtol=1e-6)
    assert Pad(1)(x).shape == (2, 5, 5) and Pad((1, 2))(x).shape == (2, 5, 7)
    comp = Compose([ToFloat(), lambda v: v * 2])
    np.testing.assert_allclose(comp(x), f * 2)
    np.testing.assert_allclose(comp.apply_batch(np.stack([x, x]))[0], f * 2)
    np.testing.assert_allclose(Lambda(lambda v: v.sum(axis=(1, 2, 3)), batched=True)
                               .apply_batch(np.ones((3, 1, 2, 2))), [4, 4, 4])


def contains_window(padded, crop):
    h, w = crop.shape[-2:]
    for oy in range(padded.shape[-2] - h + 1):
        for ox in range(padded.shape[-1] - w + 1):
            if np.array_equal(padded[..., oy:oy + h, ox:ox + w], crop):
                return True
    return False


def test_random_crop_and_flip_batch_and_sample():
    rng = np.random.default_rng(0)
    xb = rng.random((6, 2, 5, 5)).astype(np.float32)
    crop = RandomCrop(5, padding=2)
    out = crop.apply_batch(xb, np.random.default_rng(1))
    assert out.shape == (6, 2, 5, 5)
    padded = np.pad(xb, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for k in range(6):
        assert contains_window(padded[k], out[k])
    np.testing.assert_array_equal(out, crop.apply_batch(xb, np.random.default_rng(1)))
    single = RandomCrop((3, 4))(xb[0], np.random.default_rng(2))
    assert single.shape == (2, 3, 4) and contains_window(xb[0], single)
    with pytest.raises(ValueError):
        RandomCrop(9)(xb[0], rng)
    flipped = RandomHorizontalFlip(1.0).apply_batch(xb, rng)
    np.testing.assert_array_equal(flipped, xb[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0).apply_batch(xb, rng), xb)
    half = RandomHorizontalFlip(0.5).apply_batch(np.repeat(xb[:1], 200, 0), np.random.default_rng(3))
    n_flipped = sum(np.array_equal(h, xb[0, ..., ::-1]) for h in half)
    assert 60 < n_flipped < 140
    assert np.array_equal(RandomHorizontalFlip(1.0)(xb[0]), xb[0, ..., ::-1])


def test_transform_dataset_reproducible_through_loader():
    x = np.random.default_rng(0).random((30, 1, 6, 6)).astype(np.float32)
    base = TensorDataset(x, np.arange(30))
    aug = TransformDataset(base, Compose([RandomCrop(6, padding=1), RandomHorizontalFlip()]))
    runs = [all_batches(DataLoader(aug, batch_size=8, shuffle=True, seed=5, num_workers=w))
            for w in (0, 2)]
    for (xa, ya), (xb, yb) in zip(*runs):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(xa, x[ya]) for xa, ya in runs[0])  # augmentation happened
    plain = TransformDataset(CountingDataset(5), Lambda(lambda v: v + 1))
    xb, yb = list(DataLoader(plain, batch_size=5))[0]
    np.testing.assert_array_equal(xb[:, 0], np.arange(5) + 1)
    xs, ys = plain[2]
    assert xs.tolist() == [3, 3] and ys == 2


# --------------------------------------------------------------------------- ImageDataset

@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image
    root = tmp_path / "images"
    (root / "sub dir").mkdir(parents=True)
    colors = {"red.png": (255, 0, 0), "green.png": (0, 255, 0), "sub dir/blue.png": (0, 0, 255)}
    for name, rgb in colors.items():
        arr = np.zeros((4, 6, 3), np.uint8)
        arr[:] = rgb
        arr[0, 0] = (10, 20, 30)
        Image.fromarray(arr).save(root / name)
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(root / "gray.png")
    (root / "broken.png").write_bytes(b"not a png at all")
    return root


def write_list(tmp_path, lines, name="list.txt"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def test_image_dataset_rgb_bgr_gray_and_labels(tmp_path, image_folder):
    lst = write_list(tmp_path, ["# comment", "red.png 0", "", "green.png 1,2", "sub dir/blue.png 2"])
    rgb = ImageDataset(str(image_folder), lst, color="rgb", scale=(1.0,))
    assert len(rgb) == 3
    x, y = rgb[0]
    assert x.shape == (3, 4, 6) and x.dtype == np.float32 and y == 0 and y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1, 1], [255, 0, 0])
    np.testing.assert_array_equal(x[:, 0, 0], [10, 20, 30])
    _, y = rgb[1]
    assert y.tolist() == [1, 2]  # multi-label line
    bgr = ImageDataset(str(image_folder), lst, color="bgr", scale=1.0)
    np.testing.assert_array_equal(bgr[0][0][:, 0, 0], [30, 20, 10])
    np.testing.assert_array_equal(bgr[2][0][:, 1, 1], [255, 0, 0])
    gray = ImageDataset(str(image_folder), lst, color="gray", size=(8, 12), scale=1.0)
    g, _ = gray[0]
    assert g.shape == (1, 8, 12)
    assert abs(g[0, 4, 6] - (0.299 * 255)) < 1.5  # ITU-R 601 luma of pure red
    norm = ImageDataset(str(image_folder), lst, color="rgb", mean=(255, 0, 0), scale=(1 / 255, 1, 0.5),
                        in_memory=True)
    np.testing.assert_allclose(norm[0][0][:, 1, 1], [0, 0, 0])
    np.testing.assert_allclose(norm[2][0][:, 1, 1], [-1, 0, 127.5])
    single = ImageDataset(str(image_folder), write_list(tmp_path, ["red.png 0", "sub dir/blue.png 2"], "b.txt"))
    xb, yb = next(iter(DataLoader(single, batch_size=2, num_workers=1)))
    assert xb.shape == (2, 3, 4, 6) and yb.tolist() == [0, 2]
    assert np.isclose(xb.max(), 1.0)


@pytest.mark.parametrize("line, message, in_memory", [
    ("missing.png 1", "image not found", False),
    ("red.png one", "bad label", False),
    ("red.png 1,,2", "bad label", False),
    ("red.png", "missing label", False),
    ("red.png 10", "out of range", False),
    ("red.png -1", "out of range", False),
    ("broken.png 1", "unreadable image", True),
])
def test_image_dataset_errors_name_file_and_line(tmp_path, image_folder, line, message, in_memory):
    lst = write_list(tmp_path, ["red.png 0", "# ok", line])
    with pytest.raises(DataError) as e:
        ImageDataset(str(image_folder), lst, num_classes=10, in_memory=in_memory)
    text = str(e.value)
    assert message in text and f"{lst}:3" in text and line.split()[0] in text


def test_image_dataset_unreadable_lazily_and_missing_list(tmp_path, image_folder):
    lst = write_list(tmp_path, ["red.png 0", "broken.png 1"])
    ds = ImageDataset(str(image_folder), lst)
    ds[0]
    with pytest.raises(DataError, match=r"list.txt:2: .*broken.png: unreadable image"):
        ds[1]
    with pytest.raises(DataError, match="list file not found"):
        ImageDataset(str(image_folder), str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="no samples"):
        ImageDataset(str(image_folder), write_list(tmp_path, ["# nothing"], "empty.txt"))
    with pytest.raises(ValueError):
        ImageDataset(str(image_folder), lst, color="cmyk")


# --------------------------------------------------------------------------- hardening

def _gzip_stream(header, zero_bytes, chunk=1 << 20):
    """gzip of ``header`` followed by ``zero_bytes`` zeros, built without holding them."""
    import zlib
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [c.compress(header)]
    zeros = bytes(chunk)
    for _ in range(zero_bytes // chunk):
        parts.append(c.compress(zeros))
    parts.append(c.flush())
    return b"".join(parts)


def test_gzip_bomb_is_refused_without_decompressing_it(tmp_path):
    import tracemalloc
    header = idx_bytes(np.zeros((10, 28, 28), np.uint8), 2051)[:16]
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(_gzip_stream(header, 256 << 20))  # 10 images declared, 256 MiB inside
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    t = time.perf_counter()
    with pytest.raises(DataError, match="unexpected bytes after the 10x28x28 data"):
        read_idx(str(bomb), 2051)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20 and time.perf_counter() - t < 2.0
    huge = tmp_path / "huge.gz"  # a header announcing 2^32 x 28 x 28 bytes is refused at once
    huge.write_bytes(gzip.compress((2051).to_bytes(4, "big") + (1 << 32 - 1).to_bytes(4, "big")
                                   + (28).to_bytes(4, "big") * 2))
    with pytest.raises(DataError, match="more than the limit"):
        read_idx(str(huge), 2051)


def test_list_paths_stay_inside_the_image_folder(tmp_path, image_folder):
    outside = tmp_path / "outside.png"
    import shutil
    shutil.copy(image_folder / "red.png", outside)
    for rel in ("../outside.png", str(outside), "sub dir/../../outside.png"):
        lst = write_list(tmp_path, ["red.png 0", f"{rel} 1"])
        with pytest.raises(DataError, match=r"list.txt:2: .*leaves the image folder"):
            ImageDataset(str(image_folder), lst)
        assert len(ImageDataset(str(image_folder), lst, allow_outside_root=True)) == 2
    inside = write_list(tmp_path, ["sub dir/../red.png 0"], "in.txt")
    assert len(ImageDataset(str(image_folder), inside)) == 1


def test_decompression_bomb_and_non_utf8_list_are_data_errors(tmp_path, image_folder,
                                                              monkeypatch):
    from PIL import Image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5)  # 4x6 = 24 pixels > 2 * 5: a "bomb"
    ds = ImageDataset(str(image_folder), write_list(tmp_path, ["red.png 0"]))
    with pytest.raises(DataError, match=r"list.txt:1: .*red.png: image too large"):
        ds[0]
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"red.png 0\n# comment\ngr\xfcn.png 1\n")
    with pytest.raises(DataError, match=r"latin1.txt:3: not UTF-8 text"):
        ImageDataset(str(image_folder), str(bad))


def test_fifos_are_refused_not_read(tmp_path, image_folder):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        read_idx(str(fifo))
    with pytest.raises(DataError, match="not a regular file"):
        ImageDataset(str(image_folder), str(fifo))
    os.mkfifo(image_folder / "pipe.png")
    with pytest.raises(DataError, match=r"list.txt:1: pipe.png: not a regular file"):
        ImageDataset(str(image_folder), write_list(tmp_path, ["pipe.png 0"]))
    with pytest.raises(DataError, match="not a regular file"):
        read_idx("/dev/zero")
    with pytest.raises(DataError, match="cannot open"):
        read_idx(str(tmp_path / "a\0b"))


def test_image_folder_layout(tmp_path):
    from PIL import Image
    from edgetrain.data import ImageFolder
    root = tmp_path / "folder"
    layout = {"b_dog": ["2.PNG", "1.jpg", "deep/3.bmp", "notes.txt", ".hidden.png"],
              "a_cat": ["x.pgm", "y.ppm", "z.jpeg"], ".git": ["q.png"]}
    for cls, files in layout.items():
        for f in files:
            p = root / cls / f
            p.parent.mkdir(parents=True, exist_ok=True)
            if f.endswith(".txt"):
                p.write_text("hi")
                continue
            mode = "L" if f.endswith(".pgm") else "RGB"
            fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "pgm": "PPM",
                   "ppm": "PPM"}[f.rsplit(".", 1)[1].lower()]
            Image.new(mode, (5, 3), 200).save(p, format=fmt)
    ds = ImageFolder(str(root), size=(4, 4), color="gray")
    assert ds.classes == ["a_cat", "b_dog"] and ds.class_to_idx == {"a_cat": 0, "b_dog": 1}
    names = [os.path.relpath(p, root) for p, _, _ in ds.entries]
    assert names == ["a_cat/x.pgm", "a_cat/y.ppm", "a_cat/z.jpeg", "b_dog/1.jpg", "b_dog/2.PNG",
                     "b_dog/deep/3.bmp"]
    assert [int(y) for _, y in (ds[k] for k in range(len(ds)))] == [0, 0, 0, 1, 1, 1]
    x, _ = ds[0]
    assert x.shape == (1, 4, 4) and x.dtype == np.float32
    xb, yb = next(iter(DataLoader(ds, batch_size=6)))
    assert xb.shape == (6, 1, 4, 4) and yb.tolist() == [0, 0, 0, 1, 1, 1]
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        ImageFolder(str(tmp_path / "flat"))
    (tmp_path / "flat" / "c").mkdir()
    with pytest.raises(DataError, match="no images"):
        ImageFolder(str(tmp_path / "flat"))
    with pytest.raises(DataError, match="not found"):
        ImageFolder(str(tmp_path / "nope"))


def test_data_and_nn_import_without_the_native_extension():
    """`edgetrain.data` and `edgetrain.nn` work where the C runtime is not built (a data-prep
    machine); only TrainSession needs it, and says so when it is missing."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['edgetrain._native'] = None\n"
            "import edgetrain, edgetrain.data, edgetrain.nn\n"
            "from edgetrain.data import TensorDataset, DataLoader\n"
            "import numpy as np\n"
            "ds = TensorDataset(np.zeros((4, 2), np.float32), np.arange(4))\n"
            "assert len(list(DataLoader(ds, batch_size=2))) == 2\n"
            "edgetrain.nn.Linear(2, 3)\n"
            "assert 'edgetrain.session' not in sys.modules\n"
            "try:\n"
            "    edgetrain.TrainSession\n"
            "except ImportError as e:\n"
            "    assert 'not built' in str(e), e\n"
            "else:\n"
            "    raise AssertionError('TrainSession without the extension')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_mnist_batch_gather_is_bitwise_the_lookup_table(tmp_path, monkeypatch):
    """get_batch's one-pass gather (_batch.lut_gather_u8) gives numpy's lut[images[idx]] bit for
    bit, refuses bad arguments, and the numpy fallback (no extension built) is the same."""
    from edgetrain.data import mnist
    from edgetrain.data._batch import lut_gather_u8
    write_mnist(str(tmp_path), fake_mnist())
    ds = MnistDataset(str(tmp_path), mean=0.3, std=0.7)
    idx = np.array([5, -1, 0, 5, 19])
    fast, y = ds.get_batch(idx)
    expect = ds._lut[ds.images[np.where(idx < 0, idx + len(ds), idx)]][:, None]
    assert fast.tobytes() == expect.tobytes()
    monkeypatch.setattr(mnist, "lut_gather_u8", None)
    slow, y2 = ds.get_batch(idx)
    assert slow.tobytes() == fast.tobytes() and (y == y2).all()
    out = np.empty((2, 784), np.float32)
    good = np.array([0, 3], np.int64)
    with pytest.raises(IndexError, match="out of range"):
        lut_gather_u8(ds.images, np.array([0, len(ds)], np.int64), ds._lut, out)
    with pytest.raises(IndexError, match="out of range"):
        lut_gather_u8(ds.images, np.array([-1, 0], np.int64), ds._lut, out)
    with pytest.raises(ValueError, match="elements"):
        lut_gather_u8(ds.images, good, ds._lut, np.empty((3, 784), np.float32))
    with pytest.raises(TypeError, match="idx"):
        lut_gather_u8(ds.images, good.astype(np.int32), ds._lut, out)
    with pytest.raises(TypeError, match="lut"):
        lut_gather_u8(ds.images, good, ds._lut[:255], out)
    with pytest.raises(TypeError, match="images"):
        lut_gather_u8(ds.images.astype(np.int16), good, ds._lut, out)
    with pytest.raises(TypeError, match="out"):
        lut_gather_u8(ds.images, good, ds._lut, np.empty((2, 784), np.float64))
    assert lut_gather_u8(ds.images, good, ds._lut, out).tobytes() == \
        ds._lut[ds.images[good]].tobytes()
    # rows longer than the copy buffer (16 KiB) go in pieces; empty rows and batches work
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, size=(5, 3, 97, 61), dtype=np.uint8)  # 17751-byte rows
    pick = np.array([4, 0, 4, 2], np.int64)
    got = lut_gather_u8(big, pick, ds._lut, np.empty((4, 3, 97, 61), np.float32))
    assert got.tobytes() == ds._lut[big[pick]].tobytes()
    assert lut_gather_u8(np.zeros((3, 0), np.uint8), pick[:2] % 3, ds._lut,
                         np.empty((2, 0), np.float32)).size == 0
    assert lut_gather_u8(big, pick[:0], ds._lut, np.empty((0, 3), np.float32)).size == 0
