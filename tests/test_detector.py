"""Detector parts and a tiny RetinaNet that learns on CPU."""

import pytest
import torch

import cvkit
from cvkit.models.heads.retina_head import RetinaHead
from cvkit.models.losses.detection import IoULoss
from cvkit.models.necks.fpn import FPN
from cvkit.models.preprocessor import Preprocessor
from cvkit.models.task_utils import box_regression_loss, flatten_level
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


def test_retina_head_group_norm_towers():
    head = RetinaHead(8, 3, num_convs=2, feat_channels=16, norm="GN", norm_groups=4)
    norms = [m for m in head.cls_tower if isinstance(m, torch.nn.GroupNorm)]
    convs = [m for m in head.box_tower if isinstance(m, torch.nn.Conv2d)]
    assert len(norms) == 2 and norms[0].num_groups == 4
    assert all(c.bias is None for c in convs)  # the norm's shift replaces the bias
    logits, _ = head([torch.randn(2, 8, 5, 6)])
    assert logits[0].sigmoid().mean().item() == pytest.approx(0.01, abs=0.005)


def test_kaiming_towers_keep_the_signal_and_the_prior():
    """N(0, 0.01) towers shrink the features about 6x per 64-channel conv; He init keeps
    their scale; the outputs start at the prior either way."""
    torch.manual_seed(0)
    feats = [torch.randn(2, 64, 8, 8)]
    scale = {}
    for init in ("normal", "kaiming"):
        head = RetinaHead(64, 3, num_convs=4, feat_channels=64, tower_init=init)
        scale[init] = head.cls_tower(feats[0]).pow(2).mean().sqrt().item()
        logits, _ = head(feats)
        assert logits[0].sigmoid().mean().item() == pytest.approx(0.01, abs=0.005)
    assert scale["normal"] < 1e-2 < 0.3 < scale["kaiming"] < 3.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"norm": "BN"}, "norm must be null or 'GN', got 'BN'"),
        ({"tower_init": "xavier"}, "tower_init must be 'normal' or 'kaiming', got 'xavier'"),
        ({"norm": "GN", "feat_channels": 48}, r"feat_channels \(48\) divisible by norm_groups"),
    ],
)
def test_retina_head_bad_norm_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetinaHead(8, 3, **kwargs)


def test_preprocessor_pads_to_stride_or_fixed_size():
    images = torch.full((1, 3, 50, 70), 128, dtype=torch.uint8)
    assert Preprocessor(size_divisor=32)(images).shape[-2:] == (64, 96)
    assert Preprocessor(pad_to=128)(images).shape[-2:] == (128, 128)
    with pytest.raises(ValueError, match="does not fit pad_to=32"):
        Preprocessor(pad_to=32)(images)


def tiny_retinanet(num_anchor_sizes=1, **options):
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
            **options,
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


def reference_loss(model, batch, cls_loss=None):
    """The detector's loss written plainly, image by image: one-hot targets, boolean masks,
    torchvision's focal loss (``cls_loss`` replaces it), the model's own box loss."""
    from torchvision.ops import sigmoid_focal_loss

    cls_loss = cls_loss or (lambda x, t: sigmoid_focal_loss(x, t, 0.25, 2.0, reduction="sum"))
    (logits, deltas), sizes = model(batch.images, batch.image_sizes)
    logits, deltas = torch.cat(logits, 1), torch.cat(deltas, 1)
    anchors = model.anchors(sizes, deltas)
    loss_cls, loss_box, num_pos = 0.0, 0.0, 0
    for i, target in enumerate(batch.targets):
        matched = model.match(target, anchors)
        valid, pos = matched != -2, matched >= 0
        onehot = torch.zeros_like(logits[i])
        onehot[pos, target.labels[matched[pos]]] = 1.0
        loss_cls = loss_cls + cls_loss(logits[i][valid], onehot[valid])
        gt = target.boxes[matched[pos]]
        box = box_regression_loss(model.box_loss, model.box_coder, deltas[i][pos], gt, anchors[pos])
        loss_box = loss_box + box
        num_pos += int(pos.sum())
    norm = max(1, num_pos)
    return {"loss_cls": loss_cls / norm, "loss_box": loss_box / norm}


def batch_with_crowd_and_empty():
    """Three images: two boxes of two classes; no boxes at all; a box and a crowd box."""
    torch.manual_seed(1)
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    no_boxes = DetTarget(
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.int64),
        torch.zeros(0, dtype=torch.bool),
        2,
        (64, 64),
    )
    targets = [
        DetTarget(
            torch.tensor([[4.0, 6.0, 30.0, 28.0], [30.0, 30.0, 60.0, 62.0]]),
            torch.tensor([1, 0]),
            torch.tensor([False, False]),
            1,
            (64, 64),
        ),
        no_boxes,
        DetTarget(
            torch.tensor([[10.0, 12.0, 26.0, 30.0], [34.0, 2.0, 62.0, 40.0]]),
            torch.tensor([0, 1]),
            torch.tensor([False, True]),
            3,
            (64, 64),
        ),
    ]
    return DetBatch(images, [(64, 64)] * 3, targets)


def _loss_and_grads(model, losses):
    total = sum(losses.values())
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(total, params, allow_unused=True)  # TinyNet's unused stage
    return {k: v.item() for k, v in losses.items()}, [g for g in grads if g is not None]


@pytest.mark.parametrize("box_loss", [None, IoULoss()], ids=["l1", "giou"])
def test_batched_loss_equals_the_per_image_reference(box_loss):
    model = tiny_retinanet()
    model.box_loss = box_loss or model.box_loss
    batch = batch_with_crowd_and_empty()
    # the batch exercises every case: positives, ignored anchors near the crowd box
    (_, deltas), sizes = model(batch.images, batch.image_sizes)
    anchors = model.anchors(sizes, torch.cat(deltas, 1))
    crowd_image = model.match(batch.targets[2], anchors)
    assert (crowd_image >= 0).any() and (crowd_image == -2).any()
    assert (model.match(batch.targets[1], anchors) == -1).all()

    got, got_grads = _loss_and_grads(model, model.loss(batch))
    want, want_grads = _loss_and_grads(model, reference_loss(model, batch))
    assert got == pytest.approx(want, rel=1e-5)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-7)


def test_cls_loss_without_forward_labels_gets_one_hot_targets():
    from torchvision.ops import sigmoid_focal_loss

    class PlainFocal(torch.nn.Module):  # a cls_loss that only knows one-hot targets
        def forward(self, logits, targets):
            return sigmoid_focal_loss(logits, targets, 0.5, 1.0, reduction="sum")

    model = tiny_retinanet()
    model.cls_loss = PlainFocal()
    batch = batch_with_crowd_and_empty()
    got = model.loss(batch)["loss_cls"].item()
    want = reference_loss(model, batch, cls_loss=PlainFocal())["loss_cls"].item()
    assert got == pytest.approx(want, rel=1e-5)


def test_levels_without_positives_stay_out_of_the_box_backward():
    model = tiny_retinanet()
    batch = batch_with_crowd_and_empty()
    batch.targets[0] = batch.targets[1]  # no boxes
    batch.targets[2].iscrowd[:] = False
    batch.targets[2].boxes[:] = torch.tensor([[24.0, 24.0, 40.0, 40.0], [20.0, 22.0, 37.0, 38.0]])
    outputs = {}
    head_forward = model.head.forward

    def recording_forward(feats):
        logits, outputs["deltas"] = head_forward(feats)
        return logits, outputs["deltas"]

    model.head.forward = recording_forward
    loss_box = model.loss(batch)["loss_box"]
    grads = torch.autograd.grad(loss_box, outputs["deltas"], allow_unused=True)
    # 16-pixel boxes match the size-16 anchors of level 0 only
    assert grads[0] is not None and grads[0].abs().sum() > 0
    assert grads[1] is None


def count_forward_calls(module: torch.nn.Module) -> list:
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def assert_same_predictions(got, want):
    assert len(got) == len(want)
    for p, w in zip(got, want):
        assert p.image_id == w.image_id and len(p.boxes) > 0
        assert torch.equal(p.boxes, w.boxes) and torch.equal(p.scores, w.scores)
        assert torch.equal(p.labels, w.labels)
        assert not (p.boxes.requires_grad or p.scores.requires_grad)


def test_loss_and_predict_equals_loss_and_predict_from_one_forward():
    model = tiny_retinanet()
    model.score_threshold = 0.0  # untrained scores are ~0.01: keep candidates to compare
    batch = batch_with_crowd_and_empty()
    model.eval()
    want_losses, want_preds = model.loss(batch), model.predict(batch)
    backbone_calls = count_forward_calls(model.backbone)
    losses, preds = model.loss_and_predict(batch)
    assert len(backbone_calls) == 1
    assert losses.keys() == want_losses.keys()
    assert all(torch.equal(losses[k], want_losses[k]) for k in losses)
    assert losses["loss_cls"].requires_grad  # the loss part still trains
    assert_same_predictions(preds, want_preds)
    model.train()  # train mode: the same losses as loss() too
    want = model.loss(batch)
    assert all(torch.equal(v, want[k]) for k, v in model.loss_and_predict(batch)[0].items())
    with pytest.raises(ValueError, match="needs targets"):
        model.loss_and_predict(DetBatch(batch.images, batch.image_sizes))


def test_strides_are_the_heads_in_strides_wired_from_the_neck():
    model = tiny_retinanet()
    neck_strides = [f.stride for f in model.neck.feature_info]
    assert model.head.strides == neck_strides and model.strides == neck_strides
    assert model.preprocessor.size_divisor == max(neck_strides)


def test_strides_without_wiring_come_from_the_anchor_generator_or_fail_clearly():
    from cvkit.models.backbones.tiny_net import TinyNet
    from cvkit.models.task_utils import AnchorGenerator
    from cvkit.models.tasks.retinanet import RetinaNet

    backbone = TinyNet(width=8, out_indices=[1, 2])  # strides 4, 8
    info = backbone.feature_info
    neck = FPN([f.channels for f in info], [f.stride for f in info], 16, extra_levels=0)
    head = RetinaHead(16, 2, num_anchors=9, num_convs=1, feat_channels=16)  # no in_strides
    with pytest.raises(ValueError, match="the head has no in_strides"):
        RetinaNet(backbone, neck, head)
    fixed = AnchorGenerator(sizes=[[16], [32]], scales=[1.0, 1.26, 1.587], strides=[4, 8])
    model = RetinaNet(backbone, neck, head, anchor_generator=fixed)
    assert model.strides == [4, 8] and model.head.strides is None
    (logits, _), _ = model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert [lv.shape[1] for lv in logits] == [8 * 8 * 9, 4 * 4 * 9]


@pytest.mark.parametrize("agnostic, expected", [(False, [(0, 0.4), (1, 0.9)]), (True, [(1, 0.9)])])
def test_class_agnostic_nms_keeps_one_label_per_object(agnostic, expected):
    model = tiny_retinanet(class_agnostic_nms=agnostic)  # as a config sets it
    assert model.class_agnostic_nms is agnostic
    # two nearly equal boxes of different classes, as if both classes fired on one object
    boxes = torch.tensor([[10.0, 10.0, 40.0, 40.0], [11.0, 10.0, 40.0, 41.0]])
    scores, labels = torch.tensor([0.4, 0.9]), torch.tensor([0, 1])
    model._candidates = lambda *args: (boxes, scores, labels)
    outputs = ([torch.zeros(1, 1, 2)], [torch.zeros(1, 1, 4)])
    batch = DetBatch(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), [(64, 64)])
    (pred,) = model._predictions(outputs, [torch.zeros(1, 4)], batch)
    got = sorted((int(lab), round(float(s), 4)) for lab, s in zip(pred.labels, pred.scores))
    assert got == sorted(expected)


def test_class_agnostic_nms_is_off_by_default():
    assert tiny_retinanet().class_agnostic_nms is False
