"""Issue 12's four model families (tests/families.py): one training step, edgetrain vs PyTorch
in the same run (same model code, same weights, AdamW, same batch, same thread count, one
warm-up step). Ratios (PyTorch time / edgetrain time) are printed at the end of the run.
No targets yet: these are the workloads the next performance issue aims at.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import QUICK, median_seconds, record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from families import FAMILIES, seg_target  # noqa: E402

CASES = [("resnet18", 64, 1), ("unet", 64, 1), ("vit", 64, 1), ("lstm", 64, 1),
         ("resnet18", 64, 2), ("unet", 64, 2), ("vit", 64, 2), ("lstm", 64, 2)]
if QUICK:
    CASES = [(name, 4, 1) for name in FAMILIES]


def _data(name, batch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = seg_target(x) if name == "unet" else rng.integers(0, 10, batch).astype(np.int64)
    return x, y


def edgetrain_step(name, batch, threads):
    import edgetrain as et
    from edgetrain import nn, optim

    et.manual_seed(0)
    model = FAMILIES[name](nn, et.cat)
    x, y = _data(name, batch)
    if name == "unet":
        loss, labels = nn.BCEWithLogitsLoss(), {"label": (y.shape, "float32")}
    else:
        loss, labels = nn.CrossEntropyLoss(), {"label": ((batch,), "int64")}
    sess = et.TrainSession.from_module(model, inputs={"data": x.shape}, loss=loss, labels=labels,
                                       optimizer=optim.AdamW(model.parameters(), lr=1e-3),
                                       threads=threads)
    sess.Train()
    feeds = {"data": x, "label": y}
    return lambda: sess.RunGraph(feeds)


def torch_step(name, batch, threads):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = FAMILIES[name](torch.nn, torch.cat)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = (torch.from_numpy(a) for a in _data(name, batch))
    loss_fn = (torch.nn.functional.binary_cross_entropy_with_logits if name == "unet"
               else torch.nn.functional.cross_entropy)

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return step


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-b{c[1]}-t{c[2]}")
@pytest.mark.parametrize("impl", ["edgetrain", "torch"])
def test_family_train_step(benchmark, impl, case):
    name, batch, threads = case
    step = (edgetrain_step if impl == "edgetrain" else torch_step)(name, batch, threads)
    step()  # warm up (first-touch of the arena, torch's allocator)
    benchmark.pedantic(step, rounds=3 if QUICK else 10, iterations=1, warmup_rounds=1)
    s = median_seconds(benchmark)
    if s:
        record(f"train {name} b{batch} t{threads}", impl, s)
        benchmark.extra_info["images_per_s"] = batch / s
