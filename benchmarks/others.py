"""Optional baselines: the same workloads on MNN and on ONNX Runtime's on-device training API.

`mnn_step` / `ort_step` mirror `workloads.torch_step`: they return `(step, handle)` where each
`step()` call runs one real training step (forward, backward, optimizer update) on the fixed
data of `workloads._data`, or one forward pass when `train=False`.

Optimizer: every framework's step workload runs plain SGD, lr 0.01, no momentum, no weight
decay (`workloads.STEP_SGD`): ONNX Runtime's training artifacts only offer AdamW and plain SGD
(`OptimType.SGD` builds an `SGDOptimizerV2` node, `w -= lr * g`), and the C++ training API only
runs those optimizer graphs, so plain SGD is the one update all four can do identically.
(Until 2026-12-05 the others ran SGD with momentum 0.9 and weight decay 5e-4 while ORT ran plain
SGD: ORT did less work per step. See "Fairness" in the ONNX Runtime part below.)

MNN notes: `mnn_step` uses MNN's Python expression API, which builds the graph again on every
call (lazy evaluation, needed for `Optimizer.step` to find the gradients), so its step time
includes that Python-side graph construction -- that is how MNN trains from Python. MNN's
dropout draws the same mask on every call (its random op has a fixed seed); the work is the same.

Fairness of the PyTorch and MNN columns (checked 2026-12-05 with the ORT questions below): same
optimizer (plain SGD), same warm-up (the benchmark's untimed step / rounds), same thread count.
PyTorch: `torch.set_num_threads(threads)`, tensors made from the numpy batch once outside the
timed region (`torch.from_numpy`, no copy); the timed step is `zero_grad(set_to_none=True)`,
forward, loss, backward, `opt.step()`. Its default allocator maps fresh pages for large
tensors on every step (560-2,000 minor page faults per LeNet b64 step), and at 2 threads its
OpenMP workers spin while they wait, which a shared host punishes (a sequential 2-thread LeNet
step took 555 ms on 2026-12-05 with three other jobs running): both are PyTorch's defaults and
are counted. MNN: `set_global_executor_config(0, 0, threads)` (CPU, normal precision); the data
and one-hot labels are constants made once outside; the timed step builds the graph in Python
(see the MNN notes above), computes it and updates (`Optimizer.step`): 0 page faults per step.

The ORT training artifacts (training / eval / optimizer graphs and the checkpoint) are made from
an ONNX export of the same torch models `workloads.torch_step` builds (same seed, so the same
initial weights). The export runs in a child process (`python others.py export ...`), so the
peak-RSS probe's process never imports torch (see `ort_lean_import`). ORT's eval benchmark runs an
`InferenceSession` on an eval-mode export (forward only, like `torch.no_grad`).
"""
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import workloads

HERE = Path(__file__).resolve().parent
ORT_LR = workloads.STEP_SGD["lr"]


class Unsupported(Exception):
    """The framework is installed but cannot run this workload; the message says why."""


def _shape(model_name):
    return (1, 28, 28) if model_name == "lenet" else (3, 32, 32)


# --------------------------------------------------------------------------------------- MNN

def mnn_available():
    try:
        import MNN  # noqa: F401
        return True
    except Exception:
        return False


def _mnn_models():
    from MNN import expr as F
    from MNN import nn

    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.conv(1, 20, [5, 5])
            self.conv2 = nn.conv(20, 50, [5, 5])
            self.fc1 = nn.linear(800, 500)
            self.fc2 = nn.linear(500, 10)
            self.dropout = nn.dropout(0.5)

        def forward(self, x):
            x = F.convert(x, F.NC4HW4)  # MNN's convolutions and pools work in NC4HW4
            x = F.max_pool(F.relu(self.conv1(x)), [2, 2], [2, 2])
            x = F.max_pool(F.relu(self.conv2(x)), [2, 2], [2, 2])
            x = F.reshape(F.convert(x, F.NCHW), [0, -1])
            x = self.dropout(F.relu(self.fc1(x)))
            return self.fc2(x)

    def divisible(v, d=8):
        new = max(d, int(v + d / 2) // d * d)
        return new + d if new < 0.9 * v else new

    class ConvBN(nn.Module):
        """conv (no bias) + batch norm [+ relu6]; explicit symmetric padding like torch's."""

        def __init__(self, i, o, k=1, s=1, depthwise=False, act=True):
            super().__init__()
            p = (k - 1) // 2
            self.conv = nn.conv(i, o, [k, k], stride=[s, s], padding=[p, p], depthwise=depthwise,
                                bias=False, padding_mode=F.CAFFE)
            self.bn = nn.batch_norm(o)
            self.act = act

        def forward(self, x):
            x = self.bn(self.conv(x))
            return F.relu6(x) if self.act else x

    class InvertedResidual(nn.Module):
        def __init__(self, i, o, s, t):
            super().__init__()
            h = int(round(i * t))
            self.expand = ConvBN(i, h, 1) if t != 1 else None
            self.dw = ConvBN(h, h, 3, s, depthwise=True)
            self.project = ConvBN(h, o, 1, act=False)
            self.res = s == 1 and i == o

        def forward(self, x):
            y = self.expand.forward(x) if self.expand is not None else x
            y = self.project.forward(self.dw.forward(y))
            return x + y if self.res else y

    class MobileNetV2(nn.Module):
        """Same layers as `workloads._torch_mobilenet_v2` (width 1.0)."""

        def __init__(self, num_classes=10):
            super().__init__()
            cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                   (6, 160, 3, 2), (6, 320, 1, 1)]
            c = divisible(32)
            self.stem = ConvBN(3, c, 3, 2)
            blocks = []
            for t, ch, n, s in cfg:
                o = divisible(ch)
                for i in range(n):
                    blocks.append(InvertedResidual(c, o, s if i == 0 else 1, t))
                    c = o
            # Module.__setattr__ registers submodules and parameters, so set them one by one.
            self.nblocks = len(blocks)
            for i, b in enumerate(blocks):
                setattr(self, f"block{i}", b)
            self.head = ConvBN(c, 1280, 1)
            self.dropout = nn.dropout(0.2)
            self.fc = nn.linear(1280, num_classes)

        def forward(self, x):
            x = self.stem.forward(F.convert(x, F.NC4HW4))
            for i in range(self.nblocks):
                x = getattr(self, f"block{i}").forward(x)
            x = self.head.forward(x)
            x = F.reduce_mean(F.convert(x, F.NCHW), [2, 3])
            return self.fc(self.dropout(x))

    return LeNet, MobileNetV2


def mnn_step(model_name, batch, threads, train=True):
    import numpy as np
    from MNN import expr as F
    from MNN import nn, optim

    # Executor config: CPU backend, normal (fp32 on x86) precision, `threads` threads.
    F.set_global_executor_config(0, 0, threads)
    # Lazy evaluation keeps the expression graph so `Optimizer.step` can differentiate it
    # (eager mode computes each op at once and `step` finds no gradient path: it returns False).
    F.lazy_eval(True)
    LeNet, MobileNetV2 = _mnn_models()
    model = LeNet() if model_name == "lenet" else MobileNetV2(10)
    opt_args = dict(learning_rate=workloads.STEP_SGD["lr"],
                    momentum=workloads.STEP_SGD["momentum"],
                    weight_decay=workloads.STEP_SGD["weight_decay"])
    shape = _shape(model_name)
    x, y = workloads._data(batch, shape)
    data = F.const(x, list(x.shape), F.NCHW)
    onehot = F.const(np.eye(10, dtype=np.float32)[y], [batch, 10], F.NCHW)
    if train:
        model.train(True)
        opt = optim.SGD(model, regularization_method=optim.Regularization_Method.L2, **opt_args)

        def step():
            # MNN's cross_entropy takes probabilities and one-hot targets.
            loss = nn.loss.cross_entropy(F.softmax(model.forward(data), 1), onehot)
            if not opt.step(loss):
                raise RuntimeError("MNN optimizer step found no trainable parameters")
            return loss
        handle = (model, opt)
    else:
        model.train(False)

        def step():
            out = model.forward(data)
            # read() computes the graph and maps the result without owning it: copy while `out`
            # is alive (reading a temporary gives freed memory).
            return np.array(out.read())
        handle = model
    return step, handle


# ------------------------------------------------------------------------------ ONNX Runtime
#
# Fairness of the ORT-training comparison (issue 15), checked on 2026-12-05 on the 2-vCPU Xeon
# (shared, LeNet b64, 1 thread, onnxruntime-training 1.19.2). An outside measurement had
# edgetrain 8.9-9.2 ms vs ORT 17.1-18.4 ms (1.95x) where the README said 11.77 vs 27.97 (2.38x).
# - Optimizer: ORT ran plain SGD while edgetrain / torch / MNN ran SGD + momentum 0.9 + weight
#   decay 5e-4 (LeNet) or + momentum 0.9 (MobileNetV2): ORT had *less* work per step (its
#   SGDOptimizerV2 node: 0.3-0.45 ms of a ~24 ms step). Now all four run plain SGD lr 0.01.
# - Warm-up: the same for every framework (test_train_step: one untimed step, then one warm-up
#   round; test_paired_rounds: two untimed rounds). ORT's first step carries its lazy set-up
#   (28 ms vs 23 ms afterwards), so it is outside the timed region, as it was before.
# - Threads: intra_op_num_threads=1, inter_op_num_threads=1, ORT_SEQUENTIAL, and now
#   `session.intra_op.allow_spinning` / `session.inter_op.allow_spinning` set explicitly to
#   ORT_SPIN ("1", ORT's default: workers spin, then block; edgetrain's pool spins 20 us, then
#   sleeps). At 1 thread neither has a worker thread, so spinning changes nothing there (ORT
#   S8S8 LeNet eval, interleaved: 2.53 ms with "0", 2.56 ms with "1"). ORT
#   left at its default thread count (intra_op_num_threads=0: one per core, 2 here) gave
#   1.95-2.15x in the same pairing, and its spinning workers doubled the interleaved edgetrain
#   step (11.3 -> 23-36 ms); that, or a quieter host, may explain the outside 1.95x (we could
#   not reproduce it at 1 thread: 2.14-2.24x in the same-run ratios here).
# - Inside the timed region: `Module(x, y)` (numpy arrays wrapped as OrtValues without a copy;
#   forward, backward, the loss copied out), `Optimizer.step()` and `lazy_reset_grad()` (10 us):
#   the step and nothing else. No data conversion, no lazy initialisation, no per-step
#   allocation: 0 minor page faults per step for ORT (its arena), 0.1 for edgetrain, 0 for MNN,
#   560-2,000 for PyTorch (2-8 MB of fresh pages per step: glibc mmap's large tensors; that is
#   PyTorch's default allocator, so it is counted). edgetrain's RunGraph copies x into its arena
#   inside the timed region.
# - Neighbours: in the four-framework rounds ORT measured 2.24x; paired with edgetrain alone
#   2.14-2.16x (the other frameworks' steps evict more of ORT's working set); CPU time of 20
#   back-to-back steps, all on plain SGD: 23.4 vs 9.5 ms (2.47x). Run-to-run spread of the
#   interleaved ratio on the loaded host: 1.9-2.3x.
# - Where ORT's step goes (its profiler): ConvGrad of conv2 8.7 ms, ReluGrad after conv1 4.8,
#   Conv conv2 4.5, the first MaxPool 3.6 (training mode: it also writes the argmax indices),
#   MaxPoolGrad 2.0, ... -- kernel time, not the harness.
# The README's ORT column is the ratio from these interleaved rounds, not absolute times.
ORT_SPIN = "1"


def ort_available():
    try:
        import importlib.util
        return (importlib.util.find_spec("onnxruntime") is not None
                and importlib.util.find_spec("onnxruntime.training") is not None)
    except Exception:
        return False


def ort_export_available():
    """generate_artifacts needs onnx, and the export needs torch."""
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "torch"))


def ort_lean_import():
    """Import ONNX Runtime's training API without torch (for the peak-RSS probe).

    The onnxruntime-training wheel imports torch at `import onnxruntime` (a build check for
    ORTModule) and again in `onnxruntime.training/__init__` (ORTModule, the torch optimizers,
    the artifact tools). A device build of ORT training has none of these, and the on-device
    API (`onnxruntime.training.api`) uses only the native module, so we hide torch while
    `onnxruntime` loads and register `onnxruntime.training` as a bare package.
    """
    if "onnxruntime.training" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
        import onnxruntime
        pkg = types.ModuleType("onnxruntime.training")
        pkg.__path__ = [os.path.join(os.path.dirname(onnxruntime.__file__), "training")]
        sys.modules["onnxruntime.training"] = pkg
        onnxruntime.training = pkg
    finally:
        del sys.modules["torch"]


def _ort_export(model_name, batch, out_dir):
    """(Child process.) Export the torch model and generate the ORT training artifacts."""
    import onnx
    import torch
    from onnxruntime.training import artifacts

    out = Path(out_dir)
    _, model = workloads.torch_step(model_name, batch, 1)
    x = torch.from_numpy(workloads._data(batch, _shape(model_name))[0])
    kw = dict(input_names=["input"], output_names=["output"], export_params=True,
              do_constant_folding=False, opset_version=17, dynamo=False)
    # Training graph: export in training mode so dropout and batch norm are training ops.
    model.train()
    torch.onnx.export(model, (x,), str(out / "base.onnx"),
                      training=torch.onnx.TrainingMode.TRAINING, **kw)
    # Forward-only graph for the eval benchmark (dropout removed, batch norm in inference form).
    model.eval()
    torch.onnx.export(model, (x,), str(out / "inference.onnx"),
                      training=torch.onnx.TrainingMode.EVAL, **kw)
    trainable = [n for n, _ in model.named_parameters()]
    base = onnx.load(str(out / "base.onnx"))
    frozen = [i.name for i in base.graph.initializer if i.name not in trainable]
    artifacts.generate_artifacts(
        base, requires_grad=trainable, frozen_params=frozen,
        loss=artifacts.LossType.CrossEntropyLoss,
        optimizer=artifacts.OptimType.SGD,  # plain SGD, as workloads.STEP_SGD for the others
        artifact_directory=str(out))
    # onnxblock builds the optimizer graph from scratch with the installed onnx's newest IR
    # version (14 for onnx 1.23), which ORT 1.19 refuses to load ("max supported IR version:
    # 10"). The graph uses nothing newer than the exported model, so give it the model's IR.
    opt_path = out / "optimizer_model.onnx"
    opt_model = onnx.load(str(opt_path))
    if opt_model.ir_version > base.ir_version:
        opt_model.ir_version = base.ir_version
        onnx.save(opt_model, str(opt_path))


def _ort_artifacts(model_name, batch, out_dir):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    res = subprocess.run([sys.executable, str(HERE / "others.py"), "export", model_name,
                          str(batch), str(out_dir)], capture_output=True, text=True, cwd=HERE,
                         env=env)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
        raise Unsupported(f"ONNX export / generate_artifacts failed for {model_name}: "
                          + " | ".join(tail))
    return Path(out_dir)


class Live:
    """A framework's live objects behind a step function. onnxruntime's idle worker threads
    keep spinning while its session exists and would slow whatever runs next, so benchmarks
    call close() when they are done with a step (the step cannot run after that)."""

    def __init__(self, **objs):
        self.__dict__.update(objs)

    def close(self):
        self.__dict__.clear()


def ort_step(model_name, batch, threads, train=True):
    import numpy as np

    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # errors only: no per-session graph-merge warnings
    x, y = workloads._data(batch, _shape(model_name))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", ORT_SPIN)
    so.add_session_config_entry("session.inter_op.allow_spinning", ORT_SPIN)
    with tempfile.TemporaryDirectory(prefix="edgetrain-ort-") as tmp:
        d = _ort_artifacts(model_name, batch, tmp)
        if not train:
            # Forward only: an inference session on the eval-mode export, like torch.no_grad.
            live = Live(sess=ort.InferenceSession(str(d / "inference.onnx"), sess_options=so,
                                                  providers=["CPUExecutionProvider"]))
            feeds = {"input": x}
            return (lambda: live.sess.run(None, feeds)), live
        from onnxruntime.training.api import CheckpointState, Module, Optimizer

        # Everything is read into memory here; the temp dir can go afterwards.
        state = CheckpointState.load_checkpoint(str(d / "checkpoint"))
        # No eval model: for MobileNetV2, ORT 1.19 cannot load the eval graph it generates
        # (BatchNormalization keeps its training-mode outputs), and eval is benchmarked with
        # an inference session on the eval-mode export instead (above).
        module = Module(str(d / "training_model.onnx"), state, None, device="cpu",
                        session_options=so)
        opt = Optimizer(str(d / "optimizer_model.onnx"), module)
    opt.set_learning_rate(ORT_LR)
    module.train()
    live = Live(module=module, opt=opt, state=state)
    del module, opt, state

    def step():
        loss = live.module(x, y)
        live.opt.step()
        live.module.lazy_reset_grad()
        return loss
    return step, live


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "export":
        _ort_export(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit("usage: python others.py export lenet|mobilenetv2 BATCH OUT_DIR")
