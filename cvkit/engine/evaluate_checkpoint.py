"""Evaluate a checkpoint on a config's data: ``cvkit eval``.

The checkpoint and the data are checked before the model is built; under ``torchrun`` every
process scores its shard and rank 0 writes the report (see ``engine.evaluate``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from cvkit.config import Config
from cvkit.config.class_count import fill_from_classes
from cvkit.config.settings import RunSettings
from cvkit.data.loader import build_loader, resolve_workers
from cvkit.engine import distributed
from cvkit.engine.batching import plan_batch
from cvkit.engine.checkpoint import load_checkpoint
from cvkit.engine.run import (
    build_datasets,
    build_model,
    check_classes,
    check_ignore_index,
    pick_device,
    validate,
)
from cvkit.engine.tasks import task_of
from cvkit.engine.weights import inference_weights, load_model_weights
from cvkit.errors import ConfigError


def evaluate(
    cfg: Config,
    checkpoint: str | os.PathLike,
    split: str = "val",
    out_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on ``data.<split>``; writes the report to ``out_dir``.

    The checkpoint file and the data are checked before the model is built. Under
    ``torchrun`` every process scores its shard of the data and rank 0 writes the report
    of the whole (the others return only the metrics)."""
    state = load_checkpoint(checkpoint)
    fill_from_classes(cfg, list(state.get("classes") or []), f"checkpoint {str(checkpoint)!r}")
    settings = validate(cfg)
    dist_cfg = settings.train.dist
    processes, device = distributed.setup(
        dist_cfg.backend, pick_device(settings.train.device), dist_cfg.timeout_minutes
    )
    return _evaluate(cfg, settings, state, checkpoint, split, out_dir, processes, device)


def _evaluate(
    cfg: Config,
    settings: RunSettings,
    state: dict[str, Any],
    checkpoint: str | os.PathLike,
    split: str,
    out_dir: str | os.PathLike | None,
    processes: distributed.Processes,
    device: torch.device,
) -> dict[str, Any]:
    datasets = build_datasets(settings, cfg, (split,))
    if split not in datasets:
        raise ConfigError(f"the config has no data.{split} to evaluate on", where=f"data.{split}")
    model = build_model(settings, cfg, pretrained=False)  # the checkpoint's weights replace them
    task = task_of(model)
    load_model_weights(model, inference_weights(state), Path(checkpoint))
    classes = check_classes(model, datasets, cfg)
    check_ignore_index(model, datasets, cfg)
    model.to(device)
    loader = build_loader(
        datasets[split],
        settings.data.val_batch_size or plan_batch(settings, cfg, processes).per_process,
        shuffle=False,
        num_workers=resolve_workers(settings.data.num_workers, processes.local_world_size),
        collate_fn=task.collate(model),
        rank=processes.rank,
        world_size=processes.world_size,
        even=False,
    )
    model.eval()
    evaluation = task.evaluate(model, loader, device, datasets[split], keep_first=True)
    if not processes.is_main:
        return {"metrics": evaluation.metrics}
    out = Path(out_dir) if out_dir else Path(checkpoint).parent / f"eval_{split}"
    out.mkdir(parents=True, exist_ok=True)
    report, text = task.report(evaluation, classes, out)
    print(text)
    return report
