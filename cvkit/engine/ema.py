"""An exponential moving average of a model's weights."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """Keeps ``ema = d * ema + (1 - d) * weights`` after every optimizer step.

    The decay ramps up as ``min(decay, (1 + t) / (10 + t))`` for the first ``warmup_steps``
    steps, so the average is not dominated by the random initial weights. Buffers (batch-norm
    statistics) are copied, not averaged.

    Args:
        model: the model being trained; a frozen copy is made.
        decay: the decay once warmed up.
        warmup_steps: steps over which the decay ramps up.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, warmup_steps: int = 2000) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema.decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.warmup_steps = decay, warmup_steps
        self.updates = 0
        self._averaged = {n for n, p in self.module.named_parameters() if p.is_floating_point()}

    def current_decay(self) -> float:
        if self.updates < self.warmup_steps:
            return min(self.decay, (1 + self.updates) / (10 + self.updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        self.updates += 1
        ema_state = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if name in self._averaged:
                target.mul_(d).add_(value.detach(), alpha=1.0 - d)
            else:
                target.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
