"""Training-step time: cvkit's detectors vs their torchvision counterparts.

Each entry of ``PAIRS`` compares two models on one task:

- ``retinanet``: cvkit's RetinaNet R50-FPN vs torchvision's ``retinanet_resnet50_fpn``.
- ``faster_rcnn``: cvkit's FasterRCNN R50-FPN (P2-P5 + max-pooled P6, RPN 2000/2000
  proposals in training, 512 sampled RoIs, 1024-wide box head) vs torchvision's
  ``fasterrcnn_resnet50_fpn`` with the same settings (its defaults).

Both models of a pair get the same batch (2 images, 512x512, three boxes each), no
pretrained weights and the same number of threads, in one process, alternating which goes
first from round to round. torchvision's own transform is pinned to 512 (min_size = max_size
= 512) so both models see the same pixels; both use trainable batch norm (torchvision's choice
without weights) and SGD. A step is forward, loss, backward and optimizer step; each round
times ``--steps`` steps after one warm-up step and prints their median, and the summary gives
the median over all rounds and the cvkit / torchvision ratio.

    python bench/detector_step_time.py [--model retinanet|faster_rcnn|all] [--steps 5] [--rounds 2]
        [--threads 2] [--size 512]
"""

from __future__ import annotations

import functools

import torch
import torchvision
from step_timing import Pair, run_cli  # bench/ is on the path when a bench script runs
from torch import nn

import cvkit
from cvkit.structures import DetBatch, DetTarget


def batch(size: int = 512, num_classes: int = 80) -> tuple[torch.Tensor, list[dict]]:
    """``images`` ``Tensor[2, 3, size, size]`` uint8 and per image ``{"boxes", "labels"}``
    (xyxy pixels, placed for 512 and scaled to ``size``; labels from 0, no background)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, size, size), generator=g, dtype=torch.uint8)
    boxes = torch.tensor(
        [[40.0, 60.0, 200.0, 220.0], [250.0, 100.0, 480.0, 300.0], [100.0, 300.0, 180.0, 420.0]]
    ) * (size / 512)
    labels = torch.tensor([3, 17, 42]) % num_classes
    return images, [{"boxes": boxes.clone(), "labels": labels.clone()} for _ in range(2)]


def cvkit_step(model, opt, images, targets) -> None:
    size = tuple(images.shape[-2:])
    det = DetBatch(
        images,
        [size] * len(images),
        [
            DetTarget(t["boxes"], t["labels"], torch.zeros(3, dtype=torch.bool), i, size)
            for i, t in enumerate(targets)
        ],
    )
    loss = sum(model.loss(det).values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def torchvision_step(model, opt, images, targets) -> None:
    # torchvision takes float images on 0..1 and labels where 0 is background
    tv_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
    loss = sum(model(list(images.float() / 255), tv_targets).values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def build_cvkit_retinanet() -> nn.Module:
    return cvkit.build(
        {
            "type": "RetinaNet",
            "backbone": {"type": "TimmBackbone", "name": "resnet50", "out_indices": [2, 3, 4]},
            # P6 from P5, as torchvision's retinanet_resnet50_fpn does (the paper takes C5)
            "neck": {"type": "FPN", "out_channels": 256, "extra_levels": 2, "extra_from": "output"},
            "head": {"type": "RetinaHead", "num_classes": 80},
        },
        cvkit.MODELS,
    )


def build_torchvision_retinanet(size: int) -> nn.Module:
    return torchvision.models.detection.retinanet_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=81, min_size=size, max_size=size
    )


def build_cvkit_faster_rcnn() -> nn.Module:
    return cvkit.build(
        {
            "type": "FasterRCNN",
            "backbone": {"type": "TimmBackbone", "name": "resnet50", "out_indices": [1, 2, 3, 4]},
            "neck": {
                "type": "FPN",
                "out_channels": 256,
                "extra_levels": 1,
                "extra_type": "maxpool",
            },
            "rpn_head": {"type": "RPNHead"},
            "roi_head": {"type": "RoIHead", "num_classes": 80},
        },
        cvkit.MODELS,
    )


def build_torchvision_faster_rcnn(size: int) -> nn.Module:
    return torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=81, min_size=size, max_size=size
    )


def pairs(size: int) -> dict[str, Pair]:
    """The comparisons at input ``size`` (torchvision's transform pinned to it)."""
    return {
        "retinanet": Pair(
            build_cvkit_retinanet,
            cvkit_step,
            functools.partial(build_torchvision_retinanet, size),
            torchvision_step,
        ),
        "faster_rcnn": Pair(
            build_cvkit_faster_rcnn,
            cvkit_step,
            functools.partial(build_torchvision_faster_rcnn, size),
            torchvision_step,
        ),
    }


def main() -> None:
    run_cli(__doc__.splitlines()[0], pairs, batch, 512, default_model="retinanet")


if __name__ == "__main__":
    main()
