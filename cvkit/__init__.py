"""cvkit: a composable computer-vision toolkit on PyTorch.

Importing cvkit registers every built-in component; installed plugins register theirs on the
first registry lookup.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Importing these registers every built-in component.
from cvkit import data, engine, evaluation, models, registry
from cvkit.builder import build
from cvkit.config import Config, from_dict, load_config
from cvkit.engine import optim as _optim  # noqa: F401
from cvkit.errors import ConfigError
from cvkit.registry import (
    ANCHOR_GENERATORS,
    BACKBONES,
    BOX_CODERS,
    DATASETS,
    HEADS,
    HOOKS,
    LOSSES,
    MATCHERS,
    METRICS,
    MODELS,
    NECKS,
    OPTIMIZERS,
    SAMPLERS,
    SCHEDULERS,
    TRANSFORMS,
    Registry,
)
from cvkit.structures import FeatureSpec

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
