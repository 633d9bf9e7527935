"""Every op's forward and gradient against PyTorch (float64), one line per case.

Each case is a tiny Module whose inputs are Parameters, so that the GRAD program computes the
gradient of every input. The traced scalar objective is ``sum(out * W)`` with a fixed random
``W`` (for losses ``W`` is a scalar). Forward ops are listed in ``CASES``; backward ops are
covered through their forward op, update ops through the optimizer tests at the end; a
meta-test fails when a forward op of ``ops.OPS`` has no case.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import edgetrain as et
from edgetrain import nn, ops, optim, tracing
from edgetrain.nn import functional as F

RNG = np.random.default_rng(1234)


def rnd(*shape, scale=1.0, offset=0.0):
    return (RNG.standard_normal(shape) * scale + offset).astype(np.float32)


def pos(*shape):
    return (RNG.uniform(0.5, 2.0, shape)).astype(np.float32)


def prob01(*shape):
    return RNG.uniform(0.05, 0.95, shape).astype(np.float32)


def probs(n, c):
    p = RNG.uniform(0.05, 1.0, (n, c))
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


@dataclass
class Case:
    """``et(m)`` builds the op from the module's parameters (``m.<name>``); ``ref(t)`` is the
    PyTorch twin on float64 tensors (dict by name); ``frozen`` names inputs without grad."""
    name: str
    inputs: Dict[str, np.ndarray]
    et: Callable
    ref: Callable
    frozen: Tuple[str, ...] = ()
    tol: Tuple[float, float] = (1e-4, 1e-5)  # rtol, atol (atol scaled by max |ref|)
    check: Optional[Callable] = None  # custom comparison (dropout)
    setup: Optional[Callable] = None  # adds submodules to the module (batch norm)
    extra: Dict[str, object] = field(default_factory=dict)


def emit(op, inputs, **attrs):
    """Emit one raw op while tracing (for ops without a functional wrapper)."""
    return tracing.require().emit1(op, inputs, **attrs)


# ---------------------------------------------------------------------------------------------
# cases, by forward op
# ---------------------------------------------------------------------------------------------
def _conv(name, n, c, h, w, oc, k, stride=1, padding=0, dilation=1, groups=1, bias=True,
          tol=(1e-4, 1e-5)):
    kh, kw = (k, k) if isinstance(k, int) else k
    inputs = {"x": rnd(n, c, h, w), "w": rnd(oc, c // groups, kh, kw, scale=0.5)}
    if bias:
        inputs["b"] = rnd(oc)

    def et_fn(m):
        return F.conv2d(m.x, m.w, m.b if bias else None, stride, padding, dilation, groups)

    def ref(t):
        x = t["x"]
        pad = padding
        if isinstance(padding, tuple) and len(padding) == 4:
            top, left, bottom, right = padding
            x = TF.pad(x, (left, right, top, bottom))
            pad = 0
        return TF.conv2d(x, t["w"], t.get("b"), stride, pad, dilation, groups)
    return Case(name, inputs, et_fn, ref, tol=tol)


def _mm(name, ta, tb, m_, k, n):
    a = rnd(k, m_) if ta else rnd(m_, k)
    b = rnd(n, k) if tb else rnd(k, n)

    def ref(t):
        x = t["a"].T if ta else t["a"]
        y = t["b"].T if tb else t["b"]
        return x @ y
    return Case(name, {"a": a, "b": b},
                lambda m: emit("matmul", [m.a, m.b], trans_a=ta, trans_b=tb), ref)


def _binary(name, fn, tfn, sa, sb, b_positive=False):
    b = pos(*sb) if b_positive else rnd(*sb)
    return Case(name, {"a": rnd(*sa), "b": b}, lambda m: fn(m.a, m.b),
                lambda t: tfn(t["a"], t["b"]))


def _act(name, fn, tfn, scale=4.0):
    return Case(name, {"x": rnd(2, 3, 4, 5, scale=scale)}, lambda m: fn(m.x),
                lambda t: tfn(t["x"]))


def _pool(name, kind, x_shape, **kw):
    if kind == "max":
        return Case(name, {"x": rnd(*x_shape)}, lambda m: F.max_pool2d(m.x, **kw),
                    lambda t: TF.max_pool2d(t["x"], **kw))
    return Case(name, {"x": rnd(*x_shape)}, lambda m: F.avg_pool2d(m.x, **kw),
                lambda t: TF.avg_pool2d(t["x"], **kw))


def _reduce(name, fn, tfn, shape, dim, keepdim):
    return Case(name, {"x": rnd(*shape)}, lambda m: fn(m.x, dim, keepdim),
                lambda t: (tfn(t["x"]) if dim is None else tfn(t["x"], dim, keepdim)))


def _bn(name, shape, affine=True, momentum=0.1, eps=1e-5, train=True):
    c = shape[1]

    def setup(m):
        m.bn = nn.BatchNorm2d(c, eps=eps, momentum=momentum, affine=False)  # buffers only
        m.bn.running_mean.data = rnd(c, scale=0.1)
        m.bn.running_var.data = pos(c)
        m.bn.training = train

    inputs = {"x": rnd(*shape, scale=2.0, offset=0.5)}
    if affine:
        inputs.update(g=pos(c), b=rnd(c))

    def et_fn(m):
        return F.batch_norm(m.x, m.bn.running_mean, m.bn.running_var,
                            m.g if affine else None, m.b if affine else None,
                            training=train, momentum=momentum, eps=eps)

    def ref(t, module=None):
        rm = torch.tensor(module.bn.running_mean.data, dtype=torch.float64)
        rv = torch.tensor(module.bn.running_var.data, dtype=torch.float64)
        y = TF.batch_norm(t["x"], rm, rv, t.get("g"), t.get("b"), training=train,
                          momentum=momentum, eps=eps)
        ref.running = {"bn.running_mean": rm.numpy(), "bn.running_var": rv.numpy()}
        return y
    return Case(name, inputs, et_fn, ref, frozen=() if train else tuple(inputs),
                setup=setup, tol=(1e-4, 1e-4), extra={"needs_module": True})


def _softmax(name, shape, dim, log):
    fn = F.log_softmax if log else F.softmax
    tfn = torch.log_softmax if log else torch.softmax
    return Case(name, {"x": rnd(*shape, scale=2.0)}, lambda m: fn(m.x, dim),
                lambda t: tfn(t["x"], dim))


def _check_dropout(p):
    def check(case, out, grads, w, inputs):
        x = inputs["x"]
        kept = out != 0
        frac = kept.mean()
        assert abs(frac - (1 - p)) < 0.1, f"kept fraction {frac} for p={p}"
        np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-6)
        np.testing.assert_allclose(grads["x"], np.where(kept, w / (1 - p), 0.0), rtol=1e-6)
    return check


def _conv1d(name, n, c, length, oc, k, stride=1, padding=0, dilation=1, groups=1, bias=True):
    inputs = {"x": rnd(n, c, length), "w": rnd(oc, c // groups, k, scale=0.5)}
    if bias:
        inputs["b"] = rnd(oc)
    return Case(name, inputs,
                lambda m: F.conv1d(m.x, m.w, m.b if bias else None, stride, padding, dilation,
                                   groups),
                lambda t: TF.conv1d(t["x"], t["w"], t.get("b"), stride, padding, dilation,
                                    groups))


def _convt(name, x_shape, oc, k, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
           bias=True):
    kh, kw = (k, k) if isinstance(k, int) else k
    c = x_shape[1]
    inputs = {"x": rnd(*x_shape), "w": rnd(c, oc // groups, kh, kw, scale=0.5)}
    if bias:
        inputs["b"] = rnd(oc)
    args = (stride, padding, output_padding, groups, dilation)
    return Case(name, inputs,
                lambda m: F.conv_transpose2d(m.x, m.w, m.b if bias else None, *args),
                lambda t: TF.conv_transpose2d(t["x"], t["w"], t.get("b"), *args))


def _interp(name, x_shape, **kw):
    return Case(name, {"x": rnd(*x_shape)}, lambda m: F.interpolate(m.x, **kw),
                lambda t: TF.interpolate(t["x"], **kw))


def _adaptive(name, x_shape, size):
    return Case(name, {"x": rnd(*x_shape)}, lambda m: F.adaptive_avg_pool2d(m.x, size),
                lambda t: TF.adaptive_avg_pool2d(t["x"], size))
def _cat_any(x, parts, dim):
    """torch.cat or et.cat, whichever matches the tensors."""
    return (torch.cat if isinstance(x, torch.Tensor) else et.cat)(parts, dim)


def _cat(name, shapes, dim, twice=False):
    inputs = {f"x{k}": rnd(*s) for k, s in enumerate(shapes)}
    names = list(inputs) * (2 if twice else 1)
    return Case(name, inputs, lambda m: et.cat([getattr(m, k) for k in names], dim),
                lambda t: torch.cat([t[k] for k in names], dim))


def _idx(name, shape, fn):
    """``fn`` applied to the same tensor code in both libraries (methods and indexing)."""
    return Case(name, {"x": rnd(*shape)}, lambda m: fn(m.x), lambda t: fn(t["x"]))


def _pad(name, shape, pad, mode="constant", value=None):
    kw = {} if value is None else {"value": value}
    return Case(name, {"x": rnd(*shape)}, lambda m: F.pad(m.x, pad, mode, **kw),
                lambda t: TF.pad(t["x"], pad, mode, **kw))


def _gather(name, shape, dim, index, select=False):
    if select:
        return Case(name, {"x": rnd(*shape)}, lambda m: et.index_select(m.x, dim, index),
                    lambda t: torch.index_select(t["x"], dim, torch.tensor(index)))
    return Case(name, {"x": rnd(*shape)}, lambda m: et.gather(m.x, dim, index),
                lambda t: torch.gather(t["x"], dim, torch.tensor(index)))


LABELS = np.array([0, 3, 1, 4, 2, 4], dtype=np.int64)
PROB_T = probs(4, 6)
PROB_T2 = probs(4, 5)
TEACHER = rnd(6, 5, scale=3.0)


# embedding and the losses added with it
def _t64(a):
    return torch.tensor(a, dtype=torch.float64)


def _emb_layer(w, padding_idx):
    layer = nn.Embedding(w.data.shape[0], w.data.shape[1], padding_idx=padding_idx)
    return lambda idx: F.embedding(idx, w, layer.padding_idx)


EMB_IDX = np.array([[0, 3, 6, 3], [1, 1, 5, 2], [4, 0, 6, 6]], np.int64)
EMB_IDX1 = np.array([4, 0, 4, 3, 1, 2, 2], np.int64)
BCE_W3 = np.array([0.5, 2.0, 1.25], np.float32)
POS_W3 = np.array([3.0, 0.5, 1.0], np.float32)
BIN_T43 = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]], np.float32)
BIN_T71 = np.array([[1], [0], [0], [1], [1], [0], [1]], np.float32)
KINK_X = np.array([[0.75, -0.25, 0.25, 1.5, -1.0, 0.3, 0.0]], np.float32)
KINK_Y = np.array([[0.25, 0.25, 0.25, 0.0, 0.0, 0.5, -0.5]], np.float32)  # d = ±0.5 at 0, 1, 6
CLS_W3 = np.array([0.3, 1.7, 1.0], np.float32)
CLS_W4 = np.array([0.5, 2.0, 1.0, 0.25], np.float32)
CLS_W5 = np.array([1.0, 0.2, 3.0, 0.7, 1.1], np.float32)
CLS_W6 = np.array([1.0, 0.2, 3.0, 0.7, 1.1, 0.4], np.float32)
IGN_LABELS = np.array([1, -100, 3, 0, 2, -100, 1], np.int64)
SEG_LABELS = np.array([[[0, 2, 1, 1, 0], [2, 2, 0, 1, 2]], [[1, 0, 0, 2, 1], [0, 1, 2, 2, 0]]],
                      np.int64)
SEQ_LABELS = np.array([[3], [-100], [0]], np.int64)

def _fake_quant(name, x, scale, zp, axis, qmin, qmax):
    """fake_quant vs torch.fake_quantize_per_{tensor,channel}_affine (float32 in torch, the
    gradient through its straight-through mask); scale / zero_point are frozen inputs."""
    from edgetrain import quant

    s = np.array(scale, np.float32)
    z = np.array(zp, np.float32)

    def et_fn(m):
        if axis is None:
            return quant.fake_quantize_per_tensor_affine(m.x, m.scale, m.zero_point, qmin, qmax)
        return quant.fake_quantize_per_channel_affine(m.x, m.scale, m.zero_point, axis, qmin,
                                                      qmax)

    def ref(t):
        x32 = t["x"].float()
        if axis is None:
            y = torch.fake_quantize_per_tensor_affine(x32, float(s[0]), int(z[0]), qmin, qmax)
        else:
            y = torch.fake_quantize_per_channel_affine(
                x32, torch.tensor(s), torch.tensor(z.astype(np.int32)), axis, qmin, qmax)
        return y.double()
    return Case(name, {"x": x, "scale": s, "zero_point": z}, et_fn, ref,
                frozen=("scale", "zero_point"), tol=(1e-5, 1e-6))


CASES = {
    "conv2d": [
        _conv("3x3", 2, 3, 7, 6, 4, 3),
        _conv("stride2_pad1_nobias", 2, 3, 8, 7, 5, 3, stride=2, padding=1, bias=False),
        _conv("asym_pad", 1, 2, 6, 5, 3, 3, padding=(0, 1, 2, 1)),
        _conv("asym_pad_stride2", 2, 2, 7, 8, 3, 3, stride=2, padding=(1, 0, 0, 2)),
        _conv("dilation2", 1, 3, 9, 9, 2, 3, dilation=2, padding=2),
        _conv("groups2", 2, 4, 6, 6, 6, 3, groups=2, padding=1),
        _conv("depthwise", 2, 8, 7, 7, 8, 3, groups=8, padding=1),
        _conv("depthwise_s2_mult2", 1, 4, 8, 8, 8, 3, stride=2, groups=4, padding=1),
        _conv("pointwise", 2, 16, 5, 5, 24, 1),
        _conv("rect_kernel_stride", 2, 3, 9, 8, 4, (3, 2), stride=(2, 1), padding=(1, 0)),
        _conv("same", 1, 3, 6, 7, 4, 4, padding="same"),
        _conv("wide", 2, 16, 12, 12, 32, 3, padding=1, tol=(2e-4, 2e-5)),
        _conv("5x5_lenet", 3, 1, 12, 12, 20, 5),
        _conv1d("conv1d", 2, 3, 11, 4, 3),
        _conv1d("conv1d_s2_p1_d2_g2", 2, 4, 13, 6, 3, stride=2, padding=1, dilation=2, groups=2),
        _conv1d("conv1d_same_even", 1, 3, 10, 2, 4, padding="same"),
        _conv1d("conv1d_same_dil2", 2, 2, 9, 3, 3, padding="same", dilation=2),
        _conv1d("conv1d_valid_s3_nobias", 3, 5, 17, 4, 5, stride=3, padding="valid",
                bias=False),
        _conv1d("conv1d_depthwise", 2, 4, 8, 4, 3, padding=1, groups=4),
    ],
    "matmul": [
        _mm("nn", 0, 0, 5, 7, 3), _mm("nt", 0, 1, 4, 6, 9), _mm("tn", 1, 0, 3, 5, 2),
        _mm("tt", 1, 1, 6, 4, 5), _mm("big", 0, 1, 33, 65, 17),
        Case("linear", {"x": rnd(4, 6), "w": rnd(3, 6), "b": rnd(3)},
             lambda m: F.linear(m.x, m.w, m.b), lambda t: TF.linear(t["x"], t["w"], t["b"])),
    ],
    "add": [
        _binary("same", F.add, torch.add, (2, 3, 4), (2, 3, 4)),
        _binary("bias_chw", F.add, torch.add, (2, 3, 4, 5), (3, 1, 1)),
        _binary("row", F.add, torch.add, (4, 5), (5,)),
        _binary("both", F.add, torch.add, (3, 1), (1, 4)),
        _binary("scalar_tensor", F.add, torch.add, (2, 3), ()),
        Case("python_scalar", {"x": rnd(3, 4)}, lambda m: m.x + 1.5, lambda t: t["x"] + 1.5),
    ],
    "sub": [
        _binary("same", F.sub, torch.sub, (2, 3, 4), (2, 3, 4)),
        _binary("bcast_left", F.sub, torch.sub, (4,), (3, 4)),
        _binary("both", F.sub, torch.sub, (2, 1, 5), (3, 1)),
        Case("rsub_scalar", {"x": rnd(3, 4)}, lambda m: 2.0 - m.x, lambda t: 2.0 - t["x"]),
    ],
    "mul": [
        _binary("same", F.mul, torch.mul, (2, 3, 4), (2, 3, 4)),
        _binary("chan", F.mul, torch.mul, (2, 3, 4, 4), (1, 3, 1, 1)),
        _binary("both", F.mul, torch.mul, (3, 1), (1, 4)),
        Case("operator", {"a": rnd(3, 4), "b": rnd(4)}, lambda m: m.a * m.b,
             lambda t: t["a"] * t["b"]),
    ],
    "div": [
        _binary("same", F.div, torch.div, (2, 3, 4), (2, 3, 4), b_positive=True),
        _binary("bcast", F.div, torch.div, (2, 3, 4), (3, 1), b_positive=True),
        _binary("bcast_num", F.div, torch.div, (4,), (3, 4), b_positive=True),
        Case("rdiv_scalar", {"x": pos(3, 4)}, lambda m: 1.0 / m.x, lambda t: 1.0 / t["x"]),
    ],
    "reduce_sum_to": [
        Case("to_col", {"x": rnd(2, 3, 4), "r": rnd(3, 1)},
             lambda m: emit("reduce_sum_to", [m.x, m.r], scale=0.5),
             lambda t: 0.5 * t["x"].sum(dim=(0, 2)).reshape(3, 1), frozen=("r",)),
        Case("to_row", {"x": rnd(2, 3, 4), "r": rnd(4)},
             lambda m: emit("reduce_sum_to", [m.x, m.r], scale=1.0),
             lambda t: t["x"].sum(dim=(0, 1)), frozen=("r",)),
    ],
    "reduce": [
        _reduce("sum_all", F.sum, torch.sum, (2, 3, 4), None, False),
        _reduce("mean_all", F.mean, torch.mean, (2, 3, 4), None, False),
        _reduce("sum_axis1_keep", F.sum, torch.sum, (2, 3, 4), 1, True),
        _reduce("mean_nhw_keep", F.mean, torch.mean, (2, 3, 4, 5), (0, 2, 3), True),
        _reduce("sum_axis2", F.sum, torch.sum, (2, 3, 4), 2, False),
        _reduce("mean_axis1", F.mean, torch.mean, (2, 3, 4), 1, False),
        _reduce("mean_axis0", F.mean, torch.mean, (5, 3), 0, False),
    ],
    "broadcast_to": [
        Case("col", {"x": rnd(3, 1), "r": rnd(2, 3, 4)},
             lambda m: emit("broadcast_to", [m.x, m.r], scale=2.0),
             lambda t: 2.0 * t["x"].expand(2, 3, 4), frozen=("r",)),
    ],
    "reshape": [
        Case("flatten", {"x": rnd(2, 3, 4, 5)}, lambda m: F.flatten(m.x, 1),
             lambda t: torch.flatten(t["x"], 1)),
        Case("view_size0", {"x": rnd(2, 3, 4)}, lambda m: m.x.reshape(m.x.size(0), -1),
             lambda t: t["x"].reshape(2, -1)),
        Case("to_4d", {"x": rnd(6, 20)}, lambda m: F.reshape(m.x, (3, 2, 4, 5)),
             lambda t: t["x"].reshape(3, 2, 4, 5)),
    ],
    "act": [
        _act("relu", F.relu, TF.relu), _act("relu6", F.relu6, TF.relu6),
        _act("leaky_relu", lambda x: F.leaky_relu(x, 0.1), lambda x: TF.leaky_relu(x, 0.1)),
        _act("sigmoid", F.sigmoid, torch.sigmoid), _act("tanh", F.tanh, torch.tanh, 1.5),
        _act("hardswish", F.hardswish, TF.hardswish),
    ],
    "maxpool2d": [
        _pool("k2", "max", (2, 3, 8, 8), kernel_size=2),
        _pool("k3s2p1", "max", (2, 2, 9, 9), kernel_size=3, stride=2, padding=1),
        _pool("ceil", "max", (1, 2, 7, 7), kernel_size=2, stride=2, ceil_mode=True),
        _pool("ceil_pad", "max", (1, 2, 8, 8), kernel_size=3, stride=2, padding=1,
              ceil_mode=True),
        _pool("dilation", "max", (1, 2, 9, 9), kernel_size=3, stride=1, dilation=2),
        _pool("rect", "max", (2, 2, 7, 9), kernel_size=(2, 3), stride=(1, 2), padding=(1, 1)),
    ],
    "avgpool2d": [
        _pool("k2", "avg", (2, 3, 8, 8), kernel_size=2),
        _pool("k3s2p1_incl", "avg", (2, 2, 9, 9), kernel_size=3, stride=2, padding=1),
        _pool("k3s2p1_excl", "avg", (2, 2, 9, 9), kernel_size=3, stride=2, padding=1,
              count_include_pad=False),
        _pool("ceil_incl", "avg", (1, 2, 8, 8), kernel_size=3, stride=2, padding=1,
              ceil_mode=True),
        _pool("ceil_excl", "avg", (1, 2, 8, 8), kernel_size=3, stride=2, padding=1,
              ceil_mode=True, count_include_pad=False),
        _pool("ceil_nopad", "avg", (1, 2, 7, 7), kernel_size=2, stride=2, ceil_mode=True),
        _pool("rect", "avg", (2, 2, 7, 9), kernel_size=(2, 3), stride=(1, 2), padding=(1, 1)),
    ],
    "global_avgpool": [
        Case("gap", {"x": rnd(2, 3, 5, 4)}, lambda m: F.adaptive_avg_pool2d(m.x, 1),
             lambda t: TF.adaptive_avg_pool2d(t["x"], 1)),
    ],
    "batchnorm_train": [
        _bn("affine", (4, 3, 5, 5)),
        _bn("no_affine", (3, 2, 4, 6), affine=False),
        _bn("momentum_eps", (2, 5, 3, 3), momentum=0.3, eps=1e-3),
    ],
    "batchnorm_infer": [
        _bn("eval", (2, 3, 4, 4), train=False),
    ],
    "dropout": [
        Case("p0.3", {"x": rnd(8, 64)}, lambda m: F.dropout(m.x, 0.3, True),
             None, check=_check_dropout(0.3)),
        Case("p0.5", {"x": rnd(4, 4, 8, 8)}, lambda m: F.dropout(m.x, 0.5, True),
             None, check=_check_dropout(0.5)),
    ],
    "softmax": [
        _softmax("axis1", (4, 7), 1, False), _softmax("log_axis1", (4, 7), 1, True),
        _softmax("axis0", (5, 3), 0, False), _softmax("log_nchw_c", (2, 4, 3, 3), 1, True),
        _softmax("last", (2, 3, 6), -1, False),
    ],
    "softmax_xent": [
        Case("int_labels", {"x": rnd(6, 5, scale=2.0)},
             lambda m: F.cross_entropy(m.x, LABELS),
             lambda t: TF.cross_entropy(t["x"], torch.tensor(LABELS))),
        Case("module", {"x": rnd(6, 5)},
             lambda m: nn.CrossEntropyLoss()(m.x, LABELS),
             lambda t: torch.nn.CrossEntropyLoss()(t["x"], torch.tensor(LABELS))),
    ],
    "softmax_xent_prob": [
        Case("probs", {"x": rnd(4, 6, scale=2.0)},
             lambda m: F.cross_entropy(m.x, PROB_T),
             lambda t: TF.cross_entropy(t["x"], torch.tensor(PROB_T, dtype=torch.float64))),
    ],
    "mse": [
        Case("both", {"x": rnd(3, 4), "y": rnd(3, 4)}, lambda m: F.mse_loss(m.x, m.y),
             lambda t: TF.mse_loss(t["x"], t["y"])),
        Case("4d", {"x": rnd(2, 3, 2, 2), "y": rnd(2, 3, 2, 2)},
             lambda m: nn.MSELoss()(m.x, m.y), lambda t: TF.mse_loss(t["x"], t["y"]),
             frozen=("y",)),
    ],
    "l1": [
        Case("both", {"x": rnd(3, 4), "y": rnd(3, 4)}, lambda m: F.l1_loss(m.x, m.y),
             lambda t: TF.l1_loss(t["x"], t["y"])),
    ],
    "hinge": [
        Case("margin1", {"x": rnd(6, 5)}, lambda m: nn.HingeLoss()(m.x, LABELS),
             lambda t: TF.multi_margin_loss(t["x"], torch.tensor(LABELS))),
        Case("margin0.5", {"x": rnd(6, 5)},
             lambda m: F.multi_margin_loss(m.x, LABELS, margin=0.5),
             lambda t: TF.multi_margin_loss(t["x"], torch.tensor(LABELS), margin=0.5)),
    ],
    "kldiv": [
        Case("batchmean", {"x": rnd(4, 5)},
             lambda m: nn.KLDivLoss()(F.log_softmax(m.x, 1), PROB_T2),
             lambda t: TF.kl_div(torch.log_softmax(t["x"], 1),
                                 torch.tensor(PROB_T2, dtype=torch.float64),
                                 reduction="batchmean")),
        Case("distill", {"s": rnd(6, 5, scale=3.0)},
             lambda m: nn.DistillLoss(temperature=4.0, alpha=0.7)(m.s, TEACHER, LABELS),
             lambda t: _torch_distill(t["s"], 4.0, 0.7)),
    ],
    "affine": [
        Case("scale_shift", {"x": rnd(3, 5)}, lambda m: F.affine(m.x, 2.5, -1.0),
             lambda t: 2.5 * t["x"] - 1.0),
        Case("neg", {"x": rnd(3, 5)}, lambda m: -m.x, lambda t: -t["x"]),
        Case("F.neg", {"x": rnd(7, 3)}, lambda m: F.neg(m.x), lambda t: -t["x"]),
    ],
    "unary": [
        _act("exp", F.exp, torch.exp, 2.0),
        Case("log", {"x": pos(3, 7, 5)}, lambda m: F.log(m.x), lambda t: torch.log(t["x"])),
        Case("sqrt", {"x": pos(5, 13)}, lambda m: F.sqrt(m.x), lambda t: torch.sqrt(t["x"])),
        Case("rsqrt", {"x": pos(2, 3, 11)}, lambda m: m.x.rsqrt(), lambda t: torch.rsqrt(t["x"])),
        _act("abs", F.abs, torch.abs),
        _act("erf", F.erf, torch.erf, 1.5),
        Case("exp_method", {"x": rnd(17, 3)}, lambda m: m.x.exp() * 2.0,
             lambda t: t["x"].exp() * 2.0),
        Case("pow2", {"x": rnd(3, 17)}, lambda m: F.pow(m.x, 2), lambda t: torch.pow(t["x"], 2)),
        Case("pow3_op", {"x": rnd(4, 9)}, lambda m: m.x ** 3, lambda t: t["x"] ** 3),
        Case("pow_frac", {"x": pos(5, 7)}, lambda m: F.pow(m.x, 1.7),
             lambda t: torch.pow(t["x"], 1.7)),
        Case("pow_neg", {"x": pos(3, 19)}, lambda m: m.x.pow(-1.5),
             lambda t: t["x"].pow(-1.5)),
        Case("pow0", {"x": rnd(2, 5)}, lambda m: F.pow(m.x, 0) + m.x,
             lambda t: torch.pow(t["x"], 0) + t["x"]),
        Case("clamp", {"x": rnd(3, 5, 7, scale=2.0)}, lambda m: F.clamp(m.x, -0.5, 1.25),
             lambda t: torch.clamp(t["x"], -0.5, 1.25)),
        Case("clamp_min", {"x": rnd(6, 11)}, lambda m: m.x.clamp(min=0.3),
             lambda t: t["x"].clamp(min=0.3)),
        Case("clamp_max", {"x": rnd(6, 11)}, lambda m: F.clamp(m.x, max=-0.2),
             lambda t: torch.clamp(t["x"], max=-0.2)),
        # kinks hit exactly: the gradient there must be PyTorch's choice
        Case("kinks", {"x": np.array([[-3.0, -0.5, 0.0, 1.25, 3.0, 2.0, -1.0]], np.float32)},
             lambda m: F.abs(m.x) + F.clamp(m.x, -0.5, 1.25) + F.hardsigmoid(m.x)
             + F.elu(m.x, 0.7) + F.pow(m.x, 2),
             lambda t: (t["x"].abs() + t["x"].clamp(-0.5, 1.25) + TF.hardsigmoid(t["x"])
                        + TF.elu(t["x"], 0.7) + t["x"].pow(2))),
        # activations written as composites of unary/act/affine/mul/add (no op of their own)
        _act("silu", F.silu, TF.silu),
        _act("SiLU_layer", nn.SiLU(), torch.nn.SiLU()),
        _act("gelu", F.gelu, TF.gelu),
        _act("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"),
             lambda x: TF.gelu(x, approximate="tanh")),
        _act("GELU_layer", nn.GELU("tanh"), torch.nn.GELU("tanh")),
        _act("hardsigmoid", F.hardsigmoid, TF.hardsigmoid),
        _act("Hardsigmoid_layer", nn.Hardsigmoid(), torch.nn.Hardsigmoid()),
        _act("elu", F.elu, TF.elu),
        _act("ELU_layer", nn.ELU(0.7), torch.nn.ELU(0.7)),
        _act("softplus", F.softplus, TF.softplus, 8.0),
        _act("softplus_beta", lambda x: F.softplus(x, 2.0, 3.0),
             lambda x: TF.softplus(x, 2.0, 3.0)),
        _act("Softplus_layer", nn.Softplus(0.5, 1.0), torch.nn.Softplus(0.5, 1.0)),
    ],
    # embedding and the losses added with it (constants and torch helpers below CASES)
    "embedding": [
        Case("idx2d_repeats", {"w": rnd(7, 5)}, lambda m: F.embedding(EMB_IDX, m.w),
             lambda t: TF.embedding(torch.tensor(EMB_IDX), t["w"])),
        Case("padding_idx", {"w": rnd(6, 3)}, lambda m: F.embedding(EMB_IDX % 6, m.w, 2),
             lambda t: TF.embedding(torch.tensor(EMB_IDX % 6), t["w"], padding_idx=2)),
        Case("layer_neg_padding", {"w": rnd(5, 1)},
             lambda m: _emb_layer(m.w, -1)(EMB_IDX1),
             lambda t: TF.embedding(torch.tensor(EMB_IDX1), t["w"], padding_idx=4)),
        Case("scalar_index_one_row", {"w": rnd(1, 9)}, lambda m: F.embedding(np.int64(0), m.w),
             lambda t: TF.embedding(torch.tensor(0), t["w"])),
    ],
    "bce": [
        Case("both", {"x": prob01(3, 5), "y": prob01(3, 5)},
             lambda m: F.binary_cross_entropy(m.x, m.y),
             lambda t: TF.binary_cross_entropy(t["x"], t["y"])),
        Case("weight_sum", {"x": prob01(4, 3)},
             lambda m: nn.BCELoss(weight=BCE_W3, reduction="sum")(m.x, BIN_T43),
             lambda t: TF.binary_cross_entropy(t["x"], torch.tensor(BIN_T43, dtype=torch.float64),
                                               weight=torch.tensor(BCE_W3, dtype=torch.float64),
                                               reduction="sum")),
        Case("none_3d", {"x": prob01(2, 3, 4), "y": prob01(2, 3, 4)},
             lambda m: F.binary_cross_entropy(m.x, m.y, reduction="none"),
             lambda t: TF.binary_cross_entropy(t["x"], t["y"], reduction="none"), frozen=("y",)),
        # x = 0 or 1 exactly: logs clamped at -100, gradient divided by max(x(1-x), 1e-12)
        Case("clamp_edges", {"x": np.array([[0.0, 1.0, 0.5, 0.0, 1.0]], np.float32),
                             "y": np.array([[1.0, 0.0, 0.3, 0.0, 1.0]], np.float32)},
             lambda m: F.binary_cross_entropy(m.x, m.y, reduction="none"),
             lambda t: TF.binary_cross_entropy(t["x"], t["y"], reduction="none"), frozen=("y",)),
    ],
    "bce_logits": [
        Case("soft_targets", {"x": rnd(4, 3, scale=2.0), "y": prob01(4, 3)},
             lambda m: F.binary_cross_entropy_with_logits(m.x, m.y),
             lambda t: TF.binary_cross_entropy_with_logits(t["x"], t["y"])),
        # large |x| (stable form), pos_weight [C] and weight [C], sum
        Case("pos_weight_weight_sum", {"x": rnd(5, 3, scale=30.0), "y": prob01(5, 3)},
             lambda m: nn.BCEWithLogitsLoss(weight=BCE_W3, reduction="sum",
                                            pos_weight=POS_W3)(m.x, m.y),
             lambda t: TF.binary_cross_entropy_with_logits(
                 t["x"], t["y"], weight=torch.tensor(BCE_W3, dtype=torch.float64),
                 pos_weight=torch.tensor(POS_W3, dtype=torch.float64), reduction="sum")),
        Case("pos_weight_param_none", {"x": rnd(2, 3, 5), "y": prob01(2, 3, 5), "pw": pos(5)},
             lambda m: F.binary_cross_entropy_with_logits(m.x, m.y, reduction="none",
                                                          pos_weight=m.pw),
             lambda t: TF.binary_cross_entropy_with_logits(t["x"], t["y"], reduction="none",
                                                           pos_weight=t["pw"]),
             frozen=("pw",)),  # torch has no gradient for pos_weight
        Case("binary_labels_mean", {"x": rnd(7, 1)},
             lambda m: F.binary_cross_entropy_with_logits(m.x, BIN_T71, pos_weight=[3.0]),
             lambda t: TF.binary_cross_entropy_with_logits(
                 t["x"], torch.tensor(BIN_T71, dtype=torch.float64),
                 pos_weight=torch.tensor([3.0], dtype=torch.float64))),
    ],
    "huber": [
        Case("smooth_l1", {"x": rnd(3, 7, scale=2.0), "y": rnd(3, 7)},
             lambda m: F.smooth_l1_loss(m.x, m.y), lambda t: TF.smooth_l1_loss(t["x"], t["y"])),
        # |x - y| == beta exactly (and on both sides of it)
        Case("smooth_l1_kink", {"x": KINK_X, "y": KINK_Y},
             lambda m: nn.SmoothL1Loss(reduction="none", beta=0.5)(m.x, m.y),
             lambda t: TF.smooth_l1_loss(t["x"], t["y"], reduction="none", beta=0.5)),
        Case("smooth_l1_beta0_sum", {"x": rnd(4, 5), "y": rnd(4, 5)},
             lambda m: F.smooth_l1_loss(m.x, m.y, reduction="sum", beta=0.0),
             lambda t: TF.smooth_l1_loss(t["x"], t["y"], reduction="sum", beta=0.0)),
        Case("huber_kink", {"x": KINK_X, "y": KINK_Y},
             lambda m: nn.HuberLoss(reduction="none", delta=0.5)(m.x, m.y),
             lambda t: TF.huber_loss(t["x"], t["y"], reduction="none", delta=0.5)),
        Case("huber_delta2_sum", {"x": rnd(2, 3, 5, scale=3.0), "y": rnd(2, 3, 5)},
             lambda m: F.huber_loss(m.x, m.y, reduction="sum", delta=2.0),
             lambda t: TF.huber_loss(t["x"], t["y"], reduction="sum", delta=2.0), frozen=("y",)),
        Case("huber_mean", {"x": rnd(9, 1, scale=2.0), "y": rnd(9, 1)},
             lambda m: F.huber_loss(m.x, m.y), lambda t: TF.huber_loss(t["x"], t["y"])),
    ],
    "nll": [
        Case("plain", {"x": rnd(6, 5)}, lambda m: F.nll_loss(F.log_softmax(m.x, 1), LABELS),
             lambda t: TF.nll_loss(torch.log_softmax(t["x"], 1), torch.tensor(LABELS))),
        Case("weight_ignore_index", {"x": rnd(7, 4)},
             lambda m: nn.NLLLoss(weight=CLS_W4)(m.x, IGN_LABELS),
             lambda t: TF.nll_loss(t["x"], torch.tensor(IGN_LABELS), weight=_t64(CLS_W4))),
        Case("ignore_index_set_sum", {"x": rnd(7, 4)},
             lambda m: F.nll_loss(m.x, IGN_LABELS % 4, ignore_index=2, reduction="sum"),
             lambda t: TF.nll_loss(t["x"], torch.tensor(IGN_LABELS % 4), ignore_index=2,
                                   reduction="sum")),
        Case("4d_weight_none", {"x": rnd(2, 3, 2, 5)},
             lambda m: F.nll_loss(m.x, SEG_LABELS, weight=CLS_W3, reduction="none"),
             lambda t: TF.nll_loss(t["x"], torch.tensor(SEG_LABELS), weight=_t64(CLS_W3),
                                   reduction="none")),
        Case("3d_mean_ignore", {"x": rnd(3, 4, 1)},
             lambda m: F.nll_loss(m.x, SEQ_LABELS),
             lambda t: TF.nll_loss(t["x"], torch.tensor(SEQ_LABELS))),
        # cross_entropy with weight / label_smoothing / ignore_index: log_softmax + nll
        Case("ce_weight_smooth_ignore", {"x": rnd(7, 4, scale=2.0)},
             lambda m: nn.CrossEntropyLoss(weight=CLS_W4, label_smoothing=0.1)(m.x, IGN_LABELS),
             lambda t: TF.cross_entropy(t["x"], torch.tensor(IGN_LABELS), weight=_t64(CLS_W4),
                                        label_smoothing=0.1)),
        Case("ce_smooth", {"x": rnd(6, 5)},
             lambda m: F.cross_entropy(m.x, LABELS, label_smoothing=0.25),
             lambda t: TF.cross_entropy(t["x"], torch.tensor(LABELS), label_smoothing=0.25)),
        Case("ce_weight_sum", {"x": rnd(6, 5)},
             lambda m: F.cross_entropy(m.x, LABELS, weight=CLS_W5, reduction="sum"),
             lambda t: TF.cross_entropy(t["x"], torch.tensor(LABELS), weight=_t64(CLS_W5),
                                        reduction="sum")),
        Case("ce_4d_smooth_weight_none", {"x": rnd(2, 3, 2, 5)},
             lambda m: F.cross_entropy(m.x, SEG_LABELS, weight=CLS_W3, reduction="none",
                                       label_smoothing=0.1),
             lambda t: TF.cross_entropy(t["x"], torch.tensor(SEG_LABELS), weight=_t64(CLS_W3),
                                        reduction="none", label_smoothing=0.1)),
        Case("ce_ignore_index_default", {"x": rnd(7, 4)},
             lambda m: F.cross_entropy(m.x, IGN_LABELS, ignore_index=-100, reduction="sum"),
             lambda t: TF.cross_entropy(t["x"], torch.tensor(IGN_LABELS), reduction="sum")),
        # probability targets with weight and smoothing: a composite (no nll node)
        Case("ce_probs_weight_smooth", {"x": rnd(4, 6, scale=2.0)},
             lambda m: F.cross_entropy(m.x, PROB_T, weight=CLS_W6, label_smoothing=0.1),
             lambda t: TF.cross_entropy(t["x"], _t64(PROB_T), weight=_t64(CLS_W6),
                                        label_smoothing=0.1)),
    ],
    "conv_transpose2d": [
        _convt("k3", (2, 3, 5, 4), 4, 3),
        _convt("s2_p1_op1", (2, 4, 5, 6), 3, 3, stride=2, padding=1, output_padding=1),
        _convt("g2_s2_op1_d2", (1, 4, 4, 5), 6, 3, stride=2, output_padding=1, groups=2,
               dilation=2),
        _convt("s3_p2_op2_rect_nobias", (2, 2, 4, 3), 5, (2, 4), stride=3, padding=2,
               output_padding=2, bias=False),
        _convt("rect_stride_pad", (2, 3, 5, 4), 2, 3, stride=(2, 1), padding=(1, 0),
               output_padding=(1, 0)),
        _convt("depthwise_s2", (2, 4, 5, 5), 4, 3, stride=2, padding=1, groups=4),
        _convt("unet_up_k2s2", (2, 8, 7, 7), 4, 2, stride=2),
        _convt("1x1_pixel", (1, 3, 1, 1), 2, 3),
        _convt("wide", (2, 16, 6, 6), 12, 4, stride=2, padding=1),
        Case("layer", {"x": rnd(2, 4, 3, 5)},
             lambda m: m.ct(m.x), lambda t, module: TF.conv_transpose2d(
                 t["x"], torch.tensor(module.ct.weight.data, dtype=torch.float64),
                 torch.tensor(module.ct.bias.data, dtype=torch.float64), 2, 1, 1, 2),
             setup=lambda m: setattr(m, "ct", nn.ConvTranspose2d(4, 6, 3, 2, 1, 1, groups=2)),
             extra={"needs_module": True}),
    ],
    "interpolate": [
        _interp("nearest_x2", (2, 3, 4, 5), scale_factor=2),
        _interp("nearest_size_up", (1, 2, 4, 5), size=(7, 9)),
        _interp("nearest_size_down", (2, 2, 7, 5), size=(3, 2)),
        _interp("nearest_scale_1_5", (1, 3, 5, 7), scale_factor=1.5),
        _interp("nearest_scale_pair", (2, 1, 6, 5), scale_factor=(0.5, 2.5)),
        _interp("nearest_scale_1_7", (1, 2, 3, 7), scale_factor=1.7),
        _interp("nearest_recompute", (1, 2, 5, 7), scale_factor=1.5,
                recompute_scale_factor=True),
        _interp("bilinear_x2", (2, 3, 4, 5), scale_factor=2, mode="bilinear"),
        _interp("bilinear_x2_ac", (2, 3, 4, 5), scale_factor=2, mode="bilinear",
                align_corners=True),
        _interp("bilinear_size_up", (1, 2, 5, 4), size=(9, 7), mode="bilinear",
                align_corners=False),
        _interp("bilinear_size_up_ac", (1, 2, 5, 4), size=(9, 7), mode="bilinear",
                align_corners=True),
        _interp("bilinear_down", (2, 2, 7, 9), size=(3, 4), mode="bilinear"),
        _interp("bilinear_down_ac", (2, 2, 7, 9), size=(3, 4), mode="bilinear",
                align_corners=True),
        _interp("bilinear_scale_2_5", (1, 3, 3, 5), scale_factor=(2.5, 1.5), mode="bilinear"),
        _interp("bilinear_scale_1_7", (1, 2, 7, 3), scale_factor=1.7, mode="bilinear"),
        _interp("bilinear_to_1_ac", (1, 2, 4, 3), size=(1, 5), mode="bilinear",
                align_corners=True),
        _interp("bilinear_same_h", (2, 1, 4, 3), size=(4, 7), mode="bilinear"),
        Case("Upsample_layer", {"x": rnd(2, 2, 3, 4)}, lambda m: m.up(m.x),
             lambda t: torch.nn.UpsamplingBilinear2d(scale_factor=2)(t["x"]),
             setup=lambda m: setattr(m, "up", nn.UpsamplingBilinear2d(scale_factor=2))),
    ],
    "adaptive_avgpool2d": [
        _adaptive("7x9_to_3x4", (2, 3, 7, 9), (3, 4)),
        _adaptive("same_size", (1, 2, 5, 5), 5),
        _adaptive("6x8_to_4x3", (2, 2, 6, 8), (4, 3)),
        _adaptive("up_4x5_to_6x7", (1, 3, 4, 5), (6, 7)),
        _adaptive("none_keeps", (2, 2, 9, 7), (None, 3)),
        _adaptive("1x3", (1, 2, 5, 6), (1, 3)),
        _adaptive("divisible", (2, 4, 8, 8), 2),
        Case("area", {"x": rnd(1, 2, 7, 6)},
             lambda m: F.interpolate(m.x, size=(3, 4), mode="area"),
             lambda t: TF.interpolate(t["x"], size=(3, 4), mode="area")),
        Case("layer", {"x": rnd(2, 3, 5, 7)}, lambda m: m.pool(m.x),
             lambda t: torch.nn.AdaptiveAvgPool2d((2, 3))(t["x"]),
             setup=lambda m: setattr(m, "pool", nn.AdaptiveAvgPool2d((2, 3)))),
    ],
    "adaptive_maxpool2d": [
        Case("7x9_to_3x4", {"x": rnd(2, 3, 7, 9)}, lambda m: F.adaptive_max_pool2d(m.x, (3, 4)),
             lambda t: TF.adaptive_max_pool2d(t["x"], (3, 4))),
        Case("up_4x5_to_6x7", {"x": rnd(1, 2, 4, 5)}, lambda m: F.adaptive_max_pool2d(m.x, (6, 7)),
             lambda t: TF.adaptive_max_pool2d(t["x"], (6, 7))),
        Case("none_keeps", {"x": rnd(2, 2, 6, 5)},
             lambda m: F.adaptive_max_pool2d(m.x, (4, None)),
             lambda t: TF.adaptive_max_pool2d(t["x"], (4, None))),
        Case("ties_first_wins", {"x": np.repeat(rnd(1, 2, 3, 5), 2, axis=2)},
             lambda m: F.adaptive_max_pool2d(m.x, (2, 2)),
             lambda t: TF.adaptive_max_pool2d(t["x"], (2, 2))),
        Case("layer", {"x": rnd(2, 3, 5, 7)}, lambda m: m.pool(m.x),
             lambda t: torch.nn.AdaptiveMaxPool2d((2, 3))(t["x"]),
             setup=lambda m: setattr(m, "pool", nn.AdaptiveMaxPool2d((2, 3)))),
    ],
    # bit-exactness, ties and the observers: tests/test_quant.py
    "fake_quant": [
        _fake_quant("per_tensor_u8", rnd(3, 5, 7, scale=2.0), [0.02], [100], None, 0, 255),
        _fake_quant("per_tensor_u2_scalar", rnd(17, 3), [0.7], [1], None, 0, 3),
        _fake_quant("per_channel_axis1_s4", rnd(2, 3, 4, 5), [0.1, 0.3, 0.05], [0, 0, 0], 1,
                    -7, 7),
        _fake_quant("per_channel_axis0_s2", rnd(5, 3, 3, 1), [0.5, 1.0, 0.25, 2.0, 0.6],
                    [0, 0, 0, 0, 0], 0, -1, 1),
        _fake_quant("per_channel_last_u8_zp", rnd(4, 1, 6, scale=3.0),
                    [0.02, 0.03, 0.01, 0.05, 0.04, 0.025], [128, 0, 255, 17, 90, 200], 2, 0, 255),
    ],
    # tensor copies (kernels/src/tensor.c); composites (stack, split, squeeze...) ride along
    "concat": [
        _cat("axis1", [(2, 3, 5), (2, 1, 5)], 1),
        _cat("neg_axis_3", [(3, 1, 2), (3, 1, 5), (3, 1, 1)], -1),
        _cat("axis0", [(1, 4), (3, 4)], 0),
        _cat("eleven_chained", [(2, k % 3 + 1) for k in range(11)], 1),
        _cat("same_twice", [(2, 3)], 0, twice=True),
        Case("stack_neg", {"a": rnd(3, 4), "b": rnd(3, 4), "c": rnd(3, 4)},
             lambda m: et.stack([m.a, m.b, m.c], -1),
             lambda t: torch.stack([t["a"], t["b"], t["c"]], -1)),
        Case("stack_nine", {f"x{k}": rnd(2, 1, 3) for k in range(9)},
             lambda m: et.stack([getattr(m, f"x{k}") for k in range(9)], 1),
             lambda t: torch.stack([t[f"x{k}"] for k in range(9)], 1)),
    ],
    "slice": [
        _idx("cols", (2, 5, 3), lambda x: x[:, 1:4]),
        _idx("step2_odd", (3, 2, 7), lambda x: x[..., ::2]),
        _idx("neg_bounds_step3", (4, 9), lambda x: x[-3:, -8:-1:3]),
        _idx("int_drop_none_add", (3, 4, 5), lambda x: x[1, None, -3:, -1]),
        _idx("ellipsis_int", (2, 3, 4, 5), lambda x: x[..., 2, 1::2]),
        _idx("overlap", (2, 6), lambda x: x[:, :4] * x[:, 2:] + x[:, 1:5]),
        _idx("split_sizes", (7, 5),
             lambda x: _cat_any(x, list(x.split([2, 4, 1])[::-1]), 0)),
        _idx("split_int", (7, 5), lambda x: _cat_any(x, list(x.split(3)[::-1]), 0)),
        _idx("chunk_neg", (2, 4, 8), lambda x: _cat_any(x, list(x.chunk(3, -1)[::-1]), -1)),
        _idx("narrow", (3, 6), lambda x: x.narrow(1, -4, 3)),
        _idx("iter_rows", (3, 2), lambda x: _cat_any(x, [r for r in x][::-1], 0)),
        _idx("squeeze_leading", (1, 1, 3, 1, 2), lambda x: x.squeeze() + x.squeeze(0)[0, :, 0]),
    ],
    "transpose": [
        _idx("permute_201", (2, 3, 5), lambda x: x.permute(2, 0, 1)),
        _idx("transpose_0_neg1", (2, 1, 3, 4), lambda x: x.transpose(0, -1)),
        _idx("t", (3, 7), lambda x: x.t()),
        _idx("mT", (2, 3, 5), lambda x: x.mT),
        _idx("T", (4, 3), lambda x: x.T),
        _idx("perm_6d", (2, 1, 3, 1, 2, 3), lambda x: x.permute(5, 3, 1, 0, 2, 4)),
        _idx("squeeze_unsqueeze", (3, 1, 4),
             lambda x: x.squeeze().unsqueeze(-1).permute(2, 0, 1).unsqueeze(0).squeeze(1)),
        _idx("contiguous_view", (2, 3, 4),
             lambda x: x.transpose(1, 2).contiguous().view(2, -1)),
    ],
    "pad": [
        _pad("const_1d", (2, 3, 5), (1, 2), value=0.5),
        _pad("const_2d", (2, 3, 4, 5), (1, 0, 2, 3)),
        _pad("const_all_dims", (2, 3, 4), (1, 1, 0, 2, 1, 0), value=-1.0),
        _pad("reflect_1d", (2, 3, 6), (2, 3), "reflect"),
        _pad("reflect_2d", (1, 2, 5, 4), (1, 3, 2, 1), "reflect"),
        _pad("replicate_2d", (2, 2, 3, 4), (2, 1, 0, 3), "replicate"),
        _pad("replicate_size1", (1, 2, 1), (3, 2), "replicate"),
        _pad("const_negative_crops", (2, 3, 6, 5), (-1, 2, 1, -2), value=0.25),
    ],
    "gather": [
        _gather("dim1_small_index", (3, 5, 2), 1, RNG.integers(0, 5, (2, 4, 1))),
        _gather("dim_neg1", (2, 3, 4), -1, RNG.integers(0, 4, (2, 3, 6))),
        _gather("dim0_repeats", (4, 3), 0, np.array([[3, 0, 3], [3, 3, 1]])),
        _gather("select_dim0", (3, 4), 0, np.array([2, 0, 2, 1]), select=True),
        _gather("select_neg", (2, 3, 5), -1, np.array([4, 4, 0]), select=True),
        Case("methods", {"x": rnd(4, 6)},
             lambda m: m.x.gather(1, np.array([[5, 0]] * 4)) * m.x.index_select(1, [1, 1]),
             lambda t: t["x"].gather(1, torch.tensor([[5, 0]] * 4))
             * t["x"].index_select(1, torch.tensor([1, 1]))),
    ],
    "expand": [
        _idx("new_dims", (3, 1), lambda x: x.expand(2, 3, 4)),
        _idx("keep_minus1", (2, 1, 4, 1), lambda x: x.expand(-1, 3, -1, 5)),
        Case("expand_as", {"x": rnd(1, 5), "y": rnd(3, 5)}, lambda m: m.x.expand_as(m.y) * m.y,
             lambda t: t["x"].expand_as(t["y"]) * t["y"]),
        Case("F.expand", {"x": rnd(4)}, lambda m: F.expand(m.x, (2, 4)),
             lambda t: t["x"].expand(2, 4)),
    ],
}


# ---------------------------------------------------------------------------------------------
# normalisation over trailing dims, PReLU, max / min, argmax, batched matmul, attention
# ---------------------------------------------------------------------------------------------
def _ties(*shape):
    """Small integers: many exact ties (max / min gradients split among them)."""
    return RNG.integers(-2, 3, shape).astype(np.float32)


def _norm_layer(name, et_layer, t_layer, shape, scale=2.0, offset=0.5):
    """A layer with its parameters set from random values shared with its PyTorch twin."""
    tl = t_layer.double()
    with torch.no_grad():
        for p in tl.parameters():
            p.copy_(torch.tensor(rnd(*p.shape) + 1.0, dtype=torch.float64))
    inputs = {"x": rnd(*shape, scale=scale, offset=offset)}
    inputs.update({f"p_{k}": v.detach().numpy().astype(np.float32)
                   for k, v in tl.named_parameters()})

    def et_fn(m):
        layer = et_layer
        for k in dict(tl.named_parameters()):
            setattr(layer, k, getattr(m, f"p_{k}"))
        return layer(m.x)

    def ref(t):
        fn = torch.func.functional_call
        return fn(tl, {k: t[f"p_{k}"] for k in dict(tl.named_parameters())}, (t["x"],))
    return Case(name, inputs, et_fn, ref)


def _bmm(name, sa, sb, ta=0, tb=0):
    def ref(t):
        a = t["a"].transpose(-2, -1) if ta else t["a"]
        b = t["b"].transpose(-2, -1) if tb else t["b"]
        return torch.matmul(a, b)
    return Case(name, {"a": rnd(*sa), "b": rnd(*sb)},
                lambda m: F.bmm(m.a, m.b, transpose_a=bool(ta), transpose_b=bool(tb)), ref)


def _sdpa(name, sq, sk, sv, **kw):
    mask = kw.pop("mask", None)

    def et_fn(m):
        return F.scaled_dot_product_attention(m.q, m.k, m.v, attn_mask=mask, **kw)

    def ref(t):
        tm = None if mask is None else torch.tensor(mask)
        if tm is not None and tm.dtype != torch.bool:
            tm = tm.double()
        return TF.scaled_dot_product_attention(t["q"], t["k"], t["v"], attn_mask=tm, **kw)
    return Case(name, {"q": rnd(*sq), "k": rnd(*sk), "v": rnd(*sv)}, et_fn, ref)


def _with_indices(name, x, et_fn, ref):
    return Case(name, {"x": x}, et_fn, ref, extra={"indices": True})


CAUSAL_FREE_MASK = np.array([[True, False, True, True], [False, True, True, False],
                             [True, True, True, True]])
ADDITIVE_MASK = rnd(3, 4)

CASES.update({
    "normalize": [
        Case("layer_norm_last", {"x": rnd(3, 7, scale=2.0, offset=1.0), "w": rnd(7), "b": rnd(7)},
             lambda m: F.layer_norm(m.x, 7, m.w, m.b),
             lambda t: TF.layer_norm(t["x"], (7,), t["w"], t["b"])),
        Case("layer_norm_2dims_eps", {"x": rnd(2, 1, 3, 5, scale=3.0), "w": rnd(3, 5)},
             lambda m: F.layer_norm(m.x, (3, 5), m.w, eps=1e-2),
             lambda t: TF.layer_norm(t["x"], (3, 5), t["w"], eps=1e-2)),
        Case("layer_norm_no_affine_k1", {"x": rnd(4, 1)}, lambda m: F.layer_norm(m.x, [1]) + m.x,
             lambda t: TF.layer_norm(t["x"], [1]) + t["x"]),
        _norm_layer("LayerNorm", nn.LayerNorm((4, 3)), torch.nn.LayerNorm((4, 3)), (2, 5, 4, 3)),
        _norm_layer("LayerNorm_3d_tokens", nn.LayerNorm(9), torch.nn.LayerNorm(9), (2, 7, 9)),
        _norm_layer("GroupNorm", nn.GroupNorm(2, 6), torch.nn.GroupNorm(2, 6), (3, 6, 5, 3)),
        _norm_layer("GroupNorm_1group_1d", nn.GroupNorm(1, 3), torch.nn.GroupNorm(1, 3), (2, 3, 7)),
        _norm_layer("GroupNorm_per_channel", nn.GroupNorm(5, 5), torch.nn.GroupNorm(5, 5),
                    (1, 5, 2, 3)),
        Case("group_norm_no_affine", {"x": rnd(2, 4, 3)}, lambda m: F.group_norm(m.x, 2),
             lambda t: TF.group_norm(t["x"], 2)),
        Case("InstanceNorm2d", {"x": rnd(2, 3, 5, 4, scale=2.0, offset=1.0)},
             lambda m: nn.InstanceNorm2d(3)(m.x), lambda t: torch.nn.InstanceNorm2d(3)(t["x"])),
        _norm_layer("InstanceNorm2d_affine", nn.InstanceNorm2d(3, affine=True),
                    torch.nn.InstanceNorm2d(3, affine=True), (2, 3, 3, 5)),
    ],
    "maximum": [
        _binary("same", F.maximum, torch.maximum, (3, 5), (3, 5)),
        _binary("bcast", F.maximum, torch.maximum, (2, 3, 1, 5), (4, 1)),
        Case("ties", {"a": _ties(4, 7), "b": _ties(4, 7)}, lambda m: F.maximum(m.a, m.b),
             lambda t: torch.maximum(t["a"], t["b"])),
        Case("ties_bcast_max", {"a": _ties(3, 5), "b": _ties(5)}, lambda m: F.max(m.a, m.b),
             lambda t: torch.max(t["a"], t["b"])),
    ],
    "minimum": [
        _binary("same", F.minimum, torch.minimum, (2, 3, 4), (2, 3, 4)),
        _binary("bcast_scalar", F.minimum, torch.minimum, (5, 3), ()),
        Case("ties", {"a": _ties(3, 1, 5), "b": _ties(4, 1)}, lambda m: F.minimum(m.a, m.b),
             lambda t: torch.minimum(t["a"], t["b"])),
    ],
    "reduce_max": [
        Case("amax_all", {"x": rnd(3, 4, 5)}, lambda m: F.amax(m.x),
             lambda t: torch.amax(t["x"])),
        Case("amax_axis_neg_keep", {"x": rnd(3, 5, 7)}, lambda m: F.amax(m.x, -1, True),
             lambda t: torch.amax(t["x"], -1, True)),
        Case("amin_axes02", {"x": rnd(3, 4, 5)}, lambda m: F.amin(m.x, (0, 2)),
             lambda t: torch.amin(t["x"], (0, 2))),
        Case("amax_ties_axes", {"x": _ties(4, 3, 5)}, lambda m: F.amax(m.x, (0, -1)),
             lambda t: torch.amax(t["x"], (0, -1))),
        Case("amin_ties_all_keep", {"x": _ties(3, 1, 4)}, lambda m: F.amin(m.x, None, True),
             lambda t: torch.amin(t["x"], (0, 1, 2), True)),
        Case("amax_size1_axis", {"x": rnd(3, 1, 4)}, lambda m: F.amax(m.x, 1),
             lambda t: torch.amax(t["x"], 1)),
        Case("max_all", {"x": rnd(5, 3)}, lambda m: F.max(m.x), lambda t: torch.max(t["x"])),
        _with_indices("max_dim", rnd(4, 6, 3), lambda m: tuple(F.max(m.x, 1)),
                      lambda t: tuple(torch.max(t["x"], 1))),
        _with_indices("min_dim_neg_keep", rnd(2, 3, 7), lambda m: tuple(F.min(m.x, -1, True)),
                      lambda t: tuple(torch.min(t["x"], -1, True))),
    ],
    "argmax": [
        _with_indices("argmax_axis0", _ties(5, 4),
                      lambda m: (F.amax(m.x, 0), F.argmax(m.x, 0)),
                      lambda t: (torch.amax(t["x"], 0), torch.argmax(t["x"], 0))),
        _with_indices("argmin_neg_keep", rnd(3, 4, 5),
                      lambda m: (F.amin(m.x, -2, True), F.argmin(m.x, -2, True)),
                      lambda t: (torch.amin(t["x"], -2, True), torch.argmin(t["x"], -2, True))),
        _with_indices("argmax_flat", rnd(3, 5),
                      lambda m: (F.amax(m.x), F.argmax(m.x)),
                      lambda t: (torch.amax(t["x"]), torch.argmax(t["x"]))),
    ],
    "bmm": [
        _bmm("3d", (3, 4, 5), (3, 5, 2)),
        _bmm("4d_bcast", (2, 1, 3, 5), (1, 4, 5, 3)),
        _bmm("nt_heads", (2, 3, 5, 4), (2, 3, 7, 4), tb=1),
        _bmm("tn_bcast_2d_b", (2, 6, 3), (6, 5), ta=1),
        _bmm("tt_size1", (1, 4, 1), (3, 2, 4), ta=1, tb=1),
        Case("matmul_operator_3d_2d", {"a": rnd(2, 3, 4), "b": rnd(4, 5)},
             lambda m: m.a @ m.b, lambda t: t["a"] @ t["b"]),
        Case("linear_3d", {"x": rnd(2, 5, 6), "w": rnd(3, 6), "b": rnd(3)},
             lambda m: F.linear(m.x, m.w, m.b), lambda t: TF.linear(t["x"], t["w"], t["b"])),
        _sdpa("sdpa", (2, 5, 4), (2, 6, 4), (2, 6, 3)),
        _sdpa("sdpa_causal_heads", (2, 3, 5, 4), (2, 3, 5, 4), (2, 3, 5, 4), is_causal=True),
        _sdpa("sdpa_bool_mask_scale", (2, 3, 4), (2, 4, 4), (2, 4, 2), mask=CAUSAL_FREE_MASK,
              scale=0.3),
        _sdpa("sdpa_float_mask", (1, 2, 3, 5), (1, 2, 4, 5), (1, 2, 4, 5), mask=ADDITIVE_MASK),
    ],
})
CASES["act"] += [
    Case("prelu_channels", {"x": rnd(2, 3, 4, 5), "w": rnd(3, scale=0.3)},
         lambda m: F.prelu(m.x, m.w), lambda t: TF.prelu(t["x"], t["w"])),
    _norm_layer("PReLU_single_2d", nn.PReLU(), torch.nn.PReLU(), (4, 7), offset=0.0),
    _norm_layer("PReLU_channels_3d", nn.PReLU(5), torch.nn.PReLU(5), (2, 5, 3), offset=0.0),
    Case("prelu_kink", {"x": np.array([[-1.0, 0.0, 2.0], [0.0, -3.0, 0.5]], np.float32),
                        "w": np.array([0.2, -0.4, 0.7], np.float32)},
         lambda m: F.prelu(m.x, m.w), lambda t: TF.prelu(t["x"], t["w"])),
]



def _mha(name, n, l, s, e, h, mask=None, weights=False):
    """nn.MultiheadAttention (batch_first) vs PyTorch's, its parameters as case inputs;
    cross-attention when s != l; ``weights`` compares the head-averaged weights instead."""
    tl = torch.nn.MultiheadAttention(e, h, batch_first=True).double()
    names = {"win": "in_proj_weight", "bin": "in_proj_bias", "wo": "out_proj.weight",
             "bo": "out_proj.bias"}
    inputs = {"x": rnd(n, l, e), "mem": rnd(n, s, e)}
    inputs.update({k: rnd(*dict(tl.named_parameters())[v].shape, scale=0.5)
                   for k, v in names.items()})

    def et_fn(m):
        layer = nn.MultiheadAttention(e, h, batch_first=True)
        layer.in_proj_weight, layer.in_proj_bias = m.win, m.bin
        layer.out_proj.weight, layer.out_proj.bias = m.wo, m.bo
        out, w = layer(m.x, m.mem, m.mem, attn_mask=mask, need_weights=weights)
        return w if weights else out

    def ref(t):
        tm = None if mask is None else torch.tensor(mask)
        tm = tm.double() if tm is not None and tm.dtype != torch.bool else tm
        out, w = torch.func.functional_call(
            tl, {v: t[k] for k, v in names.items()}, (t["x"], t["mem"], t["mem"]),
            {"attn_mask": tm, "need_weights": weights})
        return w if weights else out
    return Case(name, inputs, et_fn, ref, frozen=("wo", "bo") if weights else ())


CASES["bmm"] += [
    _mha("MultiheadAttention", 2, 5, 5, 8, 2),
    _mha("MultiheadAttention_cross_3heads", 3, 4, 6, 9, 3, mask=rnd(4, 6)),
    _mha("MultiheadAttention_bool_mask_weights", 2, 3, 4, 4, 2, weights=True,
         mask=~CAUSAL_FREE_MASK),
    _mha("MultiheadAttention_1head", 1, 3, 2, 5, 1),
]


def _bn_frozen(name, shape, affine=True, eps=1e-5):
    """batchnorm_train with freeze_step 0 (QConfig.freeze_bn_step): eval-mode batch norm with
    the gradient of x through constant running statistics, which stay unchanged."""
    c = shape[1]

    def setup(m):
        m.bn = nn.BatchNorm2d(c, eps=eps, affine=False)  # buffers only
        m.bn.running_mean.data = rnd(c, scale=0.5)
        m.bn.running_var.data = pos(c)

    inputs = {"x": rnd(*shape, scale=2.0, offset=0.5)}
    if affine:
        inputs.update(g=pos(c), b=rnd(c))

    def et_fn(m):
        gamma = m.g if affine else tracing.require().const(np.ones(c, np.float32))
        beta = m.b if affine else tracing.require().const(np.zeros(c, np.float32))
        return tracing.require().emit("batchnorm_train", [m.x, gamma, beta, m.bn.running_mean,
                                                            m.bn.running_var],
                                        freeze_step=0, momentum=0.1, eps=eps)[0]

    def ref(t, module=None):
        rm = torch.tensor(module.bn.running_mean.data, dtype=torch.float64)
        rv = torch.tensor(module.bn.running_var.data, dtype=torch.float64)
        ref.running = {"bn.running_mean": rm.numpy().copy(), "bn.running_var": rv.numpy().copy()}
        return TF.batch_norm(t["x"], rm, rv, t.get("g"), t.get("b"), training=False, eps=eps)
    return Case(name, inputs, et_fn, ref, setup=setup, tol=(1e-4, 1e-4),
                extra={"needs_module": True})


CASES["batchnorm_train"] += [
    _bn_frozen("frozen_small_planes", (3, 5, 7, 1)),
    _bn_frozen("frozen_large_planes", (1, 4, 23, 29), eps=1e-3),
    _bn_frozen("frozen_no_affine", (2, 3, 5, 5), affine=False),
]


def _bn_act(name, shape, act, affine=True, gamma_scale=1.0):
    """batchnorm_train then relu / relu6, which the training export fuses into one
    batchnorm_train with act (export.fuse_batchnorm_activations) whose backward is one
    batchnorm_bwd masking dy from the activated output (tests/test_bn_act_fusion.py checks the
    fusion happens for these modules). gamma_scale > 1 makes relu6 clip at 6 too."""
    case = _bn(name, shape, affine=affine)
    if affine:
        case.inputs["g"] = case.inputs["g"] * np.float32(gamma_scale)
    fn = {"relu": F.relu, "relu6": F.relu6}[act]
    tfn = {"relu": TF.relu, "relu6": TF.relu6}[act]
    bn_et, bn_ref = case.et, case.ref

    def ref(t, module=None):
        y = tfn(bn_ref(t, module=module))
        ref.running = bn_ref.running
        return y
    case.et, case.ref = (lambda m: fn(bn_et(m))), ref
    return case


CASES["batchnorm_train"] += [
    _bn_act("act_relu", (4, 3, 5, 5), "relu"),
    _bn_act("act_relu6_clips", (4, 3, 5, 5), "relu6", gamma_scale=4.0),
    _bn_act("act_relu6_c1_hw1", (7, 1, 1, 1), "relu6", gamma_scale=4.0),
    _bn_act("act_relu_hw1", (5, 3, 1, 1), "relu"),
    _bn_act("act_relu_no_affine", (3, 2, 3, 5), "relu", affine=False),
    _bn_act("act_relu6_large_planes", (2, 3, 23, 29), "relu6", gamma_scale=3.0),
]


def _torch_distill(s, temp, alpha):
    q = torch.softmax(torch.tensor(TEACHER, dtype=torch.float64) / temp, 1)
    soft = TF.kl_div(torch.log_softmax(s / temp, 1), q, reduction="batchmean")
    hard = TF.cross_entropy(s, torch.tensor(LABELS))
    return alpha * temp * temp * soft + (1 - alpha) * hard


def _forward_ops():
    return [op.name for op in ops.OPS if op.kind == "forward"]


PARAMS = [pytest.param(op, c, id=f"{op}-{c.name}") for op, cs in CASES.items() for c in cs]


# ---------------------------------------------------------------------------------------------
# running one case
# ---------------------------------------------------------------------------------------------
class OpModule(nn.Module):
    def __init__(self, case: Case):
        super().__init__()
        self._case = case
        for name, arr in case.inputs.items():
            setattr(self, name, nn.Parameter(arr, requires_grad=name not in case.frozen))
        if case.setup:
            case.setup(self)

    def forward(self):
        return self._case.et(self)


def run_case(case: Case):
    model = OpModule(case)
    holder = {}

    def objective(out):
        w = rnd(*out.shape)
        holder["w"] = w
        return F.sum(F.mul(out, w)) if out.ndim else F.mul(out, float(w))

    # a case returning (values, indices) applies the objective to the values
    sess = et.TrainSession.from_module(model, inputs={}, loss=objective, threads=2,
                                       output=0 if case.extra.get("indices") else None)
    sess.Grad()
    res = sess.RunGraph({})
    return model, sess, res, holder["w"]


@pytest.mark.parametrize("op_name,case", PARAMS)
def test_op_vs_torch(op_name, case):
    model, sess, res, w = run_case(case)
    out = res["output0" if case.extra.get("indices") else "output"]
    grads = sess.get_gradients()
    if case.check is not None:
        case.check(case, out, grads, w, case.inputs)
        return
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k not in case.frozen)
         for k, v in case.inputs.items()}
    ref = case.ref(t, module=model) if case.extra.get("needs_module") else case.ref(t)
    if case.extra.get("indices"):   # i32 positions, exactly PyTorch's (int64)
        ref, ref_idx = ref
        assert res["output1"].dtype == np.int32
        np.testing.assert_array_equal(res["output1"], ref_idx.numpy(),
                                      err_msg=f"{op_name}/{case.name}: indices")
    rtol, atol = case.tol
    ref_np = ref.detach().numpy()
    scale = max(1.0, float(np.abs(ref_np).max())) if ref_np.size else 1.0
    assert out.shape == ref_np.shape, f"output shape {out.shape} != torch {ref_np.shape}"
    np.testing.assert_allclose(out, ref_np, rtol=rtol, atol=atol * scale,
                               err_msg=f"{op_name}/{case.name}: forward")
    obj = (ref * torch.tensor(w, dtype=torch.float64)).sum()
    np.testing.assert_allclose(res["loss"], obj.item(), rtol=rtol * 10, atol=atol * scale * 10,
                               err_msg=f"{op_name}/{case.name}: objective")
    trainable = [k for k in case.inputs if k not in case.frozen]
    if trainable:
        obj.backward()
    for k in trainable:
        g_ref = t[k].grad.numpy()
        assert k in grads, f"{op_name}/{case.name}: no gradient for input {k!r}"
        gscale = max(1.0, float(np.abs(g_ref).max()))
        np.testing.assert_allclose(grads[k], g_ref, rtol=rtol, atol=atol * gscale,
                                   err_msg=f"{op_name}/{case.name}: gradient of {k}")
    for k in case.frozen:
        assert k not in grads, f"frozen input {k} got a gradient"
    running = getattr(case.ref, "running", None)
    if running:
        params = sess.get_parameters()
        for name, val in running.items():
            np.testing.assert_allclose(params[name], val, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{op_name}/{case.name}: {name}")


BAD_UNARY_ARGS = [
    (lambda x: F.clamp(x, 2.0, 1.0), et.errors.InvalidArgumentError, "min 2.0 > max 1.0"),
    (lambda x: F.clamp(x), et.errors.InvalidArgumentError, "at least one"),
    (lambda x: F.clamp(x, float("nan")), et.errors.InvalidArgumentError, "NaN"),
    (lambda x: F.clamp(x, x), et.errors.UnsupportedError, "min must be a Python number"),
    (lambda x: F.pow(x, x), et.errors.UnsupportedError, "scalar"),
    (lambda x: F.gelu(x, "fast"), et.errors.InvalidArgumentError, "approximate"),
    (lambda x: F.softplus(x, beta=0.0), et.errors.InvalidArgumentError, "beta"),
    (lambda x: emit("unary", [x], fn=99), et.errors.ShapeError, "unary function 99 unknown"),
    (lambda x: emit("unary", [x], fn=ops.UN_POW, a=float("inf")), et.errors.ShapeError,
     "exponent"),
]


@pytest.mark.parametrize("fn,exc,text", BAD_UNARY_ARGS)
def test_unary_bad_arguments(fn, exc, text):
    case = Case("bad", {"x": rnd(2, 3)}, lambda m: fn(m.x), None)
    with pytest.raises(exc, match=text):
        run_case(case)


def _in_layer(fn):
    """Run ``fn(x)`` inside a submodule named ``blk`` (so errors name that layer)."""
    class Blk(nn.Module):
        def forward(self, x):
            return fn(x)

    def build(m):
        if not hasattr(m, "blk"):
            m.blk = Blk()
        return m.blk(m.x)
    return build


BAD_TENSOR_ARGS = [
    (lambda x: et.cat([x, x[:, :2, None]], 1), et.errors.ShapeError, "rank"),
    (lambda x: et.cat([x, x[:2]], 1), et.errors.ShapeError, "does not match input 0"),
    (lambda x: et.cat([x, x], 2), et.errors.ShapeError, "axis 2 out of range for rank 2"),
    (lambda x: et.cat([x, 3.0]), et.errors.InvalidArgumentError, "element 1 must be a tensor"),
    (lambda x: et.cat(x), et.errors.InvalidArgumentError, "list or tuple"),
    (lambda x: et.cat([]), et.errors.InvalidArgumentError, "empty"),
    (lambda x: et.stack([x, x[:, :2]]), et.errors.ShapeError, "one shape"),
    (lambda x: x[[0, 1]], et.errors.NotSupportedError, "list .advanced indexing"),
    (lambda x: x[x], et.errors.NotSupportedError, "advanced indexing"),
    (lambda x: x[::-1], et.errors.InvalidArgumentError, "step must be greater than zero"),
    (lambda x: x[5], IndexError, "index 5 is out of bounds for dim 0 with size 4"),
    (lambda x: x[0, 0, 0], IndexError, "too many indices"),
    (lambda x: x[:, 3:3], et.errors.ShapeError, "selects no elements"),
    (lambda x: x.permute(1, 0, 2), et.errors.ShapeError, "needs 2 dims"),
    (lambda x: x.permute(1, 1), et.errors.ShapeError, "repeat"),
    (lambda x: x.narrow(1, 3, 4), IndexError, "out of range"),
    (lambda x: x.split([2, 3]), et.errors.ShapeError, "sum to 4"),
    (lambda x: x.expand(3, 4), et.errors.ShapeError, "cannot expand"),
    (lambda x: F.pad(x, (1, 1), "circular"), et.errors.NotSupportedError, "circular"),
    (lambda x: F.pad(x, (4, 0), "reflect"), et.errors.ShapeError, "must be < its size 4"),
    (lambda x: F.pad(x, (1, 2, 3)), et.errors.InvalidArgumentError, "even number"),
    (lambda x: F.pad(x, (-1, 0), "reflect"), et.errors.ShapeError, "must be >= 0"),
    (lambda x: F.pad(x, (-2, -2)), et.errors.ShapeError, "selects no elements"),
    (lambda x: F.pad(x, (1, 1), "reflect", value=1.0), et.errors.InvalidArgumentError,
     "constant"),
    (lambda x: et.gather(x, 1, np.zeros((4, 2), np.float32)), et.errors.InvalidArgumentError,
     "integers"),
    (lambda x: et.gather(x, 1, np.zeros((5, 2), np.int64)), et.errors.ShapeError,
     "larger than the input"),
    (lambda x: et.gather(x, 1, np.zeros(2, np.int64)), et.errors.ShapeError, "2-D i32"),
    (lambda x: et.index_select(x, 0, np.array([0, 4])), et.errors.InvalidArgumentError,
     "index out of range"),
    (lambda x: et.gather(x, 1, np.array([[0], [1], [-1], [2]])), et.errors.InvalidArgumentError,
     "index out of range"),
    (lambda x: x.flip(0), et.errors.NotSupportedError, "Tensor.flip is not supported"),
    (lambda x: x.masked_fill, AttributeError, "layer 'blk'"),
]


@pytest.mark.parametrize("fn,exc,text", BAD_TENSOR_ARGS)
def test_tensor_op_bad_arguments(fn, exc, text):
    case = Case("bad", {"x": rnd(4, 4)}, _in_layer(fn), None)
    with pytest.raises(exc, match=text):
        run_case(case)


def test_missing_tensor_attributes():
    """hasattr keeps working; a Parameter forwards to the traced tensor's error."""
    seen = {}

    def probe(m):
        seen["hasattr"] = hasattr(m.x, "scatter_")
        seen["default"] = getattr(m.x[0], "bogus", 7)
        with pytest.raises(et.errors.NotSupportedError, match="Tensor.cumsum"):
            m.x.cumsum(0)
        return m.x.T
    run_case(Case("probe", {"x": rnd(3, 2)}, probe, None))
    assert seen == {"hasattr": False, "default": 7}


def test_every_forward_op_has_a_case():
    missing = [name for name in _forward_ops() if not CASES.get(name)]
    assert not missing, f"forward ops without a PyTorch comparison case: {missing}"
    unknown = [name for name in CASES if name not in ops.OP_BY_NAME]
    assert not unknown, f"cases for unknown ops: {unknown}"


def test_every_backward_op_is_reached():
    """Each backward op is emitted by the autodiff of some case (so it is tested)."""
    from edgetrain.export import build_graph

    emitted = set()
    for cs in CASES.values():
        for case in cs:
            g = build_graph(OpModule(case), {}, loss=lambda out: F.sum(out),
                            output=0 if case.extra.get("indices") else None)
            emitted.update(n.op for n in g.nodes)
    backward_ops = [op.name for op in ops.OPS if op.kind == "backward"]
    missing = [b for b in backward_ops if b not in emitted]
    assert not missing, f"backward ops never emitted by the cases: {missing}"


def test_update_ops_have_tests():
    update_ops = {op.name for op in ops.OPS if op.kind == "update"}
    # rmsprop_update, adagrad_update, grad_norm, grad_accumulate, accum_step: the optimizer,
    # clipping and accumulation tests in tests/test_optim_steps.py (and below); quant_observe
    # (observers) is compared with PyTorch's observers in tests/test_quant.py
    assert update_ops == {"sgd_update", "adam_update", "rmsprop_update", "adagrad_update",
                          "grad_norm", "grad_accumulate", "accum_step", "quant_observe"}, \
        "a new update op needs an optimizer test below or in tests/test_optim_steps.py"


# ---------------------------------------------------------------------------------------------
# optimizers (sgd_update, adam_update) vs torch.optim
# ---------------------------------------------------------------------------------------------
class Regression(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(F.tanh(self.fc1(x)))


class TorchRegression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 8)
        self.fc2 = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


OPTIMIZERS = {
    "sgd": (lambda p: optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd_momentum_wd": (
        lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-3),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-3)),
    "sgd_nesterov": (
        lambda p: optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    "sgd_dampening": (
        lambda p: optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.3),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.3)),
    "adam": (lambda p: optim.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    "adam_wd": (
        lambda p: optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01),
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                                   weight_decay=0.01)),
    "adamw": (lambda p: optim.AdamW(p, lr=0.01, weight_decay=0.1),
              lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    "rmsprop_centered_momentum": (
        lambda p: optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True, weight_decay=0.01),
        lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True,
                                      weight_decay=0.01)),
    "adagrad": (lambda p: optim.Adagrad(p, lr=0.1, lr_decay=0.05, weight_decay=0.01,
                                        initial_accumulator_value=0.1),
                lambda p: torch.optim.Adagrad(p, lr=0.1, lr_decay=0.05, weight_decay=0.01,
                                              initial_accumulator_value=0.1)),
}


def _regression_data(steps=5, n=8):
    return [(rnd(n, 6), rnd(n, 3)) for _ in range(steps)]


def _train_both(make_et, make_torch, groups=False, scheduler=None, steps=5):
    torch.manual_seed(0)
    tm = TorchRegression().double()
    model = Regression()
    model.load_state_dict(tm.state_dict())
    if groups:
        eo = make_et([{"params": model.fc1.parameters(), "lr": 0.02},
                      {"params": model.fc2.parameters()}])
        to = make_torch([{"params": tm.fc1.parameters(), "lr": 0.02},
                         {"params": tm.fc2.parameters()}])
    else:
        eo, to = make_et(model.parameters()), make_torch(tm.parameters())
    es = scheduler[0](eo) if scheduler else None
    ts = scheduler[1](to) if scheduler else None
    sess = et.TrainSession.from_module(model, inputs={"x": (8, 6)}, loss=nn.MSELoss(),
                                       labels={"y": ((8, 3), "float32")}, optimizer=eo,
                                       scheduler=es, threads=2)
    sess.Train()
    for x, y in _regression_data(steps):
        loss = sess.RunGraph({"x": x, "y": y})["loss"]
        to.zero_grad()
        tl = TF.mse_loss(tm(torch.tensor(x, dtype=torch.float64)),
                         torch.tensor(y, dtype=torch.float64))
        tl.backward()
        to.step()
        if ts is not None:
            ts.step()
        np.testing.assert_allclose(loss, tl.item(), rtol=1e-4)
    params = sess.get_parameters()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(params[k], v.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)
    return sess


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_vs_torch(name):
    _train_both(*OPTIMIZERS[name])


def test_optimizer_param_groups_vs_torch():
    _train_both(lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), groups=True)


SCHEDULERS = {
    "step": (lambda o: optim.StepLR(o, 2, 0.5),
             lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.5)),
    "multistep": (lambda o: optim.MultiStepLR(o, [1, 3], 0.3),
                  lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [1, 3], 0.3)),
    "exponential": (lambda o: optim.ExponentialLR(o, 0.8),
                    lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.8)),
    "cosine": (lambda o: optim.CosineAnnealingLR(o, 8, 0.01),
               lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 8, 0.01)),
}


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_vs_torch(name):
    """Schedules applied per step by the runtime match torch schedulers stepped per step."""
    make_e, make_t = SCHEDULERS[name]
    _train_both(lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
                scheduler=(make_e, make_t), steps=6)


@pytest.mark.parametrize("make", [
    lambda o: optim.StepLR(o, 3, 0.5), lambda o: optim.MultiStepLR(o, [2, 5], 0.1),
    lambda o: optim.ExponentialLR(o, 0.9), lambda o: optim.CosineAnnealingLR(o, 5, 0.001),
    lambda o: optim.InvLR(o, 0.1, 0.75), lambda o: optim.LinearWarmup(o, 3),
    lambda o: optim.LinearWarmup(o, 4, optim.CosineAnnealingLR(o, 8)),
], ids=["step", "multistep", "exp", "cosine", "inv", "warmup", "warmup_cosine"])
def test_runtime_learning_rate_matches_lr_at(make):
    model = Regression()
    o = optim.SGD(model.parameters(), lr=0.2)
    s = make(o)
    sess = et.TrainSession.from_module(model, inputs={"x": (8, 6)}, loss=nn.MSELoss(),
                                       labels={"y": ((8, 3), "float32")}, optimizer=o,
                                       scheduler=s, threads=1)
    sess.Train()
    for step, (x, y) in enumerate(_regression_data(8)):
        assert sess.learning_rate == pytest.approx(s.lr_at(step), rel=1e-6)
        sess.RunGraph({"x": x, "y": y})
