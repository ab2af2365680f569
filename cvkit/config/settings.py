"""Check a run config against the schema (``cvkit.config.schema``) and return typed settings.

``model`` is checked by the builder against class signatures; every other section is checked
here against the schema's dataclasses (nested ones too), so ``train.epoches`` or
``train.ema.decya`` fails with "did you mean ...?" before any data is read.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import PurePath
from typing import Any

from cvkit.config.load import Config
from cvkit.config.schema import MAXIMUM, MINIMUM, RunSettings, dataclass_in
from cvkit.config.typecheck import check_value
from cvkit.errors import (
    ConfigError,
    MissingArgumentError,
    UnknownArgumentError,
    ValueRangeError,
    did_you_mean,
)

__all__ = ["RunSettings", "parse_settings"]


def parse_settings(cfg: Config) -> RunSettings:
    """Check every section of ``cfg`` against the schema and return typed settings.

    Raises:
        ConfigError: naming the key, the file that set it, and the closest valid key.
    """
    settings = _parse(cfg, "", RunSettings, cfg.data)
    if not isinstance(settings.model, dict) or "type" not in settings.model:
        raise _noted(
            MissingArgumentError(
                "the config has no model with a 'type'",
                where="model",
                hints=["add `model: {type: ImageClassifier, ...}`; `cvkit list models`"],
            ),
            cfg,
            "model",
        )
    if not settings.name:
        settings.name = cfg.file.stem if cfg.file else "run"
    _check_name(settings.name, cfg)
    return settings


def _parse(cfg: Config, section: str, cls: type, values: Any) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise _noted(ConfigError(f"'{section}' must be a mapping", where=section), cfg, section)
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
        nested = dataclass_in(hints[key])
        if nested is not None and (isinstance(value, dict) or key in ("data", "train", "eval")):
            out[key] = _parse(cfg, path, nested, value)
            continue
        try:
            out[key] = check_value(value, hints[key], path)
            _check_range(out[key], path)
        except ConfigError as err:
            raise _noted(err, cfg, path) from None
    missing = [n for n, f in fields.items() if n not in out and _required(f)]
    if missing:
        raise _noted(
            MissingArgumentError(f"missing {missing[0]!r}", where=section or missing[0]),
            cfg,
            section,
        )
    return cls(**out)


def _check_range(value: Any, path: str) -> None:
    """Raise when a number is outside the schema's ``MINIMUM`` / ``MAXIMUM`` for ``path``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = MINIMUM.get(path), MAXIMUM.get(path)
    if low is not None and not (value > low or (value == low and not isinstance(low, float))):
        bound = f"> {low:g}" if isinstance(low, float) else f">= {low}"
        raise ValueRangeError(f"must be {bound}, got {value!r}", where=path)
    if high is not None and not (value < high or (value == high and not isinstance(high, float))):
        bound = f"< {high:g}" if isinstance(high, float) else f"<= {high}"
        raise ValueRangeError(f"must be {bound}, got {value!r}", where=path)


def _check_name(name: str, cfg: Config) -> None:
    """A run's ``name`` is a folder inside ``run_dir``: never absolute, never up with '..'."""
    parts = PurePath(name).parts
    if PurePath(name).is_absolute() or ".." in parts or not parts:
        raise _noted(
            ValueRangeError(
                f"{name!r} is not a folder name inside run_dir",
                where="name",
                hints=[
                    "the run goes into <run_dir>/<name>: give a plain name such as "
                    "'r50_coco', and set run_dir to choose where runs go"
                ],
            ),
            cfg,
            "name",
        )


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _noted(err: ConfigError, cfg: Config, path: str) -> ConfigError:
    return err.note_origin(cfg.describe(path))
