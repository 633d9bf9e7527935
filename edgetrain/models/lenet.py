"""LeNet for MNIST: MNN's 28x28 LeNet and MindSpore's 32x32 LeNet-5."""
from __future__ import annotations

from .. import nn
from ..nn import functional as F


class LeNet(nn.Module):
    """MNN's LeNet (``tools/train/source/models/Lenet.cpp``) for 28x28 inputs::

        conv 1->20 5x5, relu, maxpool 2   -> [20, 12, 12]
        conv 20->50 5x5, relu, maxpool 2  -> [50, 4, 4]
        flatten, fc 800->500, relu, dropout, fc 500->num_classes (logits)

    MNN applies no activation after its convolutions; this version keeps the ReLU after each
    convolution of the project's reference LeNet (``max_pool2d(relu(conv1(x)), 2)``). The output is
    logits: the loss (``nn.CrossEntropyLoss``) applies the softmax. 431,080 parameters.
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.5, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.flatten(x, 1)
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x)


class LeNet5(nn.Module):
    """MindSpore model_zoo's LeNet5 for 32x32 inputs (MNIST padded by 2)::

        conv 1->6 5x5 valid, relu, maxpool 2   -> [6, 14, 14]
        conv 6->16 5x5 valid, relu, maxpool 2  -> [16, 5, 5]
        flatten, fc 400->120, relu, fc 120->84, relu, fc 84->num_classes

    MindSpore's ``nn.Conv2d`` has no bias by default, so neither do these convolutions unless
    ``conv_bias=True``. 61,684 parameters (61,706 with conv biases).
    """

    def __init__(self, num_classes: int = 10, num_channel: int = 1, conv_bias: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(num_channel, 6, 5, bias=conv_bias)
        self.conv2 = nn.Conv2d(6, 16, 5, bias=conv_bias)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
