"""Issue 14's accuracy protocol, MobileNetV2 part (28x28 MNIST; MNN's flow as in
test_qat_accuracy.py, shortened to fit the suite).

1. MobileNetV2 (width 0.5, 1 input channel, 10 classes) trained fp32 for PRE steps (one epoch)
   of batch 64 on real MNIST (SGD lr 0.05, momentum 0.9, weight decay 4e-5, cosine annealing), 2 threads,
   fixed seeds.
2. Control: that model trained fp32 for STEPS more steps (its own cosine schedule).
3. W8A8 and W4A8: the same fp32 weights in a QAT session (``QConfig(W, 8, quantize_input=True,
   output_bits=8)``: every Conv+BatchNorm pair folded, depthwise convolutions, ReLU6, residual
   adds and the classifier quantized) trained STEPS steps with the control's optimizer,
   schedule and batch order.

   From step STEPS/2 on, the QAT runs freeze their BatchNorm statistics and their observers
   (PyTorch's QAT recipe: ``freeze_bn_stats`` and ``disable_observer`` late in fine-tuning).
The accuracy is the real int8 model's (the int8 file on the 10,000 test images, which runs
every layer on the integer kernels and equals the session's ``Eval()`` bit for bit — checked
for W8A8). Done when W8A8 >= control - 0.3 points, W4A8 >= control - 1.0.

Measured at issue 14 (without the freezing; 2 threads, 3 min): fp32 after one epoch 96.12 %,
control (+600 steps) 96.80 %; W8A8 int8 file 97.01 % (+0.21), W4A8 97.12 % (+0.32); 45 s per
600-step QAT run. Issue 15's depthwise kernels changed the fp32 bits, and with them the
pretrained model: 96.93 % after one epoch, control 97.29 %. Without the freezing W8A8 then
lost 0.37 points and W4A8 1.35 (2.5-2.9 on two other batch orders), while the same QAT code
from the old fp32 model reached 96.63 % W4A8 (old code: 96.85 %): 4-bit QAT from a given
fp32 model varies by points, the code did not regress. With the freezing: W8A8 97.14 %
(-0.15), W4A8 96.39 % (-0.90).
"""
import time

import numpy as np
import pytest

import edgetrain as et
from edgetrain import nn, optim, quant
from edgetrain.models import MobileNetV2
from conftest import mnist_arrays

BATCH, LR, MOMENTUM, WD, WIDTH = 64, 0.05, 0.9, 4e-5, 0.5
PRE, STEPS = 937, 600
FREEZE = STEPS // 2   # QAT: BatchNorm statistics and observers frozen from here (see above)
pytestmark = pytest.mark.slow

CONFIGS = {(8, 8): 0.3, (4, 8): 1.0}   # (W, A): allowed loss, points


def _session(steps, qconfig=None):
    et.manual_seed(0)
    model = MobileNetV2(num_classes=10, in_channels=1, width_mult=WIDTH, input_size=28)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return et.TrainSession.from_module(
        model, inputs={"x": (None, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
        labels={"y": ((None,), "int64")}, optimizer=opt, scheduler=sched, quantize=qconfig,
        threads=2, seed=7, max_batch=1000)


def _train(sess, steps, seed):
    x, y = mnist_arrays(True)
    order = np.random.default_rng(seed).permutation(len(x))
    sess.Train()
    for i in range(steps):
        j = order[i * BATCH:(i + 1) * BATCH]
        sess.RunGraph({"x": x[j], "y": y[j]})
    sess.Eval()


def _accuracy(sess):
    x, y = mnist_arrays(False)
    return float((sess.predict(x, batch_size=500).argmax(1) == y).mean())


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    d = tmp_path_factory.mktemp("qatacc_mnv2")
    t0 = time.time()
    fp = _session(PRE)
    _train(fp, PRE, seed=1)
    fp.SaveToFile(d / "fp32.etm")
    fp32 = et.TrainSession.load(d / "fp32.etm").get_parameters()
    res = {"fp32": _accuracy(fp)}
    control = _session(STEPS)
    control.set_parameters(fp32, strict=True)
    _train(control, STEPS, seed=2)
    res["control"] = _accuracy(control)
    for (wb, ab) in CONFIGS:
        t = time.time()
        sess = _session(STEPS, quant.QConfig(weight_bits=wb, act_bits=ab, quantize_input=True,
                                             output_bits=8, freeze_bn_step=FREEZE,
                                             observe_until_step=FREEZE))
        sess.set_parameters(fp32)
        _train(sess, STEPS, seed=2)
        path = d / f"w{wb}a{ab}_int8.etm"
        sess.SaveToFile(path, inference_only=True, int8=True)
        res[(wb, ab)] = (_accuracy(et.TrainSession.load(path, threads=2)), sess, path,
                         time.time() - t)
    res["seconds"] = time.time() - t0
    return res


def test_int8_file_is_the_qat_session_eval(protocol):
    _, sess, path, _ = protocol[(8, 8)]
    x, _ = mnist_arrays(False)
    want = sess.predict(x[:2000], batch_size=500)
    got = et.TrainSession.load(path, threads=2).predict(x[:2000], batch_size=500)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("wa", list(CONFIGS), ids=[f"W{w}A{a}" for w, a in CONFIGS])
def test_qat_accuracy_against_control(protocol, wa):
    acc, ctrl = protocol[wa][0], protocol["control"]
    assert acc >= ctrl - CONFIGS[wa] / 100, \
        f"W{wa[0]}A{wa[1]} int8 {acc:.4f} < control {ctrl:.4f} - {CONFIGS[wa]} points"


def test_print_table(protocol):
    ctrl = protocol["control"]
    print(f"\nMobileNetV2 x{WIDTH}, MNIST test (10,000): fp32 after {PRE} steps "
          f"{protocol['fp32']:.4f}, control (fp32, +{STEPS}) {ctrl:.4f}; "
          f"{protocol['seconds']:.0f} s")
    print(f"{'config':8} {'int8 acc':>9} {'control':>8} {'delta':>7} {'allowed':>8} {'s':>5}")
    for (w, a), allowed in CONFIGS.items():
        acc, secs = protocol[(w, a)][0], protocol[(w, a)][3]
        print(f"W{w}A{a:<6} {acc:9.4f} {ctrl:8.4f} {100 * (acc - ctrl):+7.2f} {-allowed:+8.2f} "
              f"{secs:5.0f}")
    # MobileNetV2's stride-2 stages shrink 28x28 to 1x1 by the fifth: ~96-97 % in this budget
    assert ctrl >= 0.96 and protocol["fp32"] >= 0.95
