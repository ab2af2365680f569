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
from cvkit.data.collate import with_pad_multiple
from cvkit.data.loader import build_loader, resolve_workers
from cvkit.engine import distributed
from cvkit.engine.batching import plan_batch
from cvkit.engine.checkpoint import load_checkpoint
from cvkit.engine.deployed import DeployedModel, is_deployed, load_deployed
from cvkit.engine.evaluate import Evaluation
from cvkit.engine.parity import compare_metric
from cvkit.engine.run import (
    batch_groups,
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
    """Evaluate a checkpoint, or an exported model (``.onnx``, ``.pt2``), on
    ``data.<split>``; writes the report to ``out_dir``.

    The checkpoint file and the data are checked before the model is built. Under
    ``torchrun`` every process scores its shard of the data and rank 0 writes the report
    of the whole (the others return only the metrics)."""
    if is_deployed(checkpoint):
        model: Any = load_deployed(checkpoint)
        classes = model.classes
    else:
        state = load_checkpoint(checkpoint)
        classes = list(state.get("classes") or [])
    fill_from_classes(cfg, classes, f"checkpoint {str(checkpoint)!r}")
    settings = validate(cfg)
    dist_cfg = settings.train.dist
    processes, device = distributed.setup(
        dist_cfg.backend, pick_device(settings.train.device), dist_cfg.timeout_minutes
    )
    datasets = build_datasets(settings, cfg, (split,))
    if split not in datasets:
        raise ConfigError(f"the config has no data.{split} to evaluate on", where=f"data.{split}")
    if not is_deployed(checkpoint):
        model = build_model(
            settings, cfg, pretrained=False
        )  # the checkpoint's weights replace them
        load_model_weights(model, inference_weights(state), Path(checkpoint))
        model.to(device).eval()
    classes = check_classes(model, datasets, cfg)
    check_ignore_index(model, datasets, cfg)
    evaluation = _evaluation(model, settings, cfg, datasets[split], processes, device)
    if not processes.is_main:
        return {"metrics": evaluation.metrics}
    out = Path(out_dir) if out_dir else Path(checkpoint).parent / f"eval_{split}"
    out.mkdir(parents=True, exist_ok=True)
    report, text = task_of(model).report(evaluation, classes, out)
    print(text)
    return report


def _evaluation(
    model: Any,
    settings: RunSettings,
    cfg: Config,
    dataset: Any,
    processes: distributed.Processes,
    device: torch.device,
) -> Evaluation:
    """One pass of ``model`` (eval mode) over ``dataset``, this process's shard of it."""
    task = task_of(model)
    loader = build_loader(
        dataset,
        settings.data.val_batch_size or plan_batch(settings, cfg, processes).per_process,
        shuffle=False,
        num_workers=resolve_workers(settings.data.num_workers, processes.local_world_size),
        collate_fn=with_pad_multiple(task.collate(model), settings.data.pad_multiple),
        rank=processes.rank,
        world_size=processes.world_size,
        even=False,
        groups=batch_groups(settings.data, dataset),
    )
    return task.evaluate(model, loader, device, dataset, keep_first=True)


# how far an export's metric may be from the eager model's (0.1 AP points; mIoU 0.001)
METRIC_TOLERANCE = 0.001


def compare_on_data(cfg: Config, model: torch.nn.Module, deployed: DeployedModel) -> list[str]:
    """Evaluate the eager ``model`` and its export on the config's validation data; the
    task's metric must agree within ``METRIC_TOLERANCE``.

    Raises:
        ConfigError: the config has no validation data.
        ParityError: the metrics differ by more.
    """
    settings = validate(cfg)
    datasets = build_datasets(settings, cfg, ("val",))
    if "val" not in datasets:
        raise ConfigError("checking an export's metric needs data.val", where="data.val")
    processes, device = distributed.current(), torch.device("cpu")
    name = task_of(model).default_metric
    found = [
        _evaluation(m, settings, cfg, datasets["val"], processes, device).metrics[name]
        for m in (model, deployed)
    ]
    return [compare_metric(f"{name} on data.val", found[0], found[1], METRIC_TOLERANCE)]
