"""Data contracts shared across cvkit.

Detection and segmentation contracts join this file as those tasks land; every box in cvkit is
``xyxy`` in absolute pixels and label 0 is the first foreground class (``num_classes`` never
counts a background).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FeatureSpec:
    """One feature map a backbone or neck returns.

    Attributes:
        channels: number of channels ``C`` of the map ``Tensor[B, C, H/stride, W/stride]``.
        stride: how many input pixels one cell of the map spans.
    """

    channels: int
    stride: int


@dataclass
class ClsBatch:
    """A batch for classification.

    Attributes:
        images: ``Tensor[B, 3, H, W]`` uint8 RGB.
        labels: ``Tensor[B]`` int64 class indices, or ``None`` when predicting.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> ClsBatch:
        labels = None if self.labels is None else self.labels.to(device, non_blocking=True)
        return ClsBatch(self.images.to(device, non_blocking=True), labels)

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class ClsPrediction:
    """One image's classification.

    Attributes:
        probs: ``Tensor[K]`` class probabilities.
        label: the most probable class index.
        score: its probability.
    """

    probs: torch.Tensor
    label: int
    score: float


# -- detection ---------------------------------------------------------------------------------
@dataclass
class DetTarget:
    """One image's ground truth for detection.

    Attributes:
        boxes: ``Tensor[N, 4]`` float32, ``xyxy`` in absolute pixels of the image as batched
            (after augmentation and resizing).
        labels: ``Tensor[N]`` int64; 0 is the first foreground class (there is no background
            label: ``num_classes`` counts foreground classes only).
        iscrowd: ``Tensor[N]`` bool; crowd regions are ignored in matching, never positives.
        image_id: the dataset's image id (COCO's, for results files).
        orig_size: ``(height, width)`` of the image file, to rescale predictions.
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    iscrowd: torch.Tensor
    image_id: int
    orig_size: tuple[int, int]

    @classmethod
    def empty(cls, image_id: int, orig_size: tuple[int, int]) -> DetTarget:
        """A target without boxes: what prediction on a file needs (its id and size)."""
        return cls(
            torch.zeros(0, 4),
            torch.zeros(0, dtype=torch.int64),
            torch.zeros(0, dtype=torch.bool),
            image_id,
            orig_size,
        )

    def to(self, device: torch.device | str) -> DetTarget:
        return DetTarget(
            self.boxes.to(device),
            self.labels.to(device),
            self.iscrowd.to(device),
            self.image_id,
            self.orig_size,
        )


@dataclass
class DetBatch:
    """A batch for detection.

    Attributes:
        images: ``Tensor[B, 3, H, W]`` uint8 RGB, zero-padded at the bottom and right to the
            largest image of the batch (the model pads further to its stride).
        image_sizes: ``(h, w)`` of each image before padding.
        targets: one ``DetTarget`` per image, or ``None`` when predicting.
    """

    images: torch.Tensor
    image_sizes: list[tuple[int, int]]
    targets: list[DetTarget] | None = None

    def to(self, device: torch.device | str) -> DetBatch:
        targets = None if self.targets is None else [t.to(device) for t in self.targets]
        return DetBatch(self.images.to(device, non_blocking=True), self.image_sizes, targets)

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class DetPrediction:
    """One image's detections, in the pixels of the original image file.

    Attributes:
        boxes: ``Tensor[K, 4]`` float32 ``xyxy``.
        scores: ``Tensor[K]`` float32, sorted high to low.
        labels: ``Tensor[K]`` int64 (0 = first foreground class).
        image_id: the dataset's image id.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    image_id: int

    @classmethod
    def from_batch_pixels(
        cls,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        labels: torch.Tensor,
        image_size: tuple[int, int],
        target: DetTarget | None,
    ) -> DetPrediction:
        """One image's detections, boxes ``Tensor[K, 4]`` rescaled from the pixels of the
        batch (the image was ``image_size`` ``(h, w)`` there) to those of its file
        (``target.orig_size``). Without a target nothing says the file's size: the boxes
        stay as they are and ``image_id`` is ``-1``."""
        image_id, scale = -1, (1.0, 1.0)
        if target is not None:
            image_id = target.image_id
            h, w = image_size
            scale = (target.orig_size[0] / h, target.orig_size[1] / w)
        factor = boxes.new_tensor([scale[1], scale[0], scale[1], scale[0]])
        return cls(boxes * factor, scores, labels, image_id)


# -- semantic segmentation ---------------------------------------------------------------------
@dataclass
class SegBatch:
    """A batch for semantic segmentation.

    Attributes:
        images: ``Tensor[B, 3, H, W]`` uint8 RGB, zero-padded at the bottom and right to the
            largest image of the batch (the model pads further to its stride).
        masks: ``Tensor[B, H, W]`` int64 class indices, padded like the images with the
            ignore index 255 (which also marks unlabelled pixels); ``None`` when predicting.
        image_sizes: ``(h, w)`` of each image before padding.
        orig_sizes: ``(h, w)`` of each image file, to resize predictions back.
        names: one name per image (file name or id), carried into the predictions.
    """

    images: torch.Tensor
    masks: torch.Tensor | None
    image_sizes: list[tuple[int, int]]
    orig_sizes: list[tuple[int, int]]
    names: list[str]

    def to(self, device: torch.device | str) -> SegBatch:
        masks = None if self.masks is None else self.masks.to(device, non_blocking=True)
        images = self.images.to(device, non_blocking=True)
        return SegBatch(images, masks, self.image_sizes, self.orig_sizes, self.names)

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class SegPrediction:
    """One image's segmentation, in the pixels of the original image file.

    Attributes:
        mask: ``Tensor[h, w]`` int64 class index per pixel (``h, w`` = the file's size).
        probs: ``Tensor[K, h, w]`` float32 class probabilities, or ``None`` unless asked for.
        name: the image's name from the batch.
    """

    mask: torch.Tensor
    probs: torch.Tensor | None
    name: str

    def mask_at(self, size: tuple[int, int]) -> torch.Tensor:
        """``mask`` at ``size`` ``(h, w)`` (``Tensor[h, w]`` int64): itself when it has that
        size, else resized nearest, so class indices are never blended."""
        if tuple(self.mask.shape) == tuple(size):
            return self.mask
        resized = torch.nn.functional.interpolate(
            self.mask[None, None].float(), size=tuple(size), mode="nearest"
        )
        return resized[0, 0].to(torch.int64)
