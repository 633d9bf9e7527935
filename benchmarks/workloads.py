"""Training workloads shared by the benchmarks and the peak-RSS probe.

Each builder returns a `step()` callable that runs one training (or eval) step for one
framework on fixed data, so every framework is timed on the same work.
"""
import numpy as np

# The MNIST-epoch rows (edgetrain vs PyTorch) keep `make run`'s optimizer.
LENET_SGD = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
# The step workloads (LeNet, MobileNetV2) of every framework: plain SGD, the one optimizer all
# four offer with the same update (`w -= lr * g`): ONNX Runtime's training artifacts have only
# plain SGD and AdamW (others.py, "ONNX Runtime"), so momentum / weight decay for the others
# would time work that ORT does not do.
STEP_SGD = dict(lr=0.01, momentum=0.0, weight_decay=0.0)


def _data(batch, shape, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch,) + shape, dtype=np.float32)
    y = rng.integers(0, classes, batch).astype(np.int64)
    return x, y


def edgetrain_step(model_name, batch, threads, train=True, memory_budget="auto"):
    import edgetrain as et
    from edgetrain import nn, optim
    from edgetrain.models import LeNet, MobileNetV2

    et.manual_seed(0)
    if model_name == "lenet":
        model, shape = LeNet(), (1, 28, 28)
    else:
        model, shape = MobileNetV2(num_classes=10, input_size=32), (3, 32, 32)
    opt = optim.SGD(model.parameters(), **STEP_SGD)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (batch,) + shape}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((batch,), "int64")}, optimizer=opt, threads=threads,
        memory_budget=memory_budget)
    x, y = _data(batch, shape)
    feeds = {"data": x, "label": y}
    if train:
        sess.Train()
    else:
        sess.Eval()
        feeds = {"data": x}
    return (lambda: sess.RunGraph(feeds)), sess


def torch_step(model_name, batch, threads, train=True):
    import torch
    import torch.nn as tnn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if model_name == "lenet":
        class LeNet(tnn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = tnn.Conv2d(1, 20, 5)
                self.conv2 = tnn.Conv2d(20, 50, 5)
                self.fc1 = tnn.Linear(800, 500)
                self.fc2 = tnn.Linear(500, 10)
                self.dropout = tnn.Dropout(0.5)

            def forward(self, x):
                x = F.max_pool2d(F.relu(self.conv1(x)), 2)
                x = F.max_pool2d(F.relu(self.conv2(x)), 2)
                x = self.dropout(F.relu(self.fc1(torch.flatten(x, 1))))
                return self.fc2(x)
        model, shape = LeNet(), (1, 28, 28)
    else:
        model = _torch_mobilenet_v2(10)
        shape = (3, 32, 32)
    opt = torch.optim.SGD(model.parameters(), **STEP_SGD)
    x, y = _data(batch, shape)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    if train:
        model.train()

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(tx), ty)
            loss.backward()
            opt.step()
            return loss
    else:
        model.eval()

        def step():
            with torch.no_grad():
                return model(tx)
    return step, model


def _torch_mobilenet_v2(num_classes):
    """torchvision's MobileNetV2 architecture (written out: torchvision is not a dependency)."""
    import torch.nn as tnn

    def divisible(v, d=8):
        new = max(d, int(v + d / 2) // d * d)
        return new + d if new < 0.9 * v else new

    def cbr(i, o, k=3, s=1, g=1):
        return tnn.Sequential(tnn.Conv2d(i, o, k, s, (k - 1) // 2, groups=g, bias=False),
                              tnn.BatchNorm2d(o), tnn.ReLU6(inplace=True))

    class IR(tnn.Module):
        def __init__(self, i, o, s, t):
            super().__init__()
            h = int(round(i * t))
            layers = [cbr(i, h, 1)] if t != 1 else []
            layers += [cbr(h, h, 3, s, h), tnn.Conv2d(h, o, 1, bias=False), tnn.BatchNorm2d(o)]
            self.conv = tnn.Sequential(*layers)
            self.res = s == 1 and i == o

        def forward(self, x):
            return x + self.conv(x) if self.res else self.conv(x)

    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1)]
    c = divisible(32)
    feats = [cbr(3, c, 3, 2)]
    for t, ch, n, s in cfg:
        o = divisible(ch)
        for i in range(n):
            feats.append(IR(c, o, s if i == 0 else 1, t))
            c = o
    feats.append(cbr(c, 1280, 1))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(*feats)
            self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(1280, num_classes))

        def forward(self, x):
            x = self.features(x).mean((2, 3))
            return self.classifier(x)
    return Net()
