"""Training-step time: cvkit's FCN-ResNet50 vs torchvision's ``fcn_resnet50``.

torchvision's ``fcn_resnet50`` is a *dilated* ResNet-50 (the last two stages keep stride 8,
dilation 2 and 4), an FCN head on C5 (3x3 conv to 512 channels, batch norm, ReLU, dropout 0.1,
1x1 class conv), an auxiliary FCN head on C4 (256 channels) and bilinear upsampling to the
input. Two cvkit models are timed against it:

- ``fcn_r50_d8``: the same network from cvkit's parts: ``TimmBackbone("resnet50",
  output_stride=8)`` (timm's ResNet-50 is torchvision's v1.5 layout), ``FCNHead`` 32s with
  ``channels=512`` on C5 and an aux ``FCNHead`` on C4 with 256 channels. The pair the goal is
  about: the same parameters, the same compute (the parameter counts are printed).
- ``fcn_r50_8s``: cvkit's own FCN-R50 (``configs/_base_/models/fcn_r50_8s.yaml``: the paper's
  FCN-8s, undilated, C5 scores fused with C4 and C3). A different network, faster by design;
  shown so a user can see what the choice costs.

Both sides get the same batch (2 images 384x384, a 21-class mask with unlabelled 255 pixels),
no pretrained weights, the same threads, SGD; the loss is cross-entropy ignoring 255, plus 0.5
x the auxiliary loss (torchvision's reference recipe; cvkit's ``aux_weight`` is set to 0.5).
torchvision's images are normalised outside the model (its segmentation models have no
transform), cvkit's inside (``Preprocessor``), so both steps include the normalisation.

    python bench/segmenter_step_time.py [--model fcn_r50_d8|fcn_r50_8s|all] [--steps 5]
        [--rounds 2] [--threads 2] [--size 384]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from step_timing import Pair, run_cli  # bench/ is on the path when a bench script runs
from torch import nn

import cvkit
from cvkit.structures import SegBatch

NUM_CLASSES, IGNORE = 21, 255
AUX_WEIGHT = 0.5  # torchvision's references/segmentation/train.py
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


def batch(size: int = 384) -> tuple[torch.Tensor, torch.Tensor]:
    """``images`` ``Tensor[2, 3, size, size]`` uint8 and ``masks`` ``Tensor[2, size, size]``
    int64: class blocks of 48 px with a 4 px unlabelled (255) border around each, as in VOC."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, size, size), generator=g, dtype=torch.uint8)
    cells = -(-size // 48)
    blocks = torch.randint(0, NUM_CLASSES, (2, cells, cells), generator=g)
    block = torch.arange(size) // 48
    masks = blocks[:, block[:, None], block[None, :]]
    border = (torch.arange(size) % 48 < 2) | (torch.arange(size) % 48 >= 46)
    masks[:, border, :] = IGNORE
    masks[:, :, border] = IGNORE
    return images, masks


def cvkit_step(model, opt, images, masks) -> None:
    sizes = [tuple(images.shape[-2:])] * len(images)
    seg = SegBatch(images, masks, sizes, sizes, [str(i) for i in range(len(images))])
    loss = sum(model.loss(seg).values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def torchvision_step(model, opt, images, masks) -> None:
    out = model((images.float() - MEAN) / STD)
    loss = F.cross_entropy(out["out"], masks, ignore_index=IGNORE)
    loss = loss + AUX_WEIGHT * F.cross_entropy(out["aux"], masks, ignore_index=IGNORE)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def build_cvkit(dilated: bool) -> nn.Module:
    backbone = {"type": "TimmBackbone", "name": "resnet50"}
    if dilated:  # C4 and C5, both at stride 8
        backbone |= {"out_indices": [3, 4], "output_stride": 8}
        head = {"type": "FCNHead", "num_classes": NUM_CLASSES, "channels": 512}
    else:  # C3, C4, C5 at strides 8, 16, 32: the FCN-8s fusion
        backbone |= {"out_indices": [2, 3, 4]}
        head = {"type": "FCNHead", "num_classes": NUM_CLASSES, "variant": "8s", "channels": 512}
    aux = {"type": "FCNHead", "num_classes": NUM_CLASSES, "in_index": -2, "channels": 256}
    cfg = {"type": "Segmenter", "backbone": backbone, "head": head, "aux_head": aux}
    return cvkit.build(cfg | {"aux_weight": AUX_WEIGHT, "ignore_index": IGNORE}, cvkit.MODELS)


def build_torchvision() -> nn.Module:
    return torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=True
    )


PAIRS: dict[str, Pair] = {
    "fcn_r50_d8": Pair(lambda: build_cvkit(True), cvkit_step, build_torchvision, torchvision_step),
    "fcn_r50_8s": Pair(lambda: build_cvkit(False), cvkit_step, build_torchvision, torchvision_step),
}


def main() -> None:
    notes = {"fcn_r50_8s": "a different network"}
    run_cli(__doc__.splitlines()[0], lambda _: PAIRS, batch, 384, notes=notes)


if __name__ == "__main__":
    main()
