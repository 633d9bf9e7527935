"""A small MobileNetV2-style network (depthwise convs, BatchNorm in training mode, ReLU6,
residual add, global average pool, linear) against PyTorch over 10 Adam steps, running
statistics included."""
import numpy as np
import torch
import torch.nn.functional as TF

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.nn import functional as F

N, STEPS = 8, 10


def conv_bn(lib, cin, cout, k, stride=1, groups=1, act=True):
    layers = [lib.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
              lib.BatchNorm2d(cout)]
    if act:
        layers.append(lib.ReLU6())
    return lib.Sequential(*layers)


def make_block(lib, base):
    class Block(base):
        """Expand 1x1 -> depthwise 3x3 -> project 1x1, residual when shapes allow."""

        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = cin * expand
            self.res = stride == 1 and cin == cout
            layers = [conv_bn(lib, cin, hidden, 1)] if expand != 1 else []
            layers += [conv_bn(lib, hidden, hidden, 3, stride, groups=hidden),
                       conv_bn(lib, hidden, cout, 1, act=False)]
            self.conv = lib.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.res else self.conv(x)
    return Block


def make_net(lib, base, pool, flatten):
    block = make_block(lib, base)

    class Net(base):
        def __init__(self):
            super().__init__()
            # a residual block's output must not feed a 1x1 conv + BN directly: BN removes
            # the per-channel constant, the projection BN bias then has an exactly zero
            # gradient, and Adam turns float32 rounding noise into full-size steps
            self.features = lib.Sequential(conv_bn(lib, 3, 8, 3, 2), block(8, 8, 1, 2),
                                           block(8, 16, 2, 1), block(16, 16, 1, 2),
                                           conv_bn(lib, 16, 32, 3))
            self.classifier = lib.Linear(32, 10)

        def forward(self, x):
            return self.classifier(flatten(pool(self.features(x), 1), 1))
    return Net


EtNet = make_net(nn, nn.Module, F.adaptive_avg_pool2d, F.flatten)
TorchNet = make_net(torch.nn, torch.nn.Module, TF.adaptive_avg_pool2d, torch.flatten)


def test_small_mobilenet_adam_matches_torch():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    tm = TorchNet().double()
    model = EtNet()
    model.load_state_dict(tm.state_dict())
    tm.load_state_dict({k: torch.tensor(v) if v.dtype == np.int64 else
                        torch.tensor(v, dtype=torch.float64)
                        for k, v in model.state_dict().items()})
    assert list(model.state_dict()) == list(tm.state_dict())

    opt = optim.Adam(model.parameters(), lr=1e-3)
    sess = et.TrainSession.from_module(model, inputs={"data": (N, 3, 16, 16)},
                                       loss=nn.CrossEntropyLoss(),
                                       labels={"label": ((N,), "int64")}, optimizer=opt,
                                       threads=2)
    topt = torch.optim.Adam(tm.parameters(), lr=1e-3)
    tm.train()
    sess.Train()
    for step in range(STEPS):
        x = rng.standard_normal((N, 3, 16, 16)).astype(np.float32)
        y = rng.integers(0, 10, N).astype(np.int64)
        loss = float(sess.RunGraph({"data": x, "label": y})["loss"])
        topt.zero_grad()
        tl = TF.cross_entropy(tm(torch.tensor(x, dtype=torch.float64)), torch.tensor(y))
        tl.backward()
        topt.step()
        np.testing.assert_allclose(loss, tl.item(), rtol=1e-3, err_msg=f"step {step}")

    params = sess.get_parameters()
    for k, v in tm.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        np.testing.assert_allclose(params[k], v.numpy(), rtol=1e-3, atol=1e-4, err_msg=k)

    sess.Eval()
    tm.eval()
    x = rng.standard_normal((N, 3, 16, 16)).astype(np.float32)
    out = sess.RunGraph({"data": x})["output"]
    with torch.no_grad():
        ref = tm(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-4)
