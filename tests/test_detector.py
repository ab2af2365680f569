"""Detector parts and a tiny RetinaNet that learns on CPU."""

import pytest
import torch

import cvkit
from cvkit.models.heads.retina_head import RetinaHead, flatten_level
from cvkit.models.necks.fpn import FPN
from cvkit.models.preprocessor import Preprocessor
from cvkit.registry import MODELS
from cvkit.structures import DetBatch, DetTarget


def test_fpn_levels_strides_and_shapes():
    fpn = FPN(in_channels=[8, 16, 32], in_strides=[8, 16, 32], out_channels=12, extra_levels=2)
    assert [(f.channels, f.stride) for f in fpn.feature_info] == [
        (12, s) for s in (8, 16, 32, 64, 128)
    ]
    feats = [torch.randn(2, c, 64 // s, 64 // s) for c, s in zip((8, 16, 32), (1, 2, 4))]
    outs = fpn(feats)
    assert [tuple(o.shape[-2:]) for o in outs] == [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]


def test_flatten_level_matches_the_anchor_order():
    # channel a*C + c at (y, x) must land on row (y*W + x)*A + a
    b, a, c, h, w = 1, 3, 2, 2, 4
    x = torch.arange(b * a * c * h * w, dtype=torch.float32).view(b, a * c, h, w)
    flat = flatten_level(x, c)
    for y in range(h):
        for xx in range(w):
            for aa in range(a):
                row = (y * w + xx) * a + aa
                assert flat[0, row].tolist() == [x[0, aa * c + cc, y, xx].item() for cc in range(c)]


def test_retina_head_starts_at_the_prior_probability():
    head = RetinaHead(in_channels=8, num_classes=3, num_anchors=9, num_convs=1, feat_channels=8)
    logits, deltas = head([torch.randn(2, 8, 5, 6)])
    assert logits[0].shape == (2, 5 * 6 * 9, 3) and deltas[0].shape == (2, 5 * 6 * 9, 4)
    assert logits[0].sigmoid().mean().item() == pytest.approx(0.01, abs=0.005)


def test_preprocessor_pads_to_stride_or_fixed_size():
    images = torch.full((1, 3, 50, 70), 128, dtype=torch.uint8)
    assert Preprocessor(size_divisor=32)(images).shape[-2:] == (64, 96)
    assert Preprocessor(pad_to=128)(images).shape[-2:] == (128, 128)
    with pytest.raises(ValueError, match="does not fit pad_to=32"):
        Preprocessor(pad_to=32)(images)


def tiny_retinanet(num_anchor_sizes=1):
    return cvkit.build(
        {
            "type": "RetinaNet",
            "backbone": {"type": "TinyNet", "width": 8, "out_indices": [1, 2]},
            "neck": {"type": "FPN", "out_channels": 16, "extra_levels": 0},
            "head": {
                "type": "RetinaHead",
                "num_classes": 2,
                "num_convs": 1,
                "feat_channels": 16,
                "num_anchors": 3 * num_anchor_sizes,
            },
            "anchor_generator": {
                "type": "AnchorGenerator",
                "sizes": [[16], [32]],
                "aspect_ratios": [1.0],
                "scales": [1.0, 1.26, 1.587],
            },
        },
        MODELS,
    )


def batch_of_squares():
    torch.manual_seed(0)
    images = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    images[0, :, 8:28, 10:30] = 255  # a white square: class 0
    images[1, 0, 30:60, 20:50] = 255  # a red square: class 1
    targets = [
        DetTarget(
            torch.tensor([[10.0, 8.0, 30.0, 28.0]]),
            torch.tensor([0]),
            torch.tensor([False]),
            1,
            (128, 128),
        ),
        DetTarget(
            torch.tensor([[20.0, 30.0, 50.0, 60.0]]),
            torch.tensor([1]),
            torch.tensor([False]),
            2,
            (64, 64),
        ),
    ]
    return DetBatch(images, [(64, 64), (64, 64)], targets)


def test_retinanet_learns_a_tiny_batch_and_predicts_in_original_pixels():
    model = tiny_retinanet()
    batch = batch_of_squares()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        losses = model.loss(batch)
        total = sum(losses.values())
        first = first if first is not None else total.item()
        opt.zero_grad()
        total.backward()
        opt.step()
    assert total.item() < 0.3 * first
    model.eval()
    preds = model.predict(batch)
    assert [p.image_id for p in preds] == [1, 2]
    top = preds[0]
    assert top.labels[0].item() == 0 and top.scores[0] > 0.5
    # image 1 was 128x128 on disk and 64x64 here: boxes come back doubled
    assert top.boxes[0].tolist() == pytest.approx([20.0, 16.0, 60.0, 56.0], abs=6.0)
    assert preds[1].labels[0].item() == 1
    assert torch.all(preds[0].scores[:-1] >= preds[0].scores[1:])


def test_crowd_and_empty_targets():
    model = tiny_retinanet()
    batch = batch_of_squares()
    batch.targets[0] = DetTarget(
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.int64),
        torch.zeros(0, dtype=torch.bool),
        1,
        (64, 64),
    )
    batch.targets[1].iscrowd[:] = True
    losses = model.loss(batch)
    assert losses["loss_box"].item() == 0.0  # no positives anywhere
    assert torch.isfinite(losses["loss_cls"])


def test_head_anchor_count_must_match_the_generator():
    with pytest.raises(cvkit.ConfigError, match="predicts 6 anchors per location but the anchor"):
        tiny_retinanet(num_anchor_sizes=2)
