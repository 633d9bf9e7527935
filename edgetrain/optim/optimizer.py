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
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from .. import ir

OPT_NONE, OPT_SGD, OPT_ADAM, OPT_ADAMW = range(4)


class Optimizer:
    """Base class: parameter groups and OPTSTATE creation."""

    kind = OPT_NONE

    def __init__(self, params, defaults: Dict):
        self.defaults = dict(defaults)
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
        if group["lr"] < 0:
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.defaults}, {len(self.param_groups)} group(s))"


class SGD(Optimizer):
    """SGD with momentum, dampening, Nesterov and weight decay (PyTorch semantics).
    ``regularization="l1"`` uses weight_decay * sign(p) instead of weight_decay * p."""

    kind = OPT_SGD

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0,
                 regularization: str = "l2", prox_mu: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay,
                                      regularization=regularization, prox_mu=prox_mu))

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
                 weight_decay: float = 0.0, amsgrad: bool = False, prox_mu: float = 0.0):
        if amsgrad:
            raise NotImplementedError("amsgrad is not supported")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, prox_mu=prox_mu))

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
                 weight_decay: float = 1e-2, amsgrad: bool = False, prox_mu: float = 0.0):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, prox_mu)
