"""Detection post-processing with fixed shapes, for exported graphs.

Eager prediction filters by score and loops over images, so its tensors have data-dependent
lengths. An exported graph must run on any batch and image size, so here every step keeps
the candidates of all images in one ``[B, N, ...]`` tensor of a fixed ``N`` and marks the
ones to drop in a mask instead of removing them; only NMS has a data-dependent output (the
kept indices), which is turned back into a mask at once. The results equal eager prediction:

* the top-k of all candidates, then the score threshold, keeps the same boxes as eager's
  threshold then top-k;
* a candidate that eager drops before NMS (low score, too small) is masked here and its score
  set below every kept one, so it can never suppress a box eager keeps;
* the output is the ``max_detections`` best kept boxes per image, padded with zero rows, with
  the count of valid rows (Ultralytics' and MMDeploy's end-to-end output).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torchvision


class Detections(NamedTuple):
    """Fixed-shape detections of a batch: ``boxes [B, M, 4]`` ``xyxy``, ``scores [B, M]``
    (best first), ``labels [B, M]`` int64, ``num_detections [B]`` int64: the first
    ``num_detections[i]`` rows of image ``i`` are valid, the rest are zeros."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    num_detections: torch.Tensor


def top_k_padded(scores: torch.Tensor, k: int, fill: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best scores of each row, whatever the row's length.

    Args:
        scores: ``Tensor[B, N]``; ``N`` may be symbolic and smaller than ``k``.
        fill: score of the padding when ``N < k`` (below every real score).

    Returns:
        ``(values [B, k], indices [B, k])``; a padding entry has value ``fill`` and index
        ``N - 1`` (a real row, so gathers stay in range; its value marks it).
    """
    n = scores.shape[1]
    padded = torch.cat([scores, scores.new_full((scores.shape[0], k), fill)], dim=1)
    values, indices = padded.topk(k, dim=1)
    return values, indices.clamp(max=n - 1)


def gather_rows(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``x [B, N, C]``, ``indices [B, k]`` -> ``Tensor[B, k, C]`` (row ``indices[b, j]`` of
    image ``b``)."""
    return x.gather(1, indices[..., None].expand(-1, -1, x.shape[-1]))


def clip_to_size(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``xyxy`` boxes ``Tensor[..., 4]`` clamped into ``[0, width] x [0, height]`` (sizes
    may be symbolic): ``cvkit.ops.clip_boxes`` for a graph."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(
        [x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)], -1
    )


def kept_by_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Greedy NMS within each image and group, for a whole batch at once.

    Args:
        boxes: ``Tensor[B, N, 4]`` ``xyxy``.
        scores: ``Tensor[B, N]``.
        groups: ``Tensor[B, N]`` int64, non-negative: boxes of different groups (classes) or
            of different images never suppress each other.

    Returns:
        ``Tensor[B, N]`` bool, the boxes NMS keeps.

    Every (image, group) pair is moved to its own region of the plane (``cvkit.ops.
    batched_nms``' translation to min 0 and torchvision's offset by group), so one
    ``torchvision.ops.nms`` call does it all; it exports to ONNX ``NonMaxSuppression``.
    """
    b, n = scores.shape
    flat = boxes.reshape(-1, 4)
    work = flat - flat.min()
    image = torch.arange(b, device=boxes.device)[:, None].expand(b, n)
    pair = (image * (groups.max() + 1) + groups).reshape(-1)
    shifted = work + (pair.to(work.dtype) * (work.max() + 1))[:, None]
    keep = torchvision.ops.nms(shifted, scores.reshape(-1), iou_threshold)
    kept = torch.zeros(b * n, dtype=torch.bool, device=boxes.device).index_fill(0, keep, True)
    return kept.view(b, n)


def best_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    max_detections: int,
) -> Detections:
    """The ``max_detections`` best valid candidates of each image, padded with zeros.

    Args:
        boxes: ``Tensor[B, N, 4]``; scores: ``Tensor[B, N]`` in ``[0, 1]``; labels:
        ``Tensor[B, N]``; valid: ``Tensor[B, N]`` bool, the candidates to keep.
    """
    masked = torch.where(valid, scores, torch.full_like(scores, -1.0))
    top, index = top_k_padded(masked, max_detections, -1.0)
    ok = top >= 0
    picked_boxes = torch.where(ok[..., None], gather_rows(boxes, index), 0.0)
    picked_labels = torch.where(ok, labels.gather(1, index), 0)
    return Detections(
        picked_boxes, torch.where(ok, top, 0.0), picked_labels, ok.sum(1, dtype=torch.int64)
    )


def to_file_pixels(boxes: torch.Tensor, orig_sizes: torch.Tensor, height, width) -> torch.Tensor:
    """Boxes ``[B, M, 4]`` in the pixels of the ``height x width`` input -> in those of each
    image file, whose ``(h, w)`` is a row of ``orig_sizes [B, 2]``."""
    size = torch.stack(
        [torch.full((), height, dtype=torch.float32), torch.full((), width, dtype=torch.float32)]
    )
    scale = orig_sizes.to(torch.float32) / size  # [B, 2]: (h, w) factors
    return boxes * scale[:, [1, 0, 1, 0]][:, None, :].to(boxes.dtype)
