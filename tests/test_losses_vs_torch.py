"""Embedding and the losses added with it (BCE, BCEWithLogits, NLL, SmoothL1, Huber, weighted /
smoothed CrossEntropy): small models trained a few steps through ``TrainSession.from_module``
against the same PyTorch model in float64, the bad-argument errors, run-time index errors, and
the embedding gradient's independence of the thread count.

The per-op forward/gradient checks at awkward shapes are in tests/test_ops_vs_torch.py (CASES).
"""
import numpy as np
import pytest
import torch

import edgetrain as et
from edgetrain import errors, nn, optim
from edgetrain.nn import functional as F

RNG = np.random.default_rng(77)
N, D_IN, C = 8, 6, 3


def rnd(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# a few training steps vs PyTorch
# ---------------------------------------------------------------------------------------------
class Head(nn.Module):
    """Linear(6, 3) with an optional final activation (sigmoid / log_softmax)."""

    def __init__(self, final=None):
        super().__init__()
        self.fc = nn.Linear(D_IN, C)
        self.final = final

    def forward(self, x):
        y = self.fc(x)
        if self.final == "sigmoid":
            return F.sigmoid(y)
        if self.final == "log_softmax":
            return F.log_softmax(y, 1)
        return y


class TorchHead(torch.nn.Module):
    def __init__(self, final=None):
        super().__init__()
        self.fc = torch.nn.Linear(D_IN, C)
        self.final = final

    def forward(self, x):
        y = self.fc(x)
        if self.final == "sigmoid":
            return torch.sigmoid(y)
        if self.final == "log_softmax":
            return torch.log_softmax(y, 1)
        return y


class Bag(nn.Module):
    """Embedding of 5 tokens per sample, summed, then a linear classifier."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 4, padding_idx=0)
        self.fc = nn.Linear(4, C)

    def forward(self, tok):
        return self.fc(F.sum(self.emb(tok), 1))


class TorchBag(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(11, 4, padding_idx=0)
        self.fc = torch.nn.Linear(4, C)

    def forward(self, tok):
        return self.fc(self.emb(tok).sum(1))


W3 = np.array([0.5, 2.0, 1.25], np.float32)
PW3 = np.array([3.0, 0.5, 1.5], np.float32)


def _binary():
    return (RNG.uniform(size=(N, C)) > 0.5).astype(np.float32)


def _classes(ignore=False):
    y = RNG.integers(0, C, N)
    if ignore:
        y[[1, 5]] = -100
    return y.astype(np.int64)


def _t(a):
    return torch.tensor(a, dtype=torch.float64) if a.dtype.kind == "f" else torch.tensor(a)


# name: (model kind, et loss, torch loss, label dtype, label maker)
TRAINED = {
    "bce": ("sigmoid", nn.BCELoss(weight=W3), torch.nn.BCELoss(weight=_t(W3)),
            "float32", _binary),
    "bce_with_logits": (None, nn.BCEWithLogitsLoss(pos_weight=PW3, reduction="sum"),
                        torch.nn.BCEWithLogitsLoss(pos_weight=_t(PW3), reduction="sum"),
                        "float32", _binary),
    "nll": ("log_softmax", nn.NLLLoss(weight=W3), torch.nn.NLLLoss(weight=_t(W3)),
            "int64", lambda: _classes(ignore=True)),
    "smooth_l1": (None, nn.SmoothL1Loss(beta=0.5), torch.nn.SmoothL1Loss(beta=0.5),
                  "float32", lambda: rnd(N, C)),
    "huber": (None, nn.HuberLoss(delta=0.7), torch.nn.HuberLoss(delta=0.7),
              "float32", lambda: rnd(N, C) * 2),
    "cross_entropy_weight_smoothing": (
        None, nn.CrossEntropyLoss(weight=W3, label_smoothing=0.1),
        torch.nn.CrossEntropyLoss(weight=_t(W3), label_smoothing=0.1),
        "int64", lambda: _classes(ignore=True)),
}


def _train_both(model, tmodel, et_loss, t_loss, inputs, labels, batches, steps=3):
    tmodel = tmodel.double()
    model.load_state_dict(tmodel.state_dict())
    sess = et.TrainSession.from_module(model, inputs=inputs, loss=et_loss, labels=labels,
                                       optimizer=optim.SGD(model.parameters(), lr=0.1,
                                                           momentum=0.9),
                                       threads=2)
    to = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    sess.Train()
    for x, y in batches[:steps]:
        feeds = {next(iter(inputs)): x, next(iter(labels)): y}
        loss = sess.RunGraph(feeds)["loss"]
        to.zero_grad()
        tl = t_loss(tmodel(_t(x)), _t(y))
        tl.backward()
        to.step()
        np.testing.assert_allclose(loss, tl.item(), rtol=1e-4)
    params = sess.get_parameters()
    for k, v in tmodel.state_dict().items():
        np.testing.assert_allclose(params[k], v.numpy(), rtol=1e-3, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("name", list(TRAINED))
def test_loss_trains_like_torch(name):
    final, et_loss, t_loss, ldtype, make_y = TRAINED[name]
    torch.manual_seed(1)
    batches = [(rnd(N, D_IN), make_y()) for _ in range(3)]
    _train_both(Head(final), TorchHead(final), et_loss, t_loss, {"x": (N, D_IN)},
                {"y": ((N, C) if ldtype == "float32" else (N,), ldtype)}, batches)


def test_embedding_from_the_batch_trains_like_torch():
    """Indices fed as int64 data each step (padding index 0 present: its row stays zero)."""
    torch.manual_seed(2)
    batches = [(RNG.integers(0, 11, (N, 5)).astype(np.int64), _classes()) for _ in range(3)]
    batches[0][0][0, :3] = 0
    model = Bag()
    _train_both(model, TorchBag(), nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(),
                {"tok": ((N, 5), "int64")}, {"y": ((N,), "int64")}, batches)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
def _build(model_fn, inputs=None, labels=None, loss=None):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(rnd(4, 3))

        def forward(self, *xs):
            return model_fn(self, *xs)

    return et.TrainSession.from_module(M(), inputs=inputs or {}, labels=labels,
                                       loss=loss or (lambda out: F.sum(out)), threads=1)


LOG_P = np.log(np.full((4, 3), 1 / 3, np.float32))
BAD = [
    # wrong label dtype / shape
    (lambda m: F.nll_loss(m.w, np.zeros(4, np.float32)), errors.ShapeError,
     "target must be i32 class indices"),
    (lambda m: F.nll_loss(m.w, np.zeros((4, 1), np.int64)), errors.ShapeError,
     "target must be i32"),
    (lambda m: F.cross_entropy(m.w, np.zeros(3, np.int64), label_smoothing=0.1),
     errors.ShapeError, "target must be i32"),
    (lambda m: F.binary_cross_entropy(F.sigmoid(m.w), np.zeros((4, 3), np.int64)),
     errors.ShapeError, "target must be f32"),
    (lambda m: F.binary_cross_entropy_with_logits(m.w, np.zeros((4, 2), np.float32)),
     errors.ShapeError, "same shape"),
    (lambda m: F.huber_loss(m.w, np.zeros((3, 4), np.float32)), errors.ShapeError,
     "same shape"),
    # weights of the wrong length
    (lambda m: F.nll_loss(m.w, np.zeros(4, np.int64), weight=np.ones(4, np.float32)),
     errors.InvalidArgumentError, r"one value per class \(3\)"),
    (lambda m: nn.CrossEntropyLoss(weight=[1.0, 2.0])(m.w, np.zeros(4, np.int64)),
     errors.InvalidArgumentError, r"one value per class \(3\)"),
    (lambda m: F.binary_cross_entropy(F.sigmoid(m.w), np.zeros((4, 3), np.float32),
                                      weight=np.ones(2, np.float32)),
     errors.ShapeError, "broadcast|shape"),
    (lambda m: F.binary_cross_entropy_with_logits(m.w, np.zeros((4, 3), np.float32),
                                                  pos_weight=np.ones((2, 3), np.float32)),
     errors.ShapeError, "broadcast|shape"),
    # bad attributes
    (lambda m: F.smooth_l1_loss(m.w, m.w, beta=-1.0), errors.InvalidArgumentError, "beta"),
    (lambda m: F.huber_loss(m.w, m.w, delta=0.0), errors.InvalidArgumentError, "delta"),
    (lambda m: F.cross_entropy(m.w, np.zeros(4, np.int64), label_smoothing=1.5),
     errors.InvalidArgumentError, "label_smoothing"),
    (lambda m: F.nll_loss(m.w, np.zeros(4, np.int64), reduction="batchmean"),
     NotImplementedError, "reduction"),
    (lambda m: F.embedding(np.zeros(2, np.int64), m.w, padding_idx=4),
     errors.InvalidArgumentError, "padding_idx 4"),
    (lambda m: F.embedding(np.zeros(2, np.float32), m.w), errors.InvalidArgumentError,
     "indices must be integers"),
    (lambda m: F.embedding(np.zeros(2, np.int64), m.w, max_norm=1.0), NotImplementedError,
     "max_norm"),
]


@pytest.mark.parametrize("fn,exc,text", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_arguments(fn, exc, text):
    with pytest.raises(exc, match=text):
        _build(fn)


def test_layer_bad_arguments():
    with pytest.raises(errors.InvalidArgumentError, match="padding_idx 5"):
        nn.Embedding(5, 2, padding_idx=5)
    with pytest.raises(NotImplementedError, match="size_average"):
        nn.BCELoss(size_average=True)


def test_embedding_index_out_of_range_at_run_time():
    sess = _build(lambda m, tok: F.embedding(tok, m.w), inputs={"tok": ((2, 3), "int64")})
    sess.Grad()
    good = np.array([[0, 3, 1], [2, 2, 0]], np.int64)
    sess.RunGraph({"tok": good})
    for bad in (4, -1):
        tok = good.copy()
        tok[1, 2] = bad
        with pytest.raises(errors.LabelError, match=r"embedding.*\[0, 4\)"):
            sess.RunGraph({"tok": tok})
    sess.RunGraph({"tok": good})  # the session is still usable


def test_nll_label_out_of_range_at_run_time():
    sess = _build(lambda m, x: F.mul(m.w, x), inputs={"x": (4, 3)},
                  labels={"y": ((4,), "int64")},
                  loss=lambda out, y: F.nll_loss(out, y, ignore_index=-1))
    sess.Grad()
    x = np.ones((4, 3), np.float32)
    sess.RunGraph({"x": x, "y": np.array([0, -1, 2, 1])})     # -1 is ignored
    with pytest.raises(errors.LabelError, match=r"nll.*\[0, 3\)"):
        sess.RunGraph({"x": x, "y": np.array([0, -100, 2, 1])})
    with pytest.raises(errors.LabelError, match=r"\[0, 3\)"):
        sess.RunGraph({"x": x, "y": np.array([0, 3, 2, 1])})


def test_default_cross_entropy_rejects_ignore_index_labels():
    """The fused default path has no ignore_index: a -100 label is a clear error (passing
    ignore_index, weight or label_smoothing takes the nll path, which honours it)."""
    sess = _build(lambda m, x: F.mul(m.w, x), inputs={"x": (4, 3)},
                  labels={"y": ((4,), "int64")}, loss=nn.CrossEntropyLoss())
    sess.Grad()
    with pytest.raises(errors.LabelError):
        sess.RunGraph({"x": np.ones((4, 3), np.float32), "y": np.array([0, -100, 2, 1])})


# ---------------------------------------------------------------------------------------------
# the embedding gradient does not depend on the thread count
# ---------------------------------------------------------------------------------------------
def test_embedding_gradient_bit_identical_for_any_thread_count():
    v, d = 300, 160          # large enough that the scatter-add splits its columns
    tok = RNG.integers(0, 40, (64, 9)).astype(np.int64)   # many repeats of few rows
    weight = rnd(v, d)

    class E(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(v, d, padding_idx=3, _weight=weight)

        def forward(self, t):
            return self.emb(t)

    def grads(threads):
        sess = et.TrainSession.from_module(E(), inputs={"t": ((64, 9), "int64")},
                                           loss=lambda out: F.sum(F.mul(out, out)),
                                           threads=threads)
        sess.Grad()
        sess.RunGraph({"t": tok})
        return sess.get_gradients()["emb.weight"]

    g1 = grads(1)
    assert np.all(g1[3] == 0.0)                               # padding row: no gradient
    ref = np.zeros((v, d), np.float64)
    np.add.at(ref, tok.ravel(), 2.0 * weight[tok.ravel()].astype(np.float64))
    ref[3] = 0.0
    np.testing.assert_allclose(g1, ref, rtol=1e-5, atol=1e-5)
    for threads in (2, 3):
        assert np.array_equal(grads(threads), g1)
