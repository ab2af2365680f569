"""What an exported graph is: a module of tensors in and tensors out, with named ends."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class DeployGraph(nn.Module):
    """A task model's prediction as one graph, ready for ``torch.export`` and ONNX.

    ``forward(*inputs)`` takes the tensors named ``input_names`` and returns those named
    ``output_names`` followed by those named ``raw_names``: the network's outputs before any
    post-processing (the pre-NMS outputs), which the export's parity check compares with the
    eager model and then removes from the deployed file. ``eager_raw(images)`` gives the
    same raw outputs from the eager model's own ``forward``, the reference of that check.

    Inputs are always ``images``, ``Tensor[B, C, H, W]`` uint8 (or float on 0..255), any
    ``H, W`` within the exported range; the model's preprocessing (normalising, resizing,
    padding) is inside. A subclass adds the inputs its post-processing needs.
    """

    task: ClassVar[str] = ""
    input_names: ClassVar[tuple[str, ...]] = ("images",)
    output_names: ClassVar[tuple[str, ...]] = ()
    raw_names: ClassVar[tuple[str, ...]] = ()
    model: Any  # the task model, duck-typed (its parts differ by task)

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def preprocessor(self) -> Any:
        return self.model.preprocessor

    def inputs_for(
        self, images: torch.Tensor, file_size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, ...]:
        """The graph's inputs for ``images`` resized from files of ``file_size`` ``(h, w)``
        (``None``: the images are the files' own size)."""
        return (images,)

    def eager_raw(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The raw outputs from the eager model's ``forward``."""
        raise NotImplementedError

    def eager_outputs(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What the graph's outputs must be, from the eager model's ``predict``."""
        raise NotImplementedError

    def stride(self) -> int:
        """The input multiple the model pads to (1 when it resizes to a fixed size)."""
        pre = self.preprocessor
        return 1 if pre.input_size is not None else int(pre.size_divisor)

    def min_side(self) -> int:
        """The smallest height or width the graph takes: 8 pixels when the model resizes or
        pads to a fixed size, else one more than its coarsest stride, so that every feature
        map has at least two cells (a map of one cell would broadcast where it should not,
        and the traced graph would hold only for that)."""
        pre = self.preprocessor
        if pre.input_size is not None or pre.pad_to is not None:
            return 8
        return max(8, self.coarsest_stride() + 1)

    def coarsest_stride(self) -> int:
        """The largest stride of the model's feature maps."""
        return max(int(f.stride) for f in self.model.backbone.feature_info)

    def max_side(self) -> int | None:
        """The largest height or width the graph takes: ``pad_to`` when the model pads to a
        fixed size, else ``None`` (any)."""
        pre = self.preprocessor
        return None if pre.input_size is not None else pre.pad_to


def file_sizes(images: torch.Tensor, file_size: tuple[int, int] | None) -> torch.Tensor:
    """``orig_sizes``: ``Tensor[B, 2]`` int64, ``file_size`` (default: the images' own
    ``(h, w)``) for every image."""
    size = file_size or tuple(images.shape[-2:])
    return torch.tensor([size], dtype=torch.int64).expand(images.shape[0], 2).contiguous()


def padded_detections(predictions: list[Any], max_detections: int) -> tuple[torch.Tensor, ...]:
    """``DetPrediction``s as a graph's fixed-shape outputs (``postprocess.Detections``)."""
    b, m = len(predictions), max_detections
    boxes, scores = torch.zeros(b, m, 4), torch.zeros(b, m)
    labels, count = torch.zeros(b, m, dtype=torch.int64), torch.zeros(b, dtype=torch.int64)
    for i, p in enumerate(predictions):
        n = min(len(p.scores), m)
        boxes[i, :n], scores[i, :n], labels[i, :n], count[i] = (
            p.boxes[:n],
            p.scores[:n],
            p.labels[:n],
            n,
        )
    return boxes, scores, labels, count
