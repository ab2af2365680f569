"""cvkit: a composable computer-vision toolkit on PyTorch.

The built-in components register themselves the first time any registry is used (a lookup,
a listing or a registration) or any name below is read, so ``import cvkit`` itself is cheap
and tools that need no model (``cvkit coco-eval``) never import torch. Installed plugins
register theirs on the first registry lookup too.
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
            "LOSSES", "MATCHERS", "METRICS", "MODELS", "NECKS", "OPTIMIZERS", "SAMPLERS",
            "SCHEDULERS", "TRANSFORMS",
        )
    },
}  # fmt: skip
_SUBPACKAGES = ("data", "engine", "evaluation", "models", "registry")
_BUILTIN_MODULES = (
    "cvkit.data",
    "cvkit.engine",
    "cvkit.engine.optim",
    "cvkit.evaluation.classification",
    "cvkit.evaluation.segmentation",
    "cvkit.models",
)
_builtins = "absent"  # -> "loading" -> "loaded"


def load_builtins() -> None:
    """Import every module that registers a built-in component (once; re-entrant)."""
    global _builtins
    if _builtins != "absent":
        return
    _builtins = "loading"
    try:
        for name in _BUILTIN_MODULES:
            importlib.import_module(name)
    except BaseException:
        _builtins = "absent"
        raise
    _builtins = "loaded"


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
    "SAMPLERS",
    "SCHEDULERS",
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
    "load_config",
    "models",
    "registry",
]
