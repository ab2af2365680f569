"""The detection confusion matrix: hand-made cases and a brute-force reference."""

import numpy as np
import pytest

from cvkit.data.synthetic_coco import coco_like
from cvkit.evaluation.coco.load import load_ground_truth, load_results
from cvkit.evaluation.det_confusion import confusion_counts, detection_confusion

K = 3  # classes 0..2; index 3 is background
BG = K


def one_image(gts, dets, iou_threshold=0.5, score_threshold=0.3):
    """gts: [(xywh, label, crowd)], dets: [(xywh, label, score)] -> [K+1, K+1] counts."""
    gt_boxes = np.array([g[0] for g in gts], dtype=float).reshape(-1, 4)
    det_boxes = np.array([d[0] for d in dets], dtype=float).reshape(-1, 4)
    return confusion_counts(
        np.zeros(len(gts), int), gt_boxes, [g[1] for g in gts], [g[2] for g in gts],
        np.zeros(len(dets), int), det_boxes, [d[1] for d in dets], [d[2] for d in dets],
        K, iou_threshold, score_threshold,
    )  # fmt: skip


def only(counts, *cells):
    """The counts are 1 at each cell and 0 elsewhere."""
    expected = np.zeros((K + 1, K + 1), int)
    for cell in cells:
        expected[cell] += 1
    np.testing.assert_array_equal(counts, expected)


A = [0, 0, 10, 10]
B = [100, 100, 20, 20]
A_SHIFTED = [1, 0, 10, 10]  # IoU 90 / 110 with A


def test_a_perfect_detection_is_on_the_diagonal():
    only(one_image([(A, 1, False)], [(A, 1, 0.9)]), (1, 1))


def test_a_wrong_class_detection_is_off_the_diagonal():
    only(one_image([(A, 2, False)], [(A, 0, 0.9)]), (2, 0))


def test_a_detection_on_nothing_is_a_false_positive_in_the_background_row():
    only(one_image([(A, 0, False)], [(A, 0, 0.9), (B, 2, 0.8)]), (0, 0), (BG, 2))


def test_a_gt_no_detection_matched_is_missed_in_the_background_column():
    only(one_image([(A, 0, False), (B, 1, False)], [(A, 0, 0.9)]), (0, 0), (1, BG))


def test_a_second_detection_on_a_taken_gt_is_a_false_positive():
    only(one_image([(A, 0, False)], [(A, 0, 0.9), (A_SHIFTED, 1, 0.8)]), (0, 0), (BG, 1))


def test_the_higher_score_matches_first_whatever_the_order():
    # the wrong-class detection scores higher, so it takes the gt; the right one is a FP
    only(one_image([(A, 0, False)], [(A, 0, 0.5), (A_SHIFTED, 1, 0.9)]), (0, 1), (BG, 0))


def test_a_detection_takes_the_highest_iou_gt_of_any_class():
    gts = [(A_SHIFTED, 2, False), (A, 1, False)]
    only(one_image(gts, [(A, 0, 0.9)]), (1, 0), (2, BG))


def test_iou_below_the_threshold_does_not_match():
    half = [5, 0, 10, 10]  # IoU 50 / 150 with A
    only(one_image([(A, 0, False)], [(half, 0, 0.9)]), (0, BG), (BG, 0))
    only(one_image([(A, 0, False)], [(half, 0, 0.9)], iou_threshold=0.3), (0, 0))


def test_a_crowd_absorbs_detections_without_counting():
    crowd = [0, 0, 100, 100]
    counts = one_image([(crowd, 0, True)], [(A, 0, 0.9), (B, 1, 0.8), ([20, 20, 5, 5], 2, 0.7)])
    only(counts, (BG, 1))  # B lies outside the crowd; the crowd itself is never missed


def test_a_non_crowd_gt_is_preferred_to_a_crowd():
    crowd = [0, 0, 100, 100]
    only(one_image([(crowd, 0, True), (A, 1, False)], [(A, 1, 0.9)]), (1, 1))


def test_the_score_threshold_leaves_detections_out():
    dets = [(A, 0, 0.29), (B, 1, 0.3)]
    only(one_image([(A, 0, False)], dets), (0, BG), (BG, 1))
    only(one_image([(A, 0, False)], dets, score_threshold=0.0), (0, 0), (BG, 1))
    only(one_image([(A, 0, False)], dets, score_threshold=0.5), (0, BG))


def test_detections_only_match_gts_of_their_own_image():
    counts = confusion_counts(
        [7], [A], [0], [False], [8], [A], [0], [0.9], K,
    )  # fmt: skip
    only(counts, (0, BG), (BG, 0))


def test_empty_inputs():
    empty = np.zeros((0, 4))
    np.testing.assert_array_equal(one_image([], []), np.zeros((K + 1, K + 1), int))
    only(one_image([(A, 2, False)], []), (2, BG))
    only(one_image([], [(A, 2, 0.9)]), (BG, 2))
    counts = confusion_counts([], empty, [], [], [], empty, [], [], num_classes=0)
    assert counts.shape == (1, 1) and counts.sum() == 0


def _brute_force(gt_dict, results, iou_threshold, score_threshold):
    """The definition, one detection at a time, in plain Python."""
    cats = sorted(c["id"] for c in gt_dict["categories"])
    k = len(cats)
    counts = np.zeros((k + 1, k + 1), int)
    for image in gt_dict["images"]:
        gts = [a for a in gt_dict["annotations"] if a["image_id"] == image["id"]]
        dets = [
            r for r in results if r["image_id"] == image["id"] and r["score"] >= score_threshold
        ]
        dets.sort(key=lambda r: -r["score"])  # stable: file order for equal scores
        taken = [False] * len(gts)
        for d in dets:
            best, best_iou, on_crowd = None, -1.0, False
            for j, g in enumerate(gts):
                iou = _iou(d["bbox"], g["bbox"], g["iscrowd"])
                if g["iscrowd"]:
                    on_crowd |= iou >= iou_threshold
                elif not taken[j] and iou >= iou_threshold and iou > best_iou:
                    best, best_iou = j, iou
            if best is not None:
                taken[best] = True
                counts[cats.index(gts[best]["category_id"]), cats.index(d["category_id"])] += 1
            elif not on_crowd:
                counts[k, cats.index(d["category_id"])] += 1
        for j, g in enumerate(gts):
            if not taken[j] and not g["iscrowd"]:
                counts[cats.index(g["category_id"]), k] += 1
    return counts


def _iou(d, g, crowd):
    w = min(d[0] + d[2], g[0] + g[2]) - max(d[0], g[0])
    h = min(d[1] + d[3], g[1] + g[3]) - max(d[1], g[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = d[2] * d[3] if crowd else d[2] * d[3] + g[2] * g[3] - inter
    return inter / union


@pytest.mark.parametrize(
    ("iou_threshold", "score_threshold"), [(0.5, 0.3), (0.3, 0.0), (0.75, 0.6)]
)
def test_matches_a_brute_force_reference_on_coco_like_data(iou_threshold, score_threshold):
    gt_dict, results = coco_like(25, 5, seed=3)
    gt = load_ground_truth(gt_dict)
    confusion = detection_confusion(gt, load_results(results, gt), iou_threshold, score_threshold)
    expected = _brute_force(gt_dict, results, iou_threshold, score_threshold)
    np.testing.assert_array_equal(confusion.counts, expected)
    # every non-crowd gt is in its row once: matched or missed
    num_gt = np.bincount(gt.cat[~gt.crowd], minlength=5)
    np.testing.assert_array_equal(confusion.counts[:-1].sum(axis=1), num_gt)
    assert confusion.counts[-1, -1] == 0


def test_summary_and_json():
    gt_dict, results = coco_like(10, 4, seed=1)
    gt = load_ground_truth(gt_dict)
    confusion = detection_confusion(gt, load_results(results, gt))
    data = confusion.to_json()
    assert data["labels"] == [*gt.cat_names, "background"]
    assert np.array(data["counts"]).shape == (5, 5)
    assert data["iou_threshold"] == 0.5 and data["score_threshold"] == 0.3
    right = int(np.trace(confusion.counts[:-1, :-1]))
    assert f"{right} right class" in confusion.summary()
    assert confusion.false_positives.tolist() == data["counts"][-1][:-1]
    assert confusion.missed.tolist() == [row[-1] for row in data["counts"][:-1]]
