"""The training engine; importing it registers the optimizers, schedules and hooks."""

from cvkit.engine import hooks, optim, schedules, tasks

__all__ = ["hooks", "optim", "schedules", "tasks"]
