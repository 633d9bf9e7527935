"""ONNX import (edgetrain.convert): models exported from PyTorch train like PyTorch, cuts and
freezing, the CLI, and every malformed file is a clear edgetrain error."""
import copy
import io

import numpy as np
import onnx
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
from onnx import helper, numpy_helper

import edgetrain as et
from edgetrain import convert, errors, nn, optim
from edgetrain.export import build_graph
from edgetrain.ir import EVAL, GRAD_PROGRAM

N, HW, STEPS = 8, 16, 10
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """PyTorch's small reference runs are fastest on one thread on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------- models
def conv_bn(cin, cout, k, stride=1, groups=1, act=tnn.ReLU6):
    layers = [tnn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
              tnn.BatchNorm2d(cout)]
    return tnn.Sequential(*layers, act()) if act else tnn.Sequential(*layers)


class SmallCNN(tnn.Module):
    """Conv/BN with ReLU6, HardSwish, LeakyReLU; max pool; x.view(x.size(0), -1); Dropout."""

    def __init__(self):
        super().__init__()
        self.features = tnn.Sequential(conv_bn(3, 8, 3), conv_bn(8, 8, 3, 2, 8, tnn.Hardswish),
                                       tnn.MaxPool2d(2),
                                       conv_bn(8, 12, 1, act=lambda: tnn.LeakyReLU(0.1)))
        self.classifier = tnn.Sequential(tnn.Dropout(0.3), tnn.Linear(12 * 4 * 4, 10))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


class InvertedResidual(tnn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.res = stride == 1 and cin == cout
        layers = [conv_bn(cin, hidden, 1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, hidden), conv_bn(hidden, cout, 1, act=None)]
        self.conv = tnn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


class MobileNetV2ish(tnn.Module):
    """Inverted residuals (expand 1x1, depthwise 3x3, linear 1x1 projection), ReLU6, residual
    adds, global average pool, flatten, Dropout + Linear."""

    def __init__(self):
        super().__init__()
        self.features = tnn.Sequential(conv_bn(3, 8, 3, 2), InvertedResidual(8, 8, 1, 1),
                                       InvertedResidual(8, 12, 2, 2),
                                       InvertedResidual(12, 12, 1, 2), conv_bn(12, 24, 1))
        self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(24, 10))

    def forward(self, x):
        x = TF.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class BasicBlock(tnn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(cout)
        self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(cout)
        self.downsample = None if stride == 1 and cin == cout else tnn.Sequential(
            tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

    def forward(self, x):
        y = TF.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return TF.relu(y + (x if self.downsample is None else self.downsample(x)))


class TinyResNet(tnn.Module):
    """ResNet-18's stem (7x7/2 conv, 3x3/2 max pool with padding) and basic blocks."""

    def __init__(self):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(8)
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.classifier = tnn.Sequential(tnn.Dropout(0.1), tnn.Linear(16, 10))

    def forward(self, x):
        x = self.maxpool(TF.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.classifier(torch.flatten(tnn.functional.adaptive_avg_pool2d(x, 1), 1))


MODELS = {"small_cnn": SmallCNN, "mobilenetv2": MobileNetV2ish, "resnet": TinyResNet}


def make_model(name, seed=0):
    """A PyTorch model with non-trivial BatchNorm statistics (a few training batches seen)."""
    torch.manual_seed(seed)
    m = MODELS[name]()
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(N, 3, HW, HW) * 2 + 0.5)
    return m


def export_torchscript(m, training=True, dynamic=True):
    """The TorchScript exporter path that keeps the training graph (on a copy)."""
    buf = io.BytesIO()
    mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
    mm = copy.deepcopy(m)
    mm.train(training)
    torch.onnx.export(mm, (torch.randn(N, 3, HW, HW),), buf, dynamo=False, training=mode,
                      do_constant_folding=False, opset_version=17, input_names=["input"],
                      output_names=["logits"],
                      dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}} if dynamic else None)
    return buf.getvalue()


def file_arrays(data):
    """Initializers of an ONNX file, plus the Identity aliases the exporter writes."""
    g = onnx.load_from_string(data).graph
    arrs = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for nd in g.node:
        if nd.op_type == "Identity" and nd.input[0] in arrs:
            arrs[nd.output[0]] = arrs[nd.input[0]]
    return arrs


def head_input(net):
    """The tensor the Gemm of the classifier reads (where the head is cut off)."""
    return next(ins[0] for _, op, ins, _ in net.nodes() if op == "Gemm")


# ---------------------------------------------------------------- transfer vs PyTorch
def torch_from_file(tm, data):
    """A copy of ``tm`` with the file's parameters and statistics: the exporter in training
    mode writes the running statistics after its own forward pass (one momentum update by its
    example input), so the file is the common starting point."""
    twin = copy.deepcopy(tm)
    state = twin.state_dict()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in file_arrays(data).items()
                          if k in state}, strict=False)
    return twin


def transfer(tm, data, bn, steps=STEPS, lr=0.05, from_file=True):
    """Convert, cut before the classifier, new 4-class head, frozen backbone, SGD steps, next
    to PyTorch doing the same (from the file's weights when ``from_file``). Returns (session,
    torch twin, converted body)."""
    net = convert.from_onnx(data, dropout="off")
    body = net.extract(inputs=["input"], outputs=[head_input(net)], trainable=False, bn=bn)
    width = tm.classifier[1].in_features
    torch.manual_seed(1)
    thead = tnn.Linear(width, 4)
    head = nn.Linear(width, 4)
    head.load_state_dict(thead.state_dict())
    model = nn.Sequential(body, head)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (N, 3, HW, HW)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((N,), "int64")},
        optimizer=optim.SGD(model.parameters(), lr=lr, momentum=0.9), threads=1)
    # float32: PyTorch's float64 depthwise convolution is too slow for the suite
    twin = torch_from_file(tm, data) if from_file else copy.deepcopy(tm)
    twin.classifier[1] = thead
    for p in twin.parameters():
        p.requires_grad_(False)
    for p in thead.parameters():
        p.requires_grad_(True)
    twin.train()
    twin.classifier[0].eval()
    if bn == "frozen":
        for m in twin.modules():
            if isinstance(m, tnn.BatchNorm2d):
                m.eval()
    topt = torch.optim.SGD(thead.parameters(), lr=lr, momentum=0.9)
    rng = np.random.default_rng(2)
    sess.Train()
    for step in range(steps):
        x = (rng.standard_normal((N, 3, HW, HW)) * 2 + 0.5).astype(np.float32)
        y = rng.integers(0, 4, N)
        loss = float(sess.RunGraph({"data": x, "label": y})["loss"])
        topt.zero_grad()
        tl = TF.cross_entropy(twin(torch.from_numpy(x)), torch.tensor(y))
        tl.backward()
        topt.step()
        np.testing.assert_allclose(loss, tl.item(), rtol=1e-4, err_msg=f"step {step}")
    return sess, twin, body


def check_after_transfer(sess, twin, body, arrays, bn):
    params = sess.get_parameters()
    np.testing.assert_allclose(params["1.weight"], twin.classifier[1].weight.detach().numpy(),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(params["1.bias"], twin.classifier[1].bias.detach().numpy(),
                               rtol=1e-4, atol=1e-6)
    tstate = twin.state_dict()
    names = [n for n, _ in body.named_parameters()]
    assert names and all(not p.requires_grad for p in body.parameters())
    for name in names:  # the frozen backbone is bit-identical to the file
        assert np.array_equal(params["0." + name], arrays[name]), name
    stats = [n for n, _ in body.named_buffers() if n.endswith(("running_mean", "running_var"))]
    assert stats
    for name in stats:
        if bn == "frozen":
            assert np.array_equal(params["0." + name], arrays[name]), name
        else:
            assert not np.array_equal(params["0." + name], arrays[name]), name
            np.testing.assert_allclose(params["0." + name], tstate[name].numpy(), rtol=1e-4,
                                       atol=1e-6, err_msg=name)


@pytest.mark.parametrize("bn", ["train", "frozen"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_transfer_matches_torch(name, bn):
    tm = make_model(name)
    data = export_torchscript(tm)
    sess, twin, body = transfer(tm, data, bn)
    check_after_transfer(sess, twin, body, file_arrays(data), bn)


def test_eval_mode_export_trains_like_torch():
    """The inference-form export (BatchNorm training_mode=0, equal initializers aliased with
    Identity): every PyTorch name is its own tensor, bn="follow" freezes the statistics."""
    tm = make_model("mobilenetv2")
    data = export_torchscript(tm, training=False)
    net = convert.from_onnx(data)
    assert set(net.state_dict()) == set(tm.state_dict())
    for k, v in tm.state_dict().items():  # an eval export writes the statistics unchanged
        if not k.endswith("num_batches_tracked"):  # not in ONNX files
            assert np.array_equal(net.state_dict()[k], v.numpy()), k
    assert {net.bn_mode_of(nd) for nd in net._nodes if nd.op == "BatchNormalization"} == \
        {"frozen"}
    sess, twin, body = transfer(tm, data, "frozen")
    check_after_transfer(sess, twin, body, file_arrays(data), "frozen")


def test_from_torch_leaves_the_module_untouched_and_matches_it():
    tm = make_model("small_cnn")
    tm.features[1][1].eval()  # one frozen BatchNorm: followed, though exported in train mode
    before = {k: v.clone() for k, v in tm.state_dict().items()}
    net = convert.from_torch(tm, torch.randn(N, 3, HW, HW))
    for k, v in tm.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert tm.training and not tm.features[1][1].training
    modes = {net._layers[nd.name]: net.bn_mode_of(nd) for nd in net._nodes
             if nd.op == "BatchNormalization"}
    assert modes == {"features.0.1": "train", "features.1.1": "frozen", "features.3.1": "train"}
    tm2 = make_model("small_cnn", seed=5)  # PyTorch names both ways
    tm2.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 3, HW, HW)).astype(np.float32)
    sess = et.TrainSession.from_module(net, inputs={"data": (None, 3, HW, HW)}, threads=1)
    with torch.no_grad():
        ref = tm2.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sess.predict(x), ref, rtol=1e-5, atol=1e-5)


def test_file_names_never_displace_the_modules_own_attributes():
    class Odd(tnn.Module):
        def __init__(self):
            super().__init__()
            self.bn = tnn.BatchNorm2d(3)
            self.dropout = tnn.Conv2d(3, 2, 1)
            self.forward_ = tnn.Linear(2 * HW * HW, 3)

        def forward(self, x):
            return self.forward_(torch.flatten(self.dropout(self.bn(x)), 1))

    tm = Odd()
    net = convert.from_torch(tm, torch.randn(N, 3, HW, HW), bn="frozen")
    assert net.bn == "frozen" and net.dropout == "follow"
    assert list(net.state_dict()) == list(tm.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 3, HW, HW)).astype(np.float32)
    sess = et.TrainSession.from_module(net, inputs={"data": (2, 3, HW, HW)}, threads=1)
    with torch.no_grad():
        np.testing.assert_allclose(sess.predict(x), tm.eval()(torch.from_numpy(x)).numpy(),
                                   rtol=1e-5, atol=1e-5)


def test_batch_stays_resizable_and_dropout_follows_the_file():
    tm = make_model("small_cnn")
    data = export_torchscript(tm)
    net = convert.from_onnx(data, inputs={"input": (None, 3, HW, HW)})
    sess = et.TrainSession.from_module(net, inputs={"data": (None, 3, HW, HW)}, threads=1)
    tm = torch_from_file(tm, data).eval()
    for n in (1, 3, 7):  # Reshape(Concat(Shape(x)[0], -1)) keeps the batch
        x = np.random.default_rng(n).standard_normal((n, 3, HW, HW)).astype(np.float32)
        with torch.no_grad():
            np.testing.assert_allclose(sess.predict(x), tm(torch.from_numpy(x)).numpy(),
                                       rtol=1e-5, atol=1e-5)
    static = export_torchscript(tm, dynamic=False)  # batch N written as a constant
    sess = et.TrainSession.from_module(convert.from_onnx(static),
                                       inputs={"data": (None, 3, HW, HW)}, threads=1)
    x = np.random.default_rng(9).standard_normal((3, 3, HW, HW)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(sess.predict(x), torch_from_file(tm, static).eval()(
            torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    for mode, expect in (("follow", 1), ("off", 0)):
        g = build_graph(convert.from_onnx(data, dropout=mode), inputs={"data": (N, 3, HW, HW)},
                        loss=nn.CrossEntropyLoss(), labels={"label": ((N,), "int64")})
        ops = lambda k: [g.nodes[i].op for i in g.programs[k].nodes]  # noqa: E731
        assert ops(GRAD_PROGRAM).count("dropout") == expect and "dropout" not in ops(EVAL)
        assert "batchnorm_train" in ops(GRAD_PROGRAM) and "batchnorm_train" not in ops(EVAL)


def test_dynamo_export_imports_and_its_head_trains():
    """The dynamo exporter folds BatchNorm into the convolutions (no training graph): the
    import evaluates like onnxruntime and a new head trains like PyTorch."""
    ort = pytest.importorskip("onnxruntime")
    tm = make_model("mobilenetv2").eval()
    prog = torch.onnx.export(tm, (torch.randn(N, 3, HW, HW),), dynamo=True, verbose=False,
                             input_names=["input"], output_names=["logits"])
    data = prog.model_proto.SerializeToString()
    net = convert.from_onnx(data)
    x = np.random.default_rng(3).standard_normal((N, 3, HW, HW)).astype(np.float32)
    sess = et.TrainSession.from_module(net, inputs={"data": (N, 3, HW, HW)}, threads=1)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]
    np.testing.assert_allclose(sess.predict(x), ref, rtol=1e-5, atol=1e-5)
    tsess, twin, _ = transfer(tm, data, "frozen", steps=5, from_file=False)
    np.testing.assert_allclose(tsess.get_parameters()["1.weight"],
                               twin.classifier[1].weight.detach().numpy(), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- cutting and freezing
def test_extract_freeze_and_unknown_names():
    net = convert.from_onnx(export_torchscript(make_model("small_cnn")))
    with pytest.raises(errors.NotFoundError,
                       match="closest: '/features/features.0/features.0.0/Conv_output_0'"):
        net.extract(inputs=["input"],
                    outputs=["/features/features.0/features.0.0/Conv_outptu_0"])
    with pytest.raises(errors.InvalidArgumentError, match="depend on 'input'"):
        net.extract(inputs=["/features/features.0/features.0.1/BatchNormalization_output_0"],
                    outputs=["/features/features.0/features.0.0/Conv_output_0", "logits"])
    mid = net.extract(inputs=["/features/features.2/MaxPool_output_0"], outputs=["logits"])
    assert sorted(n for n, _ in mid.named_parameters()) == [
        "classifier.1.bias", "classifier.1.weight", "features.3.0.weight",
        "features.3.1.bias", "features.3.1.weight"]
    g = build_graph(mid, inputs={"x": (2, 8, 4, 4)})
    assert g.tensors[g.programs[EVAL].outputs["output"]].shape == (2, 10)
    net.freeze("features.*")
    assert [n for n, p in net.named_parameters() if p.requires_grad] == [
        "classifier.1.weight", "classifier.1.bias"]
    net.unfreeze("features.3")
    params = dict(net.named_parameters())
    assert params["features.3.1.weight"].requires_grad
    assert not params["features.0.0.weight"].requires_grad
    with pytest.raises(errors.NotFoundError, match="closest: 'classifier"):
        net.freeze("clasifier.*")
    lin = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))  # any edgetrain Module
    lin.freeze("0.*")
    assert [n for n, p in lin.named_parameters() if p.requires_grad] == ["2.weight", "2.bias"]
    cut = net.extract(["input"], ["/features/features.3/features.3.2/LeakyRelu_output_0"],
                      trainable=False)
    assert {cut.bn_mode_of(nd) for nd in cut._nodes if nd.op == "BatchNormalization"} == \
        {"frozen"}


# ---------------------------------------------------------------- malformed files
def small_model_proto():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 2, 5, 5])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3])
    w = numpy_helper.from_array(np.arange(36, dtype=np.float32).reshape(2, 2, 3, 3) / 36,
                                "c.weight")
    fc = numpy_helper.from_array(np.ones((3, 2), np.float32) / 2, "fc.weight")
    nodes = [helper.make_node("Conv", ["x", "c.weight"], ["h"], "conv", pads=[1, 1, 1, 1],
                              strides=[2, 2]),
             helper.make_node("Relu", ["h"], ["r"], "relu"),
             helper.make_node("MaxPool", ["r"], ["p"], "pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], "flat"),
             helper.make_node("Gemm", ["f", "fc.weight"], ["y"], "fc", transB=1)]
    g = helper.make_graph(nodes, "g", [x], [y], [w, fc])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _mutate(fn):
    m = small_model_proto()
    fn(m)
    return m.SerializeToString()


def _reverse_nodes(m):
    nodes = list(m.graph.node)[::-1]
    del m.graph.node[:]
    m.graph.node.extend(nodes)


def _cycle(m):
    m.graph.node[0].input[0] = "p"


def _short_weight(m):
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-4]


MALFORMED = {
    "empty": (lambda: b"", errors.ModelFormatError, "empty file"),
    "random": (lambda: np.random.default_rng(0).integers(0, 256, 300, np.uint8).tobytes(),
               errors.ModelFormatError, "not an ONNX model"),
    "truncated": (lambda: small_model_proto().SerializeToString()[:150],
                  errors.ModelFormatError, "not an ONNX model"),
    "missing_initializer": (lambda: _mutate(lambda m: m.graph.initializer.pop()),
                            errors.ModelFormatError,
                            r"node 'fc' \(Gemm\): reads 'fc.weight'.*missing initializer"),
    "short_weight": (lambda: _mutate(_short_weight), errors.ModelFormatError,
                     r"initializer 'c.weight': data is shorter than its dims: 140 bytes, dims "
                     r"\[2, 2, 3, 3\]"),
    "unknown_op": (lambda: _mutate(lambda m: setattr(m.graph.node[1], "op_type", "Mystery")),
                   errors.UnsupportedError, r"Mystery x1 \('relu'\)"),
    "unknown_domain": (lambda: _mutate(lambda m: setattr(m.graph.node[1], "domain", "com.x")),
                       errors.UnsupportedError, r"Relu \(domain 'com.x'\) x1"),
    "opset": (lambda: _mutate(lambda m: m.opset_import[0].__setattr__("version", 99)),
              errors.UnsupportedError, "opset 99 is not supported"),
    "old_opset": (lambda: _mutate(lambda m: m.opset_import[0].__setattr__("version", 6)),
                  errors.UnsupportedError, "opset 6 is not supported"),
    "cycle": (lambda: _mutate(_cycle), errors.ModelFormatError, "cycle through node"),
    "no_graph": (lambda: onnx.ModelProto(ir_version=8).SerializeToString(),
                 errors.ModelFormatError, "no graph"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_has_its_own_message(case, tmp_path):
    make, cls, pattern = MALFORMED[case]
    path = tmp_path / f"{case}.onnx"
    path.write_bytes(make())
    with pytest.raises(cls, match=pattern) as info:
        convert.from_onnx(path)
    assert str(path) in str(info.value)


def test_several_unsupported_ops_are_listed_at_once():
    def edit(m):
        for i, op in ((1, "TopK"), (2, "TopK"), (3, "Einsum")):
            m.graph.node[i].op_type = op
    with pytest.raises(errors.UnsupportedError) as info:
        convert.from_onnx(_mutate(edit))
    msg = str(info.value)
    assert "3 node(s) cannot be converted" in msg
    assert "TopK x2 ('relu', 'pool')" in msg and "Einsum x1 ('flat')" in msg
    report = convert.check_onnx(_mutate(edit))
    assert report["unsupported"] == {"TopK": ["relu", "pool"], "Einsum": ["flat"]}


def test_nodes_out_of_order_are_sorted():
    good, shuffled = small_model_proto().SerializeToString(), _mutate(_reverse_nodes)
    assert convert.check_onnx(shuffled)["sorted"] and not convert.check_onnx(good)["sorted"]
    x = np.random.default_rng(0).standard_normal((3, 2, 5, 5)).astype(np.float32)
    outs = [et.TrainSession.from_module(convert.from_onnx(d), inputs={"x": (3, 2, 5, 5)},
                                        threads=1).predict(x) for d in (good, shuffled)]
    np.testing.assert_array_equal(outs[0], outs[1])


def test_external_data_only_from_beside_the_model(tmp_path):
    m = small_model_proto()
    onnx.save_model(m, tmp_path / "m.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    net = convert.from_onnx(tmp_path / "m.onnx")
    assert np.array_equal(net.state_dict()["c.weight"],
                          numpy_helper.to_array(small_model_proto().graph.initializer[0]))
    with pytest.raises(errors.ModelFormatError, match="load the model from its path"):
        convert.from_onnx((tmp_path / "m.onnx").read_bytes())
    (tmp_path / "sub").mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    (tmp_path / "sub" / "link.bin").symlink_to(tmp_path / "secret.bin")
    for loc, pattern in (("../secret.bin", "leaves the model's folder"),
                         ("link.bin", r"leaves the model's folder \(through a link\)"),
                         (str(tmp_path / "secret.bin"), "not a file name beside the model"),
                         ("missing.bin", "cannot read external data")):
        mm = onnx.load(tmp_path / "m.onnx", load_external_data=False)
        for t in mm.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = loc
        path = tmp_path / "sub" / "m.onnx"
        path.write_bytes(mm.SerializeToString())
        with pytest.raises(errors.EdgetrainError, match=pattern) as info:
            convert.from_onnx(path)
        assert "initializer 'c.weight'" in str(info.value) and str(path) in str(info.value)


def test_byte_mutations_never_crash_the_converter():
    """1,000 seeded mutations: each converts (and traces) or raises an edgetrain error."""
    base = bytearray(export_torchscript(make_model("small_cnn"), dynamic=False))
    rng = np.random.default_rng(1234)
    outcomes = {"converted": 0, "rejected": 0}
    for i in range(1000):
        data = bytearray(base)
        kind = i % 4
        if kind == 3:
            data = data[:int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 9))):
                pos = int(rng.integers(0, len(data)))
                data[pos] = int(rng.integers(0, 256)) if kind != 2 else data[pos] ^ 0x80
        try:
            net = convert.from_onnx(bytes(data))
            build_graph(net, inputs={"data": (2, 3, HW, HW)})
            outcomes["converted"] += 1
        except errors.EdgetrainError:
            outcomes["rejected"] += 1
        except Exception as e:  # pragma: no cover - the failure this test looks for
            pytest.fail(f"mutation {i} raised {type(e).__name__}: {e}")
    assert outcomes["rejected"] > 100 and outcomes["converted"] > 10, outcomes


# ---------------------------------------------------------------- CLI
def test_cli_check_info_and_convert(tmp_path, capsys):
    from edgetrain.cli import main

    tm = make_model("small_cnn")
    path = tmp_path / "small.onnx"
    path.write_bytes(export_torchscript(tm))
    assert main(["convert", "--check", str(path)]) == 0
    assert "all ops are supported" in capsys.readouterr().out
    assert main(["info", str(path)]) == 0
    info = capsys.readouterr().out
    assert "BatchNormalization x3" in info and "/classifier/classifier.0/Dropout_output_0" in info
    out = tmp_path / "m.etm"
    assert main(["convert", str(path), "-o", str(out), "--input", f"input:{N}x3x{HW}x{HW}",
                 "--cut-at", "/classifier/classifier.0/Dropout_output_0", "--num-classes", "4",
                 "--trainable", "features.3.*", "--lr", "0.1"]) == 0
    assert "wrote" in capsys.readouterr().out
    sess = et.TrainSession.load(out, threads=1)
    assert sorted(sess.trainable_parameters()) == [
        "features.3.0.weight", "features.3.1.bias", "features.3.1.weight", "head.bias",
        "head.weight"]
    before = sess.get_parameters()
    sess.Train()
    x = np.random.default_rng(0).standard_normal((N, 3, HW, HW)).astype(np.float32)
    sess.RunGraph({"data": x, "label": np.arange(N) % 4})
    after = sess.get_parameters()
    assert not np.array_equal(before["head.weight"], after["head.weight"])
    assert np.array_equal(before["features.0.0.weight"], after["features.0.0.weight"])
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(_mutate(lambda m: setattr(m.graph.node[1], "op_type", "Mystery")))
    assert main(["convert", "--check", str(bad)]) == 2
    assert "Mystery x1" in capsys.readouterr().out
    assert main(["convert", str(bad), "-o", str(tmp_path / "x.etm")]) == 2
    assert "Mystery x1" in capsys.readouterr().err


# ---------------------------------------------------------------- single ops vs onnxruntime
def _w(name, shape, seed=0):
    return numpy_helper.from_array(
        np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.5, name)


def _i64(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def _f(name, value):
    return numpy_helper.from_array(np.array(value, np.float32), name)


# name -> (nodes reading "x" and writing "y", initializers, input shape[, opset])
OP_CASES = {
    "conv_same_upper": ([helper.make_node("Conv", ["x", "w", "b"], ["y"], auto_pad="SAME_UPPER",
                                          strides=[2, 2])],
                        [_w("w", (4, 3, 3, 3)), _w("b", (4,), 1)], (2, 3, 7, 6)),
    "conv_asym_pads_groups": ([helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 1, 2, 0],
                                                group=3, dilations=[2, 1])],
                              [_w("w", (6, 1, 3, 2))], (2, 3, 7, 6)),
    "avgpool_exclude_pad_ceil": ([helper.make_node("AveragePool", ["x"], ["y"],
                                                   kernel_shape=[3, 3], strides=[2, 2],
                                                   pads=[1, 1, 1, 1], ceil_mode=1)],
                                 [], (2, 3, 8, 7)),
    "maxpool_pads": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3],
                                       strides=[2, 2], pads=[1, 1, 1, 1])], [], (2, 3, 8, 7)),
    "reduce_mean_softmax": ([helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, -1],
                                              keepdims=0),
                             helper.make_node("Softmax", ["m"], ["y"], axis=1)],
                            [], (2, 5, 3, 4)),
    "gemm_transA_alpha_beta": ([helper.make_node("Flatten", ["x"], ["f"], axis=2),
                                helper.make_node("Gemm", ["f", "w", "c"], ["y"], transA=1,
                                                 alpha=0.5, beta=2.0)],
                               [_w("w", (6, 4)), _w("c", (4,), 2)], (3, 2, 3, 4)),
    "matmul_scalar_arith": ([helper.make_node("Flatten", ["x"], ["f"]),
                             helper.make_node("MatMul", ["f", "w"], ["m"]),
                             helper.make_node("Sub", ["m", "s"], ["d"]),
                             helper.make_node("Div", ["d", "t"], ["q"]),
                             helper.make_node("Pow", ["q", "two"], ["y"])],
                            [_w("w", (12, 5)), _f("s", 0.25), _f("t", 4.0), _f("two", 2.0)],
                            (3, 3, 2, 2)),
    "reduce_mean_axes_input_opset18": ([helper.make_node("ReduceMean", ["x", "ax"], ["y"])],
                                       [_i64("ax", [1, 3])], (2, 5, 3, 4), 18),
    "activations": ([helper.make_node("HardSigmoid", ["x"], ["a"], alpha=0.2, beta=0.4),
                     helper.make_node("Elu", ["a"], ["b"], alpha=0.7),
                     helper.make_node("Tanh", ["b"], ["c"]),
                     helper.make_node("LeakyRelu", ["x"], ["d"], alpha=0.2),
                     helper.make_node("Sigmoid", ["d"], ["e"]),
                     helper.make_node("Mul", ["c", "e"], ["g"]),
                     helper.make_node("Clip", ["g", "lo", "hi"], ["y"])],
                    [_f("lo", -0.1), _f("hi", 0.3)], (2, 3, 4, 5)),
    "unsqueeze_squeeze_add": ([helper.make_node("GlobalAveragePool", ["x"], ["p"]),
                               helper.make_node("Squeeze", ["p", "ax"], ["s"]),
                               helper.make_node("Unsqueeze", ["s", "ax1"], ["u"]),
                               helper.make_node("Add", ["u", "bias"], ["y"])],
                              [_i64("ax", [2, 3]), _i64("ax1", [1]), _w("bias", (1, 1, 3))],
                              (4, 3, 5, 5)),
}

# the ops PyTorch's exporters write for the layers added with the op-coverage issue
NEW_OP_CASES = {
    "concat_of_activations": ([helper.make_node("Relu", ["x"], ["r"]),
                               helper.make_node("Sigmoid", ["x"], ["s"]),
                               helper.make_node("Concat", ["r", "s", "x"], ["y"], axis=1)],
                              [], (2, 3, 4, 5)),
    "slice_steps_negative_bounds": ([helper.make_node("Slice", ["x", "st", "en", "ax", "sp"],
                                                      ["y"])],
                                    [_i64("st", [1, -4]), _i64("en", [9223372036854775807, -1]),
                                     _i64("ax", [1, -1]), _i64("sp", [1, 2])], (2, 3, 4, 7)),
    "split_input_sizes": ([helper.make_node("Split", ["x", "sp"], ["a", "b"], axis=2),
                           helper.make_node("Mul", ["a", "b"], ["y"])],
                          [_i64("sp", [2, 2])], (2, 3, 4, 5)),
    "split_num_outputs_opset18": ([helper.make_node("Split", ["x"], ["a", "b", "c"], axis=-1,
                                                    num_outputs=3),
                                   helper.make_node("Concat", ["c", "a", "b"], ["y"], axis=-1)],
                                  [], (2, 3, 6), 18),
    "transpose_squeeze_unsqueeze": ([helper.make_node("Transpose", ["x"], ["t"],
                                                      perm=[0, 2, 3, 1]),
                                     helper.make_node("Unsqueeze", ["t", "a1"], ["u"]),
                                     helper.make_node("Squeeze", ["u", "a1"], ["q"]),
                                     helper.make_node("Transpose", ["q"], ["y"])],
                                    [_i64("a1", [2])], (2, 3, 4, 5)),
    "pad_constant_reflect_edge": ([helper.make_node("Pad", ["x", "p", "v"], ["a"]),
                                   helper.make_node("Pad", ["a", "p2"], ["b"], mode="reflect"),
                                   helper.make_node("Pad", ["b", "p3"], ["y"], mode="edge")],
                                  [_i64("p", [0, 0, 1, 0, 0, 0, 2, 1]), _f("v", 0.5),
                                   _i64("p2", [0, 0, 1, 2, 0, 0, 2, 1]),
                                   _i64("p3", [0, 1, 0, 1, 0, 0, 1, 0])], (2, 3, 4, 5)),
    "gather_indices": ([helper.make_node("Gather", ["x", "i"], ["g"], axis=1),
                        helper.make_node("Gather", ["g", "j"], ["h"], axis=-1),
                        helper.make_node("Gather", ["h", "k"], ["y"], axis=1)],
                       [_i64("i", [2, 0, -1, 1]), _i64("j", [[0, 3], [4, 4]]), _i64("k", 1)],
                       (2, 3, 4, 5)),
    "expand_bidirectional": ([helper.make_node("ReduceMean", ["x"], ["m"], axes=[1]),
                              helper.make_node("Expand", ["m", "s"], ["y"])],
                             [_i64("s", [3, 1, 1, 1, 5])], (2, 3, 4, 1)),
    "conv_transpose_stride_outpad": ([helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"],
                                                       strides=[2, 2], pads=[1, 0, 1, 0],
                                                       output_padding=[1, 0], group=1)],
                                     [_w("w", (3, 4, 3, 2)), _w("b", (4,), 1)], (2, 3, 5, 4)),
    "resize_nearest_pytorch": ([helper.make_node("Resize", ["x", "", "sc"], ["y"],
                                                 mode="nearest",
                                                 coordinate_transformation_mode="asymmetric",
                                                 nearest_mode="floor")],
                               [_f("sc", [1, 1, 2, 3])], (2, 3, 4, 5)),
    "resize_linear_half_pixel": ([helper.make_node("Resize", ["x", "", "sc"], ["y"],
                                                   mode="linear",
                                                   coordinate_transformation_mode="half_pixel")],
                                 [_f("sc", [1, 1, 2, 1.5])], (2, 3, 4, 6)),
    "resize_linear_pytorch_half_pixel_sizes": (
        [helper.make_node("Resize", ["x", "", "", "sz"], ["y"], mode="linear",
                          coordinate_transformation_mode="pytorch_half_pixel")],
        [_i64("sz", [2, 3, 7, 3])], (2, 3, 4, 6)),
    "resize_linear_align_corners": ([helper.make_node("Resize", ["x", "", "", "sz"], ["y"],
                                                      mode="linear",
                                                      coordinate_transformation_mode=
                                                      "align_corners")],
                                    [_i64("sz", [2, 3, 9, 5])], (2, 3, 4, 6)),
    "layer_norm_last_two": ([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"],
                                              axis=-2, epsilon=1e-3)],
                            [_w("g", (4, 5)), _w("b", (4, 5), 1)], (2, 3, 4, 5)),
    "reduce_max_argmax": ([helper.make_node("ReduceMax", ["x"], ["m"], axes=[1], keepdims=1),
                           helper.make_node("Sub", ["x", "m"], ["y"])],
                          [], (2, 3, 4, 5)),
    "reduce_max_axes_input_opset18": ([helper.make_node("ReduceMax", ["x", "ax"], ["y"],
                                                        keepdims=0)],
                                      [_i64("ax", [2, -1])], (2, 3, 4, 5), 18),
    "max_min_prelu": ([helper.make_node("Relu", ["x"], ["r"]),
                       helper.make_node("Max", ["x", "c", "r"], ["a"]),
                       helper.make_node("Min", ["a", "d"], ["b"]),
                       helper.make_node("PRelu", ["x", "slope"], ["p"]),
                       helper.make_node("Add", ["b", "p"], ["y"])],
                      [_f("c", -0.2), _w("d", (5,)), _w("slope", (3, 1, 1), 2)], (2, 3, 4, 5)),
    "softmax_logsoftmax_axes": ([helper.make_node("Softmax", ["x"], ["s"], axis=1),
                                 helper.make_node("LogSoftmax", ["s"], ["y"], axis=2)],
                                [], (2, 3, 4, 5)),
    "softmax_flattened_axis_opset11": ([helper.make_node("Softmax", ["x"], ["s"], axis=1),
                                        helper.make_node("LogSoftmax", ["s"], ["y"], axis=2)],
                                       [], (2, 3, 4, 5), 11),
    "matmul_nd_broadcast": ([helper.make_node("MatMul", ["x", "w"], ["m"]),
                             helper.make_node("Transpose", ["m"], ["t"], perm=[0, 1, 3, 2]),
                             helper.make_node("MatMul", ["m", "t"], ["s"]),
                             helper.make_node("MatMul", ["s", "v"], ["y"])],
                            [_w("w", (5, 6)), _w("v", (3, 4, 2), 1)], (2, 3, 4, 5)),
    "elementwise_math": ([helper.make_node("Abs", ["x"], ["a"]),
                          helper.make_node("Sqrt", ["a"], ["s"]),
                          helper.make_node("Exp", ["x"], ["e"]),
                          helper.make_node("Log", ["e"], ["l"]),
                          helper.make_node("Erf", ["l"], ["f"]),
                          helper.make_node("Pow", ["s", "p"], ["q"]),
                          helper.make_node("Div", ["f", "q"], ["d"]),
                          helper.make_node("Sub", ["d", "x"], ["y"])],
                         [_f("p", 3.0)], (2, 3, 4, 5)),
    "gelu_opset20": ([helper.make_node("Gelu", ["x"], ["g"]),
                      helper.make_node("Gelu", ["g"], ["y"], approximate="tanh")],
                     [], (2, 3, 4, 5), 20),
    "lstm_forward": ([helper.make_node("Transpose", ["x"], ["s"], perm=[1, 0, 2]),
                      helper.make_node("LSTM", ["s", "W", "R", "B", "", "h0", "c0"],
                                       ["Y", "Yh"], hidden_size=4),
                      helper.make_node("Squeeze", ["Y", "one"], ["q"]),
                      helper.make_node("Squeeze", ["Yh", "zero"], ["h"]),
                      helper.make_node("Unsqueeze", ["h", "zero"], ["hh"]),
                      helper.make_node("Concat", ["q", "hh"], ["y"], axis=0)],
                     [_w("W", (1, 16, 5)), _w("R", (1, 16, 4), 1), _w("B", (1, 32), 2),
                      _w("h0", (1, 2, 4), 3), _w("c0", (1, 2, 4), 4), _i64("one", [1]),
                      _i64("zero", [0])], (2, 3, 5)),
}
OP_CASES.update(NEW_OP_CASES)


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_single_ops_match_onnxruntime(case):
    ort = pytest.importorskip("onnxruntime")
    nodes, inits, shape, *opset = OP_CASES[case]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, case, [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", (opset or [17])[0])],
                              ir_version=9)
    data = model.SerializeToString()
    xv = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": xv})[0]
    sess = et.TrainSession.from_module(convert.from_onnx(data), inputs={"x": shape}, threads=1)
    np.testing.assert_allclose(sess.predict(xv), ref, rtol=1e-5, atol=1e-5)
