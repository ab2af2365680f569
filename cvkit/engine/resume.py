"""What a resumed run trains with: the run's own config, and the few changes a resume allows.

A run folder's ``config.yaml`` is written once, when the run starts, and never again. A
resume takes it (or, for a checkpoint outside a run folder, the config stored in the
checkpoint), applies the changes earlier resumes recorded in ``resumes.jsonl``, then the new
overrides. What comes out is compared with the config the checkpoint was trained with; every
difference must be a setting that can change mid-run (``CHANGEABLE``), else the resume stops
with the keys that differ. The changes are printed and appended to ``resumes.jsonl``, so the
next resume, ``cvkit eval`` of a checkpoint and a reader of the folder see the same run.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvkit.config import Config, load_config
from cvkit.config.class_count import fill_from_classes
from cvkit.config.load import apply_overrides, from_dict, parse_override
from cvkit.config.resume_keys import CHANGEABLE_ON_RESUME as CHANGEABLE
from cvkit.config.schema import NO_DEFAULT, default_of
from cvkit.config.yaml_io import dumps, loads
from cvkit.engine.checkpoint import load_training_state, resolve_resume
from cvkit.errors import ConfigError

RESUMES_FILE = "resumes.jsonl"

# where a run lives; a resume continues in the checkpoint's folder whatever these say
PLACE_KEYS = ("run_dir", "name")


@dataclass
class ResumePlan:
    """A checked resume.

    Attributes:
        checkpoint: the file the run continues from.
        state: its contents (training state checked).
        cfg: the config the run continues with.
        changes: ``key -> (trained with, now)`` for every setting that differs.
    """

    checkpoint: Path
    state: dict[str, Any]
    cfg: Config
    changes: dict[str, tuple[Any, Any]]

    @property
    def run_dir(self) -> Path:
        return self.checkpoint.parent


def plan_resume(
    resume: str | os.PathLike,
    config: str | os.PathLike | Config | None,
    overrides: Iterable[str] = (),
) -> ResumePlan:
    """Check a resume before anything is built.

    Args:
        resume: a run folder or a checkpoint.
        config: ``None`` (the run's own config), or a config (file) given beside
            ``--resume``, its ``num_classes: auto`` filled from the checkpoint. Either way
            the result may differ from what the checkpoint was trained with only in
            ``CHANGEABLE`` settings.
        overrides: dotted overrides from the command line.

    Raises:
        CheckpointError: the checkpoint is missing, unreadable or has no training state.
        ConfigError: an override names where the run lives, or a setting that cannot change
            mid-run, or shortens the run below what it has trained.
    """
    overrides = list(overrides)
    checkpoint = resolve_resume(resume)
    state = load_training_state(checkpoint)
    for text in overrides:
        key = ".".join(parse_override(text)[0])
        if key in PLACE_KEYS:
            raise ConfigError(
                f"a resumed run continues in its own folder ({checkpoint.parent}); "
                f"{key} cannot change",
                where=f"override {text!r}",
                hints=["to start a new run elsewhere, drop --resume"],
            )
    trained = trained_config(checkpoint, state)
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
        apply_overrides(cfg, overrides)
    elif config is not None:
        cfg = load_config(config, overrides)
    else:
        cfg = run_config(checkpoint, state)
        apply_overrides(cfg, overrides)
    fill_from_classes(cfg, list(state.get("classes") or []), f"checkpoint {str(checkpoint)!r}")
    changes = config_changes(trained.data, cfg.data)
    _check_changes(changes, cfg, state, checkpoint, trained)
    return ResumePlan(checkpoint, state, cfg, changes)


def trained_config(checkpoint: Path, state: dict[str, Any]) -> Config:
    """The config the checkpoint was trained with (stored in it), else its run's file."""
    text = state.get("config")
    if isinstance(text, str):
        return from_dict(loads(text, f"the config stored in {checkpoint}") or {})
    return _folder_config(checkpoint)


def run_config(checkpoint: Path, state: dict[str, Any]) -> Config:
    """The run's ``config.yaml`` with the changes of earlier resumes applied; the
    checkpoint's own config when it has no run folder around it."""
    if not (checkpoint.parent / "config.yaml").is_file():
        return trained_config(checkpoint, state)
    cfg = _folder_config(checkpoint)
    recorded = recorded_overrides(checkpoint.parent)
    apply_overrides(cfg, recorded)
    for text in recorded:  # their origin is the record, not this command line
        cfg.origins[".".join(parse_override(text)[0])] = str(checkpoint.parent / RESUMES_FILE)
    return cfg


def recorded_overrides(run_dir: Path) -> list[str]:
    """The changes earlier resumes of ``run_dir`` recorded, as overrides, oldest first."""
    path = run_dir / RESUMES_FILE
    if not path.is_file():
        return []
    overrides = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            changes = record["changes"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path} line {n} is not a resume record ({exc})",
                hints=[f"it is written by `cvkit train --resume`; fix or delete line {n}"],
            ) from exc
        overrides += [f"{key}={json.dumps(new)}" for key, (_, new) in changes.items()]
    return overrides


def record_resume(plan: ResumePlan, step: int, epoch: int) -> None:
    """Append this resume (from where, at which step, what changed) to ``resumes.jsonl``."""
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "checkpoint": plan.checkpoint.name,
        "step": step,
        "epoch": epoch,
        "changes": {key: list(pair) for key, pair in plan.changes.items()},
    }
    with (plan.run_dir / RESUMES_FILE).open("a") as f:
        f.write(json.dumps(record) + "\n")


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``dotted key -> (old, new)`` for every leaf that differs; a side that does not set a
    key has its default (schema or component argument), else None. The place keys
    (``run_dir``, ``name``) are left out."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    changes = {}
    for key in sorted(set(flat_old) | set(flat_new)):
        if key in PLACE_KEYS:
            continue
        before = flat_old[key] if key in flat_old else _default(key, old)
        after = flat_new[key] if key in flat_new else _default(key, new)
        if before != after:
            changes[key] = (before, after)
    return changes


def _default(key: str, data: dict[str, Any]) -> Any:
    value = default_of(key.split("."), data)
    return None if value is NO_DEFAULT else value


def describe_changes(changes: dict[str, tuple[Any, Any]], cfg: Config) -> list[str]:
    """One line per change: ``train.epochs: 6 -> 12 (the command line)``."""
    return [
        f"{key}: {_show(old)} -> {_show(new)} ({cfg.describe(key) or 'the config'})"
        for key, (old, new) in changes.items()
    ]


# a config of another model changes dozens of keys: the first few make the point
_SHOWN_CHANGES = 6


def _check_changes(
    changes: dict[str, tuple[Any, Any]],
    cfg: Config,
    state: dict[str, Any],
    checkpoint: Path,
    trained: Config,
) -> None:
    fixed = {k: v for k, v in changes.items() if k not in CHANGEABLE}
    if fixed:
        # the model's type first: "it is another model" is the change that explains the rest
        fixed = dict(sorted(fixed.items(), key=lambda kv: (kv[0] != "model.type", kv[0])))
        lines = describe_changes(fixed, cfg)
        shown = _SHOWN_CHANGES
        more = f"; and {len(lines) - shown} more" if len(lines) > shown else ""
        keys = list(fixed)
        raise ConfigError(
            f"cannot resume {checkpoint} with other settings than it was trained with: "
            + "; ".join(lines[:shown])
            + more,
            where=", ".join(keys[:shown]) + (f" (+{len(keys) - shown} more)" if more else ""),
            hints=[
                "a resume continues the same run; only these may change: " + ", ".join(CHANGEABLE),
                "drop the config file and the overrides: `cvkit train --resume RUN` takes "
                "the run's own config.yaml",
                "to train with other settings, start a new run: `cvkit train CFG ...`",
            ],
        )
    epochs = cfg.get("train.epochs", trained.get("train.epochs"))
    position = state["trainer"]
    done = int(position["epoch"]) + (1 if int(position.get("batch_in_epoch", 0)) else 0)
    if isinstance(epochs, int) and epochs < done:
        raise ConfigError(
            f"train.epochs={epochs} is fewer than the {done} epoch(s) {checkpoint} has "
            "already trained (or started)",
            where="train.epochs",
            hints=[f"to extend the run, set train.epochs above {done}"],
        )


def _folder_config(checkpoint: Path) -> Config:
    path = checkpoint.parent / "config.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{checkpoint} has no config stored in it and no config.yaml beside it",
            hints=["pass the config it was trained with: `cvkit train CFG --resume CKPT`"],
        )
    return load_config(path)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Mappings to dotted leaves; lists are leaves (they replace whole, as in overrides)."""
    if not isinstance(data, dict) or not data:
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _show(value: Any) -> str:
    return "(unset)" if value is None else dumps(value).strip().removesuffix("...").strip()
