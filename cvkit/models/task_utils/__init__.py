"""Detection task utilities: anchors, box coding, matching, sampling and training targets.

Plain classes with no parameters, registered so configs can name them, and injected into
heads (``head(anchor_generator=..., box_coder=..., matcher=...)``); ``training_targets`` turns
their outputs into every detector's losses. Importing this package registers all of them.
"""

from cvkit.models.task_utils.anchor_generator import (
    AnchorGenerator,
    anchor_strides,
    flatten_level,
)
from cvkit.models.task_utils.box_coder import BoxCoder, DeltaBoxCoder
from cvkit.models.task_utils.matcher import BACKGROUND, IGNORE, Matcher, MaxIoUMatcher
from cvkit.models.task_utils.sampler import RandomSampler, Sampler
from cvkit.models.task_utils.training_targets import (
    AnchorLabels,
    SampledLabels,
    box_regression_loss,
    classification_loss,
    dense_box_loss,
    label_anchors,
    match_boxes,
    sample_labels,
)

__all__ = [
    "BACKGROUND",
    "IGNORE",
    "AnchorGenerator",
    "AnchorLabels",
    "BoxCoder",
    "DeltaBoxCoder",
    "Matcher",
    "MaxIoUMatcher",
    "RandomSampler",
    "SampledLabels",
    "Sampler",
    "anchor_strides",
    "box_regression_loss",
    "classification_loss",
    "dense_box_loss",
    "flatten_level",
    "label_anchors",
    "match_boxes",
    "sample_labels",
]
