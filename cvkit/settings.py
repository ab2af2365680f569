"""The schema of a run config: which sections and keys exist, with their types and defaults.

``model`` is checked by the builder against class signatures; every other section is checked
here against these dataclasses, so ``train.epoches`` fails with "did you mean 'epochs'?" before
any data is read. A new run setting is a new field here (and a line in docs/configs.md).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from cvkit.config import Config
from cvkit.errors import ConfigError, MissingArgumentError, UnknownArgumentError, did_you_mean
from cvkit.typecheck import check_value


@dataclass
class DataSettings:
    """``data:``: the datasets (each a ``{type: ...}`` dict) and how they are loaded."""

    train: dict[str, Any] | None = None
    val: dict[str, Any] | None = None
    batch_size: int = 32
    val_batch_size: int | None = None  # defaults to batch_size
    num_workers: int = 0


@dataclass
class TrainSettings:
    """``train:``: the optimisation loop."""

    epochs: int = 1
    max_steps: int | None = None  # stop early after this many steps (smoke runs)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    optimizer: dict[str, Any] = field(
        default_factory=lambda: {"type": "SGD", "lr": 0.01, "momentum": 0.9}
    )
    log_interval: int = 20


@dataclass
class EvalSettings:
    """``eval:``: evaluation during training."""

    interval: int = 1  # evaluate every N epochs (and after the last)


@dataclass
class RunSettings:
    """A whole run config, parsed and checked."""

    model: dict[str, Any]
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    imports: list[str] = field(default_factory=list)
    run_dir: str = "runs"  # runs go into <run_dir>/<name>
    name: str = ""  # defaults to the config file's stem


SECTIONS: dict[str, type] = {"data": DataSettings, "train": TrainSettings, "eval": EvalSettings}


def parse_settings(cfg: Config) -> RunSettings:
    """Check every section of ``cfg`` against the schema and return typed settings.

    Raises:
        ConfigError: naming the key, the file that set it, and the closest valid key.
    """
    top = _check_section(cfg, "", RunSettings, cfg.data)
    for name, cls in SECTIONS.items():
        value = cfg.data.get(name) or {}
        if not isinstance(value, dict):
            raise _noted(ConfigError(f"'{name}' must be a mapping", where=name), cfg, name)
        top[name] = cls(**_check_section(cfg, name, cls, value))
    if not isinstance(top.get("model"), dict) or "type" not in top["model"]:
        raise _noted(
            MissingArgumentError(
                "the config has no model with a 'type'",
                where="model",
                hints=["add `model: {type: ImageClassifier, ...}`; `cvkit list models`"],
            ),
            cfg,
            "model",
        )
    if not top.get("name"):
        top["name"] = cfg.file.stem if cfg.file else "run"
    return RunSettings(**top)


def _check_section(cfg: Config, section: str, cls: type, values: dict) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{section}.{key}" if section else key
        if key not in fields:
            where_word = f"section '{section}'" if section else "the top level of a config"
            raise _noted(
                UnknownArgumentError(
                    f"{key!r} is not a setting of {where_word}",
                    where=path,
                    hints=[did_you_mean(key, fields), f"valid keys: {', '.join(fields)}"],
                ),
                cfg,
                path,
            )
        if section == "" and key in SECTIONS:
            out[key] = value
            continue
        try:
            out[key] = check_value(value, hints[key], path)
        except ConfigError as err:
            raise _noted(err, cfg, path) from None
    return out


def _noted(err: ConfigError, cfg: Config, path: str) -> ConfigError:
    origin = cfg.describe(path)
    if origin:
        err.hints.append(f"in {origin}")
        err.args = (err.message,)
    return err


def is_known_key(keys: list[str], parent: dict[str, Any]) -> bool:
    """Whether an override may add ``keys`` although the config does not set it yet.

    True for a run setting the schema defines (``train.max_steps``) and for an argument of
    the component whose dict holds it (``model.backbone.frozen_stages``); a typo stays an error.
    """
    if len(keys) == 2 and keys[0] in SECTIONS:
        return keys[1] in {f.name for f in dataclasses.fields(SECTIONS[keys[0]])}
    if len(keys) == 1:
        return keys[0] in {f.name for f in dataclasses.fields(RunSettings)}
    if isinstance(parent.get("type"), str):
        from cvkit.builder import accepts_argument

        return accepts_argument(parent, keys[-2], keys[-1])
    return False
