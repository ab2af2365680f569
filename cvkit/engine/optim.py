"""Optimizers by name: torch.optim's, registered in OPTIMIZERS."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cvkit.builder import build
from cvkit.registry import OPTIMIZERS

for _cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adagrad):
    OPTIMIZERS.add(_cls, source="torch.optim")


def build_optimizer(cfg: dict[str, Any], model: nn.Module, path: str = "train.optimizer"):
    """Build ``cfg`` (``{type: SGD, lr: 0.01, ...}``) over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return build(cfg, OPTIMIZERS, path=path, params=params)
