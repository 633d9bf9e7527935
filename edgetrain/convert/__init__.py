"""``edgetrain.convert``: bring a model from ONNX or PyTorch as an ordinary ``nn.Module``.

::

    from edgetrain import convert, nn
    net = convert.from_onnx("mobilenet.onnx", bn="frozen")        # or convert.from_torch(m, x)
    body = net.extract(inputs=["input"], outputs=["/Flatten_output_0"], trainable=False)
    model = nn.Sequential(body, nn.Linear(1280, 4))                # a new 4-class head
    sess = et.TrainSession.from_module(model, inputs={"data": (32, 3, 96, 96)}, ...)

``onnx`` (and ``torch`` for :func:`from_torch`) are optional dependencies, imported only here:
``pip install 'edgetrain[onnx]'``.
"""
from __future__ import annotations

import copy
import io
import os
from typing import Mapping, Optional, Sequence

from .module import BN_MODES, DROPOUT_MODES, OnnxContainer, OnnxModule, WithHead
from .onnx_file import MAX_OPSET, MIN_OPSET, OnnxGraph, read_model
from .onnx_ops import analyse, supported_ops

__all__ = ["from_onnx", "from_torch", "check_onnx", "OnnxModule", "OnnxContainer", "WithHead",
           "OnnxGraph", "supported_ops", "read_model", "MIN_OPSET", "MAX_OPSET", "BN_MODES",
           "DROPOUT_MODES"]


def from_onnx(path_or_bytes, inputs: Optional[Mapping[str, Sequence]] = None,
              bn: str = "follow", dropout: str = "follow") -> OnnxModule:
    """Convert an ONNX model (a path, its bytes or an ``onnx.ModelProto``) into an
    :class:`OnnxModule`.

    ``inputs`` optionally gives input shapes (``{"input": (None, 3, 32, 32)}``), checked
    against the file's and kept as ``module.input_shapes``. ``bn``: ``"follow"`` (each
    BatchNorm as the file has it: the training form trains, the inference form is frozen),
    ``"train"`` (batch statistics in training, running statistics updated as PyTorch does) or
    ``"frozen"`` (running statistics always, never changed). ``dropout``: ``"follow"``
    (dropout active in training where the file's Dropout is in training mode) or ``"off"``.

    Raises :class:`~edgetrain.errors.ModelFormatError` for a malformed file,
    :class:`~edgetrain.errors.UnsupportedError` listing every unsupported op at once (with
    counts) or an unsupported opset, :class:`~edgetrain.errors.ModelIOError` for an
    unreadable file; each message names the file, node and op.
    """
    return OnnxModule(read_model(path_or_bytes), inputs=inputs, bn=bn, dropout=dropout)


def check_onnx(path_or_bytes) -> dict:
    """What converting the model involves, without converting: ``{"file", "opset",
    "producer", "inputs", "outputs", "ops" (op -> count), "unsupported" (label -> node names),
    "params", "buffers", "sorted"}``. Malformed files raise as in :func:`from_onnx`."""
    graph = read_model(path_or_bytes)
    from .module import _unalias_identities

    _unalias_identities(graph)
    res = analyse(graph)
    ops = {}
    for nd in res.needed:
        ops[nd.op] = ops.get(nd.op, 0) + 1
    return {"file": graph.file, "opset": graph.opset, "producer": graph.producer,
            "inputs": dict(graph.inputs), "outputs": list(graph.outputs),
            "ops": dict(sorted(ops.items())), "unsupported": dict(res.unsupported),
            "params": {n: tuple(graph.initializers[n].shape) for n in res.params},
            "buffers": {n: tuple(graph.initializers[n].shape) for n in res.buffers},
            "sorted": graph.sorted, "report": res.report(graph.file) if res.unsupported else ""}


def from_torch(module, example_input, input_names: Optional[Sequence[str]] = None,
               output_names: Optional[Sequence[str]] = None, bn: str = "follow",
               dropout: str = "follow", opset: int = 17, path=None) -> OnnxModule:
    """Convert a ``torch.nn.Module`` through ONNX, keeping its training graph.

    The TorchScript exporter runs on a deep copy in training mode (``dynamo=False``,
    ``training=TrainingMode.TRAINING``, ``do_constant_folding=False``) so BatchNorm and
    Dropout stay as they are (the dynamo exporter folds BatchNorm into the convolutions), with
    a dynamic batch; ``module`` and its running statistics are untouched. The converted
    module gets ``module``'s exact parameters and buffers. With ``bn="follow"`` a BatchNorm
    that is in eval mode in ``module`` is frozen and one in train mode trains; with
    ``dropout="follow"`` a Dropout in eval mode stays off. ``path`` also writes the ONNX file.
    torch is imported here only.
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    args = tuple(torch.as_tensor(a) for a in args)
    input_names = list(input_names or (["input"] if len(args) == 1 else
                                       [f"input{i}" for i in range(len(args))]))
    output_names = list(output_names or ["output"])
    dynamic = {n: {0: "batch"} for n in input_names + output_names}
    copy_ = copy.deepcopy(module)
    buf = io.BytesIO()
    torch.onnx.export(copy_, args, buf, dynamo=False, training=torch.onnx.TrainingMode.TRAINING,
                      do_constant_folding=False, opset_version=opset, input_names=input_names,
                      output_names=output_names, dynamic_axes=dynamic)
    data = buf.getvalue()
    if path is not None:
        with open(os.fspath(path), "wb") as f:
            f.write(data)
    out = OnnxModule(read_model(data), bn=bn, dropout=dropout)
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    own = dict(out._state_items())
    out.load_state_dict({k: v for k, v in state.items()
                         if k in own and tuple(v.shape) == tuple(own[k].data.shape)},
                        strict=False)
    _follow_torch_modes(out, module, bn, dropout)
    return out


def _follow_torch_modes(out: OnnxModule, module, bn: str, dropout: str) -> None:
    """Freeze the BatchNorms (and switch off the Dropouts) that are in eval mode in the
    PyTorch module: the exporter in training mode writes every one in its training form."""
    import torch

    eval_bn = {name for name, m in module.named_modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not m.training}
    eval_drop = {name for name, m in module.named_modules()
                 if isinstance(m, torch.nn.modules.dropout._DropoutNd) and not m.training}
    for nd in out._nodes:
        layer = out._layers[nd.name]
        if bn == "follow" and nd.op == "BatchNormalization" and layer in eval_bn:
            out._bn_modes[nd.name] = "frozen"
        if dropout == "follow" and nd.op == "Dropout" and layer in eval_drop:
            out._dropout_off.add(nd.name)
