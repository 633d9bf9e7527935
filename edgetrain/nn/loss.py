"""Loss modules. Called as ``loss(output, *labels)`` while tracing; each returns a scalar.

All reduce with PyTorch's default mean (KL divergence: 'batchmean').
"""
from __future__ import annotations

from . import functional as F
from .module import Module

__all__ = ["CrossEntropyLoss", "MSELoss", "L1Loss", "HingeLoss", "MultiMarginLoss",
           "KLDivLoss", "DistillLoss", "BCELoss", "BCEWithLogitsLoss", "NLLLoss", "SmoothL1Loss",
           "HuberLoss"]


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits [N, C] (or [N, C, d...]). With the defaults, integer
    labels [N] use the fused ``softmax_xent`` op and float targets [N, C] (class
    probabilities) ``softmax_xent_prob``; class ``weight``, ``ignore_index``,
    ``label_smoothing`` and the reductions 'sum' / 'none' follow PyTorch (log_softmax + nll)."""

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(reduction)
        F._no_legacy_reduction(size_average, reduce)
        self.weight, self.ignore_index = weight, int(ignore_index)
        self.label_smoothing = float(label_smoothing)

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class MSELoss(_Loss):
    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


class MultiMarginLoss(_Loss):
    """Multi-class hinge loss, PyTorch's MultiMarginLoss with p=1."""

    def __init__(self, p: int = 1, margin: float = 1.0, weight=None, reduction: str = "mean"):
        super().__init__(reduction)
        if p != 1 or weight is not None:
            raise NotImplementedError("MultiMarginLoss supports only p=1 without weights")
        self.margin = margin

    def forward(self, input, target):
        return F.multi_margin_loss(input, target, margin=self.margin,
                                   reduction=self.reduction)


class HingeLoss(MultiMarginLoss):
    """MNN's hinge loss: MultiMarginLoss(p=1, margin=1) on logits and class labels."""

    def __init__(self, margin: float = 1.0):
        super().__init__(margin=margin)


class KLDivLoss(_Loss):
    """KL(target || exp(input)) with ``input`` = log-probabilities, ``target`` probabilities.

    Note: the default reduction is 'batchmean' (the mathematically correct KL divergence,
    divided by the batch size), not PyTorch's 'mean'.
    """

    def __init__(self, reduction: str = "batchmean", log_target: bool = False):
        super().__init__(reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class DistillLoss(Module):
    """Knowledge distillation loss (MNN's ``_DistillLoss``, Hinton et al. 2015).

    Called as ``loss(student_logits, teacher_logits, labels)``::

        loss = alpha * T^2 * KL(softmax(teacher / T) || log_softmax(student / T))   # batchmean
             + (1 - alpha) * cross_entropy(student, labels)

    ``labels`` are class indices [N] (int64 labels at export) or class probabilities [N, C]
    (e.g. one-hot, float32). The teacher logits either come from a teacher module run inside
    the training step (``TrainSession.from_module(student, ..., teacher=teacher_module)``:
    forward only, eval form, its weights constants) or are an input of the program (export
    them with ``labels={"teacher": ((N, C), "float32"), "label": ((N,), "int64")}``); no
    gradient flows into them.
    """

    def __init__(self, temperature: float = 20.0, alpha: float = 0.9):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.temperature, self.alpha = float(temperature), float(alpha)

    def forward(self, student_logits, teacher_logits, labels):
        t = self.temperature
        log_p = F.log_softmax(F.affine(student_logits, 1.0 / t), dim=1)
        q = F.softmax(F.affine(teacher_logits, 1.0 / t), dim=1)
        soft = F.kl_div(log_p, q, reduction="batchmean")
        hard = F.cross_entropy(student_logits, labels)
        return F.add(F.affine(soft, self.alpha * t * t), F.affine(hard, 1.0 - self.alpha))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}"


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities (PyTorch ``nn.BCELoss``, logs clamped at -100)."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(reduction)
        F._no_legacy_reduction(size_average, reduce)
        self.weight = weight

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, weight=self.weight,
                                      reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross-entropy in one stable op (PyTorch ``nn.BCEWithLogitsLoss``)."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean",
                 pos_weight=None):
        super().__init__(reduction)
        F._no_legacy_reduction(size_average, reduce)
        self.weight, self.pos_weight = weight, pos_weight

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                  reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities (PyTorch ``nn.NLLLoss``)."""

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        super().__init__(reduction)
        F._no_legacy_reduction(size_average, reduce)
        self.weight, self.ignore_index = weight, int(ignore_index)

    def forward(self, input, target):
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """PyTorch ``nn.SmoothL1Loss(beta)``."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean",
                 beta: float = 1.0):
        super().__init__(reduction)
        F._no_legacy_reduction(size_average, reduce)
        self.beta = float(beta)

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """PyTorch ``nn.HuberLoss(delta)``."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        self.delta = float(delta)

    def forward(self, input, target):
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)
