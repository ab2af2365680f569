"""Putting checkpoint weights into a model, with errors that say what does not fit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cvkit.config import yaml_io
from cvkit.errors import CheckpointError


def inference_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to predict with: the EMA average when the run kept one, else the model's."""
    ema = state.get("hooks", {}).get("EMAHook", {})
    return ema.get("module") or state["model"]


def load_model_weights(
    model: nn.Module, weights: dict[str, torch.Tensor], source: str | os.PathLike | None = None
) -> None:
    """Load ``weights`` into ``model``; a checkpoint of another model is a clear error.

    Args:
        source: the checkpoint file, named in the error (and its run folder's config.yaml,
            the config to pass instead, when it has one).

    Raises:
        CheckpointError: (a ``ValueError``) naming the checkpoint, up to five missing,
            unexpected and mis-shaped keys, and the config it was trained with.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in weights and tuple(weights[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{title}: {', '.join(items[:5])}{more}")
        raise CheckpointError(
            f"{_describe(source)} does not fit this model: {'; '.join(parts)}",
            hints=[
                "it was written for another model or class count; pass the config it was "
                f"trained with ({_run_config(source)})"
            ],
        )
    model.load_state_dict(weights)


def _describe(source: str | os.PathLike | None) -> str:
    return "the checkpoint" if source is None else f"checkpoint {str(source)!r}"


def _run_config(source: str | os.PathLike | None) -> str:
    """The run folder's config.yaml beside the checkpoint, when there is one."""
    if source is not None and (Path(source).parent / "config.yaml").is_file():
        return str(Path(source).parent / "config.yaml")
    return "the run folder's config.yaml"


def checkpoint_config(state: dict[str, Any]) -> dict[str, Any] | None:
    """The resolved config saved in a checkpoint, as data."""
    text = state.get("config")
    return yaml_io.loads(text, "the checkpoint's config") if isinstance(text, str) else None
