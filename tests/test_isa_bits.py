"""Training and evaluation are bit-identical across instruction sets: one LeNet and one
MobileNetV2 step under EDGETRAIN_ISA=ref (the scalar kernels) and under every SIMD level this
CPU runs end with the same bytes in the loss, every gradient, every parameter and the eval
output. The ISA is chosen when the runtime loads, so each run is its own process."""
import os
import subprocess
import sys

import numpy as np
import pytest

from edgetrain import _native

CHILD = r"""
import sys
import numpy as np
import edgetrain as et
from edgetrain import _native, nn, optim
from edgetrain.models import LeNet, MobileNetV2

name, isa, out = sys.argv[1:4]
assert _native.isa() == isa, (_native.isa(), isa)
et.manual_seed(0)
if name == "lenet":
    model, shape = LeNet(), (8, 1, 28, 28)
else:
    model, shape = MobileNetV2(num_classes=10, width_mult=0.5, input_size=32), (4, 3, 32, 32)
sess = et.TrainSession.from_module(
    model, inputs={"data": shape}, loss=nn.CrossEntropyLoss(),
    labels={"label": ((shape[0],), "int64")},
    optimizer=optim.SGD(model.parameters(), lr=0.01, momentum=0.9), threads=1, seed=7)
rng = np.random.default_rng(0)
x = rng.standard_normal(shape).astype(np.float32)
y = rng.integers(0, 10, size=shape[0]).astype(np.int64)
sess.Train()
res = {"loss": sess.RunGraph({"data": x, "label": y})["loss"]}
res.update({"grad:" + k: v for k, v in sess.get_gradients().items()})
res.update({"param:" + k: v for k, v in sess.get_parameters().items()})
sess.Eval()
res["eval"] = sess.RunGraph({"data": x})["output"]
np.savez(out, **res)
"""


def _isas():
    """ref and the SIMD levels this CPU runs (the dot-product levels add int8 rows only)."""
    before, ok = _native.isa(), []
    try:
        for name in ("ref", "avx2", "avx512", "neon"):
            try:
                _native.set_isa(name)
            except Exception:
                continue
            ok.append(name)
    finally:
        _native.set_isa(before)
    return ok


def _run(name, isa, tmp_path):
    out = tmp_path / f"{name}_{isa}.npz"
    env = dict(os.environ, EDGETRAIN_ISA=isa)
    subprocess.run([sys.executable, "-c", CHILD, name, isa, str(out)], env=env, check=True,
                   capture_output=True, text=True)
    with np.load(out) as f:
        return {k: f[k].tobytes() for k in f.files}


@pytest.mark.parametrize("name", ["lenet", "mobilenetv2"])
def test_step_bits_do_not_depend_on_isa(name, tmp_path):
    isas = _isas()
    if len(isas) < 2:
        pytest.skip("this CPU runs the ref ISA only")
    want = _run(name, isas[0], tmp_path)
    for isa in isas[1:]:
        got = _run(name, isa, tmp_path)
        assert list(got) == list(want)
        differ = [k for k in got if got[k] != want[k]]
        assert not differ, f"{name}: {isa} and {isas[0]} differ in {differ}"
