"""Issue 12's four model families (tests/families.py: ResNet-18 layout, U-Net, ViT-tiny, row
LSTM), each written once with PyTorch names and built from both libraries.

1. Against PyTorch over 10 Adam steps on real MNIST batches: the loss of every step
   (rtol 1e-4) and every weight at the end (rtol 1e-3, plus an atol for weights near zero:
   1e-5, or one Adam step for the ResNet; see CASES).
   PyTorch runs in float64, so the reference carries no rounding of its own and what is
   compared is edgetrain's float32 result against the exact one.
2. The accuracy each reaches on real MNIST (marked slow; `make test` runs them): ResNet
   >= 99.3 % after 2 epochs, U-Net IoU >= 0.90 after 1, ViT >= 97 % after 3, LSTM >= 97 %
   after 2 (issue 12's targets). Measured 2026-12-05 at 1 thread on the 2-vCPU Xeon near idle
   (load ~2): an epoch takes ResNet ~216 s, U-Net ~160 s, ViT ~37 s, LSTM ~38 s, i.e. about
   13-14 minutes for the four runs; under the heavy load of a shared machine it is 2-7x more.
"""
import time

import numpy as np
import pytest
import torch

import edgetrain as et
from edgetrain import nn, optim
from conftest import mnist_arrays
from families import FAMILIES, seg_target

STEPS = 10


def _session(name, model, batch, opt, threads=1, scheduler=None, open_batch=False):
    n = None if open_batch else batch
    if name == "unet":
        loss, labels = nn.BCEWithLogitsLoss(), {"target": ((n, 1, 28, 28), "float32")}
    else:
        loss, labels = nn.CrossEntropyLoss(), {"label": ((n,), "int64")}
    return et.TrainSession.from_module(model, inputs={"data": (n, 1, 28, 28)}, loss=loss,
                                       labels=labels, optimizer=opt, scheduler=scheduler,
                                       threads=threads,
                                       max_batch=batch if open_batch else None)


def _feeds(name, x, y):
    if name == "unet":
        return {"data": x, "target": seg_target(x)}
    return {"data": x, "label": y}


def _torch_loss(name, out, x, y):
    if name == "unet":
        return torch.nn.functional.binary_cross_entropy_with_logits(
            out, torch.tensor(seg_target(x), dtype=out.dtype))
    return torch.nn.functional.cross_entropy(out, torch.tensor(y))


def _twins(name):
    """(edgetrain model, float64 PyTorch model with the same weights)."""
    make = FAMILIES[name]
    torch.manual_seed(0)
    model, tm = make(nn, et.cat), make(torch.nn, torch.cat).double()
    model.load_state_dict(tm.state_dict())   # PyTorch's initialisation for both
    assert list(model.state_dict()) == list(tm.state_dict())
    return model, tm


# (name, batch, Adam lr, weight atol). Batch 8 for the two convolutional nets keeps this short.
# ResNet at lr 1e-4: at 1e-3 (or SGD momentum) PyTorch's own float32 run leaves its float64 run
# by 1e-3 within 4-5 steps (BatchNorm over 8 samples + ReLU flips amplify rounding ~10x a step),
# so no float32 implementation could match there; at 1e-4 it stays within 1e-4 (loss) and 8e-5
# (weights) over the 10 steps, hence the weight atol of 1e-4 = one Adam step.
CASES = [("resnet18", 8, 1e-4, 1e-4), ("unet", 8, 1e-3, 1e-5), ("vit", 16, 1e-3, 1e-5),
         ("lstm", 16, 1e-3, 1e-5)]


@pytest.mark.parametrize("name,batch,lr,atol", CASES, ids=[c[0] for c in CASES])
def test_family_matches_torch_over_ten_adam_steps(name, batch, lr, atol, mnist_batches):
    model, tm = _twins(name)
    init = {k: v.copy() for k, v in model.state_dict().items()}
    opt = optim.Adam(model.parameters(), lr=lr)
    # the ViT's [1, 16, 64] position embedding needs an open batch handled right (traced at 1)
    sess = _session(name, model, batch, opt, threads=2, open_batch=name == "vit")
    topt = torch.optim.Adam(tm.parameters(), lr=lr)
    tm.train()
    sess.Train()
    for step, (x, y) in enumerate(mnist_batches(batch, STEPS)):
        loss = float(sess.RunGraph(_feeds(name, x, y))["loss"])
        topt.zero_grad()
        tl = _torch_loss(name, tm(torch.tensor(x, dtype=torch.float64)), x, y)
        tl.backward()
        topt.step()
        np.testing.assert_allclose(loss, tl.item(), rtol=1e-4, err_msg=f"{name} step {step}")
    params = sess.get_parameters()
    for k, v in tm.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        got, want = params[k], v.numpy()
        if k.endswith("attn.in_proj_bias"):
            # the key bias adds the same q.b_k to every score of a row, which softmax cancels:
            # its gradient is exactly 0, so Adam turns rounding noise (PyTorch's float64 noise
            # too) into steps of up to lr. Check it stayed within STEPS * lr of its start, and
            # the query and value biases like every other weight.
            d = got.size // 3
            assert np.abs(got[d:2 * d] - init[k][d:2 * d]).max() <= STEPS * lr * 1.01, k
            got, want = np.delete(got, np.s_[d:2 * d]), np.delete(want, np.s_[d:2 * d])
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=atol, err_msg=f"{name} {k}")


# --- real MNIST accuracy ---------------------------------------------------------------------
# AdamW with a cosine schedule over the whole run, batch 128 (64 for the U-Net), two threads:
# the thread pool's results are bit-identical for every thread count, so the thread count
# changes the time only (ResNet: 234 -> 129 ms per b64 step on 2 cores).
THREADS = 2


def _train(name, epochs, batch, lr, threads=THREADS, weight_decay=0.0, warmup=0, clip=None):
    """Train ``epochs`` epochs (AdamW, cosine schedule to 0 over the run), shuffled batches;
    returns the trained session and the seconds of each epoch."""
    x, y = mnist_arrays(True)
    et.manual_seed(0)
    torch.manual_seed(0)
    model = FAMILIES[name](nn, et.cat)
    steps_per_epoch = len(x) // batch
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, clip_grad_norm=clip)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    if warmup:
        sched = optim.lr_scheduler.LinearWarmup(opt, warmup, after=sched)
    sess = _session(name, model, batch, opt, threads=threads, scheduler=sched)
    sess.Train()
    rng = np.random.default_rng(0)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(x))
        for i in range(steps_per_epoch):
            idx = order[i * batch:(i + 1) * batch]
            sess.RunGraph(_feeds(name, x[idx], y[idx]))
        times.append(time.perf_counter() - t0)
    sess.Eval()
    return sess, times


def _accuracy(sess):
    x, y = mnist_arrays(False)
    return float((sess.predict(x).argmax(1) == y).mean())


def _iou(sess):
    x, _ = mnist_arrays(False)
    pred = sess.predict(x) > 0.0
    target = seg_target(x) > 0.5
    return float((pred & target).sum() / (pred | target).sum())


@pytest.mark.slow
def test_resnet18_width16_two_epochs_reaches_99_3_percent():
    sess, times = _train("resnet18", 2, 128, 2e-3, weight_decay=5e-4)
    acc = _accuracy(sess)
    print(f"resnet18: accuracy {acc:.4f}, epoch seconds {times}")
    assert acc >= 0.993, (acc, times)


@pytest.mark.slow
def test_unet_one_epoch_reaches_iou_0_90():
    sess, times = _train("unet", 1, 64, 2e-3)
    iou = _iou(sess)
    print(f"unet: IoU {iou:.4f}, epoch seconds {times}")
    assert iou >= 0.90, (iou, times)


@pytest.mark.slow
def test_vit_tiny_three_epochs_reaches_97_percent():
    sess, times = _train("vit", 3, 128, 2e-3, weight_decay=0.05, warmup=200)
    acc = _accuracy(sess)
    print(f"vit: accuracy {acc:.4f}, epoch seconds {times}")
    assert acc >= 0.97, (acc, times)


@pytest.mark.slow
def test_lstm_two_epochs_reaches_97_percent():
    sess, times = _train("lstm", 2, 128, 2e-3, clip=1.0)
    acc = _accuracy(sess)
    print(f"lstm: accuracy {acc:.4f}, epoch seconds {times}")
    assert acc >= 0.97, (acc, times)
