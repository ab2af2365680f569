"""Optimizers by name (torch.optim's, registered in OPTIMIZERS) over parameter groups.

Parameter groups follow the usual fine-tuning rules: no weight decay on biases and
normalisation weights (every parameter with fewer than two dimensions), a lower LR for the
backbone (``backbone_lr_mult``), and layer-wise LR decay over the backbone's stages
(``layer_decay``: stage i of n gets ``backbone LR * layer_decay ** (n - i)``, the head 1).
Frozen parameters stay in the optimizer (without a gradient they are skipped), so unfreezing
later needs no new optimizer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cvkit.builder import build
from cvkit.registry import OPTIMIZERS

for _cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adagrad):
    OPTIMIZERS.add(_cls, source="torch.optim")


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    *,
    no_decay_norm_bias: bool = True,
    backbone_lr_mult: float = 1.0,
    layer_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Split ``model``'s parameters into optimizer groups with their own ``lr`` and decay.

    Returns:
        ``[{"params": [...], "lr": float, "weight_decay": float, "lr_scale": float}, ...]``,
        one group per distinct (lr, weight decay), in a stable order.
    """
    scales = _lr_scales(model, backbone_lr_mult, layer_decay)
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        decay = 0.0 if (no_decay_norm_bias and p.ndim <= 1) else weight_decay
        scale = scales.get(id(p), 1.0)
        group = groups.setdefault(
            (scale, decay),
            {"params": [], "names": [], "lr": lr * scale, "weight_decay": decay, "lr_scale": scale},
        )
        group["params"].append(p)
        group["names"].append(name)
    return list(groups.values())


def _lr_scales(model: nn.Module, mult: float, layer_decay: float | None) -> dict[int, float]:
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return {}
    scales = {id(p): mult for p in backbone.parameters()}
    if layer_decay is None:
        return scales
    stages = getattr(backbone, "stage_parameter_groups", None)
    if stages is None:
        raise ValueError(
            f"train.param_groups.layer_decay needs a backbone with stage_parameter_groups(); "
            f"{type(backbone).__name__} has none"
        )
    groups = stages()
    n = len(groups)
    for i, params in enumerate(groups):
        for p in params:
            scales[id(p)] = mult * layer_decay ** (n - i)
    return scales


def build_optimizer(
    cfg: dict[str, Any],
    model: nn.Module,
    groups_cfg: Any = None,
    path: str = "train.optimizer",
    describe=None,
) -> torch.optim.Optimizer:
    """Build ``cfg`` (``{type: SGD, lr: 0.01, ...}``) over ``model``'s parameter groups.

    Args:
        groups_cfg: a ``ParamGroupSettings`` (or ``None`` for the defaults).
    """
    cfg = dict(cfg)
    lr = float(cfg.get("lr", 1e-3))
    weight_decay = float(cfg.get("weight_decay", 0.0))
    options = {} if groups_cfg is None else vars(groups_cfg)
    groups = param_groups(model, lr, weight_decay, **options)
    for g in groups:
        g.pop("names")
    return build(cfg, OPTIMIZERS, path=path, describe=describe, params=groups)
