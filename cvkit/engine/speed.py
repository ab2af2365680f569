"""The GPU path's switches: ``train.channels_last`` and ``train.compile``.

Both change how the model runs, never what it holds: ``channels_last`` re-lays the 4-D
weights in NHWC (convolutions then keep their activations in NHWC, the layout tensor cores
want), and ``compile`` compiles the model's ``forward`` in place (``nn.Module.compile``), so
parameter names, checkpoints and exact resume are those of an eager run. The loss and target
assignment around the forward stay eager; the EMA copy (``engine.ema``, a deep copy) compiles
its own forward, over its own weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def apply_speed_settings(
    model: nn.Module, channels_last: bool, compile: bool | dict[str, Any]
) -> list[str]:
    """Apply the settings to ``model`` in place; a line for the run's log per setting on."""
    lines = []
    if channels_last:
        model.to(memory_format=torch.channels_last)
        lines.append("train.channels_last: 4-D weights in NHWC (channels last)")
    if compile:
        options = {} if compile is True else dict(compile)
        model.compile(**options)
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "defaults"
        lines.append(f"train.compile: the model's forward compiled by torch.compile ({shown})")
    return lines
