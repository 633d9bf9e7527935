"""MobileNetV1 (MNN's) and MobileNetV2 (torchvision's), with the same layer names as their
PyTorch twins so ``state_dict`` keys line up."""
from __future__ import annotations

from typing import Optional

from .. import nn
from ..nn import functional as F
from ..nn import init


def _make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (at least ``min_value``), never going
    below 90% of ``v`` (the TensorFlow/torchvision rule for width multipliers)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _check_input_size(name: str, input_size: int) -> None:
    """The architecture does not depend on the input size (global pooling before the classifier);
    any positive size works, small ones (MNIST's 28, CIFAR's 32) end in 1x1 feature maps."""
    if int(input_size) != input_size or input_size < 1:
        raise ValueError(f"{name}: input_size must be a positive integer, got {input_size!r}")


class ConvBNReLU(nn.Sequential):
    """conv (no bias) -> BatchNorm -> ReLU6; torchvision's ``Conv2dNormActivation``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1):
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    """Expand 1x1 (ReLU6) -> depthwise 3x3 (ReLU6) -> project 1x1 (linear); add the input when
    the stride is 1 and the channel count is unchanged."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride}")
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden, kernel_size=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


def _init_weights(model) -> None:
    """torchvision's MobileNet initialisation."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            init.ones_(m.weight)
            init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            init.normal_(m.weight, 0, 0.01)
            init.zeros_(m.bias)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (``features`` + ``classifier``, same module names).

    ``input_size`` is only checked (any size works; 32x32 or MNIST's 28x28 end in 1x1 feature
    maps). ``in_channels`` (not in torchvision) allows grayscale input. 3,504,872 parameters at
    1000 classes, width 1.0.
    """

    # t (expansion), c (channels), n (repeats), s (first stride)
    inverted_residual_setting = [
        [1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
        [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1],
    ]

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, input_size: int = 224,
                 dropout: float = 0.2, round_nearest: int = 8, in_channels: int = 3):
        super().__init__()
        _check_input_size("MobileNetV2", input_size)
        input_channel = _make_divisible(32 * width_mult, round_nearest)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features = [ConvBNReLU(in_channels, input_channel, stride=2)]
        for t, c, n, s in self.inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel,
                                                  s if i == 0 else 1, expand_ratio=t))
                input_channel = output_channel
        features.append(ConvBNReLU(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout),
                                        nn.Linear(self.last_channel, num_classes))
        _init_weights(self)

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1)
        x = F.flatten(x, 1)
        return self.classifier(x)


class DepthwiseSeparable(nn.Module):
    """MNN's MobilenetV1 block: depthwise 3x3 -> BN -> ReLU6 -> pointwise 1x1 -> BN -> ReLU6."""

    def __init__(self, inp: int, oup: int, stride: int):
        super().__init__()
        self.conv3x3 = nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False)
        self.bn1 = nn.BatchNorm2d(inp)
        self.conv1x1 = nn.Conv2d(inp, oup, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(oup)

    def forward(self, x):
        x = F.relu6(self.bn1(self.conv3x3(x)))
        return F.relu6(self.bn2(self.conv1x1(x)))


class MobileNetV1(nn.Module):
    """MNN's MobilenetV1 (``tools/train/source/models/MobilenetV1.cpp``)::

        conv 3x3/2 (32) BN ReLU6, 13 depthwise-separable blocks
        (64, 128/2, 128, 256/2, 256, 512/2, 5x 512, 1024/2, 1024),
        global average pool, dropout 0.1, fc -> num_classes

    Channels are scaled by ``width_mult`` and rounded with ``_make_divisible``. Padding is
    symmetric (PyTorch style), which gives TensorFlow's SAME output sizes for even inputs.
    4,231,976 parameters at 1000 classes, width 1.0.
    """

    settings = [(64, 1), (128, 2), (256, 2), (512, 6), (1024, 2)]  # channels, repeats

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, input_size: int = 224,
                 dropout: float = 0.1, divisor: int = 8, in_channels: int = 3):
        super().__init__()
        _check_input_size("MobileNetV1", input_size)
        channels = _make_divisible(32 * width_mult, divisor)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        blocks = []
        for out, times in self.settings:
            out = _make_divisible(out * width_mult, divisor)
            for j in range(times):
                stride = 2 if times > 1 and j == 0 else 1
                blocks.append(DepthwiseSeparable(channels, out, stride))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        self.last_channel = channels
        _init_weights(self)

    def forward(self, x):
        x = F.relu6(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        x = F.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(self.dropout(x))
