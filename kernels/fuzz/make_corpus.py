"""Writes the fuzz seed corpus: small real .etm files from tiny models (kernels/fuzz/corpus/).

Each file covers other ops, optimizers, schedules or file kinds; all are small so that the
fuzzer's mutations stay fast. Run from the repository root with the project's Python:
    .venv/bin/python kernels/fuzz/make_corpus.py
"""
import os
import sys

import numpy as np

import edgetrain as et
from edgetrain import nn, optim
from edgetrain.optim import lr_scheduler

F = nn.functional
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


class ConvNet(nn.Module):
    def __init__(self, bn=True, depthwise=False, pool="max"):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4) if depthwise else None
        self.bn = nn.BatchNorm2d(4) if bn else None
        self.pool = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        x = self.conv(x)
        if self.dw is not None:
            x = F.relu6(self.dw(x))
        if self.bn is not None:
            x = self.bn(x)
        x = self.pool(F.relu(x))
        return self.fc(self.drop(F.flatten(x, 1)))


class MLP(nn.Module):
    def __init__(self, act=nn.Tanh):
        super().__init__()
        self.fc1 = nn.Linear(6, 5)
        self.act = act()
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def session(model, shape, batch, loss=None, opt=None, sched=None, label="int64",
            memory_budget=None):
    lab = ((batch,), "int64") if label == "int64" else ((batch, 3), "float32")
    o = opt(model.parameters()) if opt else None
    return et.TrainSession.from_module(
        model, inputs={"data": (batch, *shape)}, loss=loss or nn.CrossEntropyLoss(),
        labels={"label": lab} if o or loss else None, optimizer=o,
        scheduler=sched(o) if sched else None, threads=1, memory_budget=memory_budget)


def step(sess, batch, shape, label="int64", n=2):
    rng = np.random.default_rng(0)
    sess.Train()
    for _ in range(n):
        y = (rng.integers(0, 3, batch) if label == "int64"
             else rng.standard_normal((batch, 3)).astype(np.float32))
        sess.RunGraph({"data": rng.standard_normal((batch, *shape)).astype(np.float32),
                       "label": y})


def recompute(img):
    """A training file whose backward recomputes forward segments (memory_budget): copies of
    conv / batchnorm_train (without running statistics) / act nodes in the grad program."""
    full = session(ConvNet(depthwise=True), img, 4, opt=lambda p: optim.SGD(p, lr=0.1))
    budget = full.memory_info()["activations"] - 1  # just below: at least one recompute
    sess = session(ConvNet(depthwise=True), img, 4, opt=lambda p: optim.SGD(p, lr=0.1),
                   memory_budget=budget)
    assert sess.memory_info().get("recomputed_tensors"), "the budget recomputes nothing"
    step(sess, 4, img)
    sess.SaveToFile(os.path.join(OUT, "conv_recompute.etm"))


def qat_int8(img):
    """A QAT checkpoint (integer eval program) and its int8 inference file (ops 86-92)."""
    from edgetrain import quant

    model = ConvNet(bn=False)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (2, *img)}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((2,), "int64")}, optimizer=optim.SGD(model.parameters(), lr=0.1),
        quantize=quant.QConfig(quantize_input=True), threads=1)
    step(sess, 2, img)
    sess.SaveToFile(os.path.join(OUT, "qat_conv.etm"))
    sess.SaveToFile(os.path.join(OUT, "qat_conv_int8.etm"), inference_only=True, int8=True)


def int8_mbv2_ops():
    """An int8 inference graph of MobileNetV2's int8 ops (depthwise qconv2d, qclamp, qadd,
    qglobal_avgpool) with stored quantization parameters."""
    from edgetrain import fileformat, ir
    from edgetrain import ops as O

    g = ir.Graph()
    c = lambda a, dt=ir.F32: g.add_tensor("", dt, ir.CONST, a.shape, data=a).index
    f1 = lambda v: c(np.array([v], np.float32))
    emit = lambda op, ins, **a: O.emit(g, op, ins, layer="blk", **a)[0]
    x = g.add_tensor("data", ir.F32, ir.INPUT, (1, 2, 4, 4)).index
    s, zp = f1(0.05), f1(128.0)
    q = emit("quantize", [x, s, zp], qmin=0, qmax=255)
    w = np.array([[[[1, -2, 3], [4, 5, -6], [7, -8, 9]]], [[[-1, 2, 0], [3, 0, -4], [0, 5, 1]]]], np.int8)
    y = emit("qconv2d", [q, c(w, ir.I8), c(np.array([10, -20], np.int32), ir.I32),
                         c(np.array([0.01, 0.02], np.float32)), zp, zp],
             stride_h=1, stride_w=1, pad_t=1, pad_l=1, pad_b=1, pad_r=1, dil_h=1, dil_w=1, groups=2,
             qmin=0, qmax=255)
    y = emit("qclamp", [y, s, zp], qmin=0, qmax=255, lo=0.0, hi=6.0)
    y = emit("qadd", [y, s, zp, q, s, zp, f1(0.1), f1(100.0)], qmin=0, qmax=255)
    y = emit("qglobal_avgpool", [y, f1(100.0)], qmin=0, qmax=255)
    out = emit("dequantize", [y, f1(0.1), f1(100.0)])
    g.tensors[out].is_output = True
    g.programs[ir.EVAL] = ir.Program(ir.EVAL, list(range(len(g.nodes))), [x], {"output": out})
    g.state.max_batch = 1
    with open(os.path.join(OUT, "int8_mbv2_ops.etm"), "wb") as f:
        f.write(fileformat.dumps(g, inference_only=True))


def main():
    os.makedirs(OUT, exist_ok=True)
    et.manual_seed(0)
    img = (1, 6, 6)
    cases = {
        "conv_bn_sgd": (ConvNet(), img, dict(opt=lambda p: optim.SGD(p, lr=0.1, momentum=0.9))),
        "conv_dw_adam_cosine": (ConvNet(depthwise=True, pool="avg"), img, dict(
            opt=lambda p: optim.Adam(p, lr=1e-3),
            sched=lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=10))),
        "mlp_adamw_step": (MLP(), (6,), dict(
            opt=lambda p: optim.AdamW(p, lr=1e-2),
            sched=lambda o: lr_scheduler.StepLR(o, step_size=2, gamma=0.5))),
        "mlp_sgd_inv_warmup": (MLP(nn.Sigmoid), (6,), dict(
            opt=lambda p: optim.SGD(p, lr=0.05),
            sched=lambda o: lr_scheduler.LinearWarmup(o, 3, lr_scheduler.InvLR(o, 0.1, 0.75)))),
        "mlp_mse_multistep": (MLP(nn.ReLU), (6,), dict(
            loss=nn.MSELoss(), label="float32", opt=lambda p: optim.SGD(p, lr=0.01),
            sched=lambda o: lr_scheduler.MultiStepLR(o, [1, 3], 0.5))),
    }
    for name, (model, shape, kw) in cases.items():
        label = kw.pop("label", "int64")
        sess = session(model, shape, 2, label=label, **kw)
        step(sess, 2, shape, label)
        sess.SaveToFile(os.path.join(OUT, name + ".etm"))
        if name == "conv_bn_sgd":
            sess.SaveToFile(os.path.join(OUT, name + "_inference.etm"), inference_only=True)
    recompute(img)
    qat_int8(img)
    int8_mbv2_ops()
    eval_only = et.TrainSession.from_module(ConvNet(bn=False), inputs={"data": (1, *img)}, threads=1)
    eval_only.SaveToFile(os.path.join(OUT, "conv_eval_only.etm"))
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"{len(os.listdir(OUT))} files, {total} bytes in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
