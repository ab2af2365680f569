"""Segmentation confusion matrix and metrics against brute-force pixel loops."""

from __future__ import annotations

import json
import math

import pytest
import torch

import cvkit
from cvkit.evaluation.segmentation import (
    SegmentationEvaluator,
    segmentation_confusion,
    segmentation_metrics,
)
from cvkit.registry import METRICS

IGNORE = 255


def _random_case(seed: int, k: int = 5, shape=(2, 7, 9)) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k-1 never occurs in pred nor target; about 1 pixel in 6 is ignored."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k - 1, shape, generator=g)
    target[torch.rand(shape, generator=g) < 0.15] = IGNORE
    pred = torch.randint(0, k - 1, shape, generator=g)
    keep = torch.rand(shape, generator=g) < 0.5  # a heavier diagonal than chance
    pred = torch.where(keep & (target != IGNORE), target, pred)
    return pred, target


def _brute_force(pred: torch.Tensor, target: torch.Tensor, k: int) -> dict:
    """Every metric by explicit loops over pixels and classes (NaN where undefined)."""
    cm = [[0] * k for _ in range(k)]
    for p, t in zip(pred.flatten().tolist(), target.flatten().tolist()):
        if t != IGNORE:
            cm[t][p] += 1
    iou, acc = [], []
    for c in range(k):
        tp = cm[c][c]
        fn = sum(cm[c]) - tp
        fp = sum(cm[r][c] for r in range(k)) - tp
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
        acc.append(tp / (tp + fn) if tp + fn else math.nan)
    total = sum(map(sum, cm))
    defined_iou = [v for v in iou if not math.isnan(v)]
    defined_acc = [v for v in acc if not math.isnan(v)]
    return {
        "confusion": cm,
        "IoU": iou,
        "acc": acc,
        "mIoU": sum(defined_iou) / len(defined_iou),
        "mean_acc": sum(defined_acc) / len(defined_acc),
        "pixel_acc": sum(cm[c][c] for c in range(k)) / total,
        "fwIoU": sum(sum(cm[c]) / total * iou[c] for c in range(k) if sum(cm[c])),
    }


def _assert_close_nan(actual: list[float], expected: list[float]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert (math.isnan(a) and math.isnan(e)) or a == pytest.approx(e, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_brute_force_with_ignored_pixels(seed):
    pred, target = _random_case(seed)
    ref = _brute_force(pred, target, 5)
    cm = segmentation_confusion(pred, target, 5)
    assert cm.dtype == torch.int64 and cm.tolist() == ref["confusion"]
    assert torch.equal(segmentation_confusion(pred, target.to(torch.uint8), 5), cm)  # masks
    ev = SegmentationEvaluator(5)
    ev.update(pred, target)
    metrics = ev.compute()
    for key in ("mIoU", "mean_acc", "pixel_acc", "fwIoU"):
        assert metrics[key] == pytest.approx(ref[key], abs=1e-12), key
    stats = ev.per_class()
    _assert_close_nan(stats["IoU"].tolist(), ref["IoU"])
    _assert_close_nan(stats["acc"].tolist(), ref["acc"])
    assert ev.num_pixels == int((target != IGNORE).sum())


def test_logits_are_argmaxed():
    pred, target = _random_case(3)
    logits = torch.nn.functional.one_hot(pred, 5).permute(0, 3, 1, 2).float() * 3
    logits += 0.1 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))
    from_logits, from_pred = SegmentationEvaluator(5), SegmentationEvaluator(5)
    from_logits.update(logits, target)
    from_pred.update(pred, target)
    assert torch.equal(from_logits.confusion, from_pred.confusion)


def test_perfect_prediction_scores_one():
    _, target = _random_case(4)
    pred = torch.where(target == IGNORE, 0, target)
    ev = SegmentationEvaluator(5)
    ev.update(pred, target)
    assert ev.compute() == {"mIoU": 1.0, "mean_acc": 1.0, "pixel_acc": 1.0, "fwIoU": 1.0}


def test_hand_computed_two_class_example():
    # true 0 0 0 1 | 1 1 ign ign;  pred 0 0 1 1 | 1 0 1 0
    target = torch.tensor([[[0, 0, 0, 1], [1, 1, IGNORE, IGNORE]]])
    pred = torch.tensor([[[0, 0, 1, 1], [1, 0, 1, 0]]])
    # counted: (0,0) x2, (0,1), (1,1) x2, (1,0) -> [[2, 1], [1, 2]]
    assert segmentation_confusion(pred, target, 2).tolist() == [[2, 1], [1, 2]]
    ev = SegmentationEvaluator(2)
    ev.update(pred, target)
    m = ev.compute()
    assert m["pixel_acc"] == pytest.approx(4 / 6)
    assert m["mean_acc"] == pytest.approx(2 / 3)  # 2/3 per class
    assert m["mIoU"] == pytest.approx(0.5)  # 2 / (3 + 3 - 2) per class
    assert m["fwIoU"] == pytest.approx(0.5)


def test_absent_class_is_na_and_left_out_of_the_means():
    # classes: 0 correct, 1 only predicted (IoU 0, acc n/a), 2 nowhere (both n/a)
    target = torch.tensor([[[0, 0, 0, 0]]])
    pred = torch.tensor([[[0, 0, 0, 1]]])
    ev = SegmentationEvaluator(3, class_names=["bg", "car", "boat"])
    ev.update(pred, target)
    stats = ev.per_class()
    assert stats["IoU"][:2].tolist() == [0.75, 0.0] and math.isnan(stats["IoU"][2])
    assert stats["acc"][0] == 0.75 and stats["acc"][1:].isnan().all()
    m = ev.compute()
    assert m["mIoU"] == pytest.approx((0.75 + 0.0) / 2)  # boat is not averaged
    assert m["mean_acc"] == pytest.approx(0.75)  # only bg occurs in the targets
    report = ev.to_json_dict()
    assert report["per_class"]["boat"] == {"IoU": None, "acc": None, "support": 0, "predicted": 0}
    assert report["per_class"]["car"]["acc"] is None
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN leaks out
    table = ev.summary_table()
    boat_row = next(line for line in table.splitlines() if line.startswith("boat"))
    assert boat_row.split()[1:3] == ["n/a", "n/a"]
    assert "n/a (in neither targets nor predictions" in table and "boat" in table.splitlines()[-1]
    assert "mIoU 0.3750" in table


def test_several_updates_equal_one_big_update():
    cases = [_random_case(seed) for seed in range(4)]
    incremental, once = SegmentationEvaluator(5), SegmentationEvaluator(5)
    for pred, target in cases:
        incremental.update(pred, target)
    once.update(torch.cat([p for p, _ in cases]), torch.cat([t for _, t in cases]))
    assert torch.equal(incremental.confusion, once.confusion)
    assert incremental.compute() == once.compute()
    incremental.reset()
    assert incremental.num_pixels == 0


def test_registered_and_buildable():
    assert METRICS.get("SegmentationEvaluator") is SegmentationEvaluator
    ev = cvkit.build({"type": "SegmentationEvaluator", "num_classes": 3}, cvkit.METRICS)
    assert isinstance(ev, SegmentationEvaluator) and ev.ignore_index == IGNORE


def test_segmentation_metrics_without_pixels_is_nan():
    stats = segmentation_metrics(torch.zeros(3, 3, dtype=torch.int64))
    assert all(math.isnan(stats[k]) for k in ("mIoU", "mean_acc", "pixel_acc", "fwIoU"))


# --- error messages -------------------------------------------------------------------------


def test_error_target_value_out_of_range_names_value_and_count():
    target = torch.tensor([[[0, 1, 7, 7], [9, IGNORE, 1, 0]]])
    with pytest.raises(ValueError) as info:
        segmentation_confusion(torch.zeros_like(target), target, 3)
    msg = str(info.value)
    assert "target values outside [0, 3)" in msg
    assert "7 (2 px), 9 (1 px)" in msg and "3 of 8 pixels" in msg
    assert "ignore_index=255" in msg


def test_error_prediction_out_of_range_but_not_at_ignored_pixels():
    target = torch.tensor([[0, 1, IGNORE]])
    segmentation_confusion(torch.tensor([[0, 1, 99]]), target, 2)  # ignored pixel: not read
    with pytest.raises(ValueError, match=r"prediction values outside \[0, 2\) .*: -1 \(1 px\)"):
        segmentation_confusion(torch.tensor([[-1, 1, 0]]), target, 2)


def test_error_shape_mismatch_gives_both_shapes():
    with pytest.raises(ValueError, match=r"pred \(2, 4, 4\) and target \(2, 4, 5\)"):
        segmentation_confusion(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 5), 2)
    ev = SegmentationEvaluator(2)
    with pytest.raises(ValueError, match=r"target must be \[2, 8, 8\].*got \(2, 4, 4\).*resize"):
        ev.update(torch.zeros(2, 2, 8, 8), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"logits must be \[B, 2, H, W\], got \(1, 3, 4, 4\)"):
        ev.update(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    assert ev.num_pixels == 0  # nothing was added by the failed updates


def test_error_float_class_indices():
    with pytest.raises(TypeError, match="prediction must hold integer class indices"):
        segmentation_confusion(torch.zeros(4), torch.zeros(4, dtype=torch.long), 2)


def test_error_no_pixels_and_bad_class_names():
    ev = SegmentationEvaluator(2)
    ev.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), IGNORE))
    with pytest.raises(ValueError, match="no counted pixels"):
        ev.compute()
    with pytest.raises(ValueError, match="3 class names for 2 classes"):
        SegmentationEvaluator(2, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"class names repeat: \['a'\]"):
        SegmentationEvaluator(2, class_names=["a", "a"])


def test_process_scores_each_prediction_against_its_own_crop_of_the_batch():
    from cvkit.structures import SegBatch, SegPrediction

    g = torch.Generator().manual_seed(0)
    masks = torch.full((2, 4, 5), 255, dtype=torch.int64)  # the collate's padding
    masks[0] = torch.randint(0, 3, (4, 5), generator=g)
    masks[1, :2, :3] = torch.randint(0, 3, (2, 3), generator=g)
    batch = SegBatch(torch.zeros(2, 3, 4, 5, dtype=torch.uint8), masks, [(4, 5), (2, 3)],
                     [(4, 5), (4, 6)], ["a", "b"])  # fmt: skip
    first = torch.randint(0, 3, (4, 5), generator=g)
    second = (
        torch.randint(0, 3, (2, 3), generator=g).repeat_interleave(2, 0).repeat_interleave(2, 1)
    )  # a file twice the batch's size: nearest back to 2x3 picks every other pixel
    ev = SegmentationEvaluator(3)
    ev.process(batch, [SegPrediction(first, None, "a"), SegPrediction(second, None, "b")])
    expected = torch.zeros(3, 3, dtype=torch.int64)
    for truth, guess in [(masks[0], first), (masks[1, :2, :3], second[::2, ::2])]:
        for t, p in zip(truth.flatten().tolist(), guess.flatten().tolist()):
            expected[t, p] += 1
    assert torch.equal(ev.confusion, expected) and ev.num_pixels == 20 + 6
