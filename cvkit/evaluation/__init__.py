"""Evaluation tools; importing this module registers the built-in metrics."""

from cvkit.evaluation import classification

__all__ = ["classification"]
