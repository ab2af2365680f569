"""Learning-rate schedules: a factor per optimizer step, after an optional linear warmup.

Each schedule is a small callable ``factor(step) -> float`` registered in SCHEDULERS and
driven through ``torch.optim.lr_scheduler.LambdaLR``, which multiplies every parameter
group's own initial LR (so backbone multipliers and layer decay are kept). Epoch-based
settings (``milestones``, ``warmup_epochs``) are converted with ``steps_per_epoch``, which the
engine wires in together with ``total_steps``.

Example:
    >>> s = Cosine(total_steps=100, steps_per_epoch=10, warmup_steps=10, warmup_factor=0.1)
    >>> round(s(0), 3), round(s(10), 3), round(s(100), 3)
    (0.1, 1.0, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cvkit.registry import SCHEDULERS


class Schedule:
    """Warmup from ``warmup_factor`` to 1 over the warmup steps, then ``main_factor``.

    Args:
        total_steps: optimizer steps in the whole run (wired by the engine).
        steps_per_epoch: optimizer steps per epoch (wired by the engine).
        warmup_steps: warmup length in steps; or give ``warmup_epochs``.
        warmup_epochs: warmup length in epochs (may be fractional).
        warmup_factor: the factor at step 0 of the warmup.
    """

    def __init__(
        self,
        total_steps: int,
        steps_per_epoch: int,
        warmup_steps: int = 0,
        warmup_epochs: float = 0.0,
        warmup_factor: float = 0.001,
    ) -> None:
        if warmup_steps and warmup_epochs:
            raise ValueError("give warmup_steps or warmup_epochs, not both")
        if not 0.0 <= warmup_factor <= 1.0:
            raise ValueError(f"warmup_factor must be in [0, 1], got {warmup_factor}")
        self.total_steps = max(1, total_steps)
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.warmup_steps = warmup_steps or round(warmup_epochs * self.steps_per_epoch)
        self.warmup_factor = warmup_factor

    def __call__(self, step: int) -> float:
        factor = self.main_factor(step)
        if step < self.warmup_steps:
            alpha = step / self.warmup_steps
            factor *= self.warmup_factor + (1.0 - self.warmup_factor) * alpha
        return factor

    def main_factor(self, step: int) -> float:
        return 1.0


@SCHEDULERS.register()
class Constant(Schedule):
    """The base LR throughout (after any warmup)."""


@SCHEDULERS.register()
class Step(Schedule):
    """Multiply by ``gamma`` every ``step_epochs`` epochs."""

    def __init__(
        self,
        total_steps: int,
        steps_per_epoch: int,
        step_epochs: int = 30,
        gamma: float = 0.1,
        warmup_steps: int = 0,
        warmup_epochs: float = 0.0,
        warmup_factor: float = 0.001,
    ) -> None:
        super().__init__(total_steps, steps_per_epoch, warmup_steps, warmup_epochs, warmup_factor)
        if step_epochs < 1:
            raise ValueError(f"step_epochs must be at least 1, got {step_epochs}")
        self.step_epochs, self.gamma = step_epochs, gamma

    def main_factor(self, step: int) -> float:
        return self.gamma ** (step // (self.step_epochs * self.steps_per_epoch))


@SCHEDULERS.register()
class MultiStep(Schedule):
    """Multiply by ``gamma`` at each epoch in ``milestones`` (the detection "1x": [8, 11])."""

    def __init__(
        self,
        total_steps: int,
        steps_per_epoch: int,
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        warmup_steps: int = 0,
        warmup_epochs: float = 0.0,
        warmup_factor: float = 0.001,
    ) -> None:
        super().__init__(total_steps, steps_per_epoch, warmup_steps, warmup_epochs, warmup_factor)
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must increase, got {list(milestones)}")
        self.milestones = [m * self.steps_per_epoch for m in milestones]
        self.gamma = gamma

    def main_factor(self, step: int) -> float:
        return self.gamma ** sum(step >= m for m in self.milestones)


@SCHEDULERS.register()
class Cosine(Schedule):
    """Half a cosine from 1 down to ``min_factor`` at the last step (after warmup)."""

    def __init__(
        self,
        total_steps: int,
        steps_per_epoch: int,
        min_factor: float = 0.0,
        warmup_steps: int = 0,
        warmup_epochs: float = 0.0,
        warmup_factor: float = 0.001,
    ) -> None:
        super().__init__(total_steps, steps_per_epoch, warmup_steps, warmup_epochs, warmup_factor)
        self.min_factor = min_factor

    def main_factor(self, step: int) -> float:
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, max(0.0, (step - self.warmup_steps) / span))
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


@SCHEDULERS.register()
class Poly(Schedule):
    """``(1 - t) ** power`` over the run (the segmentation schedule), floored at min_factor."""

    def __init__(
        self,
        total_steps: int,
        steps_per_epoch: int,
        power: float = 0.9,
        min_factor: float = 0.0,
        warmup_steps: int = 0,
        warmup_epochs: float = 0.0,
        warmup_factor: float = 0.001,
    ) -> None:
        super().__init__(total_steps, steps_per_epoch, warmup_steps, warmup_epochs, warmup_factor)
        self.power, self.min_factor = power, min_factor

    def main_factor(self, step: int) -> float:
        t = min(1.0, step / self.total_steps)
        return max(self.min_factor, (1.0 - t) ** self.power)
