"""Learning-rate schedules, applied by the C runtime per optimizer step (iteration).

A scheduler only configures the graph's STATE (``docs/format.md``); the runtime computes the
learning rate of step ``t`` (0-based, before the update) with the same formulas as
:meth:`LRScheduler.lr_at`, which is provided for tests and plots. Unlike PyTorch, there is
no ``scheduler.step()``: schedules count optimizer steps on the device.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

from .. import ir

SCHED_CONSTANT, SCHED_STEP, SCHED_MULTISTEP, SCHED_EXPONENTIAL, SCHED_COSINE, SCHED_INV = range(6)
MAX_MILESTONES = 6


class LRScheduler:
    """Base class: a constant learning rate (the optimizer's lr)."""

    kind = SCHED_CONSTANT

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = float(optimizer.base_lr)

    def _floats(self):
        return []

    def _ints(self):
        return []

    @property
    def warmup(self) -> int:
        return 0

    def configure(self, state: ir.TrainState) -> None:
        """Write the schedule into the STATE section."""
        state.base_lr = self.base_lr
        state.sched_kind = self.kind
        f, i = list(self._floats()), list(self._ints())
        state.sched_f = [float(x) for x in f] + [0.0] * (6 - len(f))
        state.sched_i = [int(x) for x in i] + [0] * (6 - len(i))
        state.warmup = int(self.warmup)
        check_schedule(state)

    def lr_at(self, step: int) -> float:
        """Learning rate used by optimizer step ``step`` (0-based)."""
        lr = self._lr(int(step))
        if step < self.warmup:
            lr *= (step + 1) / self.warmup
        return lr

    def _lr(self, t: int) -> float:
        return self.base_lr

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_lr={self.base_lr})"


ConstantLR = LRScheduler


class StepLR(LRScheduler):
    """lr * gamma ** (step // step_size)."""

    kind = SCHED_STEP

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        super().__init__(optimizer)
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def _floats(self):
        return [self.gamma]

    def _ints(self):
        return [self.step_size]

    def _lr(self, t):
        return self.base_lr * self.gamma ** (t // self.step_size)


class MultiStepLR(LRScheduler):
    """lr * gamma ** (number of milestones <= step); at most 6 milestones (all >= 1)."""

    kind = SCHED_MULTISTEP

    def __init__(self, optimizer, milestones: Sequence[int], gamma: float = 0.1):
        super().__init__(optimizer)
        ms = sorted(int(m) for m in milestones)
        if len(ms) > MAX_MILESTONES or any(m < 1 for m in ms):
            raise ValueError(f"MultiStepLR takes up to {MAX_MILESTONES} milestones >= 1, "
                             f"got {list(milestones)}")
        self.milestones, self.gamma = ms, float(gamma)

    def _floats(self):
        return [self.gamma]

    def _ints(self):
        return self.milestones

    def _lr(self, t):
        return self.base_lr * self.gamma ** sum(1 for m in self.milestones if m <= t)


class ExponentialLR(LRScheduler):
    """lr * gamma ** step."""

    kind = SCHED_EXPONENTIAL

    def __init__(self, optimizer, gamma: float):
        super().__init__(optimizer)
        self.gamma = float(gamma)

    def _floats(self):
        return [self.gamma]

    def _lr(self, t):
        return self.base_lr * self.gamma ** t


class CosineAnnealingLR(LRScheduler):
    """eta_min + (lr - eta_min) * (1 + cos(pi * min(step, T_max) / T_max)) / 2."""

    kind = SCHED_COSINE

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):  # noqa: N803 (PyTorch)
        super().__init__(optimizer)
        if T_max < 1:
            raise ValueError(f"T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)

    def _floats(self):
        return [self.eta_min]

    def _ints(self):
        return [self.T_max]

    def _lr(self, t):
        c = math.cos(math.pi * min(t, self.T_max) / self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + c) / 2


class InvLR(LRScheduler):
    """MNN / Caffe "inv": lr * (1 + gamma * step) ** (-power)."""

    kind = SCHED_INV

    def __init__(self, optimizer, gamma: float, power: float):
        super().__init__(optimizer)
        self.gamma, self.power = float(gamma), float(power)

    def _floats(self):
        return [self.gamma, self.power]

    def _lr(self, t):
        return self.base_lr * (1.0 + self.gamma * t) ** (-self.power)


class LinearWarmup(LRScheduler):
    """Linear warm-up over ``warmup_steps``: the lr of step t < warmup_steps is multiplied by
    (t + 1) / warmup_steps. Wraps another schedule (``after``) or a constant lr."""

    def __init__(self, optimizer, warmup_steps: int, after: Optional[LRScheduler] = None):
        super().__init__(optimizer)
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if after is not None and after.optimizer is not optimizer:
            raise ValueError("the wrapped scheduler belongs to another optimizer")
        if isinstance(after, LinearWarmup):
            raise ValueError("LinearWarmup cannot wrap another LinearWarmup")
        self.after = after if after is not None else LRScheduler(optimizer)
        self.warmup_steps = int(warmup_steps)
        self.kind = self.after.kind

    @property
    def warmup(self) -> int:
        return self.warmup_steps

    def _floats(self):
        return self.after._floats()

    def _ints(self):
        return self.after._ints()

    def _lr(self, t):
        return self.after._lr(t)


def check_schedule(state: ir.TrainState) -> None:
    """Refuse (InvalidArgumentError) a schedule whose learning rate is not finite and >= 0 at
    some step: the runtime's own whole-range check, so export and load agree."""
    from .. import _native

    _native.check_schedule(float(state.base_lr), int(state.sched_kind), list(state.sched_f),
                           list(state.sched_i), int(state.warmup))
