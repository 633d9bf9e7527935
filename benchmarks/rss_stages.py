"""Where a training process's peak RSS comes from, stage by stage (issue 15).

Usage: python rss_stages.py [lenet|mobilenetv2] [BATCH] [THREADS] [STEPS]

Prints, for each stage of ``workloads.edgetrain_step`` (imports, model, TrainSession.from_module,
the model dropped as that function returns, the first steps), the resident set after it and
the peak inside it (VmHWM reset before each stage through /proc/self/clear_refs), then the
session's planned blocks (``memory_info``).
Linux only; run it in a fresh process (rss_probe.py gives the one number the README quotes).
"""
import sys

MiB = 2 ** 20


def _status():
    with open("/proc/self/status") as f:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f
                if line.startswith(("VmRSS", "VmHWM"))}


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS


def main(model_name="mobilenetv2", batch=32, threads=1, steps=3):
    rows, overall = [], 0

    def stage(what):
        nonlocal overall
        s = _status()
        overall = max(overall, s["VmHWM"])
        rows.append((what, s["VmRSS"], s["VmHWM"]))
        _reset_peak()

    _reset_peak()
    import numpy as np
    import edgetrain as et
    from edgetrain import nn, optim
    from edgetrain.models import LeNet, MobileNetV2
    import workloads
    stage("import numpy, edgetrain")
    np.random.default_rng(0)
    stage("numpy.random (first use)")
    et.manual_seed(0)
    if model_name == "lenet":
        model, shape = LeNet(), (1, 28, 28)
    else:
        model, shape = MobileNetV2(num_classes=10, input_size=32), (3, 32, 32)
    stage("model (Python parameters)")
    opt = optim.SGD(model.parameters(), **workloads.STEP_SGD)
    sess = et.TrainSession.from_module(
        model, inputs={"data": (batch,) + shape}, loss=nn.CrossEntropyLoss(),
        labels={"label": ((batch,), "int64")}, optimizer=opt, threads=threads)
    stage("TrainSession.from_module")
    params = sum(p.data.nbytes for p in model.parameters())
    del model, opt   # as when workloads.edgetrain_step returns (the probe's case)
    stage("model dropped")
    x, y = workloads._data(batch, shape)
    sess.Train()
    for i in range(steps):
        sess.RunGraph({"data": x, "label": y})
        stage(f"train step {i}")
    print(f"{model_name} batch {batch}, {threads} thread(s)")
    print(f"{'stage':28s} {'RSS after':>10s} {'peak in it':>11s}")
    for what, rss, hwm in rows:
        print(f"{what:28s} {rss / MiB:8.1f} MiB {hwm / MiB:7.1f} MiB")
    print(f"{'peak of the process':28s} {overall / MiB:19.1f} MiB")
    print("session blocks (MiB): " + ", ".join(
        f"{k} {v / MiB:.2f}" for k, v in sess.memory_info().items() if v))
    print(f"the model's own parameters (Python): {params / MiB:.2f} MiB")


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0] if a else "mobilenetv2", int(a[1]) if len(a) > 1 else 32,
         int(a[2]) if len(a) > 2 else 1, int(a[3]) if len(a) > 3 else 3)
