"""``edgetrain.optim``: optimizers and learning-rate schedules (run by the C runtime)."""
from . import lr_scheduler
from .lr_scheduler import (ConstantLR, CosineAnnealingLR, ExponentialLR, InvLR, LinearWarmup,
                           LRScheduler, MultiStepLR, StepLR)
from .optimizer import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "lr_scheduler", "LRScheduler", "ConstantLR",
           "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "InvLR",
           "LinearWarmup"]
