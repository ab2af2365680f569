"""cvkit: a composable computer-vision toolkit on PyTorch.

The built-in components register themselves the first time any registry is used (a lookup,
a listing or a registration) or any name below is read, so ``import cvkit`` itself is cheap
and tools that need no model (``cvkit coco-eval``) never import torch. Installed plugins
register theirs on the first registry lookup too (both through ``cvkit.plugins``).

This module is the public API, above every layer: below cli and engine (which read
``__version__``) no module imports it (an import-linter contract in pyproject.toml).
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import Any

from cvkit.errors import ConfigError

# name -> the module that defines it; reading one loads the built-in components first
_LAZY = {
    "build": "cvkit.builder",
    "Config": "cvkit.config",
    "from_dict": "cvkit.config",
    "load_config": "cvkit.config",
    "FeatureSpec": "cvkit.structures",
    "Registry": "cvkit.registry",
    **{
        name: "cvkit.registry"
        for name in (
            "ANCHOR_GENERATORS", "BACKBONES", "BOX_CODERS", "DATASETS", "HEADS", "HOOKS",
            "LOSSES", "MATCHERS", "METRICS", "MODELS", "NECKS", "OPTIMIZERS", "PREPROCESSORS",
            "SAMPLERS", "SCHEDULERS", "TASKS", "TRANSFORMS",
        )
    },
}  # fmt: skip
_SUBPACKAGES = ("data", "engine", "evaluation", "models", "registry")


def load_builtins() -> None:
    """Import every module that registers a built-in component (once; re-entrant).

    The list lives in ``cvkit.plugins``, which the registry calls on its first use.
    """
    from cvkit import plugins  # here, not at the top: importlib.metadata is slow to import

    plugins.load_builtins()


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:  # also reached by `from cvkit import registry`: no side effects
        return importlib.import_module(f"cvkit.{name}")
    if name in _LAZY:
        load_builtins()
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cvkit' has no attribute {name!r}")


__all__ = [
    "ANCHOR_GENERATORS",
    "BACKBONES",
    "BOX_CODERS",
    "DATASETS",
    "HEADS",
    "HOOKS",
    "LOSSES",
    "MATCHERS",
    "METRICS",
    "MODELS",
    "NECKS",
    "OPTIMIZERS",
    "PREPROCESSORS",
    "SAMPLERS",
    "SCHEDULERS",
    "TASKS",
    "TRANSFORMS",
    "Config",
    "ConfigError",
    "FeatureSpec",
    "Registry",
    "build",
    "data",
    "engine",
    "evaluation",
    "from_dict",
    "load_builtins",
    "load_config",
    "models",
    "registry",
]
