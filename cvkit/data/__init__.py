"""Datasets, transforms and loaders; importing this module registers the built-ins."""

from cvkit.data import builtin, transforms

__all__ = ["builtin", "transforms"]
