"""Conv1d, ConvTranspose2d, interpolate / Upsample and adaptive average pooling: a small
U-Net-like model and a 1-D conv net trained against PyTorch, and every bad argument as a clear
error naming the layer. (Each op's forward and gradients at awkward shapes are in
test_ops_vs_torch.py.)"""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.errors import InvalidArgumentError, ShapeError, UnsupportedError
from edgetrain.nn import functional as F

STEPS = 5


def make_unet(lib, base, fn):
    class UNetish(base):
        """Encoder (conv, max pool), decoder (ConvTranspose2d, bilinear upsample) with added
        (not concatenated) skips, and a coarse context branch (adaptive pool to a size that
        does not divide 14, upsampled back with align_corners=True)."""

        def __init__(self):
            super().__init__()
            self.enc1 = lib.Conv2d(1, 8, 3, padding=1)
            self.pool = lib.MaxPool2d(2)
            self.enc2 = lib.Conv2d(8, 16, 3, padding=1)
            self.bottom = lib.Conv2d(16, 16, 3, padding=1)
            self.up2 = lib.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1)
            self.up1 = lib.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.dec1 = lib.Conv2d(8, 8, 3, padding=1)
            self.context = lib.AdaptiveAvgPool2d(5)
            self.head = lib.Conv2d(8, 1, 1)

        def forward(self, x):
            e1 = fn.relu(self.enc1(x))                      # [N, 8, 28, 28]
            e2 = fn.relu(self.enc2(self.pool(e1)))          # [N, 16, 14, 14]
            b = fn.relu(self.bottom(self.pool(e2)))         # [N, 16, 7, 7]
            d2 = fn.relu(self.up2(b)) + self.pool(e1)       # [N, 8, 14, 14]
            ctx = fn.interpolate(self.context(d2), size=(14, 14), mode="bilinear",
                                 align_corners=True)
            d1 = fn.relu(self.dec1(self.up1(d2 + ctx))) + e1  # [N, 8, 28, 28]
            return self.head(d1)
    return UNetish


def make_conv1d_net(lib, base, fn):
    class Seq(base):
        def __init__(self):
            super().__init__()
            self.c1 = lib.Conv1d(3, 8, 5, stride=2, padding=2)
            self.c2 = lib.Conv1d(8, 8, 3, padding="same", dilation=2, groups=2)
            self.fc = lib.Linear(8 * 8, 4)

        def forward(self, x):
            h = fn.relu(self.c2(fn.relu(self.c1(x))))
            return self.fc(h.reshape(h.shape[0], -1))
    return Seq


def _train_vs_torch(et_model, torch_model, x_shape, make_batch, loss_et, loss_torch,
                    label_spec):
    et_model.load_state_dict(torch_model.state_dict())
    torch_model.double()
    opt = optim.SGD(et_model.parameters(), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(torch_model.parameters(), lr=0.05, momentum=0.9)
    sess = et.TrainSession.from_module(et_model, inputs={"data": x_shape}, loss=loss_et,
                                       labels={"label": label_spec}, optimizer=opt, threads=2)
    sess.Train()
    rng = np.random.default_rng(0)
    for step in range(STEPS):
        x, y = make_batch(rng)
        loss = float(sess.RunGraph({"data": x, "label": y})["loss"])
        topt.zero_grad()
        tl = loss_torch(torch_model(torch.tensor(x, dtype=torch.float64)), torch.tensor(y))
        tl.backward()
        topt.step()
        np.testing.assert_allclose(loss, tl.item(), rtol=1e-4, err_msg=f"loss at step {step}")
    params = sess.get_parameters()
    for k, v in torch_model.state_dict().items():
        np.testing.assert_allclose(params[k], v.numpy(), rtol=1e-3, atol=1e-5, err_msg=k)
    return sess


def test_unet_like_matches_torch_over_5_sgd_steps():
    torch.manual_seed(0)
    tm = make_unet(torch.nn, torch.nn.Module, TF)()
    model = make_unet(nn, nn.Module, F)()
    assert tuple(model.up2.weight.shape) == tuple(tm.up2.weight.shape) == (16, 8, 3, 3)
    n = 4

    def batch(rng):
        img = rng.uniform(0, 1, (n, 1, 28, 28)).astype(np.float32)
        return img, (img > 0.5).astype(np.float32)
    _train_vs_torch(model, tm, (n, 1, 28, 28), batch, nn.MSELoss(),
                    lambda out, y: TF.mse_loss(out, y.double()),
                    ((n, 1, 28, 28), "float32"))


def test_conv1d_net_matches_torch_over_5_sgd_steps():
    torch.manual_seed(1)
    tm = make_conv1d_net(torch.nn, torch.nn.Module, TF)()
    model = make_conv1d_net(nn, nn.Module, F)()
    assert tuple(model.c2.weight.shape) == tuple(tm.c2.weight.shape) == (8, 4, 3)
    n = 6

    def batch(rng):
        return (rng.standard_normal((n, 3, 15)).astype(np.float32),
                rng.integers(0, 4, n).astype(np.int64))
    _train_vs_torch(model, tm, (n, 3, 15), batch, nn.CrossEntropyLoss(), TF.cross_entropy,
                    ((n,), "int64"))


def test_unet_like_eval_follows_the_batch_size():
    """An open batch: the reshapes of Conv1d and the resampling ops are re-planned for any N."""
    torch.manual_seed(2)
    tm = make_unet(torch.nn, torch.nn.Module, TF)().double()
    model = make_unet(nn, nn.Module, F)()
    model.load_state_dict(tm.state_dict())
    sess = et.TrainSession.from_module(model, inputs={"data": (None, 1, 28, 28)}, max_batch=6,
                                       threads=2)
    sess.Eval()
    rng = np.random.default_rng(3)
    for n in (6, 3, 1):
        x = rng.uniform(0, 1, (n, 1, 28, 28)).astype(np.float32)
        out = sess.RunGraph({"data": x})["output"]
        with torch.no_grad():
            ref = tm(torch.tensor(x, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5, err_msg=f"batch {n}")


# ---------------------------------------------------------------------------------------------
# bad arguments: a clear edgetrain error naming the layer
# ---------------------------------------------------------------------------------------------
class Holder(nn.Module):
    """Runs ``fn(x)`` inside a submodule named 'blk' (so errors carry a layer name)."""

    def __init__(self, fn):
        super().__init__()
        self.blk = _Fn(fn)

    def forward(self, x):
        return self.blk(x)


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.w = nn.Parameter(np.ones((4, 3, 3, 3), np.float32))

    def forward(self, x):
        return self.fn(self, x)


def _trace(fn, shape=(2, 4, 5, 5)):
    et.TrainSession.from_module(Holder(fn), inputs={"data": shape}, loss=lambda o: F.sum(o))


TRACE_ERRORS = [
    (lambda m, x: F.conv_transpose2d(x, m.w, stride=1, output_padding=1), ShapeError,
     r"layer 'blk': op 'conv_transpose2d': output_padding 1x1 must be smaller than stride 1x1"),
    (lambda m, x: F.conv_transpose2d(x, m.w, stride=2, output_padding=(0, 2)), ShapeError,
     r"layer 'blk'.*output_padding 0x2 must be smaller than stride 2x2"),
    (lambda m, x: F.conv_transpose2d(x, m.w, groups=3), ShapeError,
     r"layer 'blk'.*4 input channels not divisible by groups=3"),
    (lambda m, x: F.conv_transpose2d(F.reshape(x, (2, 2, 10, 5)), m.w),
     ShapeError, r"layer 'blk'.*input has 2 channels"),
    (lambda m, x: F.conv_transpose2d(x, m.w, padding=4), ShapeError,
     r"layer 'blk'.*output would be empty"),
    (lambda m, x: F.conv_transpose2d(F.reshape(x, (2, 4, 25)), m.w), ShapeError,
     r"layer 'blk'.*input x must be 4-D"),
    (lambda m, x: F.interpolate(x, size=3, scale_factor=2), InvalidArgumentError,
     r"layer 'blk': interpolate: give exactly one of size or scale_factor"),
    (lambda m, x: F.interpolate(x), InvalidArgumentError, r"layer 'blk'.*exactly one"),
    (lambda m, x: F.interpolate(x, scale_factor=2, align_corners=True), InvalidArgumentError,
     r"layer 'blk'.*align_corners can only be set with mode 'bilinear'"),
    (lambda m, x: F.interpolate(x, scale_factor=2, mode="bicubic"), UnsupportedError,
     r"layer 'blk'.*mode 'bicubic' is not supported"),
    (lambda m, x: F.interpolate(F.reshape(x, (2, 4, 25)), scale_factor=2), UnsupportedError,
     r"layer 'blk'.*4-D input"),
    (lambda m, x: F.interpolate(x, scale_factor=0.1), InvalidArgumentError,
     r"layer 'blk'.*empty output"),
    (lambda m, x: F.interpolate(x, scale_factor=-2.0), InvalidArgumentError,
     r"layer 'blk'.*scale_factor must be a positive"),
    (lambda m, x: F.adaptive_avg_pool2d(x, (0, 2)), InvalidArgumentError,
     r"layer 'blk': adaptive_avg_pool2d: output size must be positive"),
    (lambda m, x: F.adaptive_avg_pool2d(x, (1, 2, 3)), InvalidArgumentError,
     r"layer 'blk'.*int or a pair"),
    (lambda m, x: F.adaptive_max_pool2d(x, 2, return_indices=True), UnsupportedError,
     r"layer 'blk': adaptive_max_pool2d\(return_indices=True\)"),
    (lambda m, x: F.adaptive_max_pool2d(F.reshape(x, (2, 4, 25)), 2), UnsupportedError,
     r"layer 'blk'.*4-D input"),
    (lambda m, x: F.conv1d(x, m.w), InvalidArgumentError,
     r"layer 'blk': conv1d expects input \[N, C, L\]"),
    (lambda m, x: F.conv1d(F.reshape(x, (2, 4, 25)), F.reshape(m.w, (4, 3, 9)), groups=2),
     ShapeError, r"layer 'blk'.*input has 4 channels but the weight"),
    (lambda m, x: F.conv1d(F.reshape(x, (2, 4, 25)), F.reshape(m.w, (4, 3, 9)), stride=2,
                           padding="same"),
     InvalidArgumentError, r"layer 'blk'.*'same' needs stride 1"),
]


@pytest.mark.parametrize("fn,exc,text", TRACE_ERRORS)
def test_bad_arguments_at_trace(fn, exc, text):
    with pytest.raises(exc, match=text):
        _trace(fn)


LAYER_ERRORS = [
    (lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, output_padding=2), InvalidArgumentError,
     r"ConvTranspose2d: output_padding \(2, 2\) must be >= 0 and smaller than stride \(2, 2\)"),
    (lambda: nn.ConvTranspose2d(5, 6, 3, groups=2), InvalidArgumentError,
     r"ConvTranspose2d: in_channels \(5\) and out_channels \(6\) must be divisible by groups"),
    (lambda: nn.ConvTranspose2d(4, 4, 3, padding_mode="reflect"), UnsupportedError,
     r"ConvTranspose2d: padding_mode='reflect'"),
    (lambda: nn.Conv1d(4, 6, 3, groups=4), InvalidArgumentError,
     r"Conv1d: in_channels \(4\) and out_channels \(6\) must be divisible by groups \(4\)"),
    (lambda: nn.Conv1d(4, 4, 3, stride=2, padding="same"), InvalidArgumentError,
     r"Conv1d: padding='same' needs stride 1"),
    (lambda: nn.Conv1d(4, 4, 3, padding="full"), InvalidArgumentError,
     r"Conv1d: padding must be"),
    (lambda: nn.Upsample(), InvalidArgumentError, r"Upsample: give exactly one"),
    (lambda: nn.Upsample(scale_factor=2, mode="trilinear"), UnsupportedError,
     r"Upsample: mode 'trilinear'"),
    (lambda: nn.Upsample(scale_factor=2, align_corners=False), InvalidArgumentError,
     r"Upsample: align_corners can only be set with mode 'bilinear'"),
]


@pytest.mark.parametrize("make,exc,text", LAYER_ERRORS)
def test_bad_layer_arguments(make, exc, text):
    with pytest.raises(exc, match=text):
        make()


def test_conv_transpose_forward_output_size_is_refused():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)

        def forward(self, x):
            return self.up(x, output_size=(10, 10))
    with pytest.raises(UnsupportedError, match="output_size"):
        et.TrainSession.from_module(M(), inputs={"data": (1, 4, 5, 5)}, loss=lambda o: F.sum(o))


def test_raw_node_attributes_are_checked_in_c():
    """The C shape rules refuse bad attributes even when F.* is bypassed."""
    def emit(op, **attrs):
        return lambda m, x: et.tracing.require().emit1(op, [x], **attrs)
    cases = [
        (emit("interpolate", mode=5, oh=3, ow=3), "interpolation mode 5 unknown"),
        (emit("interpolate", mode=0, align_corners=1, oh=3, ow=3),
         "align_corners applies to mode bilinear only"),
        (emit("interpolate", mode=1, oh=0, ow=3), "output size 0x3 must be at least 1x1"),
        (emit("interpolate", mode=1, oh=2, ow=3, scale_h=float("nan")), "scale factors"),
        (emit("adaptive_avgpool2d", oh=3, ow=-1), "out of range|at least 1x1"),
    ]
    for fn, text in cases:
        with pytest.raises(ShapeError, match=text):
            _trace(fn)
