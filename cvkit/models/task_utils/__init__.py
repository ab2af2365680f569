"""Detection task utilities: anchors, box coding, matching and sampling.

Plain classes with no parameters, registered so configs can name them, and injected into
heads (``head(anchor_generator=..., box_coder=..., matcher=...)``). Importing this package
registers all of them.
"""

from cvkit.models.task_utils.anchor_generator import AnchorGenerator
from cvkit.models.task_utils.box_coder import DeltaBoxCoder
from cvkit.models.task_utils.matcher import BACKGROUND, IGNORE, MaxIoUMatcher
from cvkit.models.task_utils.sampler import RandomSampler

__all__ = [
    "BACKGROUND",
    "IGNORE",
    "AnchorGenerator",
    "DeltaBoxCoder",
    "MaxIoUMatcher",
    "RandomSampler",
]
