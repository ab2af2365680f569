"""Everything optional in training is a hook, called at a few points of the loop.

Points, in the order the trainer calls them: ``before_train``; per epoch ``before_epoch``,
``after_step`` (after every optimizer step, with the losses), then evaluation and
``after_eval`` (with the metrics), ``after_epoch``; finally ``after_train``. A hook with state
(EMA weights, the best metric) returns it from ``state_dict`` so a resumed run continues it.
Hooks run in ``priority`` order, lowest first.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, cast

from torch import nn

from cvkit.engine.ema import ModelEMA
from cvkit.engine.trainer import Hook, Trainer
from cvkit.registry import HOOKS


@HOOKS.register()
class EMAHook(Hook):
    """Averages the weights after every step; evaluation and ``best.pt`` use the average."""

    priority = 10

    def __init__(self, decay: float = 0.9998, warmup_steps: int = 2000) -> None:
        self.decay, self.warmup_steps = decay, warmup_steps
        self.ema: ModelEMA | None = None

    def before_train(self, trainer: Trainer) -> None:
        if self.ema is None:
            self.ema = ModelEMA(trainer.model, self.decay, self.warmup_steps)
        trainer.eval_model = self.ema.module

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        assert self.ema is not None  # set in before_train
        self.ema.update(trainer.model)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.ema is None else self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state

    def attach(self, model: nn.Module) -> None:
        """Create the average now (for resume: before ``load_state_dict`` is applied)."""
        self.ema = ModelEMA(model, self.decay, self.warmup_steps)
        if getattr(self, "_pending", None):
            self.ema.load_state_dict(self._pending)


@HOOKS.register()
class FreezeBackboneHook(Hook):
    """Freezes the backbone for the first ``epochs`` epochs, its norm layers in eval mode."""

    priority = 5

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self._trainable: list[nn.Parameter] | None = None

    def before_epoch(self, trainer: Trainer) -> None:
        backbone = cast(nn.Module, trainer.model.backbone)
        if trainer.epoch < self.epochs:
            if self._trainable is None:
                self._trainable = [p for p in backbone.parameters() if p.requires_grad]
                for p in self._trainable:
                    p.requires_grad_(False)
            backbone.eval()  # frozen statistics too: a frozen backbone must not drift
        elif self._trainable is not None:
            for p in self._trainable:
                p.requires_grad_(True)
            self._trainable = None
            trainer.log_line(f"epoch {trainer.epoch + 1}: backbone unfrozen")


@HOOKS.register()
class CheckpointHook(Hook):
    """Writes ``last.pt`` every ``interval`` epochs and at the end, ``best.pt`` on a new best.

    Args:
        metric: the metric that decides ``best.pt`` (e.g. ``top1``).
        mode: ``max`` or ``min``.
    """

    priority = 80

    def __init__(self, interval: int = 1, metric: str = "top1", mode: str = "max") -> None:
        self.interval, self.metric, self.mode = interval, metric, mode
        self.best: float | None = None
        self._last_saved: tuple[int, int, int] | None = None

    def after_eval(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:
            raise KeyError(
                f"eval.metric is {self.metric!r} but the evaluation gives "
                f"{', '.join(sorted(metrics))}; set eval.metric to one of them"
            )
        value = metrics[self.metric]
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
            trainer.save("best.pt")

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.epoch % self.interval == 0:
            self._save_last(trainer)

    def after_train(self, trainer: Trainer) -> None:
        if not trainer.failed:
            self._save_last(trainer)

    def _save_last(self, trainer: Trainer) -> None:
        position = (trainer.epoch, trainer.step, trainer.batch_in_epoch)
        if position != self._last_saved:  # the end of the last epoch is also the end of training
            trainer.save("last.pt")
            self._last_saved = position

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")


@HOOKS.register()
class EarlyStoppingHook(Hook):
    """Stops when ``metric`` has not improved for ``patience`` evaluations."""

    priority = 90

    def __init__(self, patience: int, metric: str = "top1", mode: str = "max") -> None:
        if patience < 1:
            raise ValueError(f"eval.patience must be at least 1, got {patience}")
        self.patience, self.metric, self.mode = patience, metric, mode
        self.best: float | None = None
        self.bad = 0

    def after_eval(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        value = metrics[self.metric]
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            trainer.should_stop = True
            trainer.log_line(
                f"early stopping: {self.metric} has not improved on {self.best:.4f} "
                f"for {self.bad} evaluations"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad = state.get("best"), int(state.get("bad", 0))


@HOOKS.register()
class LoggerHook(Hook):
    """Progress (loss, LR, steps/s, ETA), ``metrics.jsonl`` and TensorBoard events.

    Progress is a bar on a terminal. When stdout or stderr is not one (a log file under CI,
    ``nohup`` or a job scheduler), it is one plain line every ``interval`` steps instead,
    since a bar redraws itself with carriage returns that a file keeps. ``progress=False``
    shows neither.

    Each evaluation's line shows ``metric`` (the one ``best.pt`` follows), the known headline
    metrics the evaluation gives (``SHOWN``) and ``val_loss``; every metric goes to
    ``metrics.jsonl`` and TensorBoard.

    In a distributed run only rank 0 logs; the others' losses are their own shard's, and the
    evaluation metrics are the same on every process.
    """

    priority = 70
    sees_partial_eval = True
    # headline metrics of each task, in this order when present
    SHOWN = ("top1", "top5", "macro_f1", "AP", "AP50", "mIoU", "pixel_acc")

    def __init__(
        self,
        interval: int = 20,
        tensorboard: bool = True,
        progress: bool = True,
        metric: str | None = None,
    ) -> None:
        self.interval, self.tensorboard, self.progress = interval, tensorboard, progress
        self.metric = metric
        self.writer: Any = None  # a SummaryWriter from before_train on
        self.bar = None
        self.use_bar = False
        self.active = True  # False on the processes other than rank 0

    def before_train(self, trainer: Trainer) -> None:
        self.active = trainer.processes.is_main
        # the bar draws on stderr and the log lines go to stdout: both must be a terminal
        self.use_bar = self.progress and _is_terminal(sys.stdout) and _is_terminal(sys.stderr)
        self.use_bar = self.use_bar and self.active
        if self.active and trainer.step > 0:
            _drop_records_after(trainer.run_dir / "metrics.jsonl", trainer.step)
        if self.tensorboard and self.active:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(trainer.run_dir / "tensorboard"))

    def before_epoch(self, trainer: Trainer) -> None:
        from tqdm import tqdm

        self.start, self.steps_at_start = time.perf_counter(), trainer.step
        if not self.use_bar:
            return
        self.bar = tqdm(
            total=trainer.steps_in_epoch(),
            initial=trainer.batch_in_epoch,
            desc=f"epoch {trainer.epoch + 1}/{trainer.epochs}",
            dynamic_ncols=True,
            leave=False,
            mininterval=0.5,
        )

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        if not self.active:
            return
        if self.bar is not None:
            self.bar.update(trainer.batch_in_epoch - self.bar.n)
        if trainer.step % self.interval and trainer.batch_in_epoch < trainer.steps_in_epoch():
            return
        lr = max(g["lr"] for g in trainer.optimizer.param_groups)  # the head's, not a backbone's
        elapsed = time.perf_counter() - self.start
        rate = (trainer.step - self.steps_at_start) / max(elapsed, 1e-9)
        record = {"epoch": trainer.shown_epoch, "step": trainer.step, "lr": lr, **losses}
        self.write(trainer, "train", record)
        if self.bar is not None:
            # tqdm shows its own rate (batches/s, "it/s"): no second one beside it
            self.bar.set_postfix(loss=f"{losses['loss']:.4f}", lr=f"{lr:.2e}")
        elif self.progress:
            trainer.log_line(self.progress_line(trainer, losses, lr, rate))

    def progress_line(
        self, trainer: Trainer, losses: dict[str, float], lr: float, rate: float
    ) -> str:
        """One plain line for a log file: where, the loss (and its terms when there are
        several), the LR, the speed and the time left in the epoch."""
        total = trainer.steps_in_epoch()
        terms = [f"{k} {v:.4f}" for k, v in losses.items() if k != "loss"]
        loss = f"loss {losses['loss']:.4f}" + (f" ({', '.join(terms)})" if len(terms) > 1 else "")
        left = (total - trainer.batch_in_epoch) / trainer.accumulate / max(rate, 1e-9)
        return (
            f"epoch {trainer.shown_epoch}/{trainer.epochs} step {trainer.step} "
            f"batch {trainer.batch_in_epoch}/{total}  {loss}  lr {lr:.2e}  "
            f"{rate:.2f} step/s  eta {_duration(left)}"
        )

    def after_eval(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if not self.active:
            return
        epoch = trainer.shown_epoch  # the one just finished, or the one a stop cut short
        self.write(trainer, "val", {"epoch": epoch, "step": trainer.step, **metrics})
        keys = dict.fromkeys([*([self.metric] if self.metric else []), *self.SHOWN, "val_loss"])
        shown = "  ".join(_metric_text(k, metrics[k]) for k in keys if k in metrics)
        trainer.log_line(f"epoch {epoch}/{trainer.epochs} step {trainer.step}  {shown}")

    def after_epoch(self, trainer: Trainer) -> None:
        self._close_bar()

    def after_train(self, trainer: Trainer) -> None:
        self._close_bar()
        if self.writer is not None:
            self.writer.close()

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def write(self, trainer: Trainer, phase: str, record: dict[str, Any]) -> None:
        record = {"phase": phase, **record}
        with (trainer.run_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, float) and math.isfinite(value) and key != "epoch":
                    self.writer.add_scalar(f"{phase}/{key}", value, trainer.step)


def _drop_records_after(path: Path, step: int) -> None:
    """Keep the records of ``path`` up to ``step``, the step a resumed run continues from.

    A run that stopped after logging past its last checkpoint (killed, out of memory, a
    failure) redoes those steps when it resumes: their records are written again, so the
    first ones go. Lines that are not JSON (a kill mid-write) go too. The file is replaced
    atomically; it is left alone when there is nothing to drop.
    """
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if (logged := _record_step(line)) is not None and logged <= step]
    if len(kept) == len(lines):
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def _record_step(line: str) -> int | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) else None


def _is_terminal(stream: Any) -> bool:
    """``stream.isatty()``, False for a stream without one (replaced by a test or a tool)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _metric_text(name: str, value: Any) -> str:
    """``name 0.1234``; ``n/a`` for an undefined (NaN or missing) value."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{name} {value:.4f}"
    return f"{name} n/a"
