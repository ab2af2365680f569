"""``curves.png`` of a run: the training losses, the learning rate and the evaluation metrics
against the step, drawn from its ``metrics.jsonl`` at every evaluation and at the end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cvkit.engine.hooks import LoggerHook
from cvkit.engine.trainer import Hook, Trainer
from cvkit.visualize.plots import plot_curves

CURVES_FILE = "curves.png"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl``, one per (phase, step): a resumed run may have
    written a step twice, and the later record is kept. Lines that are not JSON objects (a run
    killed mid-write) are skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    by_key: dict[tuple[Any, Any], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            by_key[(record.get("phase"), record.get("step"))] = record
    return sorted(by_key.values(), key=lambda r: (r.get("step") or 0, r.get("phase") != "train"))


def curve_keys(records: list[dict[str, Any]], metric: str | None = None) -> list[str]:
    """What to draw: the training loss and its terms, the learning rate, then ``metric``, the
    headline metrics the evaluation gave and ``val_loss``; only keys some record has a number
    for."""
    train = [r for r in records if r.get("phase") == "train"]
    val = [r for r in records if r.get("phase") == "val"]
    terms = [k for r in train for k in r if k.startswith("loss_")]
    wanted = [
        (train, ["loss", *dict.fromkeys(terms), "lr"]),
        (val, [*([metric] if metric else []), *LoggerHook.SHOWN, "val_loss"]),
    ]
    keys: list[str] = []
    for rows, names in wanted:
        keys += [k for k in dict.fromkeys(names) if k not in keys and _has_number(rows, k)]
    return keys


def write_curves(run_dir: str | Path, metric: str | None = None) -> Path | None:
    """Draw ``run_dir/curves.png`` from its ``metrics.jsonl``; ``None`` when it has nothing to
    draw yet."""
    records = read_metrics(run_dir)
    keys = curve_keys(records, metric)
    if not keys:
        return None
    return plot_curves(records, keys, Path(run_dir) / CURVES_FILE)


def _has_number(rows: list[dict[str, Any]], key: str) -> bool:
    # -1 is COCO's "no ground truth of this size" (APl on small-object data): not a value
    return any(
        isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) and r[key] != -1.0
        for r in rows
    )


class CurvesHook(Hook):
    """Redraws ``curves.png`` after every evaluation and at the end of training (rank 0)."""

    priority = 80  # after LoggerHook has written the evaluation's record

    def __init__(self, metric: str | None = None) -> None:
        self.metric = metric

    def after_eval(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if trainer.processes.is_main:
            write_curves(trainer.run_dir, self.metric)

    def after_train(self, trainer: Trainer) -> None:
        if trainer.processes.is_main:
            write_curves(trainer.run_dir, self.metric)
