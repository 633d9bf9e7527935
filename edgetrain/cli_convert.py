"""``edgetrain convert`` and ``edgetrain info model.onnx``: an ONNX model to a trainable .etm.

::

    edgetrain convert model.onnx -o model.etm --input input:32x3x32x32 --loss cross_entropy \\
        --optimizer sgd --lr 0.01 --trainable 'classifier.*'
    edgetrain convert model.onnx -o tuned.etm --cut-at /Flatten_output_0 --num-classes 4
    edgetrain convert student.onnx -o s.etm --teacher teacher.onnx --temperature 20 --alpha 0.9
    edgetrain convert --check model.onnx          # what is supported; nothing is written
    edgetrain info model.onnx                     # inputs, ops, parameters, tensor names

The program's input is named ``data`` and its labels ``label`` (as ``edgetrain train`` and
``eval`` expect) for a model with one input. ``--cut-at`` keeps the graph up to that tensor and
adds a new head (a Linear layer, after a flatten when needed) with ``--num-classes`` outputs.
With ``--trainable`` only the matching parameters (and the new head) train. BatchNorm: ``--bn``
follow (as the file), train or frozen; a cut whose body does not train defaults to frozen.
"""
from __future__ import annotations

import os
import sys
from collections import OrderedDict


def add_convert_parser(sub) -> None:
    from .cli_inputs import _int_at_least, _nonneg_float

    c = sub.add_parser("convert", help="convert an ONNX model into a trainable .etm",
                       description="Convert an ONNX model (from PyTorch or elsewhere) into a "
                                   "trainable edgetrain program.")
    c.add_argument("model_file", metavar="MODEL.onnx")
    c.add_argument("-o", "--output", default=None, metavar="OUT.etm")
    c.add_argument("--check", action="store_true",
                   help="report what converts and what is not supported; write nothing")
    c.add_argument("--input", action="append", default=[], metavar="NAME:NxCxHxW",
                   help="input shape (default: the file's, batch 1 when it is open)")
    c.add_argument("--loss", choices=("cross_entropy", "mse"), default="cross_entropy")
    c.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    c.add_argument("--lr", type=_nonneg_float, default=None,
                   help="learning rate (default 0.01 for sgd, 0.001 for adam)")
    c.add_argument("--momentum", type=_nonneg_float, default=0.9, help="SGD momentum")
    c.add_argument("--trainable", action="append", default=[], metavar="GLOB",
                   help="train only the parameters matching (repeatable), e.g. 'classifier.*'")
    c.add_argument("--cut-at", default=None, metavar="TENSOR",
                   help="keep the graph up to this tensor and add a new head")
    c.add_argument("--num-classes", type=_int_at_least(1, "--num-classes"), default=None)
    c.add_argument("--bn", choices=("follow", "train", "frozen"), default=None,
                   help="BatchNorm in training: as in the file (default), batch statistics, "
                        "or frozen running statistics")
    c.add_argument("--dropout", choices=("follow", "off"), default="follow")
    c.add_argument("--teacher", default=None, metavar="TEACHER.onnx",
                   help="distil from this model (forward only, eval form, inside each step); "
                        "the loss becomes DistillLoss(--temperature, --alpha)")
    c.add_argument("--temperature", type=_nonneg_float, default=20.0)
    c.add_argument("--alpha", type=_nonneg_float, default=0.9)


def _parse_inputs(specs):
    from .cli_inputs import CLIError

    out = OrderedDict()
    for spec in specs:
        name, sep, dims = spec.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise CLIError(f"--input {spec!r}: expected NAME:NxCxHxW, e.g. input:1x3x32x32")
        out[name] = shape
    return out


def _input_shapes(net, given):
    from .cli_inputs import CLIError

    shapes = OrderedDict()
    for name, file_shape in net.input_shapes.items():
        if name in given:
            shapes[name] = given[name]
            continue
        if file_shape is None or any(d is None for d in file_shape[1:]):
            raise CLIError(f"input '{name}' has no static shape in the file; give it with "
                           f"--input {name}:NxCxHxW")
        batch = net.file_batch or 1
        shapes[name] = (batch,) + tuple(file_shape[1:])
    return shapes


def _build_model(args, net, shapes):
    """(model, body) for the arguments: the converted net, or a cut with a new head."""
    from . import nn
    from .cli_inputs import CLIError
    from .convert import WithHead
    from .export import build_graph
    from .ir import EVAL

    if args.num_classes is not None and args.cut_at is None:
        raise CLIError("--num-classes needs --cut-at TENSOR (the new head's input)")
    if args.cut_at is None:
        return net, net
    if args.num_classes is None:
        raise CLIError("--cut-at needs --num-classes N (the new head's outputs)")
    body = net.extract(inputs=list(shapes), outputs=[args.cut_at])
    graph = build_graph(body, inputs=dict(shapes))
    feat = graph.tensors[graph.programs[EVAL].outputs["output"]].shape
    linear = nn.Linear(int(__import__("numpy").prod(feat[1:])), args.num_classes)
    head = nn.Sequential(nn.Flatten(1), linear) if len(feat) > 2 else linear
    return WithHead(body, head, "head"), body


def cmd_convert(args, out=None) -> int:
    from . import convert, optim
    from .cli_inputs import CLIError
    from .session import TrainSession

    out = out or sys.stdout
    if args.check:
        return _check(args.model_file, out)
    if not args.output:
        raise CLIError("give -o OUT.etm (or --check to only inspect the model)")
    if os.path.isdir(args.output):
        raise CLIError(f"-o {args.output}: is a folder; give a file name such as "
                       f"{args.output}/model.etm")
    given = _parse_inputs(args.input)
    net = convert.from_onnx(args.model_file, inputs=given or None, bn=args.bn or "follow",
                            dropout=args.dropout)
    shapes = _input_shapes(net, given)
    if len(shapes) != 1:
        raise CLIError(f"the model has {len(shapes)} inputs {list(shapes)}; convert handles "
                       "one-input models (use edgetrain.convert in Python)")
    model, body = _build_model(args, net, shapes)
    if args.trainable:
        model.freeze()
        model.unfreeze(*args.trainable)
        if model is not body:
            model.unfreeze("head")
    if args.bn is None and body is not model and \
            not any(p.requires_grad for p in body.parameters()):
        body.set_bn("frozen")
    (shape,) = shapes.values()
    loss, labels = _loss(args, model, shape)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise CLIError("no parameter is trainable (check --trainable)")
    opt = (optim.SGD(params, lr=args.lr if args.lr is not None else 0.01,
                     momentum=args.momentum) if args.optimizer == "sgd" else
           optim.Adam(params, lr=args.lr if args.lr is not None else 1e-3))
    teacher = _teacher(args, shape)
    if teacher is not None:
        from .nn import DistillLoss
        loss = DistillLoss(args.temperature, args.alpha)
    sess = TrainSession.from_module(model, inputs={"data": shape}, loss=loss, labels=labels,
                                    optimizer=opt, threads=1, teacher=teacher)
    sess.SaveToFile(args.output)
    n_all = sum(int(p.data.size) for p in model.parameters())
    n_train = sum(int(p.data.size) for p in params)
    out.write(f"wrote {args.output}: input data {list(shape)}, {n_all:,} parameters "
              f"({n_train:,} trainable), loss {args.loss}, optimizer {args.optimizer}\n")
    return 0


def _teacher(args, shape):
    """The --teacher model (one input, given the student's input shape), or None."""
    from .cli_inputs import CLIError
    from .convert import check_onnx, from_onnx

    if args.teacher is None:
        return None
    if args.loss != "cross_entropy":
        raise CLIError("--teacher distils class logits: it needs --loss cross_entropy")
    if not 0.0 <= args.alpha <= 1.0 or args.temperature <= 0:
        raise CLIError(f"--alpha must be in [0, 1] and --temperature > 0, got {args.alpha} / "
                       f"{args.temperature}")
    names = list(check_onnx(args.teacher)["inputs"])
    if len(names) != 1:
        raise CLIError(f"--teacher {args.teacher}: has {len(names)} inputs {names}; one is "
                       "needed")
    return from_onnx(args.teacher, inputs={names[0]: shape})


def _loss(args, model, shape):
    from . import nn
    from .export import build_graph
    from .ir import EVAL

    if args.loss == "cross_entropy":
        return nn.CrossEntropyLoss(), {"label": ((shape[0],), "int64")}
    graph = build_graph(model, inputs={"data": shape})
    out_shape = graph.tensors[graph.programs[EVAL].outputs["output"]].shape
    return nn.MSELoss(), {"label": (tuple(out_shape), "float32")}


def _check(path: str, out) -> int:
    from .convert import check_onnx

    info = check_onnx(path)
    out.write(f"{info['file']}: opset {info['opset']}, producer {info['producer'] or '-'}\n")
    out.write("ops: " + ", ".join(f"{k} x{v}" for k, v in info["ops"].items()) + "\n")
    out.write(f"parameters: {len(info['params'])} tensors, BatchNorm statistics: "
              f"{len(info['buffers'])} tensors\n")
    if info["sorted"]:
        out.write("note: the file's nodes were not in topological order; they are sorted\n")
    if info["unsupported"]:
        out.write("not supported: " + info["report"] + "\n")
        return 2
    out.write("all ops are supported\n")
    return 0


def cmd_info_onnx(args, out=None) -> int:
    from .convert import check_onnx, from_onnx

    out = out or sys.stdout
    path = args.model_file
    info = check_onnx(path)
    lines = [f"model: {path} ({os.path.getsize(path):,} bytes), ONNX opset {info['opset']}, "
             f"producer {info['producer'] or '-'}",
             "inputs: " + ", ".join(f"{k} {_dims(v)}" for k, v in info["inputs"].items()),
             f"outputs: {', '.join(info['outputs'])}",
             "ops: " + ", ".join(f"{k} x{v}" for k, v in info["ops"].items()),
             f"parameters: {sum(_numel(s) for s in info['params'].values()):,} in "
             f"{len(info['params'])} tensors; BatchNorm statistics: {len(info['buffers'])} "
             "tensors"]
    if info["unsupported"]:
        lines.append("not supported: " + info["report"])
        out.write("\n".join(lines) + "\n")
        return 0
    net = from_onnx(path)
    lines.append("")
    lines.append("nodes (name, op -> output tensors; cut with --cut-at TENSOR):")
    for name, op, _, outs in net.nodes():
        lines.append(f"  {name:<40} {op:<20} -> {', '.join(o for o in outs if o)}")
    out.write("\n".join(lines) + "\n")
    return 0


def _dims(shape) -> str:
    if shape is None:
        return "[?]"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def is_onnx_file(path: str) -> bool:
    return str(path).lower().endswith(".onnx")


__all__ = ["add_convert_parser", "cmd_convert", "cmd_info_onnx", "is_onnx_file"]
