"""Configs: YAML files with ``_base_`` inheritance and dotted overrides (``load``), the schema
of the run sections (``schema``) and the check of a config against it (``settings``), safe
YAML (``yaml_io``) and value checks against type annotations (``typecheck``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cvkit.config.load import (
        COMMAND_LINE,
        Config,
        apply_overrides,
        from_dict,
        load_config,
        parse_override,
    )

__all__ = [
    "COMMAND_LINE",
    "Config",
    "apply_overrides",
    "from_dict",
    "load_config",
    "parse_override",
]


def __getattr__(name: str) -> Any:
    """The names of ``cvkit.config.load``, imported on first use: commands that read no config
    (``cvkit coco-eval``) then skip YAML and the registries, about 0.1 s."""
    if name in __all__:
        from cvkit.config import load

        return getattr(load, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
