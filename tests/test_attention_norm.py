"""Normalisation, max / min, batched matmul and attention: a small transformer block written
with PyTorch names trains like PyTorch, BatchNorm1d follows PyTorch's running statistics, the
results do not depend on the thread count, and bad arguments are clear errors.

(The ops one by one, forward and gradients at awkward shapes, are in test_ops_vs_torch.py.)
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import edgetrain as et
from edgetrain import errors, nn, optim, tracing
from edgetrain.nn import functional as F

RNG = np.random.default_rng(7)
N, L, E, HIDDEN, CLASSES = 6, 5, 12, 20, 4


CAUSAL = ~np.tril(np.ones((L, L), bool))   # True = not allowed (nn.MultiheadAttention's rule)


def block_class(nn_, F_, heads=0):
    """One pre-norm transformer block + mean-pool classifier, in PyTorch names: the same code
    builds the edgetrain model (nn, F) and its PyTorch twin (torch.nn, torch.nn.functional).
    Causal single-head SDPA on q/k/v Linears, or nn.MultiheadAttention with ``heads``."""

    class Block(nn_.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn_.LayerNorm(E)
            if heads:
                self.attn = nn_.MultiheadAttention(E, heads, batch_first=True)
            else:
                self.q, self.k, self.v = nn_.Linear(E, E), nn_.Linear(E, E), nn_.Linear(E, E)
                self.proj = nn_.Linear(E, E)
            self.ln2 = nn_.LayerNorm(E)
            self.fc1, self.act, self.fc2 = nn_.Linear(E, HIDDEN), nn_.GELU(), nn_.Linear(HIDDEN, E)
            self.head = nn_.Linear(E, CLASSES)

        def forward(self, x):
            h = self.ln1(x)
            if heads:
                mask = CAUSAL if nn_ is nn else torch.tensor(CAUSAL)
                x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False, is_causal=True)[0]
            else:
                a = F_.scaled_dot_product_attention(self.q(h), self.k(h), self.v(h), is_causal=True)
                x = x + self.proj(a)
            x = x + self.fc2(self.act(self.fc1(self.ln2(x))))
            return self.head(x.mean(1))
    return Block


def _twins(heads=0):
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    tm = block_class(torch.nn, TF, heads)().double()
    with torch.no_grad():   # non-trivial LayerNorm affine parameters
        for name, p in tm.named_parameters():
            if name.startswith("ln"):
                p.add_(torch.tensor(rng.standard_normal(p.shape) * 0.3))
    model = block_class(nn, F, heads)()
    model.load_state_dict(tm.state_dict())
    tm.load_state_dict({k: torch.tensor(v, dtype=torch.float64)
                        for k, v in model.state_dict().items()})
    return model, tm


def _batches(steps):
    return [(RNG.standard_normal((N, L, E)).astype(np.float32),
             RNG.integers(0, CLASSES, N).astype(np.int64)) for _ in range(steps)]


@pytest.mark.parametrize("heads", [0, 3], ids=["sdpa", "MultiheadAttention"])
def test_transformer_block_trains_like_torch(heads):
    model, tm = _twins(heads)
    # SGD, not Adam: the key bias has a zero gradient in exact arithmetic (softmax is
    # invariant to q.b_k, constant along the keys), and Adam would scale its rounding noise up
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    sess = et.TrainSession.from_module(model, inputs={"x": (N, L, E)}, loss=nn.CrossEntropyLoss(),
                                       labels={"y": ((N,), "int64")}, optimizer=opt, threads=2)
    sess.Train()
    losses, tlosses = [], []
    for x, y in _batches(5):
        losses.append(float(sess.RunGraph({"x": x, "y": y})["loss"]))
        topt.zero_grad()
        tl = TF.cross_entropy(tm(torch.tensor(x, dtype=torch.float64)), torch.tensor(y))
        tl.backward()
        topt.step()
        tlosses.append(tl.item())
    np.testing.assert_allclose(losses, tlosses, rtol=1e-4)
    params = sess.get_parameters()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(params[k], v.numpy(), rtol=1e-3, atol=1e-5, err_msg=k)
    sess.Eval()
    x, _ = _batches(1)[0]
    with torch.no_grad():
        ref = tm(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(sess.RunGraph({"x": x})["output"], ref, rtol=1e-4, atol=1e-5)


def test_block_gradients_identical_for_any_thread_count():
    x, y = _batches(1)[0]
    grads = []
    for threads in (1, 2, 3):
        model, _ = _twins()
        sess = et.TrainSession.from_module(model, inputs={"x": (N, L, E)},
                                           loss=nn.CrossEntropyLoss(),
                                           labels={"y": ((N,), "int64")}, threads=threads)
        sess.Grad()
        sess.RunGraph({"x": x, "y": y})
        grads.append(sess.get_gradients())
    for g in grads[1:]:
        for k in grads[0]:
            assert np.array_equal(g[k], grads[0][k]), k


@pytest.mark.parametrize("shape", [(8, 5), (6, 5, 3)], ids=["NC", "NCL"])
def test_batchnorm1d_train_and_eval_like_torch(shape):
    c = shape[1]
    model = nn.Sequential(nn.BatchNorm1d(c, momentum=0.2), nn.PReLU(c))
    tm = torch.nn.Sequential(torch.nn.BatchNorm1d(c, momentum=0.2), torch.nn.PReLU(c)).double()
    model.load_state_dict(tm.state_dict())
    sess = et.TrainSession.from_module(model, inputs={"x": shape}, loss=nn.MSELoss(),
                                       labels={"t": (shape, "float32")},
                                       optimizer=optim.SGD(model.parameters(), lr=0.1), threads=2)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1)
    sess.Train()
    for _ in range(3):
        x = (RNG.standard_normal(shape) * 2 + 1).astype(np.float32)
        t = RNG.standard_normal(shape).astype(np.float32)
        loss = sess.RunGraph({"x": x, "t": t})["loss"]
        topt.zero_grad()
        tl = TF.mse_loss(tm(torch.tensor(x, dtype=torch.float64)), torch.tensor(t, dtype=torch.float64))
        tl.backward()
        topt.step()
        np.testing.assert_allclose(loss, tl.item(), rtol=1e-4)
    params = sess.get_parameters()
    for k, v in tm.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        np.testing.assert_allclose(params[k], v.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)
    sess.Eval()
    tm.eval()
    x = RNG.standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        ref = tm(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(sess.RunGraph({"x": x})["output"], ref, rtol=1e-4, atol=1e-5)


class _Probe(nn.Module):
    def __init__(self, fn, shapes):
        super().__init__()
        self.fn = fn
        for i, s in enumerate(shapes):
            setattr(self, f"p{i}", nn.Parameter(RNG.standard_normal(s).astype(np.float32)))
        self.n = len(shapes)

    def forward(self):
        return self.fn(*[getattr(self, f"p{i}") for i in range(self.n)])


def _emit(op, inputs, **attrs):
    return tracing.require().emit1(op, inputs, **attrs)


BAD = [
    ("layer_norm_shape", lambda x: F.layer_norm(x, (4,)), [(2, 3)], errors.InvalidArgumentError,
     "normalized_shape"),
    ("layer_norm_weight", lambda x, w: F.layer_norm(x, 3, w), [(2, 3), (4,)],
     errors.InvalidArgumentError, "weight must have shape"),
    ("group_norm_groups", lambda x: F.group_norm(x, 4), [(2, 6, 3)], errors.InvalidArgumentError,
     "num_groups=4"),
    ("group_norm_rank", lambda x: F.group_norm(x, 1), [(6,)], errors.InvalidArgumentError,
     r"\[N, C, \*\]"),
    ("instance_norm_rank", lambda x: nn.InstanceNorm2d(3)(x), [(2, 3, 4)],
     errors.InvalidArgumentError, "4-D"),
    ("batchnorm1d_rank", lambda x: nn.BatchNorm1d(3)(x), [(2, 3, 4, 4)],
     errors.InvalidArgumentError, "2-D or 3-D"),
    ("prelu_weight", lambda x, w: F.prelu(x, w), [(2, 3, 4), (4,)], errors.InvalidArgumentError,
     "prelu"),
    ("maximum_bcast", lambda a, b: F.maximum(a, b), [(2, 3), (4,)], errors.ShapeError,
     "do not broadcast"),
    ("amax_dim", lambda x: F.amax(x, 3), [(2, 3)], IndexError, "out of range"),
    ("argmax_dims", lambda x: F.argmax(x, (0, 1)), [(2, 3)], errors.InvalidArgumentError,
     "one int dim"),
    ("bmm_inner", lambda a, b: F.bmm(a, b), [(2, 3, 4), (2, 5, 3)], errors.ShapeError,
     "inner dimensions differ"),
    ("bmm_batch", lambda a, b: F.bmm(a, b), [(2, 3, 4), (3, 4, 3)], errors.ShapeError,
     "batch dims"),
    ("bmm_rank", lambda a, b: F.bmm(a, b), [(4,), (4, 3)], errors.ShapeError, "rank >= 2"),
    ("matmul_1d", lambda a, b: F.matmul(a, b), [(3, 4), (4,)], errors.UnsupportedError, "1-D"),
    ("sdpa_mask_and_causal", lambda q: F.scaled_dot_product_attention(
        q, q, q, attn_mask=np.zeros((3, 3), np.float32), is_causal=True), [(2, 3, 4)],
     errors.InvalidArgumentError, "not both"),
    ("mha_rank", lambda q: nn.MultiheadAttention(4, 2, batch_first=True)(q, q, q), [(3, 4)],
     errors.InvalidArgumentError, r"\[N, L, 4\] query"),
    ("mha_causal_hint", lambda q: nn.MultiheadAttention(4, 2, batch_first=True)(
        q, q, q, is_causal=True), [(2, 3, 4)], errors.InvalidArgumentError, "needs attn_mask"),
    ("sdpa_rank", lambda q: F.scaled_dot_product_attention(q, q, q), [(4,)],
     errors.InvalidArgumentError, "scaled_dot_product_attention"),
    ("normalize_naxes", lambda x: _emit("normalize", [x], naxes=3, eps=1e-5), [(2, 3)],
     errors.ShapeError, "naxes 3"),
    ("normalize_eps", lambda x: _emit("normalize", [x], naxes=1, eps=-1.0), [(2, 3)],
     errors.ShapeError, "eps"),
    ("argmax_axis", lambda x: _emit("argmax", [x], axis=2), [(2, 3)], errors.ShapeError,
     "axis 2 out of range"),
    ("reduce_max_mask", lambda x: _emit("reduce_max", [x], axis_mask=8), [(2, 3)],
     errors.ShapeError, "axis_mask"),
    ("bmm_flag", lambda a: _emit("bmm", [a, a], trans_a=2), [(3, 3)], errors.ShapeError,
     "trans_a"),
]


@pytest.mark.parametrize("fn,shapes,exc,text", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_arguments(fn, shapes, exc, text):
    with pytest.raises(exc, match=text):
        et.TrainSession.from_module(_Probe(fn, shapes), inputs={},
                                    loss=lambda out: F.sum(out), threads=1)


def test_layer_constructor_errors_mha():
    with pytest.raises(errors.UnsupportedError, match="batch_first=False"):
        nn.MultiheadAttention(8, 2)
    with pytest.raises(errors.InvalidArgumentError, match="divisible"):
        nn.MultiheadAttention(8, 3, batch_first=True)
    with pytest.raises(errors.UnsupportedError, match="kdim"):
        nn.MultiheadAttention(8, 2, kdim=4, batch_first=True)


def test_layer_constructor_errors():
    with pytest.raises(errors.InvalidArgumentError, match="divisible"):
        nn.GroupNorm(4, 6)
    with pytest.raises(errors.UnsupportedError, match="track_running_stats"):
        nn.InstanceNorm2d(3, track_running_stats=True)
    with pytest.raises(errors.InvalidArgumentError, match="normalized_shape"):
        nn.LayerNorm(0)
    with pytest.raises(errors.InvalidArgumentError, match="num_parameters"):
        nn.PReLU(0)


def test_argmax_is_i32_without_gradient_path():
    """argmax's i32 output cannot enter float math, so no gradient can flow through it; it
    can be returned beside a trained output."""
    probe = _Probe(lambda x: F.argmax(x, 1), [(3, 4)])
    with pytest.raises(errors.ShapeError, match=r"must be f32, got \[3\] i32"):
        et.TrainSession.from_module(probe, inputs={}, loss=lambda out: F.sum(out), threads=1)
    x = np.array([[0.0, 2.0, 2.0, -1.0], [5.0, 1.0, 5.0, 7.0], [-3.0, -2.0, -4.0, -2.0]],
                 np.float32)
    probe = _Probe(lambda p: (F.sum(p * 1.0), F.argmax(p, 1), F.argmin(p, -1, True)), [(3, 4)])
    probe.p0.data = x
    sess = et.TrainSession.from_module(probe, inputs={}, loss=lambda out: out, output=0,
                                       threads=1)
    sess.Grad()
    res = sess.RunGraph({})
    assert res["output1"].tolist() == [1, 3, 1] and res["output2"].tolist() == [[3], [1], [2]]
    np.testing.assert_array_equal(sess.get_gradients()["p0"], np.ones((3, 4), np.float32))
