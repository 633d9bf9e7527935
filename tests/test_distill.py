"""Distillation inside the training program: a MobileNetV2-style teacher (BatchNorm, eval form)
teaches a small student with nn.DistillLoss (MNN's _DistillLoss). Against PyTorch doing the
same over 5 SGD steps; the teacher's weights and statistics stay bit-identical; the eval
program, inference-only saves and the ONNX export hold the student only."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import edgetrain as et
from edgetrain import ir, nn, optim
from edgetrain.nn import functional as F
from test_mobilenet_vs_torch import EtNet, TorchNet

N, STEPS, T, ALPHA = 8, 5, 4.0, 0.7


def make_student(lib, base, pool, flatten):
    class Student(base):
        def __init__(self):
            super().__init__()
            self.conv = lib.Conv2d(3, 8, 3, 2, 1)
            self.fc = lib.Linear(8, 10)

        def forward(self, x):
            return self.fc(flatten(pool(lib.functional.relu(self.conv(x)) if lib is nn
                                        else torch.relu(self.conv(x)), 1), 1))
    return Student


EtStudent = make_student(nn, nn.Module, F.adaptive_avg_pool2d, F.flatten)
TorchStudent = make_student(torch.nn, torch.nn.Module, TF.adaptive_avg_pool2d, torch.flatten)


def to_torch(sd):
    return {k: torch.tensor(v) if v.dtype == np.int64 else torch.tensor(v, dtype=torch.float64)
            for k, v in sd.items()}


def pair(et_cls, torch_cls, seed):
    torch.manual_seed(seed)
    tm = torch_cls().double()
    m = et_cls()
    m.load_state_dict(tm.state_dict())
    tm.load_state_dict(to_torch(m.state_dict()))
    return m, tm


def teacher_pair():
    teacher, tteacher = pair(EtNet, TorchNet, 1)
    # non-trivial running statistics, so eval form differs from batch statistics
    rng = np.random.default_rng(5)
    for k, v in teacher.state_dict().items():
        if k.endswith("running_mean"):
            v[...] = rng.standard_normal(v.shape).astype(np.float32) * 0.1
        elif k.endswith("running_var"):
            v[...] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
    tteacher.load_state_dict(to_torch(teacher.state_dict()))
    return teacher, tteacher


def distill_session(student, teacher, **kw):
    return et.TrainSession.from_module(
        student, inputs={"data": (N, 3, 16, 16)}, loss=nn.DistillLoss(T, ALPHA),
        labels={"label": ((N,), "int64")}, teacher=teacher,
        optimizer=optim.SGD(student.parameters(), lr=0.05, momentum=0.9), **kw)


def test_distillation_matches_torch_and_teacher_is_untouched(tmp_path):
    student, tstudent = pair(EtStudent, TorchStudent, 0)
    teacher, tteacher = teacher_pair()
    teacher.train()  # the session must still run it in eval form
    teacher_before = {k: v.copy() for k, v in teacher.state_dict().items()}
    sess = distill_session(student, teacher)
    assert teacher.training  # the module's own mode is restored after tracing

    topt = torch.optim.SGD(tstudent.parameters(), lr=0.05, momentum=0.9)
    tteacher.eval()
    rng = np.random.default_rng(0)
    sess.Train()
    for step in range(STEPS):
        x = rng.standard_normal((N, 3, 16, 16)).astype(np.float32)
        y = rng.integers(0, 10, N).astype(np.int64)
        loss = float(sess.RunGraph({"data": x, "label": y})["loss"])
        xt = torch.tensor(x, dtype=torch.float64)
        with torch.no_grad():
            tlogits = tteacher(xt)
        s = tstudent(xt)
        soft = TF.kl_div(TF.log_softmax(s / T, 1), TF.softmax(tlogits / T, 1),
                         reduction="batchmean")
        tl = ALPHA * T * T * soft + (1 - ALPHA) * TF.cross_entropy(s, torch.tensor(y))
        topt.zero_grad()
        tl.backward()
        topt.step()
        np.testing.assert_allclose(loss, tl.item(), rtol=1e-4, err_msg=f"step {step}")
    params = sess.get_parameters()
    for k, v in tstudent.state_dict().items():
        np.testing.assert_allclose(params[k], v.numpy(), rtol=1e-4, atol=1e-6, err_msg=k)

    # the teacher: constants in the program, bit-identical after training, not parameters
    g = sess.to_graph()
    consts = {t.name: t for t in g.tensors if t.name.startswith("teacher.")}
    assert consts and all(t.kind == ir.CONST for t in consts.values())
    for k, v in teacher_before.items():
        if k.endswith("num_batches_tracked"):
            continue
        assert np.array_equal(consts["teacher." + k].data, v), k
        assert np.array_equal(teacher.state_dict()[k], v), k
    assert not any(k.startswith("teacher.") for k in params)
    assert not any("teacher." in k for k in sess.get_gradients())
    assert not any("teacher." in t.name for t in g.tensors if t.kind in (ir.GRAD, ir.OPTSTATE))

    # eval program, inference-only save and ONNX export: the student alone
    ev = g.programs[ir.EVAL]
    assert not any(g.nodes[i].layer.startswith("teacher") for i in ev.nodes)
    assert any(g.nodes[i].layer.startswith("teacher") for i in g.programs[ir.TRAIN].nodes)
    sess.SaveToFile(tmp_path / "infer.etm", inference_only=True)
    gi = et.fileformat.load(tmp_path / "infer.etm")
    assert not any(t.name.startswith("teacher.") for t in gi.tensors)
    onnx = pytest.importorskip("onnx")
    sess.export_onnx(tmp_path / "student.onnx")
    model = onnx.load(str(tmp_path / "student.onnx"))
    assert not any(i.name.startswith("teacher.") for i in model.graph.initializer)
    assert not any(n.name.startswith("teacher") for n in model.graph.node)

    # the full file holds the teacher once and resumes identically
    sess.SaveToFile(tmp_path / "full.etm")
    again = et.TrainSession.load(tmp_path / "full.etm")
    x = rng.standard_normal((N, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, N).astype(np.int64)
    for s_ in (sess, again):
        s_.Train()
    a = sess.RunGraph({"data": x, "label": y})["loss"]
    b = again.RunGraph({"data": x, "label": y})["loss"]
    assert np.array_equal(a, b)


def test_teacher_argument_errors():
    student, _ = pair(EtStudent, TorchStudent, 0)
    teacher, _ = teacher_pair()
    with pytest.raises(TypeError, match="teacher must be"):
        distill_session(student, object())
    with pytest.raises(ValueError, match="another module"):
        distill_session(student, student)
    with pytest.raises(ValueError, match="needs a loss"):
        et.TrainSession.from_module(student, inputs={"data": (N, 3, 16, 16)}, teacher=teacher)
