"""The four model families of issue 12, each written once with PyTorch names.

Every factory takes ``lib`` (``edgetrain.nn`` or ``torch.nn``) and ``cat`` (``edgetrain.cat`` or
``torch.cat``) and returns a model built from that library, so the very same lines build the
edgetrain model and its PyTorch twin (tests/test_model_families.py, benchmarks/).
Each family entry: (factory, input shape of one sample, loss name, label shape of one sample,
label dtype).
"""
import numpy as np


def resnet18(lib, cat=None, width=16, classes=10):
    """ResNet-18's layout (BasicBlocks [2, 2, 2, 2]) at base width 16, CIFAR-style 3x3 stem,
    no max-pool: 28x28 -> 28 -> 14 -> 7 -> 4."""
    F = lib.functional

    class BasicBlock(lib.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = lib.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = lib.BatchNorm2d(cout)
            self.conv2 = lib.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = lib.BatchNorm2d(cout)
            self.shortcut = lib.Identity()
            if stride != 1 or cin != cout:
                self.shortcut = lib.Sequential(lib.Conv2d(cin, cout, 1, stride, bias=False),
                                               lib.BatchNorm2d(cout))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class ResNet(lib.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = lib.Conv2d(1, width, 3, 1, 1, bias=False)
            self.bn1 = lib.BatchNorm2d(width)
            layers, cin = [], width
            for i, stride in enumerate((1, 2, 2, 2)):
                cout = width << i
                layers.append(lib.Sequential(BasicBlock(cin, cout, stride),
                                             BasicBlock(cout, cout, 1)))
                cin = cout
            self.layer1, self.layer2, self.layer3, self.layer4 = layers
            self.fc = lib.Linear(cin, classes)

        def forward(self, x):
            x = F.relu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
    return ResNet()


def unet(lib, cat, width=16):
    """A U-Net with 2 down levels (28 -> 14 -> 7), ConvTranspose2d up-sampling, concatenated
    skips and a 1-channel logit map."""
    def double_conv(cin, cout):
        return lib.Sequential(lib.Conv2d(cin, cout, 3, 1, 1, bias=False), lib.BatchNorm2d(cout),
                              lib.ReLU(), lib.Conv2d(cout, cout, 3, 1, 1, bias=False),
                              lib.BatchNorm2d(cout), lib.ReLU())

    class UNet(lib.Module):
        def __init__(self):
            super().__init__()
            self.down1 = double_conv(1, width)
            self.down2 = double_conv(width, 2 * width)
            self.bottom = double_conv(2 * width, 4 * width)
            self.pool = lib.MaxPool2d(2)
            self.up2 = lib.ConvTranspose2d(4 * width, 2 * width, 2, stride=2)
            self.dec2 = double_conv(4 * width, 2 * width)
            self.up1 = lib.ConvTranspose2d(2 * width, width, 2, stride=2)
            self.dec1 = double_conv(2 * width, width)
            self.out = lib.Conv2d(width, 1, 1)

        def forward(self, x):
            s1 = self.down1(x)
            s2 = self.down2(self.pool(s1))
            x = self.bottom(self.pool(s2))
            x = self.dec2(cat([self.up2(x), s2], 1))
            x = self.dec1(cat([self.up1(x), s1], 1))
            return self.out(x)
    return UNet()


def vit_tiny(lib, cat=None, dim=64, depth=4, heads=4, mlp_ratio=2, classes=10):
    """ViT-tiny: 7x7 patches (a stride-7 Conv2d: 16 tokens), learned positions, 4 pre-LN
    blocks (MultiheadAttention, GELU MLP), mean pooling over the tokens."""
    class Block(lib.Module):
        def __init__(self):
            super().__init__()
            self.norm1 = lib.LayerNorm(dim)
            self.attn = lib.MultiheadAttention(dim, heads, batch_first=True)
            self.norm2 = lib.LayerNorm(dim)
            self.mlp = lib.Sequential(lib.Linear(dim, mlp_ratio * dim), lib.GELU(),
                                      lib.Linear(mlp_ratio * dim, dim))

        def forward(self, x):
            h = self.norm1(x)
            x = x + self.attn(h, h, h, need_weights=False)[0]
            return x + self.mlp(self.norm2(x))

    class ViT(lib.Module):
        def __init__(self):
            super().__init__()
            self.patch = lib.Conv2d(1, dim, 7, stride=7)
            rng = np.random.default_rng(0)
            self.pos = lib.Parameter(_tensor_like(lib, rng.normal(0, 0.02, (1, 16, dim))))
            self.blocks = lib.Sequential(*[Block() for _ in range(depth)])
            self.norm = lib.LayerNorm(dim)
            self.head = lib.Linear(dim, classes)

        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
            return self.head(self.norm(self.blocks(x)).mean(1))
    return ViT()


def lstm_rows(lib, cat=None, hidden=128, classes=10):
    """An LSTM reading the 28 rows of the image as a sequence (batch_first), classifying from
    the last hidden state."""
    class RowLSTM(lib.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lib.LSTM(28, hidden, batch_first=True)
            self.fc = lib.Linear(hidden, classes)

        def forward(self, x):
            _, (h, _) = self.lstm(x.squeeze(1))
            return self.fc(h[-1])
    return RowLSTM()


def _tensor_like(lib, a):
    if lib.__name__.startswith("torch"):
        import torch
        return torch.tensor(a, dtype=torch.float32)
    return a.astype(np.float32)


def seg_target(x):
    """U-Net target: digit pixels, the image > 0.5 on the [0, 1] scale (x is normalised like
    MnistDataset: (v - 0.1307) / 0.3081)."""
    return (x * 0.3081 + 0.1307 > 0.5).astype(np.float32)


FAMILIES = {"resnet18": resnet18, "unet": unet, "vit": vit_tiny, "lstm": lstm_rows}
