"""Task models as exportable graphs: preprocessing and post-processing inside, fixed-shape
outputs, no Python data structures (see ``base.DeployGraph``).

``deploy_graph(model)`` wraps a built model; ``cvkit.engine.export`` traces the result with
``torch.export`` and writes it as ONNX or an ExportedProgram. A plugin's model exports by
offering ``deploy_graph() -> DeployGraph`` itself.
"""

from __future__ import annotations

from torch import nn

from cvkit.models.deploy.base import DeployGraph
from cvkit.models.deploy.classifier import ClassifierGraph
from cvkit.models.deploy.dense_detector import DenseDetectorGraph
from cvkit.models.deploy.same_padding import traceable
from cvkit.models.deploy.segmenter import SegmenterGraph
from cvkit.models.deploy.two_stage_detector import TwoStageDetectorGraph
from cvkit.models.tasks.classifier import ImageClassifier
from cvkit.models.tasks.one_stage_detector import OneStageDetector
from cvkit.models.tasks.segmenter import Segmenter
from cvkit.models.tasks.two_stage_detector import TwoStageDetector

GRAPHS: tuple[tuple[type, type[DeployGraph]], ...] = (
    (ImageClassifier, ClassifierGraph),
    (OneStageDetector, DenseDetectorGraph),
    (TwoStageDetector, TwoStageDetectorGraph),
    (Segmenter, SegmenterGraph),
)


def deploy_graph(model: nn.Module) -> DeployGraph:
    """``model`` (in eval mode) as a ``DeployGraph``.

    Raises:
        ValueError: the model is of a kind cvkit cannot export and has no ``deploy_graph()``.
    """
    own = getattr(model, "deploy_graph", None)
    if callable(own):
        graph = own()
    else:
        graph = next((make(model) for kind, make in GRAPHS if isinstance(model, kind)), None)
    if graph is None:
        raise ValueError(
            f"{type(model).__name__} cannot be exported: cvkit exports ImageClassifier, "
            "OneStageDetector (RetinaNet), TwoStageDetector (FasterRCNN) and Segmenter models; "
            "a plugin's model exports by giving itself a deploy_graph() method that returns a "
            "cvkit.models.deploy.DeployGraph"
        )
    return graph.eval()


__all__ = [
    "ClassifierGraph",
    "DenseDetectorGraph",
    "DeployGraph",
    "SegmenterGraph",
    "TwoStageDetectorGraph",
    "deploy_graph",
    "traceable",
]
