"""MobileNetV2's int8 ops (issue 14): qadd, qclamp, qglobal_avgpool and the direct depthwise
qconv2d path, run through the runtime in tiny hand-built graphs.

Contracts (docs/ops.md, kernels/src/qgemm.c):
- qadd dequantized equals, bit for bit, dequantize(a) + dequantize(b) -> fake_quant (per tensor)
  run with the existing ops: every pair of u8 values, random scales and zero points, exact .5
  ties, saturation at both ends, scales 1000x apart;
- qclamp(x) == quantize(clamp(dequantize(x), lo, hi)) on one grid for x in [qmin, qmax];
- qglobal_avgpool equals a Fraction reference (round half to even of the exact mean) and is
  within one level of quantize(global_avgpool(dequantize(x)));
- a depthwise qconv2d equals a numpy integer reference and the same filters run through the
  generic path (a grouped convolution with a channel multiplier of 2);
- shapes / dtypes / attributes refused with a ShapeError naming the layer; bad parameters
  refused at load (stored) or at run time; the same bytes for 1 and 2 threads.
"""
from fractions import Fraction

import numpy as np
import pytest

import edgetrain as et
from edgetrain import errors, fileformat, ir
from edgetrain import ops as O

RNG = np.random.default_rng(1414)


class Net:
    """A tiny eval-only graph: f32 inputs (u8 activations come from quantize with scale 1 and
    zero point 0, exact for integer values 0..255), constants, named outputs."""

    def __init__(self):
        self.g = ir.Graph()
        self.inputs, self.outputs = [], {}
        self._one = self.const(np.array([1.0], np.float32))
        self._zero = self.const(np.array([0.0], np.float32))

    def input(self, name, shape):
        t = self.g.add_tensor(name, ir.F32, ir.INPUT, shape).index
        self.inputs.append(t)
        return t

    def const(self, arr, dtype=ir.F32, name=""):
        return self.g.add_tensor(name, dtype, ir.CONST, arr.shape, data=arr).index

    def u8(self, name, shape):
        """an input fed as integer-valued floats 0..255, as a u8 tensor"""
        return self.op("quantize", [self.input(name, shape), self._one, self._zero], qmin=0, qmax=255)

    def op(self, name, ins, **attrs):
        return O.emit(self.g, name, ins, layer="blk", **attrs)[0]

    def out(self, name, t):
        self.g.tensors[t].is_output = True
        self.outputs[name] = t

    def session(self, threads=1):
        self.g.programs[ir.EVAL] = ir.Program(ir.EVAL, list(range(len(self.g.nodes))), self.inputs,
                                              dict(self.outputs))
        self.g.state.max_batch = max(self.g.tensors[t].shape[0] for t in self.inputs)
        return et.TrainSession.from_graph(self.g, threads=threads)


def f1(v):
    return np.array([v], np.float32)


def same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8 if a.dtype == np.uint8 else np.uint32),
                                  b.view(np.uint8 if b.dtype == np.uint8 else np.uint32))


# ---------------------------------------------------------------------------------------------
# qadd
# ---------------------------------------------------------------------------------------------
ALL_PAIRS = (np.repeat(np.arange(256), 256).astype(np.float32),
             np.tile(np.arange(256), 256).astype(np.float32))


def qadd_net(n, qmin, qmax):
    """qadd dequantized ("int") next to dequantize + add + fake_quant ("float"); scales and zero
    points are inputs, so one session serves many of them."""
    net = Net()
    a, b = net.u8("a", (n,)), net.u8("b", (n,))
    p = {k: net.input(k, (1,)) for k in ("a_s", "a_zp", "b_s", "b_zp", "y_s", "y_zp")}
    y = net.op("qadd", [a, p["a_s"], p["a_zp"], b, p["b_s"], p["b_zp"], p["y_s"], p["y_zp"]],
               qmin=qmin, qmax=qmax)
    net.out("q", y)
    net.out("int", net.op("dequantize", [y, p["y_s"], p["y_zp"]]))
    fsum = net.op("add", [net.op("dequantize", [a, p["a_s"], p["a_zp"]]),
                          net.op("dequantize", [b, p["b_s"], p["b_zp"]])])
    net.out("float", net.op("fake_quant", [fsum, p["y_s"], p["y_zp"]], axis=-1, qmin=qmin,
                            qmax=qmax))
    return net


def qadd_feeds(a, b, a_s, a_zp, b_s, b_zp, y_s, y_zp):
    return {"a": a, "b": b, "a_s": f1(a_s), "a_zp": f1(a_zp), "b_s": f1(b_s), "b_zp": f1(b_zp),
            "y_s": f1(y_s), "y_zp": f1(y_zp)}


def random_scale(lo=1e-4, hi=10.0):
    return np.float32(np.exp(RNG.uniform(np.log(lo), np.log(hi))))


QADD_EDGES = [  # a_s, a_zp, b_s, b_zp, y_s, y_zp: ties, saturation, scales far apart
    (0.5, 10, 0.25, 0, 1.0, 5),          # sums on .25 steps: exact .5 ties
    (0.5, 128, 0.5, 128, 1.0, 128),      # every sum an integer or a .5 tie
    (0.25, 3, 0.75, 250, 0.5, 0),        # ties at .5 of y_s; saturation at qmin
    (1.0, 0, 1.0, 0, 0.5, 255),          # everything saturates at qmax or not
    (1e-3, 17, 1.0, 99, 0.01, 128),      # scales 1000x apart
    (2.0, 200, 2e-3, 31, 3.0, 100),
    (0.1, 0, 0.2, 255, 0.3, 77),         # inexact decimal scales
]


@pytest.mark.parametrize("qmin,qmax", [(0, 255), (3, 250), (0, 15)])
def test_qadd_equals_the_float_composition_bit_for_bit(qmin, qmax):
    sess = qadd_net(len(ALL_PAIRS[0]), qmin, qmax).session()
    cases = [c for c in QADD_EDGES if qmin <= c[5] <= qmax]
    for _ in range(40):
        cases.append((random_scale(), RNG.integers(0, 256), random_scale(), RNG.integers(0, 256),
                      random_scale(), RNG.integers(qmin, qmax + 1)))
    saturated = set()
    for c in cases:
        r = sess.RunGraph(qadd_feeds(*ALL_PAIRS, *c))
        same_bits(r["int"], r["float"])
        saturated |= set(np.unique(r["q"][(r["q"] == qmin) | (r["q"] == qmax)]).tolist())
    assert saturated == {qmin, qmax}   # both ends were reached


def test_qadd_hits_exact_ties_half_to_even():
    sess = qadd_net(6, 0, 255).session()
    # a: s 0.5 zp 10 -> 0.5, 1.5, 2.5, -0.5, -1.5, -2.5 (+ b = 0): y_s 1, y_zp 5
    a = np.float32([11, 13, 15, 9, 7, 5])
    r = sess.RunGraph(qadd_feeds(a, np.zeros(6, np.float32), 0.5, 10, 0.25, 0, 1.0, 5))
    assert r["q"].tolist() == [5, 7, 7, 5, 3, 3]


def test_qadd_shape_and_dtype_errors():
    net = Net()
    a, b = net.u8("a", (2, 3)), net.u8("b", (2, 3))
    s, z = net.const(f1(0.1)), net.const(f1(3))
    with pytest.raises(errors.ShapeError, match=r"layer 'blk'.*qadd.*same shape \(qadd does not broadcast\)"):
        net.op("qadd", [a, s, z, net.u8("c", (2, 1)), s, z, s, z], qmin=0, qmax=255)
    with pytest.raises(errors.ShapeError, match="input b must be u8"):
        net.op("qadd", [a, s, z, net.input("f", (2, 3)), s, z, s, z], qmin=0, qmax=255)
    with pytest.raises(errors.ShapeError, match=r"b_scale must be \[\] or \[1\] f32"):
        net.op("qadd", [a, s, z, b, net.const(np.float32([1, 2])), z, s, z], qmin=0, qmax=255)
    with pytest.raises(errors.ShapeError, match="qmin 5 .. qmax 5"):
        net.op("qadd", [a, s, z, b, s, z, s, z], qmin=5, qmax=5)
    with pytest.raises(errors.ShapeError, match="qmax 256"):
        net.op("qadd", [a, s, z, b, s, z, s, z], qmin=0, qmax=256)


# ---------------------------------------------------------------------------------------------
# qclamp
# ---------------------------------------------------------------------------------------------
def qclamp_net(lo, hi, qmin, qmax):
    net = Net()
    x = net.u8("x", (256,))
    s, zp = net.input("s", (1,)), net.input("zp", (1,))
    net.out("q", net.op("qclamp", [x, s, zp], qmin=qmin, qmax=qmax, lo=lo, hi=hi))
    c = net.op("unary", [net.op("dequantize", [x, s, zp])], fn=O.UN_CLAMP, a=lo, b=hi)
    net.out("float", net.op("quantize", [c, s, zp], qmin=qmin, qmax=qmax))
    return net


QCLAMP_BOUNDS = [(0.0, 6.0), (0.0, np.inf), (-1.0, 1.0), (0.5, 0.5), (-3.25, 2.75), (-1e6, 1e6),
                 (2.0, np.inf), (-0.0, 0.0)]


@pytest.mark.parametrize("qmin,qmax", [(0, 255), (10, 200), (0, 7)])
def test_qclamp_equals_quantize_clamp_dequantize(qmin, qmax):
    x = np.arange(256, dtype=np.float32)
    inside = (x >= qmin) & (x <= qmax)
    bounds = list(QCLAMP_BOUNDS)
    for _ in range(8):
        lo = np.float32(RNG.uniform(-8, 8))
        bounds.append((float(lo), float(lo + np.float32(RNG.uniform(0, 8)))))
    for lo, hi in bounds:
        sess = qclamp_net(lo, hi, qmin, qmax).session()
        grids = [(0.5, qmin), (1.0 / 42.5, qmin + (qmax - qmin) // 3), (0.1, qmax)]  # ReLU6 grids
        grids += [(random_scale(1e-3, 3.0), RNG.integers(qmin, qmax + 1)) for _ in range(6)]
        for s, zp in grids:
            r = sess.RunGraph({"x": x, "s": f1(s), "zp": f1(zp)})
            np.testing.assert_array_equal(r["q"][inside], r["float"][inside],
                                          err_msg=f"lo {lo} hi {hi} s {s} zp {zp}")
            assert r["q"].min() >= qmin and r["q"].max() <= qmax


def test_qclamp_relu6_levels():
    # s 0.05, zp 20: relu6 keeps levels 20 .. 20 + 6 / 0.05 = 140
    sess = qclamp_net(0.0, 6.0, 0, 255).session()
    r = sess.RunGraph({"x": np.float32([0, 19, 20, 21, 139, 140, 141, 255]), "s": f1(0.05),
                       "zp": f1(20)})
    assert r["q"].tolist() == [20, 20, 20, 21, 139, 140, 140, 140]


@pytest.mark.parametrize("lo,hi,text", [(1.0, 0.5, "lo 1 .. hi 0.5"), (-np.inf, 1.0, "lo -inf"),
                                        (0.0, np.nan, "hi -?nan"), (np.nan, 1.0, "lo -?nan")])
def test_qclamp_bad_bounds(lo, hi, text):
    net = Net()
    x = net.u8("x", (4,))
    with pytest.raises(errors.ShapeError, match=rf"layer 'blk'.*{text}.*lo <= hi"):
        net.op("qclamp", [x, net.const(f1(0.1)), net.const(f1(0))], qmin=0, qmax=255, lo=lo, hi=hi)


def test_qclamp_dtype_error():
    net = Net()
    with pytest.raises(errors.ShapeError, match="input x must be u8"):
        net.op("qclamp", [net.input("x", (4,)), net.const(f1(0.1)), net.const(f1(0))], qmin=0,
               qmax=255, lo=0.0, hi=6.0)


# ---------------------------------------------------------------------------------------------
# qglobal_avgpool
# ---------------------------------------------------------------------------------------------
def gap_reference(x, zp, qmin, qmax):
    n, c, h, w = x.shape
    s = x.astype(np.int64).reshape(n, c, -1).sum(-1) - zp * h * w
    out = np.array([[min(max(zp + round(Fraction(int(v), h * w)), qmin), qmax) for v in row]
                    for row in s], np.uint8)
    return out.reshape(n, c, 1, 1)


def gap_net(shape, qmin, qmax):
    net = Net()
    x = net.u8("x", shape)
    s, zp = net.input("s", (1,)), net.input("zp", (1,))
    net.out("q", net.op("qglobal_avgpool", [x, zp], qmin=qmin, qmax=qmax))
    m = net.op("global_avgpool", [net.op("dequantize", [x, s, zp])])
    net.out("float", net.op("quantize", [m, s, zp], qmin=qmin, qmax=qmax))
    return net


def gap_ties(hw, zp):
    """planes of hw (even) values whose sum of x - zp is k * hw + hw / 2: exact .5 means with k
    of both parities and both signs"""
    planes = []
    for k in (-3, -2, -1, 0, 1, 2):
        target = k * hw + hw // 2
        v = np.full(hw, zp, np.int64)
        i = 0
        while target != (v - zp).sum():
            step = int(np.clip(target - (v - zp).sum(), -(v[i] - 0), 255 - v[i]))
            v[i] += step
            i += 1
        planes.append(v)
    return np.array(planes)


@pytest.mark.parametrize("shape", [(2, 3, 1, 1), (1, 6, 1, 2), (2, 6, 2, 2), (3, 5, 3, 3),
                                   (1, 6, 4, 4), (2, 4, 7, 7), (1, 2, 96, 96)])
@pytest.mark.parametrize("qmin,qmax", [(0, 255), (20, 230)])
def test_qglobal_avgpool_equals_the_exact_rounded_mean(shape, qmin, qmax):
    n, c, h, w = shape
    sess = gap_net(shape, qmin, qmax).session()
    ties = h * w % 2 == 0 and h * w <= 64 and c == 6
    for trial in range(6):
        zp = int(RNG.integers(max(qmin, 30) if ties else qmin, (min(qmax, 225) if ties else qmax) + 1))
        lo = int(RNG.integers(0, 200))
        x = RNG.integers(lo, min(256, lo + int(RNG.integers(1, 256))), shape)
        if ties:
            x[0] = gap_ties(h * w, zp).reshape(c, h, w)    # exact ties in the first image
        s = random_scale(1e-3, 1.0)
        r = sess.RunGraph({"x": x.astype(np.float32), "s": f1(s), "zp": f1(zp)})
        np.testing.assert_array_equal(r["q"], gap_reference(x, zp, qmin, qmax))
        assert np.abs(r["q"].astype(int) - r["float"].astype(int)).max() <= 1


def test_qglobal_avgpool_ties_round_half_to_even():
    net = gap_net((1, 6, 2, 2), 0, 255)
    sess = net.session()
    x = gap_ties(4, 100).reshape(1, 6, 2, 2)
    r = sess.RunGraph({"x": x.astype(np.float32), "s": f1(0.1), "zp": f1(100)})
    # means -2.5, -1.5, -0.5, 0.5, 1.5, 2.5 -> -2, -2, 0, 0, 2, 2
    assert (r["q"].ravel().astype(int) - 100).tolist() == [-2, -2, 0, 0, 2, 2]


def test_qglobal_avgpool_shape_errors():
    net = Net()
    z = net.const(f1(0))
    with pytest.raises(errors.ShapeError, match=r"layer 'blk'.*input x must be \[N,C,H,W\]"):
        net.op("qglobal_avgpool", [net.u8("x", (2, 3, 4)), z], qmin=0, qmax=255)
    with pytest.raises(errors.ShapeError, match="input x must be u8"):
        net.op("qglobal_avgpool", [net.input("f", (2, 3, 4, 4)), z], qmin=0, qmax=255)
    with pytest.raises(errors.ShapeError, match=r"zero_point must be \[\] or \[1\] f32"):
        net.op("qglobal_avgpool", [net.u8("y", (2, 3, 4, 4)), net.const(np.zeros(3, np.float32))],
               qmin=0, qmax=255)
    with pytest.raises(errors.ShapeError, match="qmin 9 .. qmax 3"):
        net.op("qglobal_avgpool", [net.u8("v", (2, 3, 4, 4)), z], qmin=9, qmax=3)


# ---------------------------------------------------------------------------------------------
# qconv2d, depthwise: the direct path
# ---------------------------------------------------------------------------------------------
def np_qdwconv(x, xz, w, b, mult, yz, qmin, qmax, stride, pads, dil):
    n, c, h, wd = x.shape
    _, _, kh, kw = w.shape
    pt, pl, pb, pr = pads
    xp = np.full((n, c, h + pt + pb, wd + pl + pr), xz, np.int64)
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    xp -= xz
    oh = (h + pt + pb - dil * (kh - 1) - 1) // stride + 1
    ow = (wd + pl + pr - dil * (kw - 1) - 1) // stride + 1
    acc = np.zeros((n, c, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            acc += xp[:, :, i * dil:i * dil + stride * (oh - 1) + 1:stride,
                      j * dil:j * dil + stride * (ow - 1) + 1:stride] * w[None, :, 0, i, j, None, None]
    acc += b[None, :, None, None]
    r = np.rint(acc.astype(np.float32) * mult[None, :, None, None]).astype(np.int64)
    return np.clip(r + yz, qmin, qmax).astype(np.uint8)


def conv_attrs(stride, pads, dil, groups, qmin=0, qmax=255):
    return dict(stride_h=stride, stride_w=stride, pad_t=pads[0], pad_l=pads[1], pad_b=pads[2],
                pad_r=pads[3], dil_h=dil, dil_w=dil, groups=groups, qmin=qmin, qmax=qmax)


DW = [  # (n, c, h, w), k, stride, (pad t, l, b, r), dilation
    ((1, 1, 7, 9), 3, 1, (1, 1, 1, 1), 1),
    ((3, 3, 9, 7), 3, 2, (1, 1, 1, 1), 1),
    ((2, 17, 11, 13), 5, 1, (2, 2, 2, 2), 1),
    ((3, 17, 10, 9), 3, 2, (2, 0, 0, 1), 1),
    ((1, 3, 11, 11), 3, 1, (2, 2, 2, 2), 2),
    ((3, 5, 13, 12), 5, 2, (3, 1, 4, 2), 2),
    ((4, 96, 14, 14), 3, 2, (1, 1, 1, 1), 1),
]


@pytest.mark.parametrize("spec", DW, ids=[f"dw{i}" for i in range(len(DW))])
def test_depthwise_qconv2d_matches_numpy_and_per_channel_convolutions(spec):
    shape, k, stride, pads, dil = spec
    n, c, h, wd = shape
    w = RNG.integers(-128, 128, (c, 1, k, k)).astype(np.int8)
    b = RNG.integers(-5000, 5000, c).astype(np.int32)
    m = RNG.uniform(1e-4, 4e-3, c).astype(np.float32)
    xz, yz = int(RNG.integers(0, 256)), int(RNG.integers(3, 250))
    net = Net()
    x = net.u8("x", shape)
    xzt, yzt = net.const(f1(xz)), net.const(f1(yz))
    net.out("dw", net.op("qconv2d", [x, net.const(w, ir.I8), net.const(b, ir.I32), net.const(m), xzt,
                                     yzt], **conv_attrs(stride, pads, dil, c, 3, 250)))
    # the same convolution with a channel multiplier of 2 (groups c, 2c filters: not depthwise,
    # so the im2col + GEMM path); its even output channels are the depthwise ones
    w2 = RNG.integers(-128, 128, (2 * c, 1, k, k)).astype(np.int8)
    w2[0::2] = w
    b2, m2 = np.repeat(b, 2), np.repeat(m, 2)
    net.out("generic", net.op("qconv2d", [x, net.const(w2, ir.I8), net.const(b2, ir.I32), net.const(m2),
                                          xzt, yzt], **conv_attrs(stride, pads, dil, c, 3, 250)))
    xv = RNG.integers(0, 256, shape).astype(np.float32)
    want = np_qdwconv(xv.astype(np.int64), xz, w, b, m, yz, 3, 250, stride, pads, dil)
    outs = [net.session(threads=t).RunGraph({"x": xv}) for t in (1, 2)]
    for r in outs:
        np.testing.assert_array_equal(r["dw"], want)
        np.testing.assert_array_equal(r["generic"][:, 0::2], want)
    same_bits(outs[0]["dw"], outs[1]["dw"])


# ---------------------------------------------------------------------------------------------
# threads, bad parameters
# ---------------------------------------------------------------------------------------------
def test_same_bytes_for_one_and_two_threads():
    n = 200003
    feeds = qadd_feeds(RNG.integers(0, 256, n).astype(np.float32),
                       RNG.integers(0, 256, n).astype(np.float32), 0.02, 100, 0.7, 3, 0.11, 128)
    got = [qadd_net(n, 0, 255).session(threads=t).RunGraph(feeds)["q"] for t in (1, 2)]
    same_bits(*got)
    x = RNG.integers(0, 256, n).astype(np.float32)
    got = [qclamp_net(-1.0, 6.0, 0, 255).session(threads=t).RunGraph(
        {"x": x[:256], "s": f1(0.05), "zp": f1(40)})["q"] for t in (1, 2)]
    same_bits(*got)
    xs = RNG.integers(0, 256, (8, 64, 9, 9)).astype(np.float32)
    got = [gap_net(xs.shape, 0, 255).session(threads=t).RunGraph(
        {"x": xs, "s": f1(0.1), "zp": f1(7)})["q"] for t in (1, 2)]
    same_bits(*got)


def stored_qparam_net(op, bad_slot, value):
    """one node of `op` whose parameters are constants; the one at bad_slot holds value"""
    net = Net()
    x = net.u8("x", (1, 2, 3, 3))
    vals = {"qadd": [None, 0.1, 3.0, None, 0.2, 4.0, 0.3, 5.0], "qclamp": [None, 0.1, 3.0],
            "qglobal_avgpool": [None, 3.0]}[op]
    ins = [x if v is None else net.const(f1(value if i == bad_slot else v), name=f"p{i}")
           for i, v in enumerate(vals)]
    attrs = dict(qmin=0, qmax=255)
    if op == "qclamp":
        attrs.update(lo=0.0, hi=6.0)
    if op == "qglobal_avgpool":
        attrs.update(qmin=2, qmax=250)
    net.out("y", net.op(op, ins, **attrs))
    net.g.programs[ir.EVAL] = ir.Program(ir.EVAL, list(range(len(net.g.nodes))), net.inputs,
                                         dict(net.outputs))
    net.g.state.max_batch = 1
    return net.g


BAD_STORED = [
    ("qadd", 1, 0.0, "p1.*holds 0 at 0; scales .* finite and > 0"),
    ("qadd", 2, 3.5, "p2.*holds 3.5.*zero point must be an integer inside the quantization range 0..255"),
    ("qadd", 4, np.inf, "p4.*holds inf"),
    ("qadd", 5, 256.0, "p5.*holds 256"),
    ("qadd", 6, -1.0, "p6.*holds -1"),
    ("qadd", 7, -1.0, "p7.*holds -1.*0..255"),
    ("qclamp", 1, np.nan, "p1.*holds nan"),
    ("qclamp", 2, 300.0, "p2.*holds 300"),
    ("qglobal_avgpool", 1, 1.0, "p1.*holds 1 at 0.*range 2..250"),
]


@pytest.mark.parametrize("op,slot,value,text", BAD_STORED,
                         ids=[f"{b[0]}-{b[1]}-{b[2]}" for b in BAD_STORED])
def test_bad_stored_parameters_refused_at_load(op, slot, value, text):
    data = fileformat.dumps(stored_qparam_net(op, slot, value))
    with pytest.raises(errors.ModelFormatError, match=rf"\({op} in layer 'blk'\): input {slot} \('{text}"):
        et.TrainSession.from_bytes(data)
    # the same graph with good values loads and runs
    good = et.TrainSession.from_bytes(fileformat.dumps(stored_qparam_net(op, -1, 0.0)))
    good.RunGraph({"x": np.zeros((1, 2, 3, 3), np.float32)})


def test_bad_fed_parameters_refused_at_run_time():
    sess = qadd_net(4, 0, 255).session()
    x = np.arange(4, dtype=np.float32)
    bad = r"qadd in layer 'blk'\): bad quantization parameters"
    with pytest.raises(errors.InvalidArgumentError, match=bad):
        sess.RunGraph(qadd_feeds(x, x, 0.1, 0, 0.1, 0, 0.0, 0))
    with pytest.raises(errors.InvalidArgumentError, match=bad):
        sess.RunGraph(qadd_feeds(x, x, 0.1, 0, 0.1, 2.5, 0.1, 0))
    sess = gap_net((1, 1, 2, 2), 10, 20).session()
    with pytest.raises(errors.InvalidArgumentError, match="qglobal_avgpool in layer 'blk'"):
        sess.RunGraph({"x": np.zeros((1, 1, 2, 2), np.float32), "s": f1(0.1), "zp": f1(5)})


# ---------------------------------------------------------------------------------------------
# qconv2d / qlinear with a fused clamp (optional input 6 y_scale, fattr clamp_lo, clamp_hi)
# ---------------------------------------------------------------------------------------------
FUSED_BOUNDS = [(0.0, np.inf), (0.0, 6.0), (-1.0, 1.0), (0.5, 0.5), (-1e6, 1e6), (3.0, np.inf),
                (-2.5, -0.5)]
FUSED_CONVS = [  # (n, c, h, w), oc, k, stride, pads, dil, groups
    ((2, 5, 9, 7), 11, 3, 1, (1, 1, 1, 1), 1, 1),
    ((3, 8, 5, 5), 13, 1, 1, (0, 0, 0, 0), 1, 1),
    ((2, 6, 8, 9), 6, 3, 2, (1, 0, 1, 1), 1, 6),
    ((1, 8, 10, 10), 4, 3, 1, (2, 2, 2, 2), 2, 2),
]


def fused_net(kind, spec, lo, hi, qmin, qmax):
    """the op with the fused clamp ("fused") and the op then qclamp ("plain"), same constants"""
    net = Net()
    if kind == "conv":
        shape, oc, k, stride, pads, dil, groups = spec
        w = RNG.integers(-128, 128, (oc, shape[1] // groups, k, k)).astype(np.int8)
        attrs = conv_attrs(stride, pads, dil, groups, qmin, qmax)
    else:
        shape, oc = spec
        w = RNG.integers(-128, 128, (oc, shape[1])).astype(np.int8)
        attrs = dict(qmin=qmin, qmax=qmax)
    x = net.u8("x", shape)
    b = net.const(RNG.integers(-20000, 20000, oc).astype(np.int32), ir.I32)
    m = net.const(RNG.uniform(1e-4, 3e-3, oc).astype(np.float32))
    xz, yz, ys = net.input("xz", (1,)), net.input("yz", (1,)), net.input("ys", (1,))
    ins = [x, net.const(w, ir.I8), b, m, xz, yz]
    op = "qconv2d" if kind == "conv" else "qlinear"
    net.out("fused", net.op(op, ins + [ys], clamp_lo=lo, clamp_hi=hi, **attrs))
    y = net.op(op, ins, **attrs)
    net.out("plain", net.op("qclamp", [y, ys, yz], qmin=qmin, qmax=qmax, lo=lo, hi=hi))
    net.out("noclamp", y)
    return net, shape


@pytest.mark.parametrize("kind,spec", [("conv", s) for s in FUSED_CONVS] +
                         [("linear", ((7, 33), 19)), ("linear", ((64, 800), 10))])
def test_fused_clamp_equals_op_then_qclamp(kind, spec):
    for lo, hi in FUSED_BOUNDS + [(float(a), float(a) + float(RNG.uniform(0, 4)))
                                  for a in RNG.uniform(-4, 4, 3).astype(np.float32)]:
        qmin, qmax = [(0, 255), (10, 200), (3, 250)][int(RNG.integers(0, 3))]
        net, shape = fused_net(kind, spec, lo, hi, qmin, qmax)
        sessions = [net.session(threads=t) for t in (1, 2)]
        xv = RNG.integers(0, 256, shape).astype(np.float32)
        for ys, yz in [(0.05, qmin), (1.0 / 42.5, (qmin + qmax) // 2), (random_scale(1e-3, 2.0), qmax)]:
            outs = [s.RunGraph({"x": xv, "xz": f1(RNG.integers(0, 256)), "yz": f1(yz), "ys": f1(ys)})
                    for s in sessions[:1]]
            r = outs[0]
            same_bits(r["fused"], r["plain"])
            if lo <= 0.0 <= hi and np.isinf(hi):  # ReLU-like: never below the zero point
                assert (r["fused"] >= yz).all()
        feeds = {"x": xv, "xz": f1(7), "yz": f1(qmin), "ys": f1(0.05)}
        same_bits(sessions[0].RunGraph(feeds)["fused"], sessions[1].RunGraph(feeds)["fused"])


def test_fused_clamp_relu_is_qrelu():
    net, shape = fused_net("conv", FUSED_CONVS[0], 0.0, np.inf, 0, 255)
    y = net.outputs["noclamp"]
    net.out("relu", net.op("qrelu", [y, net.inputs[2]]))  # "yz" (inputs: x, xz, yz, ys)
    r = net.session().RunGraph({"x": RNG.integers(0, 256, shape).astype(np.float32), "xz": f1(9),
                                "yz": f1(100), "ys": f1(0.02)})
    same_bits(r["fused"], r["relu"])


def test_old_form_files_without_the_fused_clamp_load_and_run():
    """a qconv2d / qlinear node of 6 inputs and no float attributes (files written before the
    fused clamp) loads and gives the same bytes as today's form without y_scale"""
    net = Net()
    x = net.u8("x", (2, 4, 6, 6))
    w = net.const(RNG.integers(-128, 128, (5, 4, 3, 3)).astype(np.int8), ir.I8)
    m = net.const(RNG.uniform(1e-4, 3e-3, 5).astype(np.float32))
    z1, z2 = net.const(f1(3)), net.const(f1(120))
    net.out("y", net.op("qconv2d", [x, w, -1, m, z1, z2], **conv_attrs(1, (1, 1, 1, 1), 1, 1)))
    xl = net.u8("xl", (3, 8))
    wl = net.const(RNG.integers(-128, 128, (4, 8)).astype(np.int8), ir.I8)
    net.out("yl", net.op("qlinear", [xl, wl, -1, net.const(RNG.uniform(1e-3, 1e-2, 4).astype(np.float32)),
                                     z1, z2], qmin=0, qmax=255))
    net.g.programs[ir.EVAL] = ir.Program(ir.EVAL, list(range(len(net.g.nodes))), net.inputs,
                                         dict(net.outputs))
    net.g.state.max_batch = 3
    new = et.TrainSession.from_bytes(fileformat.dumps(net.g))
    for node in net.g.nodes:
        if node.op in ("qconv2d", "qlinear"):
            node.fattr = []
    old = et.TrainSession.from_bytes(fileformat.dumps(net.g))
    feeds = {"x": RNG.integers(0, 256, (2, 4, 6, 6)).astype(np.float32),
             "xl": RNG.integers(0, 256, (3, 8)).astype(np.float32)}
    a, b = old.RunGraph(feeds), new.RunGraph(feeds)
    same_bits(a["y"], b["y"])
    same_bits(a["yl"], b["yl"])


def test_fused_clamp_errors():
    net = Net()
    x = net.u8("x", (2, 8))
    w = net.const(np.ones((3, 8), np.int8), ir.I8)
    m, z = net.const(f1(0.01) * np.ones(3, np.float32)), net.const(f1(0))
    with pytest.raises(errors.ShapeError, match=r"layer 'blk'.*lo 1 .. hi 0.5.*lo <= hi"):
        net.op("qlinear", [x, w, -1, m, z, z, net.const(f1(0.1))], qmin=0, qmax=255, clamp_lo=1.0,
               clamp_hi=0.5)
    with pytest.raises(errors.ShapeError, match=r"y_scale must be \[\] or \[1\] f32"):
        net.op("qlinear", [x, w, -1, m, z, z, net.const(np.ones(2, np.float32))], qmin=0, qmax=255)
    with pytest.raises(errors.ShapeError, match=r"lo -inf"):
        net.op("qlinear", [x, w, -1, m, z, z, net.const(f1(0.1))], qmin=0, qmax=255,
               clamp_lo=-np.inf, clamp_hi=1.0)


@pytest.mark.parametrize("value,text", [(0.0, "holds 0 at 0"), (np.nan, "holds nan")])
def test_bad_stored_y_scale_refused_at_load(value, text):
    net = Net()
    x = net.u8("x", (2, 8))
    w = net.const(np.ones((3, 8), np.int8), ir.I8)
    m, z = net.const(np.full(3, 0.01, np.float32)), net.const(f1(0))
    net.out("y", net.op("qlinear", [x, w, -1, m, z, z, net.const(f1(value), name="ys")], qmin=0,
                        qmax=255, clamp_lo=0.0, clamp_hi=6.0))
    net.g.programs[ir.EVAL] = ir.Program(ir.EVAL, list(range(len(net.g.nodes))), net.inputs,
                                         dict(net.outputs))
    net.g.state.max_batch = 2
    with pytest.raises(errors.ModelFormatError, match=rf"\(qlinear in layer 'blk'\): input 6 \('ys.*{text}"):
        et.TrainSession.from_bytes(fileformat.dumps(net.g))
