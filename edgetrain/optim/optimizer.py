"""Optimizers: SGD, Adam, AdamW with PyTorch's arguments and parameter groups.

An optimizer does not run anything in Python. At export it appends one update node per
parameter (``sgd_update`` / ``adam_update``) to the training program, with its state
(momentum, Adam moments) as zero-initialised OPTSTATE tensors, and records the base
learning rate and kind in the graph's STATE. Per-group learning rates become the node's
``lr_scale`` attribute (group lr / base lr); the runtime multiplies it with the scheduled lr.

``prox_mu > 0`` (FedProx, federated training) adds the gradient of the proximal term
``prox_mu/2 * ||w - w_global||^2`` inside the update node: the anchor ``w_global`` is an
OPTSTATE tensor ``prox_anchor:<param>`` (initialised to the exported weights; a federated client
sets it to each round's global weights), so a device trains FedProx with no Python.

Two options of every optimizer act on the whole step, inside the program (so the C trainer
``et_train`` does the same as Python):

- ``clip_grad_norm=max_norm``: the gradients are scaled as ``torch.nn.utils.clip_grad_norm_``
  (global L2 norm over every trainable gradient, ``scale = min(1, max_norm / (norm + 1e-6))``)
  before the updates; the norm is the TRAIN program's output ``grad_norm``.
- ``accumulate=k``: every TRAIN run is one micro-batch; its gradients, scaled by 1/k (PyTorch's
  ``(loss / k).backward()`` pattern), are summed into OPTSTATE accumulators ``grad_acc:<param>``,
  and only the k-th run updates the weights and advances the step counter and the schedule.
  The counter (BUFFER ``accum_count``) and the accumulators are saved with the session, so a
  resume in the middle of an accumulation continues bit-identically.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import ir

OPT_NONE, OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP, OPT_ADAGRAD = range(6)
OPT_NAMES = ("none", "sgd", "adam", "adamw", "rmsprop", "adagrad")  # STATE opt_kind

ACCUM_COUNT = "accum_count"  # the BUFFER counting micro-batches (accumulate=k)
GRAD_NORM = "grad_norm"      # the TRAIN program output of clip_grad_norm
_NORM_FANIN = 8              # inputs of one grad_norm node


def _check_nonneg(group: Dict, keys) -> None:
    """Each of ``keys`` in ``group`` must be a finite number >= 0."""
    for key in keys:
        v = group[key]
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"invalid {key} {v} (must be a finite number >= 0)")


class Optimizer:
    """Base class: parameter groups and OPTSTATE creation."""

    kind = OPT_NONE

    def __init__(self, params, defaults: Dict, clip_grad_norm: Optional[float] = None,
                 accumulate: int = 1):
        self.defaults = dict(defaults)
        self.clip_grad_norm = _check_clip(clip_grad_norm)
        self.accumulate = _check_accumulate(accumulate)
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: List[Dict] = []
        seen = set()
        for g in groups:
            group = dict(self.defaults)
            group.update(g)
            group["params"] = list(g["params"])
            for p in group["params"]:
                if id(p) in seen:
                    raise ValueError("a parameter appears in more than one parameter group")
                seen.add(id(p))
            self._check_group(group)
            self.param_groups.append(group)

    @property
    def base_lr(self) -> float:
        return float(self.defaults["lr"])

    def _check_group(self, group: Dict) -> None:
        if not np.isfinite(group["lr"]) or group["lr"] < 0:
            raise ValueError(f"invalid learning rate {group['lr']}")
        if group.get("weight_decay", 0) < 0:
            raise ValueError(f"invalid weight_decay {group['weight_decay']}")
        mu = group.get("prox_mu", 0.0)
        if not np.isfinite(mu) or mu < 0:
            raise ValueError(f"invalid prox_mu {mu} (must be a finite number >= 0)")

    def group_of(self, param) -> Optional[Dict]:
        """The group holding ``param`` (a Parameter object), or None."""
        for g in self.param_groups:
            if any(p is param for p in g["params"]):
                return g
        return None

    def lr_scale(self, group: Dict) -> float:
        base = self.base_lr
        if base == 0.0:
            if group["lr"] != 0.0:
                raise ValueError("a parameter group has a non-zero lr while the base lr is 0; "
                                 "give the optimizer a non-zero default lr")
            return 1.0
        return float(group["lr"]) / base

    def configure(self, state: ir.TrainState) -> None:
        """Record the base learning rate and optimizer kind in the STATE section."""
        state.base_lr = self.base_lr
        state.opt_kind = self.kind

    def _state(self, graph: ir.Graph, prefix: str, param: ir.TensorDef) -> int:
        t = graph.add_tensor(f"{prefix}:{param.name}", ir.F32, ir.OPTSTATE, param.shape,
                             data=np.zeros(param.shape, np.float32), owner=param.index)
        return t.index

    def _prox(self, graph: ir.Graph, param: ir.TensorDef, group: Dict, node: ir.Node) -> ir.Node:
        """Append the FedProx anchor input and ``prox_mu`` attribute when the group has one
        (nodes without it keep the short form older files have)."""
        mu = float(group.get("prox_mu", 0.0))
        if mu == 0.0:
            return node
        init = param.data if param.data is not None else np.zeros(param.shape, np.float32)
        t = graph.add_tensor(f"prox_anchor:{param.name}", ir.F32, ir.OPTSTATE, param.shape,
                             data=np.array(init, np.float32), owner=param.index)
        node.inputs = list(node.inputs) + [t.index]
        node.fattr = list(node.fattr) + [mu]
        return node

    def emit(self, graph: ir.Graph, param_tensor: ir.TensorDef, grad_tensor: ir.TensorDef,
             param=None) -> List[int]:
        """Append the update of ``param_tensor`` from ``grad_tensor``; returns node indices.

        ``param`` is the :class:`~edgetrain.nn.Parameter` (to find its group); None or a
        parameter outside every group uses the default group settings.
        """
        group = self.group_of(param) if param is not None else None
        if group is None:
            group = dict(self.defaults)
        self.configure(graph.state)
        layer = param_tensor.name.rsplit(".", 1)[0] if "." in param_tensor.name else ""
        node = self._node(graph, param_tensor, grad_tensor, group)
        node.layer = layer
        return [graph.add_node(node)]

    def _node(self, graph, param_tensor, grad_tensor, group) -> ir.Node:
        raise NotImplementedError

    def emit_step(self, graph: ir.Graph, items) -> Tuple[List[int], Dict[str, int]]:
        """The TRAIN program's tail for ``items`` = [(param tensor, grad tensor, Parameter or
        None)] in parameter order: accumulation (``accumulate``), clipping
        (``clip_grad_norm``) and one update per parameter. Returns (node indices, extra program
        outputs by name)."""
        items = list(items)
        nodes: List[int] = []
        outputs: Dict[str, int] = {}
        grads = [g for _, g, _ in items]
        if self.accumulate > 1:
            grads = self._emit_accumulate(graph, items, nodes)
        scale = None
        if self.clip_grad_norm is not None and items:
            norm, scale = self._emit_norm_tree(graph, grads, nodes)
            outputs[GRAD_NORM] = norm
        for (p, _, param), g in zip(items, grads):
            if scale is not None:
                scaled = graph.add_tensor("", ir.F32, ir.ACT, p.shape)
                nodes.append(graph.add_node(ir.Node("mul", [g.index, scale], [scaled.index], [], [],
                                                    _layer_of(p))))
                g = scaled
            nodes += self.emit(graph, p, g, param)
        return nodes, outputs

    def _emit_accumulate(self, graph: ir.Graph, items, nodes: List[int]) -> List[ir.TensorDef]:
        """grad_accumulate per parameter into ``grad_acc:<param>``, then accum_step."""
        if any(t.name == ACCUM_COUNT for t in graph.tensors):
            raise ValueError(f"a tensor is already named {ACCUM_COUNT!r}")
        count = graph.add_tensor(ACCUM_COUNT, ir.I32, ir.BUFFER, (),
                                 data=np.zeros((), np.int32))
        accs = []
        for p, g, _ in items:
            acc = graph.tensors[self._state(graph, "grad_acc", p)]
            nodes.append(graph.add_node(ir.Node("grad_accumulate", [acc.index, g.index, count.index],
                                                [], [], [1.0 / self.accumulate], _layer_of(p))))
            accs.append(acc)
        nodes.append(graph.add_node(ir.Node("accum_step", [count.index], [], [self.accumulate], [])))
        return accs

    def _emit_norm_tree(self, graph: ir.Graph, grads, nodes: List[int]) -> Tuple[int, int]:
        """grad_norm nodes over ``grads`` (8 per node, then 8 norms per node, ...); the root
        also computes the clip scale. Returns (norm tensor, scale tensor)."""
        level = [g.index for g in grads]
        while True:
            groups = [level[i:i + _NORM_FANIN] for i in range(0, len(level), _NORM_FANIN)]
            root = len(groups) == 1
            nxt = []
            for grp in groups:
                norm = graph.add_tensor(GRAD_NORM if root else "", ir.F32, ir.ACT, ())
                outs = [norm.index]
                fattr: List[float] = []
                if root:
                    scale = graph.add_tensor("", ir.F32, ir.ACT, ())
                    outs.append(scale.index)
                    fattr = [float(self.clip_grad_norm)]
                nodes.append(graph.add_node(ir.Node("grad_norm", grp, outs, [], fattr)))
                nxt.append(norm.index)
            if root:
                return nxt[0], scale.index
            level = nxt

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.defaults}, {len(self.param_groups)} group(s))"


def _layer_of(param_tensor: ir.TensorDef) -> str:
    name = param_tensor.name
    return name.rsplit(".", 1)[0] if "." in name else ""


def _check_clip(max_norm) -> Optional[float]:
    if max_norm is None:
        return None
    try:
        v = float(max_norm)
    except (TypeError, ValueError):
        raise TypeError(f"clip_grad_norm must be a number or None, got {max_norm!r}") from None
    if not np.isfinite(v) or v <= 0 or np.float32(v) <= 0:
        raise ValueError(f"clip_grad_norm must be a finite number > 0, got {max_norm!r}")
    return v


def _check_accumulate(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"accumulate must be an int >= 1, got {k!r}")
    if not 1 <= int(k) <= 2**31 - 1:
        raise ValueError(f"accumulate must be in 1..2^31-1, got {k}")
    return int(k)


class SGD(Optimizer):
    """SGD with momentum, dampening, Nesterov and weight decay (PyTorch semantics).
    ``regularization="l1"`` uses weight_decay * sign(p) instead of weight_decay * p."""

    kind = OPT_SGD

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0,
                 regularization: str = "l2", prox_mu: float = 0.0, *,
                 clip_grad_norm: Optional[float] = None, accumulate: int = 1):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay,
                                      regularization=regularization, prox_mu=prox_mu),
                         clip_grad_norm=clip_grad_norm, accumulate=accumulate)

    def _check_group(self, group: Dict) -> None:
        super()._check_group(group)
        if group["momentum"] < 0:
            raise ValueError(f"invalid momentum {group['momentum']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if group["regularization"] not in ("l1", "l2"):
            raise ValueError(f"regularization must be 'l1' or 'l2', got "
                             f"{group['regularization']!r}")

    def _node(self, graph, param_tensor, grad_tensor, group) -> ir.Node:
        mom = -1
        if group["momentum"] != 0:
            mom = self._state(graph, "momentum", param_tensor)
        node = ir.Node("sgd_update", [param_tensor.index, grad_tensor.index, mom], [],
                       [int(bool(group["nesterov"])), int(group["regularization"] == "l1")],
                       [self.lr_scale(group), float(group["momentum"]),
                        float(group["dampening"]), float(group["weight_decay"])])
        return self._prox(graph, param_tensor, group, node)


class Adam(Optimizer):
    """Adam (PyTorch semantics; weight_decay adds wd * p to the gradient)."""

    kind = OPT_ADAM
    decoupled = 0

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, prox_mu: float = 0.0, *,
                 clip_grad_norm: Optional[float] = None, accumulate: int = 1):
        if amsgrad:
            raise NotImplementedError("amsgrad is not supported")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, prox_mu=prox_mu),
                         clip_grad_norm=clip_grad_norm, accumulate=accumulate)

    def _check_group(self, group: Dict) -> None:
        super()._check_group(group)
        b1, b2 = group["betas"]
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"invalid betas {group['betas']}")
        if group["eps"] < 0:
            raise ValueError(f"invalid eps {group['eps']}")

    def _node(self, graph, param_tensor, grad_tensor, group) -> ir.Node:
        m = self._state(graph, "adam_m", param_tensor)
        v = self._state(graph, "adam_v", param_tensor)
        b1, b2 = group["betas"]
        node = ir.Node("adam_update", [param_tensor.index, grad_tensor.index, m, v], [],
                       [self.decoupled],
                       [self.lr_scale(group), float(b1), float(b2), float(group["eps"]),
                        float(group["weight_decay"])])
        return self._prox(graph, param_tensor, group, node)


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr * weight_decay (PyTorch AdamW)."""

    kind = OPT_ADAMW
    decoupled = 1

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, prox_mu: float = 0.0, *,
                 clip_grad_norm: Optional[float] = None, accumulate: int = 1):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, prox_mu,
                         clip_grad_norm=clip_grad_norm, accumulate=accumulate)


class RMSprop(Optimizer):
    """RMSprop (PyTorch semantics: alpha, eps, weight_decay, momentum, centered). State:
    ``rmsprop_square_avg:<param>``, with ``centered`` ``rmsprop_grad_avg:<param>``, with
    ``momentum > 0`` ``rmsprop_momentum:<param>``."""

    kind = OPT_RMSPROP

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 prox_mu: float = 0.0, *, clip_grad_norm: Optional[float] = None,
                 accumulate: int = 1):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=bool(centered),
                                      prox_mu=prox_mu),
                         clip_grad_norm=clip_grad_norm, accumulate=accumulate)

    def _check_group(self, group: Dict) -> None:
        super()._check_group(group)
        _check_nonneg(group, ("alpha", "eps", "momentum", "weight_decay"))

    def _node(self, graph, param_tensor, grad_tensor, group) -> ir.Node:
        sq = self._state(graph, "rmsprop_square_avg", param_tensor)
        ga = self._state(graph, "rmsprop_grad_avg", param_tensor) if group["centered"] else -1
        buf = (self._state(graph, "rmsprop_momentum", param_tensor)
               if group["momentum"] > 0 else -1)
        inputs = [param_tensor.index, grad_tensor.index, sq, ga, buf]
        node = ir.Node("rmsprop_update", inputs, [], [int(bool(group["centered"]))],
                       [self.lr_scale(group), float(group["alpha"]), float(group["eps"]),
                        float(group["weight_decay"]), float(group["momentum"])])
        if float(group.get("prox_mu", 0.0)) == 0.0:
            while node.inputs[-1] == -1:  # the short form: trailing absent inputs dropped
                node.inputs.pop()
        return self._prox(graph, param_tensor, group, node)


class Adagrad(Optimizer):
    """Adagrad (PyTorch semantics: lr_decay, weight_decay, initial_accumulator_value, eps).
    State: ``adagrad_sum:<param>``, initialised to ``initial_accumulator_value``."""

    kind = OPT_ADAGRAD

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, prox_mu: float = 0.0, *,
                 clip_grad_norm: Optional[float] = None, accumulate: int = 1):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, prox_mu=prox_mu),
                         clip_grad_norm=clip_grad_norm, accumulate=accumulate)

    def _check_group(self, group: Dict) -> None:
        super()._check_group(group)
        _check_nonneg(group, ("lr_decay", "eps", "weight_decay", "initial_accumulator_value"))

    def _node(self, graph, param_tensor, grad_tensor, group) -> ir.Node:
        t = graph.tensors[self._state(graph, "adagrad_sum", param_tensor)]
        t.data = np.full(param_tensor.shape, group["initial_accumulator_value"], np.float32)
        node = ir.Node("adagrad_update", [param_tensor.index, grad_tensor.index, t.index], [], [],
                       [self.lr_scale(group), float(group["lr_decay"]), float(group["eps"]),
                        float(group["weight_decay"])])
        return self._prox(graph, param_tensor, group, node)
