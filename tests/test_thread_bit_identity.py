"""Training is bit-identical for every thread count (issue 15): the same model trained for 4
steps at threads=1, 2 and 3 ends with the same bytes in every parameter, BatchNorm statistic
and loss. Kernels run on edgetrain's thread pool with chunks fixed by the shapes, and every
reduction (conv2d weight gradients included) combines per-chunk partials in chunk order."""
import numpy as np
import pytest

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.models.lenet import LeNet
from edgetrain.models.mobilenet import MobileNetV2

STEPS = 4


def train(make_model, state, shape, classes, threads, opt_cls, **opt_kw):
    model = make_model()
    model.load_state_dict(state)
    sess = et.TrainSession.from_module(
        model, inputs={"data": shape}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((shape[0],), "int64")},
        optimizer=opt_cls(model.parameters(), **opt_kw), threads=threads, seed=7)
    sess.Train()
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(STEPS):
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.integers(0, classes, size=shape[0]).astype(np.int64)
        losses.append(sess.RunGraph({"data": x, "label": y})["loss"].tobytes())
    return losses, {k: v.tobytes() for k, v in sess.get_parameters().items()}


def lenet():
    return LeNet(dropout=0.0)


def mobilenet():
    return MobileNetV2(num_classes=10, width_mult=0.5, input_size=32)


@pytest.mark.parametrize("name,make,shape,opt_cls,opt_kw", [
    ("lenet", lenet, (64, 1, 28, 28), optim.SGD, {"lr": 0.01, "momentum": 0.9}),
    ("mobilenetv2", mobilenet, (8, 3, 32, 32), optim.Adam, {"lr": 1e-3}),
])
def test_training_bits_do_not_depend_on_thread_count(name, make, shape, opt_cls, opt_kw):
    state = make().state_dict()  # every run starts from the same weights
    ref_losses, ref_params = train(make, state, shape, 10, 1, opt_cls, **opt_kw)
    for threads in (2, 3):
        losses, params = train(make, state, shape, 10, threads, opt_cls, **opt_kw)
        assert losses == ref_losses, f"{name}: losses differ at threads={threads}"
        assert list(params) == list(ref_params)
        differ = [k for k in params if params[k] != ref_params[k]]
        assert not differ, f"{name}: threads={threads} changes the bits of {differ}"
