"""A model of a task ("keypoints") that no plugin gave the engine an entry for."""

from cvkit.models.tasks.classifier import ImageClassifier
from cvkit.registry import MODELS


@MODELS.register()
class KeypointNet(ImageClassifier):
    task = "keypoints"
