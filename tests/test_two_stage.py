"""Faster R-CNN parts against torchvision's and brute-force references, and a tiny model that
learns on CPU."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection import roi_heads as tv_roi
from torchvision.models.detection import rpn as tv_rpn
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator

import cvkit
from cvkit.models.heads.roi_head import RoIHead
from cvkit.models.heads.rpn_head import RPNHead
from cvkit.models.necks.fpn import FPN
from cvkit.models.task_utils import AnchorGenerator, MaxIoUMatcher, RandomSampler
from cvkit.registry import MODELS
from cvkit.structures import DetTarget
from tests.test_detector import batch_of_squares


def random_boxes(n: int, size: float, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * size * 0.8
    wh = torch.rand(n, 2, generator=generator) * size * 0.4 + 2.0
    return torch.cat([xy, xy + wh], dim=1)


def test_fpn_maxpool_extra_level_subsamples_the_last_level_without_parameters():
    conv = FPN([8, 16], [4, 8], out_channels=12, extra_levels=0)
    pooled = FPN([8, 16], [4, 8], out_channels=12, extra_levels=1, extra_type="maxpool")
    assert sum(p.numel() for p in pooled.parameters()) == sum(p.numel() for p in conv.parameters())
    assert [f.stride for f in pooled.feature_info] == [4, 8, 16]
    pooled.load_state_dict(conv.state_dict())
    feats = [torch.randn(1, 8, 16, 16), torch.randn(1, 16, 7, 7)]
    outs = pooled(feats)
    assert torch.equal(outs[2], outs[1][:, :, ::2, ::2]) and outs[2].shape[-1] == 4
    with pytest.raises(ValueError, match="extra_from must be 'output' or left out"):
        FPN([8], [4], extra_levels=1, extra_type="maxpool", extra_from="input")


def test_rpn_proposals_equal_torchvision_filter_proposals():
    g = torch.Generator().manual_seed(0)
    head = RPNHead(
        in_channels=4, in_strides=[4, 8], pre_nms_top_n=(50, 40), post_nms_top_n=(30, 25)
    )
    feats = [torch.zeros(2, 4, 16, 16), torch.zeros(2, 4, 8, 8)]
    anchors = head.anchors(feats)
    objectness = [torch.randn(2, len(a), generator=g) for a in anchors]
    deltas = [torch.randn(2, len(a), 4, generator=g) * 0.3 for a in anchors]
    sizes = [(64, 64), (50, 60)]
    tv = tv_rpn.RegionProposalNetwork(
        TvAnchorGenerator(),
        torch.nn.Identity(),
        0.7,
        0.3,
        256,
        0.5,
        {"training": 50, "testing": 40},
        {"training": 30, "testing": 25},
        0.7,
    )
    for training in (True, False):
        head.train(training)
        tv.train(training)
        ours = head.proposals(objectness, deltas, anchors, sizes)
        decoded = head.box_coder.decode(
            torch.cat(deltas, 1).reshape(-1, 4), torch.cat(anchors).repeat(2, 1)
        )
        theirs, _ = tv.filter_proposals(
            decoded.view(2, -1, 4), torch.cat(objectness, 1), sizes, [len(a) for a in anchors]
        )
        for a, b in zip(ours, theirs):
            assert len(a) == len(b) and len(a) <= (30 if training else 25)
            torch.testing.assert_close(a, b)


def roi_head_with_logits(num_classes: int):
    head = RoIHead(in_channels=4, num_classes=num_classes, in_strides=[4, 8], roi_strides=[4, 8])
    head.eval()
    return head


def test_roi_detections_equal_torchvision_postprocess():
    g = torch.Generator().manual_seed(1)
    k = 3
    proposals = [random_boxes(40, 60, g), random_boxes(25, 60, g)]
    tv_logits = torch.randn(65, k + 1, generator=g) * 3
    tv_deltas = torch.randn(65, (k + 1) * 4, generator=g)
    sizes = [(64, 64), (48, 56)]
    tv = tv_roi.RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, 0.05, 0.5, 100)
    boxes, scores, labels = tv.postprocess_detections(tv_logits, tv_deltas, proposals, sizes)
    head = roi_head_with_logits(k)
    # cvkit puts background last and has no background box deltas
    logits = torch.cat([tv_logits[:, 1:], tv_logits[:, :1]], dim=1)
    probs = logits.softmax(1)[:, :k]
    decoded = head.box_coder.decode(tv_deltas[:, 4:], torch.cat(proposals))
    for i, (start, end) in enumerate([(0, 40), (40, 65)]):
        b, s, lab = head._detections(decoded[start:end], probs[start:end], sizes[i])
        torch.testing.assert_close(b, boxes[i])
        torch.testing.assert_close(s, scores[i])
        assert torch.equal(lab, labels[i] - 1)


def take_everything(matcher: MaxIoUMatcher) -> dict:
    # a sampler that keeps every positive and every negative: the loss becomes deterministic
    return {
        "matcher": matcher,
        "sampler": RandomSampler(num_samples=100_000, positive_fraction=1.0),
    }


def test_rpn_loss_equals_a_brute_force_reference():
    g = torch.Generator().manual_seed(2)
    head = RPNHead(
        in_channels=4,
        in_strides=[8],
        anchor_generator=AnchorGenerator(sizes=[[16]]),
        **take_everything(MaxIoUMatcher(0.5, 0.3)),
    )
    anchors = head.anchors([torch.zeros(1, 4, 6, 6)])
    n = len(anchors[0])
    objectness, deltas = [torch.randn(2, n, generator=g)], [torch.randn(2, n, 4, generator=g)]
    crowd = torch.tensor([False, True])
    targets = [
        DetTarget(
            torch.tensor([[4.0, 4.0, 20.0, 24.0], [30.0, 30.0, 46.0, 46.0]]),
            torch.tensor([0, 1]),
            crowd,
            1,
            (48, 48),
        ),
        DetTarget(
            torch.zeros(0, 4),
            torch.zeros(0, dtype=torch.int64),
            torch.zeros(0, dtype=torch.bool),
            2,
            (48, 48),
        ),
    ]
    losses = head.loss(objectness, deltas, anchors, targets)
    cls_sum, box_sum, count = 0.0, 0.0, 0
    for i, t in enumerate(targets):
        for a in range(n):
            if len(t.boxes):
                matched = int(head.matcher(cvkit.ops.box_iou(t.boxes, anchors[0]), t.iscrowd)[a])
            else:
                matched = -1
            if matched == -2:
                continue
            label = float(matched >= 0)
            cls_sum += F.binary_cross_entropy_with_logits(
                objectness[0][i, a], torch.tensor(label)
            ).item()
            count += 1
            if matched >= 0:
                target = head.box_coder.encode(t.boxes[matched][None], anchors[0][a][None])[0]
                box_sum += F.smooth_l1_loss(
                    deltas[0][i, a], target, beta=1 / 9, reduction="sum"
                ).item()
    assert losses["loss_rpn_cls"].item() == pytest.approx(cls_sum / count, rel=1e-5)
    assert losses["loss_rpn_box"].item() == pytest.approx(box_sum / count, rel=1e-5)
    assert box_sum > 0 and count < 2 * n  # some positives, some ignored


def test_roi_loss_equals_torchvision_fastrcnn_loss():
    g = torch.Generator().manual_seed(3)
    k = 3
    head = RoIHead(
        in_channels=4,
        num_classes=k,
        in_strides=[4],
        roi_strides=[4],
        roi_size=2,
        fc_channels=8,
        **take_everything(MaxIoUMatcher(0.5, 0.5, False)),
    )
    feats = [torch.randn(2, 4, 16, 16, generator=g)]
    gts = torch.tensor([[4.0, 4.0, 30.0, 30.0], [30.0, 20.0, 60.0, 50.0]])
    targets = [
        DetTarget(gts, torch.tensor([2, 0]), torch.tensor([False, False]), 1, (64, 64)),
        DetTarget(gts[:1], torch.tensor([1]), torch.tensor([False]), 2, (64, 64)),
    ]
    proposals = [gts + torch.randn(2, 4, generator=g) * 3, random_boxes(6, 60, g)]
    losses = head.loss(feats, proposals, targets, (64, 64))
    # the same sampled RoIs through torchvision's loss (background first, K + 1 box columns)
    rois, labels, gt = zip(*(head._sample(p, t) for p, t in zip(proposals, targets)))
    logits, deltas = head(feats, list(rois), (64, 64))
    labels, gt, rois = torch.cat(labels), torch.cat(gt), torch.cat(rois)
    tv_labels = torch.where(labels == k, 0, labels + 1)
    tv_logits = torch.cat([logits[:, k:], logits[:, :k]], dim=1)
    tv_deltas = torch.cat([torch.zeros(len(deltas), 4), deltas], dim=1)
    tv_targets = head.box_coder.encode(gt, rois)
    cls, box = tv_roi.fastrcnn_loss(tv_logits, tv_deltas, [tv_labels], [tv_targets])
    assert (labels < k).sum() >= 3
    torch.testing.assert_close(losses["loss_roi_cls"], cls)
    torch.testing.assert_close(losses["loss_roi_box"], box)


def tiny_faster_rcnn(**roi_options):
    return cvkit.build(
        {
            "type": "FasterRCNN",
            "backbone": {"type": "TinyNet", "width": 8, "out_indices": [0, 1, 2]},
            "neck": {"type": "FPN", "out_channels": 16, "extra_levels": 1, "extra_type": "maxpool"},
            "rpn_head": {
                "type": "RPNHead",
                "anchor_generator": {"type": "AnchorGenerator", "sizes": [[16], [24], [32], [48]]},
            },
            "roi_head": {
                "type": "RoIHead",
                "num_classes": 2,
                "roi_strides": [2, 4, 8],
                "fc_channels": 64,
                **roi_options,
            },
        },
        MODELS,
    )


def test_faster_rcnn_learns_a_tiny_batch_and_predicts_in_original_pixels():
    torch.manual_seed(0)
    model = tiny_faster_rcnn()
    batch = batch_of_squares()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(60):
        losses = model.loss(batch)
        total = sum(losses.values())
        first = first if first is not None else total.item()
        opt.zero_grad()
        total.backward()
        opt.step()
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_box", "loss_roi_cls", "loss_roi_box"}
    assert total.item() < 0.3 * first
    model.eval()
    preds = model.predict(batch)
    assert [p.image_id for p in preds] == [1, 2]
    top = preds[0]
    assert top.labels[0].item() == 0 and top.scores[0] > 0.5
    # image 1 was 128x128 on disk and 64x64 here: boxes come back doubled
    assert top.boxes[0].tolist() == pytest.approx([20.0, 16.0, 60.0, 56.0], abs=6.0)
    assert preds[1].labels[0].item() == 1
    assert torch.all(top.scores[:-1] >= top.scores[1:])


def test_faster_rcnn_trains_on_crowd_and_empty_targets():
    model = tiny_faster_rcnn()
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
    assert losses["loss_rpn_box"].item() == 0.0 and losses["loss_roi_box"].item() == 0.0
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_roi_strides_the_neck_lacks_are_an_error():
    with pytest.raises(ValueError, match=r"roi_strides \[4, 8\] name strides \[4\] that the neck"):
        RoIHead(in_channels=4, num_classes=2, in_strides=[8, 16], roi_strides=[4, 8])


def test_loss_and_predict_equals_loss_and_predict_from_one_forward():
    from tests.test_detector import assert_same_predictions, count_forward_calls

    model = tiny_faster_rcnn()
    batch = batch_of_squares()
    model.eval()  # the RPN keeps its testing number of proposals for all three
    torch.manual_seed(5)  # the samplers draw the same positives and negatives each time
    want_losses, want_preds = model.loss(batch), model.predict(batch)
    backbone_calls = count_forward_calls(model.backbone)
    torch.manual_seed(5)
    losses, preds = model.loss_and_predict(batch)
    assert len(backbone_calls) == 1
    assert losses.keys() == want_losses.keys()
    assert all(torch.equal(losses[k], want_losses[k]) for k in losses)
    assert losses["loss_roi_cls"].requires_grad
    assert_same_predictions(preds, want_preds)
    model.train()
    torch.manual_seed(6)
    want = model.loss(batch)
    torch.manual_seed(6)
    assert all(torch.equal(v, want[k]) for k, v in model.loss_and_predict(batch)[0].items())


def test_rpn_strides_come_from_its_own_in_strides():
    from cvkit.models.backbones.tiny_net import TinyNet
    from cvkit.models.tasks.two_stage_detector import TwoStageDetector

    model = tiny_faster_rcnn()
    assert model.rpn_head.strides == [f.stride for f in model.neck.feature_info]
    assert model.preprocessor.size_divisor == max(model.rpn_head.strides)
    fixed = AnchorGenerator(sizes=[[16], [32]], strides=[2, 4])
    rpn = RPNHead(in_channels=4, anchor_generator=fixed)  # no wiring: the generator's own
    assert rpn.strides == [2, 4]
    backbone = TinyNet(width=4, out_indices=[0, 1])  # strides 2, 4
    info = backbone.feature_info
    neck = FPN([f.channels for f in info], [f.stride for f in info], out_channels=4)
    roi = RoIHead(in_channels=4, num_classes=2, in_strides=[2, 4], roi_strides=[2, 4])
    TwoStageDetector(backbone, neck, rpn, roi)
    assert rpn.strides == [2, 4]  # the detector reads them, never writes them
    with pytest.raises(ValueError, match="RPNHead: no strides for the anchors"):
        RPNHead(in_channels=4, anchor_generator=AnchorGenerator(sizes=[[16]]))


@pytest.mark.parametrize("agnostic, expected", [(False, [(0, 0.6), (1, 0.35)]), (True, [(0, 0.6)])])
def test_roi_class_agnostic_nms_keeps_one_label_per_object(agnostic, expected):
    head = RoIHead(
        in_channels=4,
        num_classes=2,
        in_strides=[4, 8],
        roi_strides=[4, 8],
        class_agnostic_nms=agnostic,
    )
    # one proposal, the same box for both classes: both classes fire on one object
    boxes = torch.tensor([[10.0, 10.0, 40.0, 40.0] * 2])
    probs = torch.tensor([[0.6, 0.35]])
    _, scores, labels = head._detections(boxes, probs, (64, 64))
    assert sorted((int(lab), round(float(s), 4)) for lab, s in zip(labels, scores)) == expected


def test_faster_rcnn_config_sets_class_agnostic_nms_on_the_roi_head():
    assert tiny_faster_rcnn(class_agnostic_nms=True).roi_head.class_agnostic_nms is True
    assert RoIHead(4, 2, roi_strides=[4]).class_agnostic_nms is False
