"""nn.LSTM and nn.GRU (composites unrolled over the sequence) train like torch.nn.LSTM / GRU:
same parameter names and layouts, 3 SGD steps with the same losses and weights."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import edgetrain as et
from edgetrain import nn, optim

RNG = np.random.default_rng(11)
N, T, I, H, C = 3, 4, 5, 7, 6


def make(kind, lib, layers, batch_first):
    cls = {"lstm": (nn.LSTM, torch.nn.LSTM), "gru": (nn.GRU, torch.nn.GRU)}[kind][lib == "torch"]
    base, lin = (nn.Module, nn.Linear) if lib == "et" else (torch.nn.Module, torch.nn.Linear)

    class Seq(base):
        def __init__(self):
            super().__init__()
            self.rnn = cls(I, H, num_layers=layers, batch_first=batch_first)
            self.head = lin(2 * H, C)

        def forward(self, x):
            out, state = self.rnn(x)
            h_n = state[0] if kind == "lstm" else state
            last = out[:, -1] if batch_first else out[-1]
            feats = (et if lib == "et" else torch).cat([last, h_n[0] * 0.5], 1)
            return self.head(feats)
    return Seq()


@pytest.mark.parametrize("kind,layers,batch_first", [
    ("lstm", 2, True), ("lstm", 1, False), ("gru", 2, True), ("gru", 1, False)])
def test_rnn_trains_like_torch(kind, layers, batch_first):
    torch.manual_seed(5)
    tm = make(kind, "torch", layers, batch_first).double()
    model = make(kind, "et", layers, batch_first)
    sd = {k: v.numpy() for k, v in tm.state_dict().items()}
    assert list(model.state_dict()) == list(sd)
    model.load_state_dict(sd)
    # the batch is dim 0 of the program's inputs: open (planned at 1, resized to N) when
    # batch_first, fixed otherwise
    shape, lab = ((None, T, I), (None,)) if batch_first else ((T, N, I), (N,))
    sess = et.TrainSession.from_module(
        model, inputs={"x": shape}, max_batch=N if batch_first else None,
        loss=nn.CrossEntropyLoss(),
        labels={"y": (lab, "int64")}, optimizer=optim.SGD(model.parameters(), lr=0.3),
        threads=2)
    to = torch.optim.SGD(tm.parameters(), lr=0.3)
    sess.Train()
    for _ in range(3):
        x = RNG.standard_normal((N, T, I) if batch_first else (T, N, I)).astype(np.float32)
        y = RNG.integers(0, C, N)
        got = sess.RunGraph({"x": x, "y": y})["loss"]
        to.zero_grad()
        tl = TF.cross_entropy(tm(torch.tensor(x, dtype=torch.float64)), torch.tensor(y))
        tl.backward()
        to.step()
        np.testing.assert_allclose(got, tl.item(), rtol=1e-4)
    params = sess.get_parameters()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(params[k], v.numpy(), rtol=1e-3, atol=1e-5, err_msg=k)


def test_rnn_errors():
    with pytest.raises(et.errors.NotSupportedError, match="bidirectional"):
        nn.LSTM(3, 4, bidirectional=True)
    with pytest.raises(et.errors.InvalidArgumentError, match="3-D input"):
        et.TrainSession.from_module(nn.GRU(3, 4), inputs={"x": (2, 3)},
                                    loss=lambda out: et.nn.functional.sum(out[0]))
