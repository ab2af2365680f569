"""``num_classes: auto``: the class count of a model comes from the data.

A model component whose class takes ``num_classes`` may set it to ``auto``, or leave it out
where the class has no default; the engine then fills in the training set's class count
(``cvkit train``) or the checkpoint's (``eval``, ``predict``) before anything is built. A
stated number stays what it is, and the engine checks it against the data.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from cvkit.config.load import Config
from cvkit.config.typecheck import parameters
from cvkit.errors import ConfigError
from cvkit.registry import registry_for_arg, resolve

AUTO = "auto"


def auto_class_keys(cfg: Config) -> list[str]:
    """Dotted paths of every ``num_classes`` under ``model`` the data must fill: set to
    ``auto``, or missing from a component whose class requires it."""
    return [path for path, _ in _auto_components(cfg.get("model"), "model", "model")]


def fill_class_count(cfg: Config, count: int, origin: str) -> list[str]:
    """Set every ``auto_class_keys`` path to ``count`` in place; returns the paths.

    Args:
        origin: where the count came from (``data.train``'s classes, the checkpoint), shown
            by ``Config.describe`` and ``cvkit config print --origins``.
    """
    filled = []
    for path, component in _auto_components(cfg.get("model"), "model", "model"):
        component["num_classes"] = count
        cfg.origins[path] = origin
        filled.append(path)
    return filled


def with_check_count(spec: Any) -> Any:
    """A copy of a component spec whose ``auto`` (or missing, required) class counts are 1,
    for checking the rest of the spec before the data has said how many there are."""
    if not isinstance(spec, dict):
        return spec
    out = {k: with_check_count(v) if isinstance(v, dict) else v for k, v in spec.items()}
    if _needs_count(spec, None):
        out["num_classes"] = 1
    return out


def _auto_components(node: Any, path: str, key: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return
    if _needs_count(node, key):
        yield f"{path}.num_classes", node
    for child_key, child in node.items():
        yield from _auto_components(child, f"{path}.{child_key}", child_key)


def _needs_count(node: dict[str, Any], key: str | None) -> bool:
    value = node.get("num_classes")
    if value == AUTO:
        return True
    # any other value is the user's, checked against the class's annotation like every value
    if "num_classes" in node or not isinstance(node.get("type"), str):
        return False
    try:
        cls = resolve(node["type"], registry_for_arg(key) if key else None)
    except ConfigError:
        return False  # the schema check names the unknown type
    param = parameters(cls)[0].get("num_classes")
    return param is not None and param.default is inspect.Parameter.empty
