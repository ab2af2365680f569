"""FCN head, Segmenter, segmentation collate and evaluation: shapes, wiring, learning on CPU."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cvkit
from cvkit.data.collate import collate_segmentation
from cvkit.data.loader import build_loader
from cvkit.engine.tasks import task_of
from cvkit.models.backbones.tiny_net import TinyNet
from cvkit.models.heads.fcn_head import FCNHead, bilinear_upsample
from cvkit.models.tasks.segmenter import Segmenter
from cvkit.registry import MODELS
from cvkit.structures import SegBatch

NUM_CLASSES = 3


def test_bilinear_transposed_conv_matches_interpolation_in_the_interior():
    up = bilinear_upsample(2)
    ramp = torch.arange(6.0)[None, :] * 2 + torch.arange(5.0)[:, None]  # linear in x and y
    x = torch.stack([ramp, torch.full_like(ramp, 3.0)])[None]  # [1, 2, 5, 6]
    out = up(x)
    assert out.shape == (1, 2, 10, 12)
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    # borders differ: the transposed conv sees zeros outside, interpolation repeats the edge
    assert torch.allclose(out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5)
    assert torch.allclose(out[0, 1, 1:-1, 1:-1], torch.tensor(3.0))
    assert up.weight.requires_grad
    assert not bilinear_upsample(2, learnable=False).weight.requires_grad


@pytest.mark.parametrize(("variant", "stride"), [("32s", 32), ("16s", 16), ("8s", 8)])
def test_fcn_variants_output_stride(variant, stride):
    head = FCNHead([8, 16, 32], [8, 16, 32], NUM_CLASSES, variant=variant, channels=4)
    feats = [torch.randn(2, c, 64 // s, 96 // s) for c, s in zip((8, 16, 32), (8, 16, 32))]
    assert head.output_stride == stride
    assert head(feats).shape == (2, NUM_CLASSES, 64 // stride, 96 // stride)
    assert len(head.upsamples) == {"32s": 0, "16s": 1, "8s": 2}[variant]


def test_fcn_skip_fusion_starts_as_the_upsampled_coarse_scores():
    head = FCNHead([8, 16], [16, 32], NUM_CLASSES, variant="16s", dropout=0.0)
    torch.nn.init.normal_(head.score.weight)  # the skip's score conv stays zero, as in the paper
    feats = [torch.randn(1, 8, 4, 4), torch.randn(1, 16, 2, 2)]
    assert torch.allclose(head(feats), head.upsamples[0](head.score(feats[1])))


def test_fcn_variant_needs_the_finer_maps():
    with pytest.raises(ValueError, match="needs a map at stride 8"):
        FCNHead([16, 32], [16, 32], NUM_CLASSES, variant="8s")
    aux = FCNHead([8, 16, 32], [8, 16, 32], NUM_CLASSES, in_index=-2)
    assert aux.output_stride == 16


def test_collate_pads_images_with_zero_and_masks_with_ignore():
    items = [
        _item(np.full((4, 6, 3), 7, np.uint8), np.ones((4, 6), np.uint8), "a"),
        _item(np.full((5, 3, 3), 9, np.uint8), np.zeros((5, 3), np.int64), "b"),
    ]
    batch = collate_segmentation(items)
    assert batch.images.shape == (2, 3, 5, 6) and batch.masks.dtype == torch.int64
    assert batch.image_sizes == [(4, 6), (5, 3)] and batch.names == ["a", "b"]
    assert (batch.masks[0, 4:] == 255).all() and (batch.masks[1, :, 3:] == 255).all()
    assert (batch.masks[0, :4] == 1).all() and (batch.images[1, :, :, 3:] == 0).all()
    assert collate_segmentation([{"image": items[0]["image"]}]).masks is None
    with pytest.raises(ValueError, match="mask of shape"):
        collate_segmentation([_item(items[0]["image"], np.zeros((3, 3), np.uint8), "x")])


def test_segmenter_overfits_a_tiny_batch_and_predicts_original_sizes():
    torch.manual_seed(0)
    model = _tiny_segmenter()
    batch = _synthetic_batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    first = None
    for _ in range(40):
        loss = model.loss(batch)["loss_seg"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    model.eval()
    evaluator = cvkit.METRICS.get("SegmentationEvaluator")(NUM_CLASSES)
    evaluator.update(model(batch.images, batch.image_sizes), batch.masks)
    assert evaluator.compute()["mIoU"] > 0.8
    preds = model.predict(batch, with_probs=True)
    assert [tuple(p.mask.shape) for p in preds] == batch.orig_sizes
    assert preds[0].probs.shape == (NUM_CLASSES, *batch.orig_sizes[0])
    assert preds[1].name == "img1" and preds[0].mask.dtype == torch.int64


def test_ignored_and_padded_pixels_add_no_loss():
    model = _tiny_segmenter().eval()
    torch.nn.init.normal_(model.head.score.weight)  # non-uniform logits
    batch = _synthetic_batch()
    batch.masks[0, :8] = 255
    logits = model(batch.images, batch.image_sizes)
    counted = batch.masks != 255
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[counted], batch.masks[counted])
    assert torch.allclose(model.loss(batch)["loss_seg"], expected, atol=1e-6)
    batch.masks[:] = 255  # nothing counted: 0, not NaN
    assert model.loss(batch)["loss_seg"].item() == 0.0


def test_aux_head_adds_a_weighted_loss():
    model = _tiny_segmenter(aux=True)
    losses = model.loss(_synthetic_batch())
    assert set(losses) == {"loss_seg", "loss_aux"}
    with pytest.raises(ValueError, match="aux_head predicts 2 classes"):
        Segmenter(model.backbone, model.head, aux_head=FCNHead([8, 16, 32], [4, 8, 16], 2))


def test_builds_from_a_config_with_wired_channels():
    model = cvkit.build(
        {
            "type": "Segmenter",
            "backbone": {"type": "TimmBackbone", "name": "resnet18", "out_indices": [2, 3, 4]},
            "head": {"type": "FCNHead", "num_classes": NUM_CLASSES, "variant": "8s"},
            "aux_head": {
                "type": "FCNHead",
                "num_classes": NUM_CLASSES,
                "in_index": -2,
                "channels": 32,
            },
        },
        MODELS,
    )
    assert model.task == "segmentation" and model.num_classes == NUM_CLASSES
    assert model.head.in_channels == [128, 256, 512] and model.head.in_strides == [8, 16, 32]
    assert model.aux_head.in_channels == [128, 256, 512] and model.aux_head.output_stride == 16
    assert model.preprocessor.size_divisor == 32
    images = torch.zeros(1, 3, 40, 50, dtype=torch.uint8)
    assert model.eval()(images).shape == (1, NUM_CLASSES, 40, 50)


def test_engine_evaluates_and_reports(tmp_path):
    model = _tiny_segmenter().eval()
    batch = _synthetic_batch()
    items = [
        _item(batch.images[i].permute(1, 2, 0).numpy(), batch.masks[i].numpy(), f"img{i}")
        for i in range(len(batch))
    ]
    task = task_of(model)
    loader = build_loader(items, 2, shuffle=False, collate_fn=task.collate(model))
    evaluation = task.evaluate(model, loader, torch.device("cpu"), items, keep_first=True)
    assert task.default_metric in evaluation.metrics and "val_loss" in evaluation.metrics
    report, text = task.report(evaluation, ["bg", "square", "bar"], tmp_path)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert set(saved["per_class"]) == {"bg", "square", "bar"} and report["metrics"]["mIoU"] >= 0
    assert "mIoU" in text and (tmp_path / "predictions.png").stat().st_size > 1000


def test_a_variant_typo_fails_before_building():
    cfg = {
        "type": "Segmenter",
        "backbone": {"type": "TinyNet", "width": 4, "out_indices": [1, 2, 3]},
        "head": {"type": "FCNHead", "num_classes": NUM_CLASSES, "variant": "16"},
    }
    with pytest.raises(cvkit.ConfigError, match=r"head\.variant"):
        cvkit.build(cfg, MODELS)


# -- helpers -------------------------------------------------------------------------------------
def _item(image, mask, name):
    return {"image": image, "mask": mask, "orig_size": image.shape[:2], "name": name}


def _tiny_segmenter(aux: bool = False) -> Segmenter:
    backbone = TinyNet(width=8, out_indices=(1, 2, 3))  # strides 4, 8, 16
    info = backbone.feature_info
    chans, strides = [f.channels for f in info], [f.stride for f in info]
    head = FCNHead(chans, strides, NUM_CLASSES, variant="8s", dropout=0.0)
    aux_head = FCNHead(chans, strides, NUM_CLASSES, in_index=-2, channels=8) if aux else None
    return Segmenter(backbone, head, aux_head=aux_head)


def _synthetic_batch() -> SegBatch:
    """Two 32x32 images: a red square (class 1) and a blue bar (class 2) on grey; the second
    image is only 28x24 inside the batch, and its file was twice that size."""
    gen = torch.Generator().manual_seed(0)
    images = torch.full((2, 3, 32, 32), 100, dtype=torch.uint8)
    images += torch.randint(0, 20, images.shape, generator=gen, dtype=torch.uint8)
    masks = torch.zeros(2, 32, 32, dtype=torch.int64)
    for i, (y, x) in enumerate([(4, 6), (10, 3)]):
        masks[i, y : y + 12, x : x + 12] = 1
        masks[i, y + 14 : y + 18, 2:20] = 2
    images[:, 0][masks == 1] = 230
    images[:, 2][masks == 2] = 230
    images[1, :, 28:] = 0
    images[1, :, :, 24:] = 0
    masks[1, 28:] = 255
    masks[1, :, 24:] = 255
    return SegBatch(images, masks, [(32, 32), (28, 24)], [(32, 32), (56, 48)], ["img0", "img1"])
