"""``cvkit tune-loader``: the data loader's images/s at every worker count, and the choice
``data.num_workers: auto`` then uses."""

from __future__ import annotations

import os

from cvkit.builder import build
from cvkit.config import Config
from cvkit.config.class_count import fill_from_classes
from cvkit.data.collate import with_pad_multiple
from cvkit.data.worker_probe import (
    WorkerProbe,
    cache_key,
    candidate_counts,
    probe_workers,
    store_choice,
)
from cvkit.engine import distributed
from cvkit.engine.batching import plan_batch
from cvkit.engine.run import build_model, validate
from cvkit.engine.tasks import task_of
from cvkit.errors import ConfigError
from cvkit.registry import DATASETS


def tune_loader(cfg: Config, split: str = "train", max_workers: int | None = None) -> WorkerProbe:
    """``cvkit tune-loader``: the loader's images/s at every worker count up to
    ``max_workers`` (default: this machine's cores) for ``data.<split>``, with the choice
    that ``num_workers: auto`` then uses (it is cached)."""
    settings = validate(cfg)
    spec = getattr(settings.data, split)
    if spec is None:
        raise ConfigError(f"the config has no data.{split}", where=f"data.{split}")
    dataset = build(spec, DATASETS, path=f"data.{split}", describe=cfg.describe)
    if fill_from_classes(cfg, list(getattr(dataset, "classes", None) or []), f"data.{split}"):
        settings = validate(cfg)
    model = build_model(settings, cfg, pretrained=False)  # for its task's collate only
    collate = with_pad_multiple(task_of(model).collate(model), settings.data.pad_multiple)
    batch_size = plan_batch(settings, cfg, distributed.Processes()).per_process
    cores = max_workers if max_workers is not None else os.cpu_count() or 1
    probe = probe_workers(dataset, batch_size, collate, candidate_counts(cores))
    if split == "train":  # what a one-process run of this config then uses
        store_choice(cache_key(cfg.get("data.train"), batch_size, 1), probe)
    return probe
