"""Datasets, transforms and loaders; importing this module registers the built-ins."""

from cvkit.data import builtin, image_folder, transforms

__all__ = ["builtin", "image_folder", "transforms"]
