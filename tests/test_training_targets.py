"""Training targets and the detection-loss dispatch, against brute-force references; loss
kinds declared by base class; strides read from one place; predictions rescaled to files."""

from __future__ import annotations

import doctest

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from cvkit.models.losses.detection import (
    ClassIndexLoss,
    DecodedBoxLoss,
    DeltaBoxLoss,
    FocalLoss,
    IoULoss,
    SmoothL1Loss,
)
from cvkit.models.task_utils import (
    AnchorGenerator,
    DeltaBoxCoder,
    MaxIoUMatcher,
    RandomSampler,
    anchor_strides,
    box_regression_loss,
    classification_loss,
    dense_box_loss,
    label_anchors,
    match_boxes,
    sample_labels,
    training_targets,
)
from cvkit.ops import box_iou
from cvkit.structures import DetPrediction, DetTarget


def random_boxes(n: int, g: torch.Generator, size: float = 60.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * size * 0.7
    wh = torch.rand(n, 2, generator=g) * size * 0.4 + 4.0
    return torch.cat([xy, xy + wh], dim=1)


def target(boxes: torch.Tensor, labels: list[int], crowd: list[bool] | None = None) -> DetTarget:
    crowd = crowd or [False] * len(labels)
    return DetTarget(
        boxes, torch.tensor(labels, dtype=torch.int64), torch.tensor(crowd), 1, (64, 64)
    )


def empty_target() -> DetTarget:
    return target(torch.zeros(0, 4), [])


def batch_targets(g: torch.Generator) -> list[DetTarget]:
    """Three images: two gts; none; a gt and a crowd gt."""
    return [
        target(random_boxes(2, g), [1, 0]),
        empty_target(),
        target(random_boxes(2, g), [2, 1], [False, True]),
    ]


def anchor_grid() -> torch.Tensor:
    gen = AnchorGenerator(sizes=[[12], [24]], aspect_ratios=(0.5, 1.0, 2.0))
    return torch.cat(gen([(8, 8), (4, 4)], [8, 16], "cpu"))


def test_docstring_examples_run():
    result = doctest.testmod(training_targets, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# -- labels ------------------------------------------------------------------------------------
def test_match_boxes_is_the_matcher_on_the_iou_and_background_without_gts():
    g = torch.Generator().manual_seed(0)
    matcher, anchors = MaxIoUMatcher(0.5, 0.4), anchor_grid()
    t = target(random_boxes(3, g), [0, 1, 2], [False, True, False])
    want = matcher(box_iou(t.boxes, anchors), t.iscrowd)
    assert torch.equal(match_boxes(matcher, t, anchors), want)
    none = match_boxes(matcher, empty_target(), anchors)
    assert none.dtype == torch.int64 and none.shape == (len(anchors),) and (none == -1).all()


def test_label_anchors_equals_a_per_anchor_loop():
    g = torch.Generator().manual_seed(1)
    matcher, anchors, targets = MaxIoUMatcher(0.5, 0.4), anchor_grid(), batch_targets(g)
    labels = label_anchors(matcher, targets, anchors)
    assert labels.matched.shape == labels.classes.shape == (3, len(anchors))
    for i, t in enumerate(targets):
        matched = match_boxes(matcher, t, anchors)
        assert torch.equal(labels.matched[i], matched)
        for a in range(len(anchors)):
            m = int(matched[a])
            assert int(labels.classes[i, a]) == (int(t.labels[m]) if m >= 0 else -1)
    assert labels.num_positives == sum(int((labels.matched[i] >= 0).sum()) for i in range(3))
    assert labels.num_positives > 0 and (labels.matched == -2).any()


def test_sample_labels_draws_like_the_sampler_and_keeps_each_positives_gt():
    g = torch.Generator().manual_seed(2)
    matcher, sampler, anchors = MaxIoUMatcher(0.5, 0.3), RandomSampler(16, 0.25), anchor_grid()
    t = target(random_boxes(3, g), [0, 1, 2])
    torch.manual_seed(5)
    got = sample_labels(matcher, sampler, t, anchors)
    matched = match_boxes(matcher, t, anchors)
    torch.manual_seed(5)
    pos, neg = sampler(matched)
    assert torch.equal(got.pos, pos) and torch.equal(got.neg, neg)
    assert got.pos_gt.tolist() == [int(matched[p]) for p in pos]
    assert torch.equal(got.indices, torch.cat([pos, neg]))
    assert 0 < len(pos) <= 4 and len(pos) + len(neg) == 16


def test_sample_labels_without_gts_samples_only_negatives():
    sampled = sample_labels(MaxIoUMatcher(), RandomSampler(8, 0.5), empty_target(), anchor_grid())
    assert len(sampled.pos) == len(sampled.pos_gt) == 0 and len(sampled.neg) == 8


# -- loss dispatch -----------------------------------------------------------------------------
class Recorder(nn.Module):
    """Records what it is given; returns the sum of the first argument."""

    def forward(self, pred, target):
        self.got = (pred.detach().clone(), target.detach().clone())
        return pred.sum()


class RecordingDecoded(Recorder, DecodedBoxLoss):
    pass


class RecordingDelta(Recorder, DeltaBoxLoss):
    pass


@pytest.mark.parametrize(
    ("loss", "on_boxes"),
    [(Recorder(), False), (RecordingDelta(), False), (RecordingDecoded(), True)],
    ids=["plain-module", "DeltaBoxLoss", "DecodedBoxLoss"],
)
def test_box_regression_loss_dispatches_on_the_base_class(loss, on_boxes):
    g = torch.Generator().manual_seed(3)
    coder = DeltaBoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    refs, gt = random_boxes(5, g), random_boxes(5, g)
    deltas = torch.randn(5, 4, generator=g) * 0.2
    box_regression_loss(loss, coder, deltas, gt, refs)
    want = (coder.decode(deltas, refs), gt) if on_boxes else (deltas, coder.encode(gt, refs))
    for a, b in zip(loss.got, want):
        assert torch.equal(a, b)


def test_built_in_losses_declare_their_kind():
    assert isinstance(IoULoss(), DecodedBoxLoss) and not isinstance(IoULoss(), DeltaBoxLoss)
    assert isinstance(SmoothL1Loss(), DeltaBoxLoss)
    assert isinstance(FocalLoss(), ClassIndexLoss)
    assert IoULoss.uses_boxes and not SmoothL1Loss.uses_boxes  # the old attribute still reads
    with pytest.raises(NotImplementedError, match="must implement forward_labels"):
        ClassIndexLoss().forward_labels(torch.zeros(1, 2), torch.zeros(1, dtype=torch.int64))


def classification_problem(seed: int = 4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(30, 5, generator=g) * 3
    labels = torch.randint(-1, 5, (30,), generator=g)
    keep = torch.rand(30, generator=g) > 0.2
    return logits, labels, keep


def one_hot_reference(loss_fn, logits, labels, keep):
    """The loss written plainly: a one-hot row per kept row."""
    total = logits.new_zeros(())
    for row in range(len(logits)):
        if keep[row]:
            onehot = torch.zeros(logits.shape[1])
            if labels[row] >= 0:
                onehot[labels[row]] = 1.0
            total = total + loss_fn(logits[row : row + 1], onehot[None])
    return total


def test_classification_loss_with_class_indices_equals_one_hot_reference():
    logits, labels, keep = classification_problem()
    got = classification_loss(FocalLoss(), logits, labels, keep)
    want = one_hot_reference(
        lambda x, t: sigmoid_focal_loss(x, t, 0.25, 2.0, reduction="sum"), logits, labels, keep
    )
    torch.testing.assert_close(got, want)


def test_classification_loss_gives_other_losses_one_hot_rows_of_the_kept():
    class PlainBCE(nn.Module):  # knows only one-hot targets
        def forward(self, logits, targets):
            return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")

    logits, labels, keep = classification_problem(seed=5)
    got = classification_loss(PlainBCE(), logits, labels, keep)
    torch.testing.assert_close(got, one_hot_reference(PlainBCE(), logits, labels, keep))


def test_a_plugin_declares_class_indices_by_subclassing():
    class PluginFocal(ClassIndexLoss):
        def forward(self, logits, targets):
            raise AssertionError("a ClassIndexLoss gets class indices")

        def forward_labels(self, logits, labels, weights=None):
            self.got = (labels, weights)
            return logits.sum()

    class Undeclared(nn.Module):  # has forward_labels but does not declare it: one-hot
        def forward(self, logits, targets):
            return (logits * targets).sum()

        def forward_labels(self, logits, labels, weights=None):
            raise AssertionError("only a ClassIndexLoss gets class indices")

    logits, labels, keep = classification_problem(seed=6)
    plugin = PluginFocal()
    classification_loss(plugin, logits, labels, keep)
    assert torch.equal(plugin.got[0], labels) and torch.equal(plugin.got[1], keep.float())
    classification_loss(Undeclared(), logits, labels, keep)


@pytest.mark.parametrize("box_loss", [SmoothL1Loss(beta=0.1), IoULoss()], ids=["l1", "giou"])
def test_dense_box_loss_equals_a_per_image_per_anchor_loop(box_loss):
    g = torch.Generator().manual_seed(7)
    coder, anchors, targets = DeltaBoxCoder(), anchor_grid(), batch_targets(g)
    sizes = [8 * 8 * 3, 4 * 4 * 3]
    deltas = [torch.randn(3, n, 4, generator=g) * 0.1 for n in sizes]
    matched = label_anchors(MaxIoUMatcher(0.5, 0.4), targets, anchors).matched
    got = dense_box_loss(box_loss, coder, deltas, anchors, matched, targets)
    all_deltas, want = torch.cat(deltas, 1), torch.zeros(())
    for i, t in enumerate(targets):
        for a in torch.nonzero(matched[i] >= 0).flatten().tolist():
            gt = t.boxes[int(matched[i, a])][None]
            want = want + box_regression_loss(
                box_loss, coder, all_deltas[i, a][None], gt, anchors[a][None]
            )
    torch.testing.assert_close(got, want)


def test_dense_box_loss_without_positives_is_zero_and_in_the_graph():
    anchors = anchor_grid()
    deltas = [torch.randn(2, n, 4, requires_grad=True) for n in (192, 48)]
    matched = torch.full((2, len(anchors)), -1)
    targets = [empty_target(), empty_target()]
    loss = dense_box_loss(SmoothL1Loss(), DeltaBoxCoder(), deltas, anchors, matched, targets)
    assert loss.item() == 0.0 and loss.requires_grad
    # an empty slice of the smallest level: the largest stays out of the backward
    grads = torch.autograd.grad(loss, deltas, allow_unused=True)
    assert grads[0] is None and (grads[1] == 0).all()


# -- strides and rescaling ---------------------------------------------------------------------
def test_anchor_strides_from_in_strides_else_the_generator():
    fixed = AnchorGenerator(sizes=[[16], [32]], strides=[4, 8])
    assert anchor_strides([8, 16], fixed) == [8, 16]
    assert anchor_strides(None, fixed) == [4, 8]
    with pytest.raises(ValueError, match="the head has no in_strides and the anchor generator"):
        anchor_strides(None, AnchorGenerator(sizes=[[16]]))
    with pytest.raises(ValueError, match="give the head in_strides"):
        anchor_strides(None)


def test_predictions_are_rescaled_to_the_file_pixels():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    scores, labels = torch.tensor([0.9]), torch.tensor([1])
    t = DetTarget(boxes, labels, torch.tensor([False]), image_id=7, orig_size=(100, 300))
    pred = DetPrediction.from_batch_pixels(boxes, scores, labels, (50, 100), t)
    assert pred.boxes.tolist() == [[30.0, 40.0, 90.0, 80.0]] and pred.image_id == 7
    assert pred.scores is scores and pred.labels is labels
    same = DetPrediction.from_batch_pixels(boxes, scores, labels, (50, 100), None)
    assert torch.equal(same.boxes, boxes) and same.image_id == -1
