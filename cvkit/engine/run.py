"""From a config to a finished run: build everything, train, write the run folder."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvkit import plugins
from cvkit.builder import build, plan
from cvkit.config import Config
from cvkit.data.loader import build_loader
from cvkit.engine.optim import build_optimizer
from cvkit.engine.trainer import Trainer, classification_evaluator
from cvkit.errors import ConfigError
from cvkit.registry import DATASETS, MODELS, OPTIMIZERS
from cvkit.settings import RunSettings, parse_settings


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, float]


def pick_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was asked for but no GPU is visible",
            where="train.device",
            hints=["use train.device=cpu or train.device=auto"],
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def validate(cfg: Config) -> RunSettings:
    """Check the whole config (settings, model, datasets) without building or reading data."""
    settings = parse_settings(cfg)
    if settings.imports:
        plugins.import_plugins(settings.imports, "config imports")
    plan(settings.model, MODELS, path="model", describe=cfg.describe)
    for split in ("train", "val"):
        spec = getattr(settings.data, split)
        if spec is not None:
            plan(spec, DATASETS, path=f"data.{split}", describe=cfg.describe)
    plan(
        settings.train.optimizer,
        OPTIMIZERS,
        path="train.optimizer",
        describe=cfg.describe,
        nested=True,
        wired=("params",),
    )
    return settings


def prepare(cfg: Config) -> tuple[RunSettings, nn.Module, dict[str, Any]]:
    """Check the whole config, import its plugins, build the model and datasets.

    Everything is validated before data is read: settings, then the model's plan.
    """
    settings = validate(cfg)
    seed_everything(settings.train.seed)
    model = build(settings.model, MODELS, path="model", describe=cfg.describe)
    datasets = {
        split: build(spec, DATASETS, path=f"data.{split}", describe=cfg.describe)
        for split, spec in (("train", settings.data.train), ("val", settings.data.val))
        if spec is not None
    }
    _check_classes(model, datasets, cfg)
    return settings, model, datasets


def _check_classes(model: nn.Module, datasets: dict[str, Any], cfg: Config) -> None:
    num_classes = getattr(model, "num_classes", None)
    for split, ds in datasets.items():
        classes = getattr(ds, "classes", None)
        if num_classes is not None and classes is not None and len(classes) != num_classes:
            raise ConfigError(
                f"the model has num_classes={num_classes} but data.{split} has "
                f"{len(classes)} classes ({', '.join(map(str, classes[:10]))}"
                f"{', ...' if len(classes) > 10 else ''})",
                where="model.head.num_classes",
                hints=[
                    f"set model.head.num_classes={len(classes)}",
                    f"in {cfg.describe('model.head.num_classes') or 'the config'}",
                ],
            )


def train(cfg: Config) -> RunResult:
    """Train the model a config describes; returns the run folder and final metrics."""
    settings, model, datasets = prepare(cfg)
    if "train" not in datasets:
        raise ConfigError(
            "there is no training data",
            where="data.train",
            hints=["add `data: {train: {type: ...}}`; `cvkit list datasets`"],
        )
    run_dir = Path(settings.run_dir) / settings.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    device = pick_device(settings.train.device)
    data = settings.data
    train_loader = build_loader(
        datasets["train"],
        data.batch_size,
        shuffle=True,
        num_workers=data.num_workers,
        seed=settings.train.seed,
    )
    val_loader = None
    if "val" in datasets:
        val_loader = build_loader(
            datasets["val"],
            data.val_batch_size or data.batch_size,
            shuffle=False,
            num_workers=data.num_workers,
        )
    model.to(device)
    optimizer = build_optimizer(settings.train.optimizer, model)
    trainer = Trainer(
        model,
        optimizer,
        train_loader,
        run_dir,
        epochs=settings.train.epochs,
        max_steps=settings.train.max_steps,
        device=device,
        val_loader=val_loader,
        evaluator=classification_evaluator,
        eval_interval=settings.eval.interval,
        log_interval=settings.train.log_interval,
        extra_state={
            "classes": list(getattr(datasets["train"], "classes", []) or []),
            "config": cfg.to_yaml(),
        },
    )
    metrics = trainer.run()
    return RunResult(run_dir, metrics)
