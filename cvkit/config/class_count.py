"""``num_classes: auto``: the class count of a model comes from the data.

A model component whose class takes ``num_classes`` may set it to ``auto``, or leave it out
where the class has no default; the engine then fills in the training set's class count
(``cvkit train``) or the checkpoint's (``eval``, ``predict``) before anything is built. A
stated number stays what it is, and the engine checks it against the data.
"""

from __future__ import annotations

import copy
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


def fill_from_classes(cfg: Config, classes: list[str], source: str) -> list[str]:
    """``fill_class_count`` with the number of ``classes``, the class names of ``source``
    (``data.train (CocoDetection)``, ``checkpoint 'runs/x/last.pt'``); returns the paths.

    Raises:
        ConfigError: a count is to be filled but ``source`` has no class names.
    """
    keys = auto_class_keys(cfg)
    if keys and not classes:
        raise ConfigError(
            f"{keys[0]} is auto, but {source} has no class names to count",
            where=keys[0],
            hints=[f"set {key} to the number of classes" for key in keys],
        )
    return fill_class_count(cfg, len(classes), f"the classes of {source}") if keys else []


def with_check_count(spec: Any) -> Any:
    """A copy of a model spec whose ``auto`` (or missing, required) class counts are 1, for
    checking the rest of the spec before the data has said how many there are."""
    spec = copy.deepcopy(spec)
    for _, component in _auto_components(spec, "model", "model"):
        component["num_classes"] = 1
    return spec


def _auto_components(node: Any, path: str, key: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return
    if _needs_count(node, key):
        yield f"{path}.num_classes", node
    for child_key, child in node.items():
        yield from _auto_components(child, f"{path}.{child_key}", child_key)


def _needs_count(node: dict[str, Any], key: str) -> bool:
    value = node.get("num_classes")
    if value == AUTO:
        return True
    # any other value is the user's, checked against the class's annotation like every value
    if "num_classes" in node or not isinstance(node.get("type"), str):
        return False
    try:
        cls = resolve(node["type"], registry_for_arg(key))
    except ConfigError:
        return False  # the schema check names the unknown type
    param = parameters(cls)[0].get("num_classes")
    return param is not None and param.default is inspect.Parameter.empty
