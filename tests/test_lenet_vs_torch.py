"""LeNet on real MNIST: 20 SGD steps reproduce PyTorch's loss trajectory and weights.

The model is the project's LeNet (``edgetrain.models.LeNet``, dropout off) started from the
same weights as its PyTorch twin (``load_state_dict`` of the torch state dict); both train
with SGD (momentum 0.9, weight decay 5e-4) on the same 20 batches of 64 images. PyTorch runs
in float64 as the reference.
"""
import numpy as np
import torch
import torch.nn.functional as TF

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.models.lenet import LeNet

BATCH, STEPS, LR = 64, 20, 0.01


class TorchLeNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 20, 5)
        self.conv2 = torch.nn.Conv2d(20, 50, 5)
        self.fc1 = torch.nn.Linear(800, 500)
        self.fc2 = torch.nn.Linear(500, 10)

    def forward(self, x):
        x = TF.max_pool2d(TF.relu(self.conv1(x)), 2)
        x = TF.max_pool2d(TF.relu(self.conv2(x)), 2)
        x = TF.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def test_lenet_sgd_matches_torch(mnist_batches):
    torch.manual_seed(0)
    tm = TorchLeNet().double()
    model = LeNet(dropout=0.0)
    model.load_state_dict(tm.state_dict())
    # the reference starts from the float32-rounded weights edgetrain holds
    tm.load_state_dict({k: torch.tensor(v, dtype=torch.float64)
                        for k, v in model.state_dict().items()})
    opt = optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (BATCH, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((BATCH,), "int64")}, optimizer=opt, threads=2)
    topt = torch.optim.SGD(tm.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)

    sess.Train()
    losses, tlosses = [], []
    for x, y in mnist_batches(BATCH, STEPS):
        losses.append(float(sess.RunGraph({"data": x, "label": y})["loss"]))
        topt.zero_grad()
        tl = TF.cross_entropy(tm(torch.tensor(x, dtype=torch.float64)), torch.tensor(y))
        tl.backward()
        topt.step()
        tlosses.append(tl.item())
    np.testing.assert_allclose(losses, tlosses, rtol=1e-4)
    assert losses[-1] < losses[0] * 0.9, "LeNet did not learn"

    params = sess.get_parameters()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(params[k], v.numpy(), atol=1e-4, rtol=0, err_msg=k)

    sess.Eval()
    x, _ = mnist_batches(BATCH, 1, start=BATCH * STEPS)[0]
    out = sess.RunGraph({"data": x})["output"]
    with torch.no_grad():
        ref = tm(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-3, rtol=1e-3)
