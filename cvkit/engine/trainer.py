"""The training loop: one loop for every task.

A task gives ``loss(batch) -> dict[str, Tensor]``; the trainer sums the dict, runs backward
(under autocast when AMP is on), accumulates, clips, steps the optimizer and the LR schedule,
and calls the hooks. Everything else (logging, evaluation bookkeeping, checkpoints, EMA, early
stopping) is a hook. To change one step, subclass and override ``run_step``.

The trainer's state (``state_dict``) is everything a resumed run needs to end with the same
weights as an uninterrupted one: model, optimizer, schedule, AMP scaler, hooks (EMA, best
metric), RNG states and the data position (epoch and batches consumed).
"""

from __future__ import annotations

import contextlib
import functools
import operator
import os
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from cvkit.data.loader import EpochSampler
from cvkit.engine import distributed
from cvkit.engine.checkpoint import check_training_state, save_checkpoint
from cvkit.engine.weights import load_model_weights
from cvkit.errors import CheckpointError, add_note
from cvkit.models.losses.normalizer import counts_across_processes
from cvkit.models.tasks.protocol import TaskModel

Evaluate = Callable[[nn.Module], dict[str, float]]


class Hook:
    """Base class of the hooks (``cvkit.engine.hooks``): override the points you need.

    It lives beside the loop that calls it, so the trainer never imports the hooks module.
    """

    priority = 50
    sees_partial_eval = False  # also called after the evaluation at a mid-epoch stop

    def before_train(self, trainer: Trainer) -> None: ...
    def before_epoch(self, trainer: Trainer) -> None: ...
    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None: ...
    def after_eval(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...
    def after_epoch(self, trainer: Trainer) -> None: ...
    def after_train(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Trainer:
    """Train ``model`` for ``epochs`` over ``train_loader``.

    Args:
        model: a task with ``loss(batch) -> dict[str, Tensor]``.
        optimizer: over the model's parameters.
        train_loader: from ``cvkit.data.loader.build_loader`` (its sampler knows epochs).
        run_dir: where checkpoints and logs go.
        scheduler: stepped after every optimizer step.
        epochs: passes over the data.
        max_steps: stop after this many optimizer steps (the run can be resumed).
        device: where the model and batches live.
        amp: ``None``, ``torch.float16`` or ``torch.bfloat16`` autocast.
        accumulate: batches per optimizer step.
        clip_grad_norm: clip the gradients' total norm to this.
        hooks: see ``cvkit.engine.hooks``.
        evaluate: ``evaluate(model) -> metrics``, called every ``eval_interval`` epochs
            (on every process of a distributed run, each returning the same metrics).
        extra_state: plain data stored in every checkpoint (class names, the config).
        processes: this process's place in a distributed run (default: the joined process
            group's, if any). With several, the model trains under DDP, every process
            takes its shard of each epoch (the loader's sampler), loss normalisers count
            over all of them, and only rank 0 writes files and prints.
        find_unused_parameters: DDP's option, for a run that freezes a stage for a while.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: DataLoader,
        run_dir: Path,
        *,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        epochs: int = 1,
        max_steps: int | None = None,
        device: torch.device | str = "cpu",
        amp: torch.dtype | None = None,
        accumulate: int = 1,
        clip_grad_norm: float | None = None,
        hooks: Sequence[Hook] = (),
        evaluate: Evaluate | None = None,
        eval_interval: int = 1,
        extra_state: dict[str, Any] | None = None,
        processes: distributed.Processes | None = None,
        find_unused_parameters: bool = False,
    ) -> None:
        if accumulate < 1:
            raise ValueError(f"train.accumulate must be at least 1, got {accumulate}")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.eval_model: nn.Module = self.model  # EMAHook points this at the average
        self.processes = processes or distributed.current()
        # what a training step runs: DDP around the model's loss, or the loss itself; hooks
        # and checkpoints always see the model itself
        self.ddp = (
            distributed.wrap(self.model, self.device, find_unused_parameters)
            if self.processes.distributed
            else None
        )
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_loader = train_loader
        self.run_dir = Path(run_dir)
        self.epochs, self.max_steps = epochs, max_steps
        self.amp, self.accumulate, self.clip_grad_norm = amp, accumulate, clip_grad_norm
        fp16_cuda = amp == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16_cuda)
        self.hooks = sorted(hooks, key=lambda h: h.priority)
        self.evaluate_fn, self.eval_interval = evaluate, eval_interval
        self.extra_state = extra_state or {}
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps completed
        self.batch_in_epoch = 0  # batches of the current epoch consumed
        self.should_stop = False
        self.failed = False
        self.metrics: dict[str, float] = {}
        self.evaluated_step: int | None = None  # the step of the last evaluation, if any
        self._boundary: dict[str, Any] | None = None

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        """Train to the end (or ``max_steps``, or early stopping); returns the last metrics."""
        if self.processes.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._call("before_train")
        try:
            while self.epoch < self.epochs and not self._stopping():
                finished = self.train_epoch()
                if not finished:  # max_steps reached mid-epoch; last.pt records the position
                    self.run_evaluation(partial=True)
                    break
                self.epoch += 1
                self.batch_in_epoch = 0
                if self._eval_due():
                    self.run_evaluation()
                self._call("after_epoch")
        except BaseException as exc:
            self.failed = True  # hooks must not overwrite the last good checkpoint
            if isinstance(exc, KeyboardInterrupt):
                self._save_at_interrupt(exc)
            self._after_failed_train(exc)
            raise
        self._call("after_train")
        return self.metrics

    def _save_at_interrupt(self, exc: KeyboardInterrupt) -> None:
        """Ctrl-C: write ``last.pt`` at the last optimizer step, so little is lost. A write
        that fails is noted on the interrupt, which still ends the run."""
        if self.processes.distributed:  # the others may be gone: no collective then
            return
        try:
            self.save("last.pt", at_boundary=True)
        except Exception as err:
            add_note(exc, f"last.pt was not updated at the interrupt: {err}")

    def _after_failed_train(self, exc: BaseException) -> None:
        """The hooks' ``after_train`` (closing files, a last ``curves.png``) after ``exc``
        ended the run. One that fails too (the disk is full) is noted on ``exc``: the error
        that ended the run is the one to report, not one raised while cleaning up after it."""
        for hook in self.hooks:
            try:
                hook.after_train(self)
            except Exception as err:
                add_note(exc, f"then {type(hook).__name__} failed too: {type(err).__name__}: {err}")

    def train_epoch(self) -> bool:
        """Run the rest of the current epoch; False if it stopped early (``max_steps``)."""
        self.model.train()
        self._call("before_epoch")
        self._sampler().set_epoch(self.epoch, self.batch_in_epoch * self._batch_size())
        self._boundary = self.position()
        micro, total = 0, self.steps_in_epoch()
        for batch in self.train_loader:
            # the epoch's last batch steps the optimizer even mid-accumulation
            last = self.batch_in_epoch + 1 == total
            losses = self.run_step(batch.to(self.device), micro, last)
            self.batch_in_epoch += 1
            micro = (micro + 1) % self.accumulate
            if micro == 0:
                self._after_optimizer_step(losses)
                if self._stopping():
                    return self.batch_in_epoch >= self.steps_in_epoch()
        if micro:  # the epoch ended mid-accumulation: step on what was gathered
            self._after_optimizer_step(losses)
        return True

    def run_step(self, batch: Any, micro: int = 0, last: bool = False) -> dict[str, float]:
        """Forward and backward for one batch; the optimizer steps every ``accumulate``
        batches and after the epoch's ``last`` one."""
        stepping = micro + 1 == self.accumulate or last
        # DDP all-reduces gradients only on the backward before an optimizer step
        with distributed.no_sync(self.ddp, skip=not stepping):
            losses = self._forward(batch)
            total = self._checked_total(losses)
            self.scaler.scale(total / self.accumulate).backward()
        if stepping:
            self._optimizer_step()
        values = torch.stack(
            [total.detach().float(), *(v.detach().float() for v in losses.values())]
        )
        if self.processes.distributed:
            # each process's terms are its share of the normalised sum: their mean is the
            # loss of the whole batch, the number one process with all of it would log
            values = distributed.mean_over_processes(values)
        return dict(zip(["loss", *losses], values.tolist()))

    def _forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """The loss terms of one batch; normalisers count over every process's batch."""
        with self.autocast(), counts_across_processes(self.processes.distributed):
            if self.ddp is not None:
                return self.ddp(batch)
            return cast(TaskModel, self.model).loss(batch)

    def _checked_total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        total = functools.reduce(operator.add, losses.values())  # sum() would start at int 0
        if not torch.isfinite(total):
            parts = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            # where last.pt stands and how to go on is the run's note (run.resume_note)
            raise FloatingPointError(
                f"loss is {total.item()} at step {self.step + 1} (epoch {self.epoch + 1}, "
                f"batch {self.batch_in_epoch + 1}): {parts}; lower the learning rate, add "
                "train.clip_grad_norm, or check the data"
            )
        return total

    def _optimizer_step(self) -> None:
        if self.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1

    def _after_optimizer_step(self, losses: dict[str, float]) -> None:
        self._call("after_step", losses)
        self._boundary = self.position()

    def run_evaluation(self, partial: bool = False) -> dict[str, float]:
        """Evaluate ``eval_model``; ``partial``: a mid-epoch stop, shown only to hooks with
        ``sees_partial_eval`` (logging), so best.pt and early stopping are the same whether
        or not a run was interrupted."""
        if self.evaluate_fn is None:
            return {}
        self.eval_model.eval()
        with torch.no_grad(), self.autocast():
            self.metrics = self.evaluate_fn(self.eval_model)
        self.evaluated_step = self.step
        for hook in self.hooks:
            if not partial or hook.sees_partial_eval:
                hook.after_eval(self, self.metrics)
        return self.metrics

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    @property
    def shown_epoch(self) -> int:
        """The epoch of the data position, numbered from 1 as logs show it (``epoch E/N``):
        the epoch in progress mid-epoch, the one just finished at an epoch boundary (0 before
        the first). ``epoch`` itself counts epochs completed, the state a checkpoint keeps."""
        return self.epoch + (1 if self.batch_in_epoch else 0)

    def steps_in_epoch(self) -> int:
        """Batches in a full epoch."""
        n, bs = self._sampler().num_samples, self._batch_size()
        return n // bs if self.train_loader.drop_last else -(-n // bs)

    def _sampler(self) -> EpochSampler:
        """The training loader's sampler: it orders each epoch and can start mid-epoch."""
        sampler = self.train_loader.sampler
        if not isinstance(sampler, EpochSampler):
            raise TypeError(
                "Trainer needs a training loader built by cvkit.data.loader.build_loader (its "
                f"EpochSampler makes resume exact); this one samples with {type(sampler).__name__}"
            )
        return sampler

    def _batch_size(self) -> int:
        if self.train_loader.batch_size is None:
            raise TypeError("Trainer needs a training loader with a fixed batch_size")
        return self.train_loader.batch_size

    # -- state -----------------------------------------------------------------------------
    def position(self) -> dict[str, Any]:
        """Where the run is and the RNG states there: a resumable point."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "rng": capture_rng(),
        }

    def state_dict(self, at_boundary: bool = False) -> dict[str, Any]:
        """Everything a resume continues from. In a distributed run every process must call
        it (it gathers their RNG states, ``rng_ranks``); rank 0's result is the whole state."""
        position = self._boundary if (at_boundary and self._boundary) else self.position()
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "trainer": {
                **{k: v for k, v in position.items() if k != "rng"},
                "world_size": self.processes.world_size,
            },
            "rng": position["rng"],
            "hooks": {type(h).__name__: h.state_dict() for h in self.hooks},
            "metrics": self.metrics,
            **self.extra_state,
        }
        if self.processes.distributed:
            # the other processes' streams differ (dropout, samplers): each resumes its own
            state["rng_ranks"] = distributed.gather(position["rng"], self.processes)
        return state

    def load_state_dict(
        self, state: dict[str, Any], source: str | os.PathLike | None = None
    ) -> tuple[float, float] | None:
        """Continue from a checkpoint written by ``save``.

        Args:
            source: the checkpoint's file, named in the errors.

        Returns:
            The LR of the first parameter group as checkpointed and as the schedule now
            gives it (they differ when the run's length changed), or ``None`` without a
            scheduler.

        Raises:
            CheckpointError: the state has no training state (a ``cvkit export`` file), its
                weights do not fit the model, or its optimizer state does not fit the
                optimizer (other ``train.param_groups``); each says what to pass instead.
        """
        check_training_state(state, source)
        self._check_processes(state["trainer"], source)
        load_model_weights(self.model, state["model"], source)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            # torch checks only the group count and sizes; say which setting decides them
            name = "the checkpoint" if source is None else f"checkpoint {str(source)!r}"
            raise CheckpointError(
                f"{name}: its optimizer state does not fit this run's optimizer ({exc})",
                hints=[
                    "the run was trained with other train.optimizer or train.param_groups "
                    "settings; resume with the config it was trained with (the run folder's "
                    "config.yaml)"
                ],
            ) from exc
        lrs = None
        if self.scheduler is not None and state.get("scheduler") is not None:
            lrs = self._load_schedule(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        position = state["trainer"]
        self.epoch, self.step = int(position["epoch"]), int(position["step"])
        self.batch_in_epoch = int(position["batch_in_epoch"])
        self.metrics = dict(state.get("metrics") or {})
        for hook in self.hooks:
            hook.load_state_dict(state.get("hooks", {}).get(type(hook).__name__, {}))
            if hasattr(hook, "attach"):
                hook.attach(self.model)
        rngs = state.get("rng_ranks")
        if rngs and len(rngs) == self.processes.world_size:
            restore_rng(rngs[self.processes.rank])
        else:  # one process, or another process count at an epoch boundary
            restore_rng(state["rng"])
        return lrs

    def _check_processes(self, position: dict[str, Any], source: str | os.PathLike | None) -> None:
        """A checkpoint from the middle of an epoch resumes on as many processes as wrote it:
        the position counts batches of each process's shard."""
        saved = int(position.get("world_size", 1))
        if not position["batch_in_epoch"] or saved == self.processes.world_size:
            return
        name = "the checkpoint" if source is None else f"checkpoint {str(source)!r}"
        raise CheckpointError(
            f"{name} stopped in the middle of epoch {int(position['epoch']) + 1} of a run on "
            f"{saved} process(es), and this run has {self.processes.world_size}: the data "
            "position counts batches of each process's share of the epoch",
            hints=[
                f"resume on {saved} process(es) (torchrun --nproc_per_node {saved} ...), or "
                "from a checkpoint written at the end of an epoch",
            ],
        )

    def _load_schedule(self, state: dict[str, Any]) -> tuple[float, float]:
        """The scheduler's position from a checkpoint, the schedule itself from the config.

        ``LambdaLR`` would also restore the schedule objects' fields (``total_steps``...), so
        a resume that extends ``train.epochs`` would keep the old length and train the extra
        epochs at the end of the old schedule (LR 0 for a cosine). The first group's LR
        before and after is returned; they are equal (to the bit) when nothing changed.
        """
        scheduler = cast(torch.optim.lr_scheduler.LambdaLR, self.scheduler)
        scheduler.load_state_dict({**state, "lr_lambdas": [None] * len(scheduler.lr_lambdas)})
        before = float(self.optimizer.param_groups[0]["lr"])
        step = scheduler.last_epoch
        lrs = [base * fn(step) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        scheduler._last_lr = lrs  # what get_last_lr() reports, as after a step
        return before, float(lrs[0])

    def save(self, name: str, at_boundary: bool = False) -> Path:
        """Write ``run_dir / name``: rank 0 writes, every process must call it."""
        state = self.state_dict(at_boundary)
        path = self.run_dir / name
        if self.processes.is_main:
            save_checkpoint(state, path)
        # no process goes on before the file is whole: one that resumes next reads it
        distributed.barrier(self.processes)
        return path

    # -- helpers ---------------------------------------------------------------------------
    def log_line(self, text: str) -> None:
        """Print a line above the progress bar; flushed, so a log file shows it at once.
        Rank 0 alone prints in a distributed run."""
        if not self.processes.is_main:
            return
        tqdm.write(text, file=sys.stdout)
        sys.stdout.flush()

    def _stopping(self) -> bool:
        return self.should_stop or (self.max_steps is not None and self.step >= self.max_steps)

    def _eval_due(self) -> bool:
        last = self.epoch == self.epochs or self._stopping()
        return self.evaluate_fn is not None and (last or self.epoch % self.eval_interval == 0)

    def _call(self, point: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, point)(self, *args)


def capture_rng() -> dict[str, Any]:
    """Every RNG state a training step may draw from, as plain tensors and ints."""
    np_state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": _python_state(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]
