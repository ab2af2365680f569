"""The R-CNN box parameterisation: boxes as centre shifts and log size ratios of anchors."""

from __future__ import annotations

import math
from typing import Protocol

import torch

from cvkit.registry import BOX_CODERS


class BoxCoder(Protocol):
    """What a detector asks of a box coder (``DeltaBoxCoder`` or a plugin's).

    ``encode(boxes [N, 4], refs [N, 4]) -> deltas [N, 4]`` and ``decode(deltas [N, k*4],
    refs [N, 4]) -> boxes [N, k*4]``, boxes ``xyxy``, row ``i`` of each belonging together.
    """

    def encode(self, boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor: ...

    def decode(self, deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor: ...


@BOX_CODERS.register()
class DeltaBoxCoder:
    """Encode ``xyxy`` boxes as deltas ``(dx, dy, dw, dh)`` relative to anchors, and back.

    With anchor centre ``(xa, ya)`` and size ``(wa, ha)``, and box ``(x, y, w, h)``::

        dx = wx * (x - xa) / wa      dw = ww * log(w / wa)
        dy = wy * (y - ya) / ha      dh = wh * log(h / ha)

    Widths are ``x2 - x1`` (no ``+ 1``). Boxes and anchors need positive widths and heights.

    Args:
        weights: ``(wx, wy, ww, wh)``, scaling the deltas so the regression targets have
            about unit variance: ``(10, 10, 5, 5)`` for the Faster R-CNN RoI head,
            ``(1, 1, 1, 1)`` for RetinaNet and RPN.
        clamp: ``dw`` and ``dh`` (after dividing by their weights) are clipped to at most this
            before ``exp`` when decoding, so a wild prediction gives a large box, not ``inf``.
            The default allows a box 1000/16 times its anchor.

    Example:
        >>> coder = DeltaBoxCoder()
        >>> anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
        >>> boxes = torch.tensor([[2.0, 4.0, 22.0, 24.0]])
        >>> coder.encode(boxes, anchors)
        tensor([[0.7000, 0.2000, 0.6931, 0.0000]])
        >>> coder.decode(coder.encode(boxes, anchors), anchors)
        tensor([[ 2.,  4., 22., 24.]])
    """

    def __init__(
        self,
        weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        clamp: float = math.log(1000.0 / 16),
    ) -> None:
        if len(weights) != 4 or not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(f"DeltaBoxCoder: weights must be 4 positive numbers, got {weights}")
        if not clamp > 0:  # also rejects NaN
            raise ValueError(f"DeltaBoxCoder: clamp must be positive, got {clamp}")
        self.weights = tuple(float(w) for w in weights)
        self.clamp = float(clamp)

    def encode(self, boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Deltas that turn each anchor into its box.

        Args:
            boxes: ``Tensor[N, 4]`` ``xyxy`` targets.
            anchors: ``Tensor[N, 4]`` ``xyxy``, row ``i`` paired with ``boxes[i]``.

        Returns:
            ``Tensor[N, 4]`` deltas ``(dx, dy, dw, dh)``, in the boxes' dtype.
        """
        _check_boxes("boxes", boxes)
        _check_boxes("anchors", anchors)
        if boxes.shape != anchors.shape:
            raise ValueError(
                f"DeltaBoxCoder.encode: boxes {tuple(boxes.shape)} and anchors "
                f"{tuple(anchors.shape)} must pair up row by row"
            )
        anchors = anchors.to(boxes.dtype)
        xa, ya, wa, ha = _centre_size(anchors)
        x, y, w, h = _centre_size(boxes)
        wx, wy, ww, wh = self.weights
        deltas = (wx * (x - xa) / wa, wy * (y - ya) / ha, ww * (w / wa).log(), wh * (h / ha).log())
        return torch.stack(deltas, dim=1)

    def decode(self, deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Boxes from deltas; the inverse of ``encode``.

        Args:
            deltas: ``Tensor[N, 4]``, or ``Tensor[N, k * 4]`` for ``k`` boxes per anchor (one
                per class in a class-specific RoI head), each ``(dx, dy, dw, dh)``.
            anchors: ``Tensor[N, 4]`` ``xyxy``.

        Returns:
            ``Tensor`` shaped like ``deltas``: ``xyxy`` boxes in the deltas' dtype.
        """
        _check_boxes("anchors", anchors)
        if deltas.dim() != 2 or deltas.shape[1] % 4 != 0 or deltas.shape[0] != anchors.shape[0]:
            raise ValueError(
                f"DeltaBoxCoder.decode: deltas must be [N, k*4] with N = {anchors.shape[0]} "
                f"anchors, got {tuple(deltas.shape)}"
            )
        anchors = anchors.to(deltas.dtype)
        xa, ya, wa, ha = (v[:, None] for v in _centre_size(anchors))
        wx, wy, ww, wh = self.weights
        x = xa + deltas[:, 0::4] / wx * wa
        y = ya + deltas[:, 1::4] / wy * ha
        w = wa * (deltas[:, 2::4] / ww).clamp(max=self.clamp).exp()
        h = ha * (deltas[:, 3::4] / wh).clamp(max=self.clamp).exp()
        boxes = torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], dim=2)
        return boxes.reshape(deltas.shape)  # [N, k, 4] interleaved back to [N, k*4]


def _centre_size(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w, h


def _check_boxes(name: str, boxes: torch.Tensor) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"DeltaBoxCoder: {name} must be [N, 4] xyxy, got {tuple(boxes.shape)}")
