"""The four models of the op-coverage issue (ResNet-18 layout, U-Net, ViT, LSTM over image
rows), exported from PyTorch with the TorchScript exporter in training mode and converted
with ``from_torch``: they evaluate like onnxruntime and train 5 steps like PyTorch."""
import copy
import io

import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF

import edgetrain as et
from edgetrain import convert, nn, optim
from test_convert import BasicBlock as Block

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
N, STEPS, LR = 4, 5, 0.005


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class ResNet18(tnn.Module):
    """ResNet-18's layout (7x7 stem, max pool, 4 stages of 2 basic blocks) at width 16."""

    def __init__(self, w=16, classes=4):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(w)
        self.pool = tnn.MaxPool2d(3, 2, 1)
        chans = [w, 2 * w, 4 * w, 8 * w]
        layers, cin = [], w
        for i, c in enumerate(chans):
            layers.append(tnn.Sequential(Block(cin, c, 1 if i == 0 else 2), Block(c, c, 1)))
            cin = c
        self.layers = tnn.Sequential(*layers)
        self.fc = tnn.Linear(cin, classes)

    def forward(self, x):
        x = self.layers(self.pool(TF.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(TF.adaptive_avg_pool2d(x, 1), 1))


def cbr(cin, cout):
    return tnn.Sequential(tnn.Conv2d(cin, cout, 3, 1, 1), tnn.BatchNorm2d(cout), tnn.ReLU())


class UNet(tnn.Module):
    """Two levels, concat skips, ConvTranspose2d up, and one nearest upsample; per-pixel
    logits."""

    def __init__(self, classes=3):
        super().__init__()
        self.enc1, self.enc2, self.mid = cbr(3, 8), cbr(8, 16), cbr(16, 16)
        self.up2 = tnn.ConvTranspose2d(16, 16, 2, 2)
        self.dec2 = cbr(32, 16)
        self.up1 = tnn.ConvTranspose2d(16, 8, 2, 2)
        self.dec1 = cbr(16, 8)
        self.side = tnn.Conv2d(16, 8, 1)
        self.out = tnn.Conv2d(8, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(TF.max_pool2d(e1, 2))
        m = self.mid(TF.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        side = TF.interpolate(self.side(d2), scale_factor=2, mode="nearest")
        return self.out(d1 + side)


class ViT(tnn.Module):
    """Conv2d patchify, class token, learned positions, 2 pre-norm blocks (MHA, GELU MLP)."""

    def __init__(self, dim=16, heads=2, depth=2, classes=4, hw=16, patch=4):
        super().__init__()
        self.patch = tnn.Conv2d(3, dim, patch, patch)
        self.cls = tnn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = tnn.Parameter(torch.randn(1, (hw // patch) ** 2 + 1, dim) * 0.5)
        self.blocks = tnn.ModuleList()
        for _ in range(depth):
            self.blocks.append(tnn.ModuleDict({
                "ln1": tnn.LayerNorm(dim), "attn": tnn.MultiheadAttention(dim, heads,
                                                                          batch_first=True),
                "ln2": tnn.LayerNorm(dim),
                "mlp": tnn.Sequential(tnn.Linear(dim, 2 * dim), tnn.GELU(),
                                      tnn.Linear(2 * dim, dim))}))
        self.norm = tnn.LayerNorm(dim)
        self.head = tnn.Linear(dim, classes)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(x.size(0), -1, -1), t], 1) + self.pos
        for b in self.blocks:
            h = b["ln1"](t)
            t = t + b["attn"](h, h, h, need_weights=False)[0]
            t = t + b["mlp"](b["ln2"](t))
        return self.head(self.norm(t)[:, 0])


class RowLSTM(tnn.Module):
    """An LSTM reading the image rows (channels x width per step); the last hidden state
    classifies."""

    def __init__(self, hidden=12, classes=4, c=3, w=8):
        super().__init__()
        self.lstm = tnn.LSTM(c * w, hidden, batch_first=True)
        self.fc = tnn.Linear(hidden, classes)

    def forward(self, x):
        seq = x.permute(0, 2, 1, 3).flatten(2)
        out, (h, c) = self.lstm(seq)
        return self.fc(out[:, -1] + h[0])


MODELS = {"resnet18": (ResNet18, (3, 64, 64)), "unet": (UNet, (3, 16, 16)),
          "vit": (ViT, (3, 16, 16)), "lstm": (RowLSTM, (3, 8, 8))}


# ResNet's last stage is 2x2: with fewer values per BatchNorm channel, PyTorch's own float32
# and float64 runs drift apart by more than 1e-4 within 5 steps
BATCH = {"resnet18": 8}


def eval_onnx(m, example):
    """An eval-mode TorchScript export of ``m`` (for onnxruntime)."""
    buf = io.BytesIO()
    torch.onnx.export(copy.deepcopy(m).eval(), (example,), buf, dynamo=False, opset_version=17,
                      input_names=["input"])
    return buf.getvalue()


def make(name, seed=0):
    torch.manual_seed(seed)
    cls, shape = MODELS[name]
    m = cls()
    m.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for _ in range(2):
            m(torch.randn(BATCH.get(name, N), *shape) * 2 + 0.5)
    return m


@pytest.mark.parametrize("name", sorted(MODELS))
def test_exported_model_converts_evaluates_and_trains_like_torch(name):
    tm = make(name)
    shape, n = MODELS[name][1], BATCH.get(name, N)
    rng = np.random.default_rng(1)
    net = convert.from_torch(tm, torch.randn(n, *shape))
    twin = copy.deepcopy(tm)  # PyTorch with the file's values (the export's BN update)
    state = twin.state_dict()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in net.state_dict().items()
                          if k in state}, strict=False)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    ref = ort.InferenceSession(eval_onnx(twin, torch.from_numpy(x)), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]
    with torch.no_grad():
        out = twin.eval()(torch.from_numpy(x)).numpy()
    classes = out.shape[1]
    labels = (n,) + out.shape[2:]
    sess = et.TrainSession.from_module(
        net, inputs={"data": (n, *shape)}, loss=nn.CrossEntropyLoss(),
        labels={"label": (labels, "int64")},
        optimizer=optim.SGD(net.parameters(), lr=LR, momentum=0.9), threads=1)
    np.testing.assert_allclose(sess.predict(x), ref, rtol=1e-5, atol=1e-5)
    twin.train()
    topt = torch.optim.SGD(twin.parameters(), lr=LR, momentum=0.9)
    sess.Train()
    for step in range(STEPS):
        xb = rng.standard_normal((n, *shape)).astype(np.float32)
        yb = rng.integers(0, classes, labels)
        loss = float(sess.RunGraph({"data": xb, "label": yb})["loss"])
        topt.zero_grad()
        tl = TF.cross_entropy(twin(torch.from_numpy(xb)), torch.from_numpy(yb))
        tl.backward()
        topt.step()
        np.testing.assert_allclose(loss, tl.item(), rtol=1e-4, err_msg=f"step {step}")


@pytest.mark.parametrize("name", ["unet", "resnet18", "vit", "lstm"])
def test_onnx_to_etm_to_onnx_round_trips(tmp_path, name):
    """Import a PyTorch export (eval form), export the session as ONNX: onnxruntime gives the
    same outputs for both files (1e-6)."""
    onnx = pytest.importorskip("onnx")
    tm = make(name)
    shape, n = MODELS[name][1], BATCH.get(name, N)
    x = np.random.default_rng(3).standard_normal((n, *shape)).astype(np.float32)
    data = eval_onnx(tm, torch.from_numpy(x))
    sess = et.TrainSession.from_module(convert.from_onnx(data), inputs={"input": (n, *shape)},
                                       threads=1)
    path = tmp_path / "back.onnx"
    sess.export_onnx(path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    run = lambda b: ort.InferenceSession(b, providers=["CPUExecutionProvider"]).run(  # noqa
        None, {"input": x})[0]
    np.testing.assert_allclose(run(path.read_bytes()), run(data), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sess.predict(x), run(data), rtol=1e-5, atol=1e-5)


def _train_export(m, shape, n):
    buf = io.BytesIO()
    torch.onnx.export(copy.deepcopy(m).train(), (torch.randn(n, *shape),), buf, dynamo=False,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      opset_version=17, input_names=["input"])
    return buf.getvalue()


def test_cli_convert_distill_and_export_back(tmp_path, capsys):
    """The command-line story: convert a student with a teacher (both PyTorch exports), train
    it, export it as ONNX: the ONNX file holds the student only and runs in onnxruntime."""
    onnx = pytest.importorskip("onnx")
    from edgetrain.cli import main

    shape = (3, 16, 16)
    (tmp_path / "student.onnx").write_bytes(_train_export(make("vit"), shape, N))
    (tmp_path / "teacher.onnx").write_bytes(_train_export(make("resnet18", 1), shape, N))
    etm, back = tmp_path / "s.etm", tmp_path / "s.onnx"
    assert main(["convert", str(tmp_path / "student.onnx"), "-o", str(etm), "--input",
                 f"input:{N}x3x16x16", "--teacher", str(tmp_path / "teacher.onnx"),
                 "--temperature", "4", "--alpha", "0.7", "--lr", "0.01"]) == 0
    assert main(["convert", str(tmp_path / "student.onnx"), "-o", str(etm), "--teacher",
                 str(tmp_path / "teacher.onnx"), "--alpha", "1.5"]) != 0
    sess = et.TrainSession.load(str(etm), threads=1)
    assert not any(k.startswith("layers.") for k in sess.get_parameters())
    rng = np.random.default_rng(0)
    sess.Train()
    losses = [float(sess.RunGraph({"data": rng.standard_normal((N, *shape)).astype(np.float32),
                                   "label": rng.integers(0, 4, N)})["loss"]) for _ in range(3)]
    assert all(np.isfinite(losses))
    sess.SaveToFile(str(etm))
    assert main(["export", str(etm), "--onnx", "-o", str(back)]) == 0
    model = onnx.load(str(back))
    assert not any(i.name.startswith(("layers.", "bn1.", "fc.")) for i in model.graph.initializer)
    x = rng.standard_normal((N, *shape)).astype(np.float32)
    got = ort.InferenceSession(back.read_bytes(), providers=["CPUExecutionProvider"]).run(
        None, {model.graph.input[0].name: x})[0]
    sess.Eval()
    np.testing.assert_allclose(got, sess.predict(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["unet", "resnet18"])
def test_batch_stays_resizable(name):
    """A dynamic-batch export predicts at any batch size (the ViT's attention and the LSTM's
    exported reshapes compute N * heads / N * hidden from the batch: those keep it fixed)."""
    tm = make(name).eval()
    shape = MODELS[name][1]
    buf = io.BytesIO()
    torch.onnx.export(copy.deepcopy(tm), (torch.randn(N, *shape),), buf, dynamo=False,
                      opset_version=17, input_names=["input"], dynamic_axes={"input": {0: "b"}})
    sess = et.TrainSession.from_module(
        convert.from_onnx(buf.getvalue(), inputs={"input": (None, *shape)}),
        inputs={"data": (None, *shape)}, threads=1)
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n, *shape)).astype(np.float32)
        with torch.no_grad():
            np.testing.assert_allclose(sess.predict(x), tm(torch.from_numpy(x)).numpy(),
                                       rtol=1e-5, atol=1e-5)
