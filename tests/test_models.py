"""edgetrain.models: architectures, shapes, parameter counts and state_dict names against PyTorch
twins (torchvision's MobileNetV2 written out here, so torchvision is not needed)."""
import numpy as np
import pytest

from edgetrain import nn
from edgetrain.models import (LeNet, LeNet5, MobileNetV1, MobileNetV2, get_model,
                              register_model)
from edgetrain.models.mobilenet import _make_divisible

import torch  # a test dependency (make test installs torch==2.13.0)
tnn = torch.nn
tF = torch.nn.functional


# --------------------------------------------------------------------------- PyTorch twins

class TorchLeNet(tnn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = tnn.Conv2d(1, 20, 5)
        self.conv2 = tnn.Conv2d(20, 50, 5)
        self.fc1 = tnn.Linear(800, 500)
        self.dropout = tnn.Dropout(0.5)
        self.fc2 = tnn.Linear(500, num_classes)

    def forward(self, x):
        x = tF.max_pool2d(tF.relu(self.conv1(x)), 2)
        x = tF.max_pool2d(tF.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(self.dropout(tF.relu(self.fc1(x))))


class TorchLeNet5(tnn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = tnn.Conv2d(1, 6, 5, bias=False)
        self.conv2 = tnn.Conv2d(6, 16, 5, bias=False)
        self.fc1 = tnn.Linear(400, 120)
        self.fc2 = tnn.Linear(120, 84)
        self.fc3 = tnn.Linear(84, num_classes)

    def forward(self, x):
        x = tF.max_pool2d(tF.relu(self.conv1(x)), 2)
        x = tF.max_pool2d(tF.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(tF.relu(self.fc2(tF.relu(self.fc1(x)))))


class TorchConvBNReLU(tnn.Sequential):  # torchvision.ops.Conv2dNormActivation
    def __init__(self, inp, oup, k=3, stride=1, groups=1):
        super().__init__(tnn.Conv2d(inp, oup, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         tnn.BatchNorm2d(oup), tnn.ReLU6(inplace=True))


class TorchInvertedResidual(tnn.Module):  # torchvision.models.mobilenetv2.InvertedResidual
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        hidden = int(round(inp * t))
        self.use_res_connect = stride == 1 and inp == oup
        layers = [TorchConvBNReLU(inp, hidden, 1)] if t != 1 else []
        layers += [TorchConvBNReLU(hidden, hidden, 3, stride, groups=hidden),
                   tnn.Conv2d(hidden, oup, 1, 1, 0, bias=False), tnn.BatchNorm2d(oup)]
        self.conv = tnn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TorchMobileNetV2(tnn.Module):  # torchvision.models.MobileNetV2
    def __init__(self, num_classes=1000, width_mult=1.0, in_channels=3):
        super().__init__()
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                   [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
        inp = _make_divisible(32 * width_mult, 8)
        last = _make_divisible(1280 * max(1.0, width_mult), 8)
        features = [TorchConvBNReLU(in_channels, inp, stride=2)]
        for t, c, n, s in setting:
            oup = _make_divisible(c * width_mult, 8)
            for i in range(n):
                features.append(TorchInvertedResidual(inp, oup, s if i == 0 else 1, t))
                inp = oup
        features.append(TorchConvBNReLU(inp, last, 1))
        self.features = tnn.Sequential(*features)
        self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(last, num_classes))

    def forward(self, x):
        x = tF.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class TorchDepthwiseSeparable(tnn.Module):
    def __init__(self, inp, oup, stride):
        super().__init__()
        self.conv3x3 = tnn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False)
        self.bn1 = tnn.BatchNorm2d(inp)
        self.conv1x1 = tnn.Conv2d(inp, oup, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(oup)

    def forward(self, x):
        return tF.relu6(self.bn2(self.conv1x1(tF.relu6(self.bn1(self.conv3x3(x))))))


class TorchMobileNetV1(tnn.Module):
    def __init__(self, num_classes=1000, width_mult=1.0, in_channels=3):
        super().__init__()
        ch = _make_divisible(32 * width_mult, 8)
        self.conv1 = tnn.Conv2d(in_channels, ch, 3, 2, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(ch)
        blocks = []
        for out, times in [(64, 1), (128, 2), (256, 2), (512, 6), (1024, 2)]:
            out = _make_divisible(out * width_mult, 8)
            for j in range(times):
                blocks.append(TorchDepthwiseSeparable(ch, out, 2 if times > 1 and j == 0 else 1))
                ch = out
        self.blocks = tnn.Sequential(*blocks)
        self.dropout = tnn.Dropout(0.1)
        self.fc = tnn.Linear(ch, num_classes)

    def forward(self, x):
        x = tF.relu6(self.bn1(self.conv1(x)))
        x = torch.flatten(tF.adaptive_avg_pool2d(self.blocks(x), 1), 1)
        return self.fc(self.dropout(x))


def n_params(module):
    return sum(int(np.prod(p.shape)) for p in module.parameters())


def state_shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


PAIRS = [
    ("lenet", lambda: LeNet(), lambda: TorchLeNet(), 431_080),
    ("lenet5", lambda: LeNet5(), lambda: TorchLeNet5(), 61_684),
    ("mobilenetv2", lambda: MobileNetV2(), lambda: TorchMobileNetV2(), 3_504_872),
    ("mobilenetv2-0.35-mnist", lambda: MobileNetV2(10, width_mult=0.35, in_channels=1, input_size=28),
     lambda: TorchMobileNetV2(10, 0.35, in_channels=1), None),
    ("mobilenetv2-1.4", lambda: MobileNetV2(100, width_mult=1.4),
     lambda: TorchMobileNetV2(100, 1.4), None),
    ("mobilenetv1", lambda: MobileNetV1(), lambda: TorchMobileNetV1(), 4_231_976),
    ("mobilenetv1-0.5", lambda: MobileNetV1(10, width_mult=0.5), lambda: TorchMobileNetV1(10, 0.5), None),
]


@pytest.mark.parametrize("name, make, make_torch, count", PAIRS, ids=[p[0] for p in PAIRS])
def test_parameters_and_state_dict_match_torch_twin(name, make, make_torch, count):
    ours, theirs = make(), make_torch()
    assert n_params(ours) == n_params(theirs)
    if count is not None:
        assert n_params(ours) == count
    assert list(ours.state_dict()) == list(theirs.state_dict())  # same names, same order
    assert state_shapes(ours) == state_shapes(theirs)


def test_torch_state_dict_loads_into_our_model():
    theirs = TorchLeNet()
    ours = LeNet()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    for k, v in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[k], v.numpy())


def test_torchvision_published_counts():
    # torchvision documents 3,504,872 parameters for mobilenet_v2 (1000 classes, width 1.0)
    assert n_params(MobileNetV2()) == 3_504_872
    # the classifier input follows _make_divisible(1280 * max(1, w))
    assert MobileNetV2(width_mult=1.4).last_channel == 1792
    assert MobileNetV2(width_mult=0.5).last_channel == 1280


def test_make_divisible():
    assert _make_divisible(32 * 0.35) == 16  # never below 8, rounded to 8
    assert _make_divisible(24 * 0.35) == 8
    assert _make_divisible(16 * 0.75) == 16  # 12 -> 16 (nearest multiple, ties up)
    assert _make_divisible(96 * 1.4) == 136
    assert _make_divisible(10, 8) == 16  # 8 would be < 90% of 10
    assert _make_divisible(320 * 1.0) == 320


@pytest.mark.parametrize("model, size, shapes", [
    (lambda: TorchLeNet(), 28, [(20, 12, 12), (50, 4, 4)]),
    (lambda: TorchLeNet5(), 32, [(6, 14, 14), (16, 5, 5)]),
])
def test_lenet_feature_shapes_by_hand(model, size, shapes):
    m = model().eval()
    x = torch.zeros(2, 1, size, size)
    y1 = tF.max_pool2d(tF.relu(m.conv1(x)), 2)
    y2 = tF.max_pool2d(tF.relu(m.conv2(y1)), 2)
    assert [tuple(y1.shape[1:]), tuple(y2.shape[1:])] == shapes
    assert tuple(m(x).shape) == (2, 10)


def test_mobilenetv2_residual_layout():
    m = MobileNetV2()
    blocks = [b for b in m.features if hasattr(b, "use_res_connect")]
    assert len(blocks) == 17
    assert sum(b.use_res_connect for b in blocks) == 10
    assert isinstance(m.classifier[0], nn.Dropout)
    assert m.classifier[0].p == 0.2


def test_registry():
    assert isinstance(get_model("LeNet"), LeNet)
    assert isinstance(get_model("lenet-5"), LeNet5)
    assert isinstance(get_model("mobilenet_v2", num_classes=10, width_mult=0.5), MobileNetV2)
    assert get_model("mobilenetv1", num_classes=7).fc.out_features == 7
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        get_model("resnet")
    register_model("tiny", lambda num_classes=3: LeNet(num_classes=num_classes))
    assert get_model("tiny").fc2.out_features == 3
    with pytest.raises(ValueError):
        MobileNetV2(input_size=0)


def test_lenet_dropout_is_configurable():
    assert LeNet(dropout=0.25).dropout.p == 0.25
    assert LeNet(num_classes=5).fc2.out_features == 5


# --------------------------------------------------------------------------- through the runtime

def _session_or_skip():
    import edgetrain as et
    return et


@pytest.mark.parametrize("name, ours, theirs, shape", [
    ("lenet", lambda: LeNet(), lambda: TorchLeNet(), (3, 1, 28, 28)),
    ("lenet5", lambda: LeNet5(), lambda: TorchLeNet5(), (3, 1, 32, 32)),
    ("mobilenetv2", lambda: MobileNetV2(10, width_mult=0.35, in_channels=1, input_size=28),
     lambda: TorchMobileNetV2(10, 0.35, in_channels=1), (2, 1, 28, 28)),
    ("mobilenetv1", lambda: MobileNetV1(10, width_mult=0.25, input_size=32),
     lambda: TorchMobileNetV1(10, 0.25), (2, 3, 32, 32)),
], ids=["lenet", "lenet5", "mobilenetv2", "mobilenetv1"])
def test_eval_logits_match_torch(name, ours, theirs, shape):
    et = _session_or_skip()
    torch.manual_seed(0)
    t = theirs().eval()
    with torch.no_grad():  # non-trivial BN statistics
        for mod in t.modules():
            if isinstance(mod, tnn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    m = ours()
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    m.eval()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    sess = et.TrainSession.from_module(m, inputs={"data": shape})
    sess.Eval()
    got = sess.RunGraph({"data": x})["output"]
    with torch.no_grad():
        want = t(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
