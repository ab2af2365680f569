"""The training loop: one loop for every task.

A task gives ``loss(batch) -> dict[str, Tensor]``; the trainer sums the dict, steps the
optimizer, logs, evaluates and checkpoints. Subclass and override ``run_step`` to change one
step; ``evaluate`` to change evaluation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from cvkit.engine.checkpoint import save_checkpoint

Evaluator = Callable[[nn.Module, DataLoader, torch.device], dict[str, float]]


class Trainer:
    """Train ``model`` for ``epochs`` over ``train_loader``.

    Args:
        model: a task with ``loss(batch)``.
        optimizer: over the model's parameters.
        train_loader: yields batches with ``.to(device)``.
        run_dir: where ``metrics.jsonl`` and ``last.pt`` go.
        epochs: passes over the data.
        max_steps: stop after this many optimizer steps (``None``: no limit).
        val_loader, evaluator: evaluation every ``eval_interval`` epochs and at the end.
        extra_state: plain data saved in every checkpoint (class names, the config).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: DataLoader,
        run_dir: Path,
        *,
        epochs: int = 1,
        max_steps: int | None = None,
        device: torch.device | str = "cpu",
        val_loader: DataLoader | None = None,
        evaluator: Evaluator | None = None,
        eval_interval: int = 1,
        log_interval: int = 20,
        extra_state: dict[str, Any] | None = None,
    ) -> None:
        self.model = model.to(device)
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.evaluator = evaluator
        self.run_dir = Path(run_dir)
        self.epochs = epochs
        self.max_steps = max_steps
        self.device = torch.device(device)
        self.eval_interval = eval_interval
        self.log_interval = log_interval
        self.extra_state = extra_state or {}
        self.step = 0
        self.epoch = 0
        self.history: list[dict[str, Any]] = []

    def run(self) -> dict[str, float]:
        """Train, evaluate, checkpoint. Returns the last evaluation's metrics."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        metrics: dict[str, float] = {}
        for epoch in range(1, self.epochs + 1):
            self.epoch = epoch
            self.model.train()
            self._train_epoch()
            last = self.epoch == self.epochs or self._done()
            if self.val_loader is not None and (last or self.epoch % self.eval_interval == 0):
                metrics = self.evaluate()
                self.log({"epoch": self.epoch, "step": self.step, **metrics}, "val")
            self.save("last.pt")
            if self._done():
                break
        return metrics

    def _train_epoch(self) -> None:
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {self.epoch}/{self.epochs}",
            leave=False,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        start = time.perf_counter()
        for i, batch in enumerate(bar, 1):
            losses = self.run_step(batch.to(self.device))
            self.step += 1
            if self.step % self.log_interval == 0 or i == len(self.train_loader) or self._done():
                lr = self.optimizer.param_groups[0]["lr"]
                rate = i / (time.perf_counter() - start)
                self.log({"epoch": self.epoch, "step": self.step, "lr": lr, **losses}, "train")
                bar.set_postfix(loss=f"{losses['loss']:.4f}", lr=f"{lr:.2e}", it_s=f"{rate:.1f}")
            if self._done():
                break

    def run_step(self, batch: Any) -> dict[str, float]:
        """One optimizer step on ``batch``; returns the losses as floats."""
        losses = self.model.loss(batch)
        total = sum(losses.values())
        if not torch.isfinite(total):
            parts = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            raise FloatingPointError(
                f"loss is {total.item()} at step {self.step + 1} (epoch {self.epoch}): {parts}; "
                f"the last good checkpoint is {self.run_dir / 'last.pt'}. Lower the learning "
                "rate or check the data"
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return {"loss": total.item(), **{k: v.item() for k, v in losses.items()}}

    def evaluate(self) -> dict[str, float]:
        if self.evaluator is None or self.val_loader is None:
            return {}
        self.model.eval()
        return self.evaluator(self.model, self.val_loader, self.device)

    def save(self, name: str) -> Path:
        state = {
            "model": self.model.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            **self.extra_state,
        }
        return save_checkpoint(state, self.run_dir / name)

    def log(self, record: dict[str, Any], phase: str) -> None:
        record = {"phase": phase, **record}
        self.history.append(record)
        with (self.run_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")

    def _done(self) -> bool:
        return self.max_steps is not None and self.step >= self.max_steps


def classification_evaluator(
    model: nn.Module, loader: DataLoader, device: torch.device
) -> dict[str, float]:
    """Top-1 / top-5 accuracy and mean loss of a classifier over ``loader``."""
    from cvkit.evaluation.classification import topk_accuracy

    logits, labels, loss_sum = [], [], 0.0
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            out = model(batch.images)
            loss_sum += model.loss_fn(out, batch.labels).item() * len(batch)
            logits.append(out.float().cpu())
            labels.append(batch.labels.cpu())
    scores, truth = torch.cat(logits), torch.cat(labels)
    return {
        "top1": topk_accuracy(scores, truth, 1),
        "top5": topk_accuracy(scores, truth, 5),
        "val_loss": loss_sum / len(truth),
    }
