"""How many images a step takes: per process, over all processes, and the LR that goes with it.

A config gives the batch one of two ways:

* ``data.batch_size``: images per process (MMDetection's convention). N processes take N
  times as many per optimizer step, and the run is another recipe (a larger batch, fewer
  steps) unless ``train.auto_scale_lr`` scales the learning rate with it;
* ``data.total_batch_size``: images per optimizer step over all processes (Detectron2's
  ``IMS_PER_BATCH``). Each process takes ``total / (processes x train.accumulate)``, so the
  recipe, and what it reaches, do not depend on how many processes run it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvkit.config import Config
from cvkit.config.settings import RunSettings
from cvkit.engine.distributed import Processes
from cvkit.errors import ConfigError


@dataclass(frozen=True)
class BatchPlan:
    """The batch of one run.

    Attributes:
        per_process: images each process loads per batch.
        processes: processes in the run.
        accumulate: batches per optimizer step.
        from_total: the config gave ``data.total_batch_size`` (else ``data.batch_size``).
        lr_factor: what ``train.auto_scale_lr`` multiplies every LR by (1 without it).
        auto: ``data.batch_size: auto``: the run sizes ``per_process`` and ``accumulate`` on
            its GPU (``engine.auto_batch``); until then, the whole share in one batch.
    """

    per_process: int
    processes: int
    accumulate: int
    from_total: bool
    lr_factor: float = 1.0
    auto: bool = False

    @property
    def total(self) -> int:
        """Images per optimizer step over all processes."""
        return self.per_process * self.processes * self.accumulate


def plan_batch(settings: RunSettings, cfg: Config, processes: Processes) -> BatchPlan:
    """The run's batch from its config and process count.

    Raises:
        ConfigError: both batch keys are set, or ``data.total_batch_size`` does not split
            evenly over the processes and the accumulation.
    """
    data, accumulate = settings.data, settings.train.accumulate
    total, auto = data.total_batch_size, data.batch_size == "auto"
    if total is None:
        if auto or isinstance(data.batch_size, str):
            raise ConfigError(
                "data.batch_size: auto sizes the batch that data.total_batch_size splits into, "
                "and the config has no data.total_batch_size",
                where="data.batch_size",
                hints=["set data.total_batch_size: the images per optimizer step the "
                       "learning rate is for"],
            )  # fmt: skip
        plan = BatchPlan(data.batch_size, processes.world_size, accumulate, from_total=False)
    else:
        if "batch_size" in (cfg.get("data") or {}) and not auto:
            raise ConfigError(
                f"the config sets both data.batch_size ({data.batch_size}, per process) and "
                f"data.total_batch_size ({total}, over all processes); one says the batch",
                where="data.batch_size",
                hints=[
                    "keep one: data.total_batch_size=null for a batch per process, or drop "
                    "data.batch_size",
                    f"data.batch_size in {cfg.describe('data.batch_size') or 'the config'}",
                ],
            )
        share = processes.world_size * accumulate
        if total % share:
            raise ConfigError(
                f"data.total_batch_size={total} does not split over {processes.world_size} "
                f"process(es) x train.accumulate={accumulate}",
                where="data.total_batch_size",
                hints=[f"use a multiple of {share}, or another process count"],
            )
        plan = BatchPlan(
            total // share, processes.world_size, accumulate, from_total=True, auto=auto
        )
    scale = settings.train.auto_scale_lr
    if scale is not None:
        factor = plan.total / scale.base_batch_size
        plan = BatchPlan(
            plan.per_process, plan.processes, accumulate, plan.from_total, factor, auto
        )
    return plan


def eval_batch_size(settings: RunSettings) -> int:
    """Images per evaluation batch: ``data.val_batch_size``, else the training batch size
    (with ``batch_size: auto``, ``total_batch_size``)."""
    data = settings.data
    if data.val_batch_size:
        return data.val_batch_size
    return data.batch_size if isinstance(data.batch_size, int) else data.total_batch_size or 1


def describe(plan: BatchPlan, settings: RunSettings) -> list[str]:
    """The batch and the LR scaling as printed at the start of a run; nothing for one
    process with no accumulation and no scaling, where the batch is plainly ``batch_size``."""
    scale = settings.train.auto_scale_lr
    if plan.processes == 1 and plan.accumulate == 1 and scale is None and not plan.from_total:
        return []
    parts = [f"{plan.per_process} per process"]
    if plan.processes > 1:
        parts.append(f"{plan.processes} processes")
    if plan.accumulate > 1:
        parts.append(f"{plan.accumulate} accumulated")
    key = " (data.total_batch_size)" if plan.from_total else ""
    lines = [f"batch: {' x '.join(parts)} = {plan.total} images per optimizer step{key}"]
    if scale is not None:
        lr = float(settings.train.optimizer.get("lr", 1e-3))
        lines.append(
            f"lr: {lr:.4g} x {plan.lr_factor:.4g} = {lr * plan.lr_factor:.4g} "
            f"(train.auto_scale_lr: {plan.total} / base_batch_size {scale.base_batch_size})"
        )
    return lines
