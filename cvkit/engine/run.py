"""From a config to a finished run: validate, build, train, evaluate, predict, export."""

from __future__ import annotations

import contextlib
import os
import random
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvkit import __version__, plugins
from cvkit.builder import build, plan
from cvkit.config import Config
from cvkit.config.class_count import fill_from_classes, with_check_count
from cvkit.config.settings import RunSettings, parse_settings
from cvkit.data.collate import with_pad_multiple
from cvkit.data.doctor.image_files import precheck
from cvkit.data.grouping import aspect_groups, dataset_sizes
from cvkit.data.loader import build_loader, resolve_workers
from cvkit.engine import distributed
from cvkit.engine import hooks as H
from cvkit.engine.auto_batch import fit_batch
from cvkit.engine.batching import BatchPlan, plan_batch
from cvkit.engine.batching import describe as describe_batch
from cvkit.engine.checkpoint import (
    check_training_state,
    load_checkpoint,
    remove_unfinished_writes,
)
from cvkit.engine.curves import CurvesHook
from cvkit.engine.evaluate import Evaluation
from cvkit.engine.loader_workers import auto_workers
from cvkit.engine.optim import build_optimizer
from cvkit.engine.resume import ResumePlan, describe_changes, plan_resume, record_resume
from cvkit.engine.speed import apply_speed_settings
from cvkit.engine.tasks import Task, task_of
from cvkit.engine.trainer import Trainer
from cvkit.errors import CheckpointError, CheckpointNotFoundError, ConfigError, add_note
from cvkit.registry import DATASETS, HOOKS, MODELS, OPTIMIZERS, SCHEDULERS

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, float]


def validate(cfg: Config) -> RunSettings:
    """Check the whole config (settings and every component) without building anything."""
    settings = parse_settings(cfg)
    if settings.imports:
        plugins.import_plugins(settings.imports, "config imports")
    describe = cfg.describe
    # `num_classes: auto` is checked as a count here; the data fills it in before building
    plan(with_check_count(settings.model), MODELS, path="model", describe=describe)
    for split in ("train", "val", "test"):
        spec = getattr(settings.data, split)
        if spec is not None:
            plan(spec, DATASETS, path=f"data.{split}", describe=describe)
    plan(
        settings.train.optimizer,
        OPTIMIZERS,
        path="train.optimizer",
        describe=describe,
        nested=True,
        wired=("params",),
    )
    plan(
        settings.train.schedule,
        SCHEDULERS,
        path="train.schedule",
        describe=describe,
        wired=("total_steps", "steps_per_epoch"),
    )
    for i, hook in enumerate(settings.train.hooks):
        plan(hook, HOOKS, path=f"train.hooks[{i}]", describe=describe)
    return settings


def pick_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was asked for but no GPU is visible",
            where="train.device",
            hints=["use train.device=cpu or auto"],
        )
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this workspace setting to be deterministic (CUDA docs, "Reproducibility")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def build_model(settings: RunSettings, cfg: Config, *, pretrained: bool = True) -> nn.Module:
    """The config's model. ``pretrained=False``: every ``pretrained:`` in it switched off, for
    a model whose weights a checkpoint replaces (nothing downloaded or read for nothing)."""
    spec = settings.model if pretrained else without_pretrained(settings.model)
    return build(spec, MODELS, path="model", describe=cfg.describe)


def without_pretrained(spec: Any) -> Any:
    """A copy of a component spec with every ``pretrained`` key, at any depth, set to False."""
    if isinstance(spec, Mapping):
        return {k: False if k == "pretrained" else without_pretrained(v) for k, v in spec.items()}
    if isinstance(spec, list | tuple):
        return type(spec)(without_pretrained(v) for v in spec)
    return spec


def build_datasets(settings: RunSettings, cfg: Config, splits=("train", "val")) -> dict[str, Any]:
    """The datasets of ``splits`` that the config has, each checked to hold something."""
    datasets = {
        split: build(spec, DATASETS, path=f"data.{split}", describe=cfg.describe)
        for split in splits
        if (spec := getattr(settings.data, split)) is not None
    }
    for split, ds in datasets.items():
        if len(ds) == 0:
            spec = getattr(settings.data, split)
            files = ", ".join(
                f"{key} {spec[key]!r}" for key in ("ann_file", "root", "image_dir") if key in spec
            )
            raise ValueError(
                f"data.{split} ({spec['type']}{f', {files}' if files else ''}) holds no "
                "images: give it a file or folder with some"
            )
    return datasets


def check_classes(model: nn.Module, datasets: dict[str, Any], cfg: Config) -> list[str]:
    """The class names, after checking the model's class count against every dataset."""
    num_classes = getattr(model, "num_classes", None)
    names: list[str] = []
    for split, ds in datasets.items():
        classes = list(getattr(ds, "classes", None) or [])
        if num_classes is not None and classes and len(classes) != num_classes:
            shown = ", ".join(map(str, classes[:10])) + (", ..." if len(classes) > 10 else "")
            key = _num_classes_key(cfg)
            raise ConfigError(
                f"the model has num_classes={num_classes} but data.{split} has "
                f"{len(classes)} classes ({shown})",
                where=key,
                hints=[
                    f"set {key}={len(classes)}",
                    f"in {cfg.describe(key) or 'the config'}",
                ],
            )
        names = names or classes
    return names or [str(i) for i in range(num_classes or 0)]


def check_ignore_index(model: nn.Module, datasets: dict[str, Any], cfg: Config) -> None:
    """Segmentation: every dataset marks unlabelled pixels with the model's ``ignore_index``.

    The model's value decides which pixels the loss and the metrics skip, and batches are
    padded with it (the segmentation task's collate); a dataset that writes another value
    would have its unlabelled pixels scored as a class, or fail as a value out of range.
    """
    expected = getattr(model, "ignore_index", None)
    if expected is None:
        return
    for split, ds in datasets.items():
        value = getattr(ds, "ignore_index", None)
        if value is None or value == expected:
            continue
        origins = [
            f"data.{split} in {cfg.describe(f'data.{split}') or 'the config'}",
            f"model in {cfg.describe('model.ignore_index') or 'the config'}",
        ]
        raise ConfigError(
            f"data.{split} marks unlabelled pixels with {value} but model.ignore_index is "
            f"{expected}; the data and the model must use one value (batches are padded with "
            "it too)",
            where=f"data.{split}.ignore_index",
            hints=[
                f"set model.ignore_index={value} (and model.loss.ignore_index if the config "
                f"sets a loss), or data.{split}.ignore_index={expected}",
                *origins,
            ],
        )


def _num_classes_key(cfg: Config) -> str:
    """Where the config sets the class count: ``model.head`` or, e.g., ``model.roi_head``."""
    for key, value in (cfg.get("model") or {}).items():
        if isinstance(value, dict) and "num_classes" in value:
            return f"model.{key}.num_classes"
    return "model.head.num_classes"


def new_run_dir(settings: RunSettings) -> Path:
    """``<run_dir>/<name>``, or ``<name>_2``, ``_3``... if taken: a run never overwrites one.

    Only the path: ``train`` makes the folder once the trainer is built, after every check,
    so a run that fails them leaves nothing behind."""
    base = Path(settings.run_dir) / settings.name
    path, n = base, 1
    while path.exists() and any(path.iterdir()):
        n += 1
        path = base.with_name(f"{base.name}_{n}")
    return path


def class_map(classes: list[str], cat_ids: list[int] | None, limit: int = 12) -> str:
    """``3 classes: 0: circle (id 1), 1: square (id 2), ...``: label -> name (-> category id)."""
    parts = [
        f"{i}: {name}" + (f" (id {cat_ids[i]})" if cat_ids is not None else "")
        for i, name in enumerate(classes[:limit])
    ]
    more = f", ... ({len(classes) - limit} more)" if len(classes) > limit else ""
    return f"{len(classes)} classes: " + ", ".join(parts) + more


def train(cfg: Config | None, resume: str | os.PathLike | ResumePlan | None = None) -> RunResult:
    """Train the model a config describes; returns the run folder and final metrics.

    Args:
        cfg: the config; ``None`` with ``resume``: the run's own (see ``plan_resume``).
        resume: a run folder, a checkpoint or a checked ``ResumePlan``; the run continues
            there, at the same data position, and ends with the same weights as an
            uninterrupted run. ``cfg`` may differ from what it was trained with only where a
            resume allows (``cvkit.engine.resume.CHANGEABLE``).
    """
    # Cheapest checks first, so a mistake is reported before the slow steps after it: the
    # resume file (missing, cut short, exported weights only) and its config, then the data
    # (a broken annotation file), then the model, which may load pretrained weights. The
    # datasets draw from generators of their own, not torch's, so the model's initial
    # weights are the same whichever is built first.
    if resume is not None and not isinstance(resume, ResumePlan):
        resume = plan_resume(resume, cfg, ())
    if resume is not None:
        cfg = resume.cfg
    if cfg is None:
        raise ValueError("train() needs a config, or resume to take the run's own")
    settings = validate(cfg)
    tcfg = settings.train
    processes, device = distributed.setup(
        tcfg.dist.backend, pick_device(tcfg.device), tcfg.dist.timeout_minutes
    )
    distributed.check_sync_bn(tcfg.sync_bn, processes, device)
    return _train(cfg, settings, resume, processes, device)


def _train(
    cfg: Config,
    settings: RunSettings,
    resume: ResumePlan | None,
    processes: distributed.Processes,
    device: torch.device,
) -> RunResult:
    tcfg = settings.train
    batch = plan_batch(settings, cfg, processes)
    seed_everything(tcfg.seed, tcfg.deterministic)
    datasets = build_datasets(settings, cfg)
    if "train" not in datasets:
        raise ConfigError(
            "there is no training data",
            where="data.train",
            hints=["add `data: {train: {type: ...}}`; `cvkit list datasets`"],
        )
    if settings.data.check_images:
        _check_images(datasets, processes)
    train_set = datasets["train"]
    source = f"data.train ({type(train_set).__name__})"
    filled = fill_from_classes(cfg, list(getattr(train_set, "classes", None) or []), source)
    if filled:
        settings = validate(cfg)
    model = build_model(settings, cfg)
    task = task_of(model)
    classes = check_classes(model, datasets, cfg)
    check_ignore_index(model, datasets, cfg)
    if tcfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    speed_notes = apply_speed_settings(model, tcfg.channels_last, tcfg.compile)
    if batch.auto:
        collate = with_pad_multiple(task.collate(model), settings.data.pad_multiple)
        amp = _amp_dtype(tcfg.amp, device)
        batch, batch_notes = fit_batch(
            batch, cfg, model, settings, train_set, collate, device, amp, processes
        )
        speed_notes += batch_notes
        settings = validate(cfg)  # train.accumulate as chosen
    loaders, workers_note = _loaders(
        settings, cfg, datasets, device, task.collate(model), processes, batch
    )
    evaluations: list[Evaluation] = []  # the last one, kept for the final report

    def evaluate(m: nn.Module) -> dict[str, float]:
        evaluations[:] = [
            task.evaluate(m, loaders["val"], device, datasets["val"], keep_first=True)
        ]
        return evaluations[0].metrics

    evaluate_fn = evaluate if "val" in loaders else None
    if resume is not None:
        run_dir = resume.run_dir
    else:  # rank 0 picks the folder (a free name), the others take its choice
        run_dir = distributed.broadcast(new_run_dir(settings), processes)
    trainer = _trainer(
        settings,
        cfg,
        model,
        loaders,
        datasets,
        run_dir,
        device,
        classes,
        task,
        evaluate_fn,
        processes,
        batch.lr_factor,
    )
    if resume is not None:
        _continue(trainer, resume)
    else:
        if processes.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(cfg.to_yaml())
        trainer.log_line(f"run folder: {run_dir}")
    try:
        trainer.log_line(class_map(classes, _cat_ids(datasets["train"])))
        for key in filled:
            trainer.log_line(f"{key}: {len(classes)} (auto, from data.train's classes)")
        for line in describe_batch(batch, settings):
            trainer.log_line(line)
        for line in [*speed_notes, *([workers_note] if workers_note else [])]:
            trainer.log_line(line)
        metrics = trainer.run()
        if "val" in loaders and settings.eval.plots:
            # the trainer has evaluated the final weights unless the run had nothing left to do
            if not (evaluations and trainer.evaluated_step == trainer.step):
                trainer.eval_model.eval()
                with torch.no_grad(), trainer.autocast():
                    evaluate(trainer.eval_model)  # on every process: they share the work
            if processes.is_main:
                print(task.report(evaluations[0], classes, run_dir)[1])
        distributed.barrier(processes)  # the run's files are all written when train() returns
    except (Exception, KeyboardInterrupt) as exc:
        # rank 0 writes last.pt and says once how to go on (the CLI prints notes); nothing
        # here may replace the error that ended the run
        if processes.is_main:
            with contextlib.suppress(Exception):
                add_note(exc, resume_note(trainer, exc))
        raise
    return RunResult(run_dir, metrics)


def resume_note(trainer: Trainer, exc: BaseException) -> str:
    """What to add to the error that ended a run: whether its ``last.pt`` is there and
    loads, where the run stands in it, and the command that continues from it."""
    run_dir, path = trainer.run_dir, trainer.run_dir / "last.pt"
    flags = "".join(f"--plugin {shlex.quote(p)} " for p in plugins.command_line_plugins())
    command = f"`cvkit {flags}train --resume {shlex.quote(str(run_dir))}`"
    if trainer.processes.distributed:
        command += f" under torchrun, on {trainer.processes.world_size} processes as before"
    try:
        state = _load_last(path)
    except CheckpointNotFoundError:
        return (
            f"no checkpoint was written yet (last.pt comes every train.checkpoint_interval "
            f"epochs), so the run must start again: `cvkit {flags}train "
            f"{shlex.quote(str(run_dir / 'config.yaml'))}` (its config as it ran)"
        )
    except CheckpointError as err:
        first = str(err).splitlines()[0]
        return f"{first}; the run must start again"
    where = _checkpoint_position(state["trainer"], trainer)
    if isinstance(exc, FloatingPointError):
        return (
            f"{path} ({where}) is intact, but a resume ({command}) takes the same steps with "
            "the same settings: fix the data first, or start a new run with a lower "
            "learning rate or train.clip_grad_norm (neither can change on resume)"
        )
    return f"{path} ({where}) is intact: resume with {command}"


def _load_last(path: Path) -> dict[str, Any]:
    """A run's ``last.pt``, checked for the training state a resume needs. Its tensors are
    mapped, not read (quick however big the file), where the file system allows it."""
    try:
        state = load_checkpoint(path, mmap=True)
    except CheckpointNotFoundError:
        raise
    except CheckpointError:
        state = load_checkpoint(path)
    check_training_state(state, path)
    return state


def _checkpoint_position(position: dict[str, Any], trainer: Trainer) -> str:
    """``step 12, end of epoch 2/6`` or ``step 14, epoch 3/6 batch 4/12``: the epochs
    numbered from 1, as the logs number them."""
    step, epoch = int(position["step"]), int(position["epoch"])
    batch = int(position.get("batch_in_epoch", 0))
    if batch:
        return (
            f"step {step}, epoch {epoch + 1}/{trainer.epochs} batch "
            f"{batch}/{trainer.steps_in_epoch()}"
        )
    if epoch:
        return f"step {step}, end of epoch {epoch}/{trainer.epochs}"
    return f"step {step}, at the start"


def _check_images(datasets: dict[str, Any], processes: distributed.Processes) -> None:
    """Decode every image file of every split once (``data.doctor.image_files.precheck``).

    The first process of each machine checks first and fills the machine's cache; the others
    then find every file there. A failure stops that process, and torchrun the run."""
    first = processes.local_rank == 0
    if first:
        precheck(datasets)
    distributed.barrier(processes)
    if not first:
        precheck(datasets)


def _continue(trainer: Trainer, plan: ResumePlan) -> None:
    """Load the checkpoint into the trainer, then record and show the resume."""
    lrs = trainer.load_state_dict(plan.state, plan.checkpoint)
    removed = []
    if trainer.processes.is_main:
        record_resume(plan, trainer.step, trainer.shown_epoch)
        removed = remove_unfinished_writes(plan.run_dir)
    trainer.log_line(
        f"resumed {plan.run_dir} {_position(trainer)}, step {trainer.step}"
        + ("; changed:" if plan.changes else "")
    )
    for line in describe_changes(plan.changes, plan.cfg):
        trainer.log_line(f"  {line}")
    if lrs is not None and lrs[0] != lrs[1]:
        trainer.log_line(
            f"  the LR schedule follows the new length: lr {lrs[0]:.3g} -> {lrs[1]:.3g} "
            f"at step {trainer.step}"
        )
    for line in removed:
        trainer.log_line(line)


def _loaders(
    settings: RunSettings,
    cfg: Config,
    datasets: dict[str, Any],
    device: torch.device,
    collate: Any,
    processes: distributed.Processes,
    batch: BatchPlan,
) -> tuple[dict, str | None]:
    """This process's loaders: its shard of every training epoch (padded so all processes
    take as many batches) and of the validation data (each image in one shard only); and,
    for ``num_workers: auto``, a line saying how many workers were measured best."""
    data, seed = settings.data, settings.train.seed
    collate = with_pad_multiple(collate, data.pad_multiple)
    workers, note = data.num_workers, None
    if workers == "auto":
        workers, note = auto_workers(cfg, datasets["train"], batch.per_process, collate, processes)
    common: dict[str, Any] = {
        "num_workers": resolve_workers(workers, processes.local_world_size),
        "prefetch_factor": data.prefetch_factor,
        "pin_memory": data.pin_memory and device.type == "cuda",
        "seed": seed,
        "collate_fn": collate,
        "rank": processes.rank,
        "world_size": processes.world_size,
    }
    size = batch.per_process
    train = datasets["train"]
    loaders = {
        "train": build_loader(train, size, shuffle=True, groups=batch_groups(data, train), **common)
    }
    if "val" in datasets:
        loaders["val"] = build_loader(
            datasets["val"],
            data.val_batch_size or size,
            shuffle=False,
            even=False,
            groups=batch_groups(data, datasets["val"]),
            **common,
        )
    return loaders, note


def batch_groups(data: Any, dataset: Any) -> list[int] | None:
    """With ``data.group_by_aspect``, each image's aspect-ratio group (``data.grouping``)."""
    return aspect_groups(dataset_sizes(dataset)) if data.group_by_aspect else None


def _position(trainer: Trainer) -> str:
    """Where a resumed run stands, in the logs' 1-based epochs: ``in epoch 2/3 (batch 5/12)``
    mid-epoch, ``after epoch 1/3`` at an epoch boundary."""
    epoch = f"epoch {trainer.shown_epoch}/{trainer.epochs}"
    if trainer.batch_in_epoch:
        return f"in {epoch} (batch {trainer.batch_in_epoch}/{trainer.steps_in_epoch()})"
    return f"after {epoch}"


def _trainer(
    settings: RunSettings,
    cfg: Config,
    model: nn.Module,
    loaders: dict[str, Any],
    datasets: dict[str, Any],
    run_dir: Path,
    device: torch.device,
    classes: list[str],
    task: Task,
    evaluate: Callable[[nn.Module], dict[str, float]] | None,
    processes: distributed.Processes,
    lr_factor: float,
) -> Trainer:
    tcfg, ecfg = settings.train, settings.eval
    optimizer = build_optimizer(tcfg.optimizer, model, tcfg.param_groups, describe=cfg.describe)
    for group in optimizer.param_groups:  # before the schedule takes them as its base LRs
        group["lr"] *= lr_factor  # train.auto_scale_lr
    steps_per_epoch = -(-len(loaders["train"]) // tcfg.accumulate)
    schedule = build(
        tcfg.schedule,
        SCHEDULERS,
        path="train.schedule",
        describe=cfg.describe,
        total_steps=steps_per_epoch * tcfg.epochs,
        steps_per_epoch=steps_per_epoch,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    hooks: list[H.Hook] = [
        H.LoggerHook(
            tcfg.log_interval, tcfg.tensorboard, metric=ecfg.metric or task.default_metric
        ),
        H.CheckpointHook(tcfg.checkpoint_interval, ecfg.metric or task.default_metric, ecfg.mode),
        CurvesHook(ecfg.metric or task.default_metric),
    ]
    if tcfg.freeze_backbone_epochs:
        hooks.append(H.FreezeBackboneHook(tcfg.freeze_backbone_epochs))
    if tcfg.ema is not None:
        hooks.append(H.EMAHook(tcfg.ema.decay, tcfg.ema.warmup_steps))
    if ecfg.patience is not None:
        metric = ecfg.metric or task.default_metric
        hooks.append(H.EarlyStoppingHook(ecfg.patience, metric, ecfg.mode))
    hooks += [
        build(h, HOOKS, path=f"train.hooks[{i}]", describe=cfg.describe)
        for i, h in enumerate(tcfg.hooks)
    ]
    amp = _amp_dtype(tcfg.amp, device)
    return Trainer(
        model,
        optimizer,
        loaders["train"],
        run_dir,
        scheduler=scheduler,
        epochs=tcfg.epochs,
        max_steps=tcfg.max_steps,
        device=device,
        amp=amp,
        accumulate=tcfg.accumulate,
        clip_grad_norm=tcfg.clip_grad_norm,
        hooks=hooks,
        evaluate=evaluate,
        eval_interval=settings.eval.interval,
        processes=processes,
        # a frozen backbone takes no gradient while it is frozen: DDP must not wait for one
        find_unused_parameters=tcfg.freeze_backbone_epochs > 0,
        extra_state={
            "classes": classes,
            "config": cfg.to_yaml(),
            "cvkit_version": __version__,
            "cat_ids": _cat_ids(datasets["train"]),
        },
    )


def _cat_ids(dataset: Any) -> list[int] | None:
    """The dataset's category ids (label -> id), saved so results files use them."""
    ids = getattr(dataset, "cat_ids", None)
    return None if ids is None else [int(i) for i in ids]


def _amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    if amp is False:
        return None
    if amp is True:
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    return AMP_DTYPES[amp]
