"""Loss modules. Called as ``loss(output, *labels)`` while tracing; each returns a scalar.

All reduce with PyTorch's default mean (KL divergence: 'batchmean').
"""
from __future__ import annotations

from . import functional as F
from .module import Module

__all__ = ["CrossEntropyLoss", "MSELoss", "L1Loss", "HingeLoss", "MultiMarginLoss",
           "KLDivLoss", "DistillLoss"]


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits [N, C]. Integer labels [N] use the fused
    ``softmax_xent`` op; float targets [N, C] (class probabilities) ``softmax_xent_prob``."""

    def forward(self, input, target):
        return F.cross_entropy(input, target, reduction=self.reduction)


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
