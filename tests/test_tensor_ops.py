"""A small model written with the tensor ops (pad, split, cat, slicing with steps, permute,
transpose, index_select, gather, stack, squeeze/unsqueeze, expand) trains like its PyTorch twin,
and follows a new batch size. The ops themselves are checked one by one in
test_ops_vs_torch.py (CASES concat, slice, transpose, pad, gather, expand)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.nn import functional as F

RNG = np.random.default_rng(7)
SELECT = np.array([2, 0, 1, 2, 4])

ET = SimpleNamespace(cat=et.cat, stack=et.stack, pad=F.pad, relu=F.relu,
                     index_select=et.index_select, idx=lambda a: a)
TORCH = SimpleNamespace(cat=torch.cat, stack=torch.stack, pad=TF.pad, relu=torch.relu,
                        index_select=torch.index_select, idx=torch.tensor)


def body(m, x, L):
    """[N, 1, 8, 8] -> [N, 5] logits, in the same code for both libraries."""
    h = L.relu(m.conv1(L.pad(x, (1, 1, 2, 0), mode="reflect")))       # [N, 6, 8, 8]
    a, b = h.split([2, 4], dim=1)
    h = L.cat([b, a * 0.5, h[:, ::3]], 1)                               # [N, 8, 8, 8]
    h = m.conv2(L.pad(h, (0, 1, 1, 0), mode="replicate"))              # [N, 4, 8, 8]
    h = h[:, :, 1:, :-1:2]                                              # [N, 4, 7, 4]
    h = h.permute(0, 2, 3, 1).transpose(1, 2)                           # [N, 4, 7, 4]
    h = L.index_select(h, 2, L.idx(SELECT))                             # [N, 4, 5, 4]
    h = L.stack([h, h.unsqueeze(2).squeeze(2) * h], -1)                 # [N, 4, 5, 4, 2]
    h = h.reshape(h.size(0), -1)                                        # [N, 160]
    bias = m.scale.expand(h.size(0), 5)
    return m.fc(h) * bias + m.fc(h)[:, 4:].expand_as(bias)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.conv2 = nn.Conv2d(8, 4, 2)
        self.fc = nn.Linear(160, 5)
        self.scale = nn.Parameter(np.ones((1, 5), np.float32))

    def forward(self, x):
        return body(self, x, ET)


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 3)
        self.conv2 = torch.nn.Conv2d(8, 4, 2)
        self.fc = torch.nn.Linear(160, 5)
        self.scale = torch.nn.Parameter(torch.ones(1, 5))

    def forward(self, x):
        return body(self, x, TORCH)


def _nll_with_gather(out, y):
    """NLL written with gather over an i32 label tensor (an index that is a program input)."""
    return -F.mean(et.gather(F.log_softmax(out, 1), 1, y.unsqueeze(1)))


@pytest.mark.parametrize("loss", ["cross_entropy", "gather_nll"])
def test_tensor_op_model_trains_like_torch(loss):
    torch.manual_seed(3)
    tm = TorchNet().double()
    model = Net()
    model.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    o = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    to = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9)
    sess = et.TrainSession.from_module(
        model, inputs={"x": (None, 1, 8, 8)}, max_batch=6,
        loss=nn.CrossEntropyLoss() if loss == "cross_entropy" else _nll_with_gather,
        labels={"y": ((None,), "int64")}, optimizer=o, threads=2)
    sess.Train()
    for _ in range(3):
        x = RNG.standard_normal((6, 1, 8, 8)).astype(np.float32)
        y = RNG.integers(0, 5, 6)
        got = sess.RunGraph({"x": x, "y": y})["loss"]
        to.zero_grad()
        tl = TF.cross_entropy(tm(torch.tensor(x, dtype=torch.float64)), torch.tensor(y))
        tl.backward()
        to.step()
        np.testing.assert_allclose(got, tl.item(), rtol=1e-4)
    params = sess.get_parameters()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(params[k], v.numpy(), rtol=1e-3, atol=1e-5, err_msg=k)

    # a smaller batch: every op's shape follows (slices, concat, permute and reshapes keep
    # the batch dim dynamic)
    sess.Eval()
    x = RNG.standard_normal((4, 1, 8, 8)).astype(np.float32)
    out = sess.RunGraph({"x": x})["output"]
    with torch.no_grad():
        ref = tm(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_gather_backward_is_bitwise_identical_for_any_thread_count():
    """Scatter-add with repeated indices (gather_bwd, pad_bwd) sums in a fixed order."""
    index = RNG.integers(0, 11, (128, 40, 33))
    w = RNG.standard_normal((128, 9, 33)).astype(np.float32)

    class Rep(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(w)

        def forward(self):
            g = et.gather(F.pad(self.w, (2, 3, 1, 1), mode="reflect"), 1, index)
            return g * g

    grads = []
    for threads in (1, 2, 3):
        sess = et.TrainSession.from_module(Rep(), inputs={}, loss=lambda o: F.sum(o),
                                           threads=threads)
        sess.Grad()
        sess.RunGraph({})
        grads.append(sess.get_gradients()["w"])
    assert grads[0].tobytes() == grads[1].tobytes() == grads[2].tobytes()


class TorchStyle(nn.Module):
    """PyTorch code traced unchanged: torch.* functions dispatch to edgetrain's ops."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 3)

    def forward(self, x):                                     # [N, 2, 3]
        y = torch.cat([x, torch.relu(x)], dim=1)             # [N, 4, 3]
        y = TF.pad(y, (0, 1), mode="replicate")              # [N, 4, 4]
        y = torch.flatten(torch.transpose(y, 1, 2)[:, :3], 1)
        return TF.log_softmax(self.fc(y), dim=1)


def test_torch_functions_dispatch_to_edgetrain():
    model = TorchStyle()
    sess = et.TrainSession.from_module(model, inputs={"x": (2, 2, 3)}, loss=nn.MSELoss(),
                                       labels={"t": ((2, 3), "float32")}, threads=1)
    x = RNG.standard_normal((2, 2, 3)).astype(np.float32)
    out = sess.RunGraph({"x": x})["output"]
    tx = torch.tensor(x, dtype=torch.float64)
    y = TF.pad(torch.cat([tx, torch.relu(tx)], 1), (0, 1), mode="replicate")
    ref = torch.flatten(y.transpose(1, 2)[:, :3], 1) @ torch.tensor(model.fc.weight.data,
                                                                     dtype=torch.float64).T
    ref = torch.log_softmax(ref + torch.tensor(model.fc.bias.data, dtype=torch.float64), 1)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_unsupported_torch_function_names_itself_and_the_layer():
    class Blk(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, 1)

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.blk = Blk()

        def forward(self, x):
            return self.blk(x)

    with pytest.raises(et.errors.NotSupportedError, match="layer 'blk': torch.cumsum"):
        et.TrainSession.from_module(Outer(), inputs={"x": (2, 3)})
