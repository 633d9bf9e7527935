"""`edgetrain train --qat-bits W[,A]` trains docs/int8.md's recipe (QConfig(W, A,
quantize_input=True, output_bits=8)): the .etm has an input fake quant and 8-bit logits, and
`edgetrain export --inference-only --int8` of it runs wholly in integers with logits equal to
the QAT session's Eval() bit for bit. The --qat-* flags change the recipe; every bad value is a
one-line error (exit 2)."""
import sys

import numpy as np
import pytest

import edgetrain as et
from edgetrain import cli, fileformat, ir
from conftest import mnist_arrays, mnist_dir

COMMON = ["--limit", 256, "--batch-size", 32, "--threads", 2, "--no-eval", "--iterations", 3]


def _cli(capsys, *args):
    code = cli.main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _train(capsys, tmp_path, name, *flags, model="lenet"):
    out = tmp_path / name
    code, _, err = _cli(capsys, "train", model, "--data", mnist_dir(), *COMMON, *flags,
                        "--out", out)
    assert code == 0, err
    return out


def _fake_quants(path):
    """{layer: (qmin, qmax)} of the per-tensor fake_quant nodes of the training program, and
    that program's quant_observe nodes."""
    g = fileformat.load(path)
    nodes = [g.nodes[n] for n in g.programs[ir.TRAIN].nodes]
    fq = {nd.layer: tuple(nd.iattr[1:3]) for nd in nodes
          if nd.op == "fake_quant" and nd.iattr[0] == -1}
    return fq, [nd for nd in nodes if nd.op == "quant_observe"]


def test_cli_qat_default_is_the_integer_recipe_and_int8_file_equals_eval(tmp_path, capsys):
    qat = _train(capsys, tmp_path, "qat.etm", "--qat-bits", "4,4")
    fq, _ = _fake_quants(qat)
    assert fq["conv1.input_fake_quant"] == (0, 15)            # the input is quantized
    assert fq["fc2.activation_post_process"] == (0, 255)      # 8-bit logits
    assert fq["fc1.activation_post_process"] == (0, 15)       # A = 4 elsewhere
    assert cli.read_meta(str(qat))["qconfig"] == dict(
        weight_bits=4, act_bits=4, observer="ema", averaging_constant=0.01,
        observe_until_step=None, freeze_bn_step=None, fold_bn=True, quantize_input=True,
        output_bits=8)
    code, out, err = _cli(capsys, "info", qat)
    assert code == 0, err
    assert "trained with --qat-bits 4,4: quantize_input True, output_bits 8, observer ema" in out

    int8 = tmp_path / "int8.etm"
    code, out, err = _cli(capsys, "export", qat, "--inference-only", "--int8", "-o", int8)
    assert code == 0 and "int8 inference-only" in out, err
    g = fileformat.load(int8)
    ops = [g.nodes[n].op for n in g.programs[ir.EVAL].nodes]
    assert ops[0] == "quantize" and ops[-1] == "dequantize" and "fake_quant" not in ops, ops
    assert ops.count("dequantize") == 1                       # integers from input to logits

    x, _ = mnist_arrays(False)
    x = x[:200]
    sess = et.TrainSession.load(qat, threads=2)
    sess.Eval()
    want = np.concatenate([sess.RunGraph({"data": x[i:i + 32]})["output"]
                           for i in range(0, len(x), 32)])
    f = et.TrainSession.load(int8, threads=1)
    f.Eval()
    got = np.concatenate([f.RunGraph({"data": x[i:i + 32]})["output"]
                          for i in range(0, len(x), 32)])
    assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32),
                                                      want.view(np.uint32))
    assert len(np.unique(got)) > 10                           # not a degenerate model


def test_cli_qat_flags_change_the_recipe(tmp_path, capsys):
    path = _train(capsys, tmp_path, "q.etm", "--qat-bits", "8,4", "--qat-float-input",
                  "--qat-output-bits", "6", "--qat-observer", "minmax",
                  "--qat-observe-until", "2")
    fq, observes = _fake_quants(path)
    assert "conv1.input_fake_quant" not in fq
    assert fq["fc2.activation_post_process"] == (0, 63)
    assert fq["conv2.activation_post_process"] == (0, 15)
    assert observes and all(nd.iattr[4] == 0 for nd in observes)   # ema=0: minmax
    assert all(nd.iattr[5] == 2 for nd in observes)                 # until_step
    p = et.TrainSession.load(path).get_parameters()
    assert "conv1.input_fake_quant.scale" not in p
    qc = cli.read_meta(str(path))["qconfig"]
    assert (qc["observer"], qc["observe_until_step"], qc["output_bits"],
            qc["quantize_input"]) == ("minmax", 2, 6, False)


def test_cli_qat_freeze_bn(tmp_path, capsys, monkeypatch):
    (tmp_path / "qat_convbn.py").write_text(
        "from edgetrain import nn\n"
        "def net(num_classes, in_channels, **kw):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, stride=2), nn.BatchNorm2d(4),\n"
        "                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * 13 * 13, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _train(capsys, tmp_path, "bn.etm", "--qat-bits", "8", "--qat-freeze-bn", "2",
                  model="qat_convbn:net")
    sys.modules.pop("qat_convbn", None)
    g = fileformat.load(path)
    bn = [g.nodes[n] for n in g.programs[ir.TRAIN].nodes if g.nodes[n].op == "batchnorm_train"]
    assert [nd.iattr for nd in bn] == [[2]], "the folded pair freezes at step 2"
    assert [nd.layer for nd in bn] == ["0"]
    assert cli.read_meta(str(path))["qconfig"]["freeze_bn_step"] == 2


BITS = "expected bits from 2 to 8, got "
NONNEG = "expected an integer >= 0, got "


@pytest.mark.parametrize("flags, words", [
    (["--qat-bits", "8", "--qat-output-bits", "9"], f"--qat-output-bits: {BITS}'9'"),
    (["--qat-bits", "8", "--qat-output-bits", "1"], f"--qat-output-bits: {BITS}'1'"),
    (["--qat-bits", "8", "--qat-output-bits", "x"], f"--qat-output-bits: {BITS}'x'"),
    (["--qat-bits", "8", "--qat-observer", "mean"], "--qat-observer: invalid choice: 'mean'"),
    (["--qat-bits", "8", "--qat-observe-until", "-1"], f"--qat-observe-until: {NONNEG}-1"),
    (["--qat-bits", "8", "--qat-freeze-bn", "two"], f"--qat-freeze-bn: {NONNEG}'two'"),
    (["--qat-bits", "9,8"], "--qat-bits: expected W or W,A with bits from 2 to 8"),
])
def test_cli_qat_bad_values_are_usage_errors(flags, words, capsys):
    with pytest.raises(SystemExit) as e:
        _cli(capsys, "train", "lenet", *flags)
    err = capsys.readouterr().err
    assert e.value.code == 2 and words in err, err


@pytest.mark.parametrize("flags, words", [
    (["--qat-float-input"], "--qat-float-input sets up quantization-aware training: give "
                            "--qat-bits W[,A] too"),
    (["--qat-output-bits", "8"], "--qat-output-bits sets up quantization-aware training"),
    (["--qat-observer", "minmax"], "--qat-observer sets up quantization-aware training"),
    (["--qat-observe-until", "5"], "--qat-observe-until sets up"),
    (["--qat-freeze-bn", "5"], "--qat-freeze-bn sets up"),
])
def test_cli_qat_flags_need_qat_bits(flags, words, capsys, tmp_path):
    code, out, err = _cli(capsys, "train", "lenet", "--data", mnist_dir(), *COMMON, *flags,
                          "--out", tmp_path / "m.etm")
    assert code == 2 and err.startswith("edgetrain train: error: ") and words in err, err
    assert err.count("\n") == 1 and not (tmp_path / "m.etm").exists()


def test_cli_qat_flags_refused_with_resume_and_saved_programs(capsys, tmp_path):
    fp = _train(capsys, tmp_path, "fp.etm")
    code, _, err = _cli(capsys, "train", "lenet", "--data", mnist_dir(), *COMMON, "--resume",
                        fp, "--qat-observer", "minmax")
    assert code == 2 and "--qat-observer sets up quantization-aware training" in err, err
    assert "--resume keeps the checkpoint's" in err
    code, _, err = _cli(capsys, "train", fp, "--data", mnist_dir(), *COMMON, "--qat-bits", "8",
                        "--qat-float-input")
    assert code == 2 and "--init" in err, err
