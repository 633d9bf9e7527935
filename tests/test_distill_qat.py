"""Distill-QAT (MNN's distillTrainQuant): a float LeNet briefly trained on real MNIST teaches its
own QAT copy (``TrainSession.from_module(model, ..., quantize=QConfig(...), teacher=model,
loss=nn.DistillLoss(T, alpha))``, or the teacher rebuilt from the float .etm); the int8 file
of the student gives the QAT session's Eval() logits bit for bit and an accuracy close to the
teacher's (docs/int8.md, "Distill-QAT")."""
import time

import numpy as np
import pytest

import edgetrain as et
from edgetrain import ir, nn, optim, quant
from edgetrain.models import LeNet
from conftest import mnist_arrays

BATCH, FLOAT_STEPS, QAT_STEPS = 64, 300, 300
QC = quant.QConfig(8, 8, quantize_input=True, output_bits=8)


def _train(sess, steps, start):
    x, y = mnist_arrays(True)
    sess.Train()
    for i in range(start, start + steps):
        j = slice(i * BATCH, (i + 1) * BATCH)
        loss = float(sess.RunGraph({"x": x[j], "y": y[j]})["loss"])
    assert np.isfinite(loss)
    sess.Eval()


def _logits(sess, x):
    sess.Eval()
    return np.concatenate([sess.RunGraph({"x": x[i:i + 1000]})["output"]
                           for i in range(0, len(x), 1000)])


def _session(model, steps, **kw):
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    loss = nn.DistillLoss(20.0, 0.9) if "teacher" in kw else nn.CrossEntropyLoss()
    return et.TrainSession.from_module(
        model, inputs={"x": (None, 1, 28, 28)}, loss=loss, labels={"y": ((None,), "int64")},
        optimizer=opt, scheduler=sched, threads=2, seed=3, max_batch=1000, **kw)


@pytest.fixture(scope="module")
def float_lenet(tmp_path_factory):
    """A LeNet trained 300 steps in float, saved to an .etm; (path, its test logits)."""
    et.manual_seed(0)
    sess = _session(LeNet(), FLOAT_STEPS)
    _train(sess, FLOAT_STEPS, 0)
    path = tmp_path_factory.mktemp("distill_qat") / "float.etm"
    sess.SaveToFile(str(path))
    return path, _logits(sess, mnist_arrays(False)[0])


def _module_from(path):
    """The float model of an .etm as a module (the teacher's recipe)."""
    model = LeNet()
    model.load_state_dict(et.TrainSession.load(str(path)).get_parameters())
    return model


@pytest.mark.slow   # 600 MNIST steps and three 10,000-image evaluations: about 25 s
def test_distill_qat_int8_equals_eval_and_stays_close_to_the_teacher(float_lenet, tmp_path):
    path, teacher_logits = float_lenet
    xt, yt = mnist_arrays(False)
    teacher_acc = float(np.mean(teacher_logits.argmax(1) == yt))

    t0 = time.perf_counter()
    model = _module_from(path)
    sess = _session(model, QAT_STEPS, quantize=QC, teacher=model)
    g = sess.to_graph()
    consts = {t.name: t.data for t in g.tensors if t.name.startswith("teacher.")}
    fp = et.TrainSession.load(str(path)).get_parameters()
    for k in ("conv1.weight", "fc2.bias"):   # the teacher is the float model's snapshot
        assert np.array_equal(consts["teacher." + k], fp[k])
    assert "conv1.input_fake_quant.scale" in sess.get_parameters()   # the student is QAT
    _train(sess, QAT_STEPS, FLOAT_STEPS)      # the batches after the float model's
    assert not np.array_equal(sess.get_parameters()["conv1.weight"], fp["conv1.weight"])
    after = {t.name: t.data for t in sess.to_graph().tensors if t.name.startswith("teacher.")}
    assert all(np.array_equal(after[k], v) for k, v in consts.items())   # never updated

    want = _logits(sess, xt)
    int8 = tmp_path / "student_int8.etm"
    sess.SaveToFile(str(int8), inference_only=True, int8=True)
    gi = et.fileformat.load(str(int8))
    assert not any(t.name.startswith("teacher.") for t in gi.tensors)
    ops = [gi.nodes[n].op for n in gi.programs[ir.EVAL].nodes]
    assert ops[0] == "quantize" and "fake_quant" not in ops
    got = _logits(et.TrainSession.load(str(int8), threads=1), xt)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    acc = float(np.mean(got.argmax(1) == yt))
    print(f"\nteacher (float, {FLOAT_STEPS} steps) {teacher_acc:.4f}; distill-QAT "
          f"{QAT_STEPS} steps, int8 file {acc:.4f}; {time.perf_counter() - t0:.1f} s")
    assert acc >= teacher_acc - 0.01, (acc, teacher_acc)


def test_distill_qat_teacher_from_the_float_etm_and_errors(float_lenet):
    """A teacher rebuilt from the .etm (a separate module) is the same snapshot; a teacher that
    shares parameters with the student without being the model itself is refused."""
    path, _ = float_lenet
    student = _module_from(path)
    sess = _session(student, 10, quantize=QC, teacher=_module_from(path))
    fp = et.TrainSession.load(str(path)).get_parameters()
    consts = {t.name: t.data for t in sess.to_graph().tensors if t.name.startswith("teacher.")}
    assert all(np.array_equal(consts["teacher." + k], v) for k, v in fp.items()
               if "teacher." + k in consts)
    # a module holding the student's own Parameter objects (here its QAT copy) cannot teach it
    with pytest.raises(ValueError, match="shares"):
        _session(student, 10, quantize=QC, teacher=quant.prepare_qat(student, QC))
