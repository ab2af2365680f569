"""The task table (``base``) and the built-in tasks' entries; importing this package
registers them in ``cvkit.registry.TASKS``."""

from cvkit.engine.tasks import classification, detection, segmentation
from cvkit.engine.tasks.base import PredictRequest, Task, task_of

__all__ = ["PredictRequest", "Task", "classification", "detection", "segmentation", "task_of"]
