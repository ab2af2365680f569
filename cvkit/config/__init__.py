"""Configs: YAML files with ``_base_`` inheritance and dotted overrides (``load``), the schema
of the run sections (``schema``) and the check of a config against it (``settings``), safe
YAML (``yaml_io``) and value checks against type annotations (``typecheck``)."""

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
