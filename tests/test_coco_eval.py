"""cvkit's COCO evaluator against pycocotools: generated cases and hand-made edge cases."""

import copy
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from cvkit.data.synthetic_coco import coco_like
from cvkit.evaluation.coco_map import CocoEvalInputError, evaluate_coco


def assert_parity(gt: dict, results: list, iou_type: str = "bbox", backend: str = "pycocotools"):
    ours = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(results), iou_type)
    ref = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(results), iou_type, backend=backend)
    for name, value in ref.stats.items():
        assert ours.stats[name] == pytest.approx(value, abs=1e-9), name
    for name, row in ref.per_class.items():
        for key in ("AP", "AP50", "AP75", "AR100"):
            if row[key] is None:
                assert ours.per_class[name][key] is None, (name, key)
            else:
                assert ours.per_class[name][key] == pytest.approx(row[key], abs=1e-9), (name, key)
    # bit for bit against pycocotools; faster-coco-eval itself differs from it by an ulp
    tol = 0.0 if backend == "pycocotools" else 1e-12
    np.testing.assert_allclose(ours.precision, ref.precision, rtol=0, atol=tol)
    np.testing.assert_allclose(ours.recall, ref.recall, rtol=0, atol=tol)
    return ours


def image(image_id: int, width: int = 200, height: int = 100) -> dict:
    return {"id": image_id, "width": width, "height": height, "file_name": f"{image_id}.jpg"}


def gt_box(ann_id, image_id, cat, box, crowd=0, area=None) -> dict:
    area = box[2] * box[3] if area is None else area
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat,
        "bbox": box,
        "area": area,
        "iscrowd": crowd,
    }


def det(image_id, cat, box, score) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": box, "score": score}


CATS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 5, "name": "never"}]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_results_equal_pycocotools(seed):
    gt, results = coco_like(num_images=60, num_classes=6, seed=seed)
    result = assert_parity(gt, results)
    assert 0.05 < result.stats["AP"] < 0.9  # a real curve, not a degenerate one


def test_equal_scores_break_ties_like_pycocotools():
    gt, results = coco_like(num_images=40, num_classes=3, seed=5)
    for r in results:
        r["score"] = round(r["score"], 1)  # 11 distinct scores for ~2,000 detections
    assert_parity(gt, results)


def test_more_than_100_detections_per_image_and_class():
    gt = {
        "images": [image(1, 1000, 1000)],
        "categories": CATS,
        "annotations": [gt_box(i + 1, 1, 1, [10.0 * i, 10.0 * i, 30, 30]) for i in range(60)],
    }
    rng = np.random.default_rng(0)
    results = [
        det(
            1, 1, [10.0 * (i % 60) + rng.normal(0, 2), 10.0 * (i % 60), 30, 30], float(rng.random())
        )
        for i in range(250)
    ]
    ours = assert_parity(gt, results)
    assert ours.stats["AR1"] < ours.stats["AR10"] < ours.stats["AR100"]


def test_crowd_regions_images_without_gt_and_categories_without_gt():
    gt = {
        "images": [image(1), image(2), image(3)],
        "categories": CATS,
        "annotations": [
            gt_box(1, 1, 1, [10, 10, 40, 40]),
            gt_box(2, 1, 1, [0, 0, 200, 100], crowd=1),
            gt_box(3, 1, 2, [100, 20, 50, 50]),
            gt_box(4, 3, 2, [5, 5, 20, 20], crowd=1),  # a category whose only gt is a crowd
        ],
    }
    results = [
        det(1, 1, [11, 10, 40, 40], 0.9),
        det(1, 1, [12, 11, 40, 40], 0.8),  # a duplicate: absorbed by the crowd region
        det(1, 1, [150, 60, 20, 20], 0.7),  # inside the crowd: ignored
        det(1, 2, [100, 22, 50, 48], 0.6),
        det(2, 1, [10, 10, 40, 40], 0.95),  # an image without any gt: a false positive
        det(3, 2, [5, 5, 20, 20], 0.5),
        det(1, 5, [10, 10, 40, 40], 0.4),  # a category without gt
    ]
    ours = assert_parity(gt, results)
    assert ours.per_class["never"]["AP"] is None
    assert "n/a" in ours.table().splitlines()[3]


def test_area_range_boundaries_and_tiny_and_huge_boxes():
    # areas exactly on 32^2 and 96^2 fall in both neighbouring ranges in pycocotools
    areas = [0.0, 0.25, 32.0**2, 32.0**2 + 1e-9, 96.0**2, 1e10]
    sides = [0.5, 0.5, 32.0, 32.0, 96.0, 1e5]
    gt = {
        "images": [image(1, 100_000, 100_000)],
        "categories": CATS,
        "annotations": [
            gt_box(i + 1, 1, 1, [10.0, 200.0 * i, s, s], area=a)
            for i, (s, a) in enumerate(zip(sides, areas))
        ],
    }
    results = [det(1, 1, [10.0, 200.0 * i, s, s], 0.9 - 0.1 * i) for i, s in enumerate(sides)]
    results.append(det(1, 1, [5000.0, 5000.0, 31.9, 31.9], 0.05))  # a small false positive
    assert_parity(gt, results)


def test_gt_annotation_id_zero_never_counts_as_a_match():
    # pycocotools stores the matched gt's id and tests it for truth: id 0 reads as unmatched
    gt = {
        "images": [image(1)],
        "categories": CATS,
        "annotations": [gt_box(0, 1, 1, [10, 10, 40, 40]), gt_box(7, 1, 2, [60, 10, 40, 40])],
    }
    results = [det(1, 1, [10, 10, 40, 40], 0.9), det(1, 2, [60, 10, 40, 40], 0.9)]
    ours = assert_parity(gt, results)
    assert ours.per_class["cat"]["AP"] == 0.0 and ours.per_class["dog"]["AP"] == pytest.approx(1.0)


def test_no_detections_at_all():
    gt, _ = coco_like(num_images=5, num_classes=3, seed=0)
    result = evaluate_coco(gt, [])
    assert result.stats["AP"] == 0.0 and result.stats["AR100"] == 0.0
    assert all(r["AP"] in (0.0, None) for r in result.per_class.values())
    assert result.per_class["class_3"]["AP"] is None  # the category without gt


def test_segm_equals_pycocotools():
    crowd = mask_utils.frPyObjects([[0, 0, 200, 0, 200, 100, 0, 100]], 100, 200)[0]
    crowd = {"size": crowd["size"], "counts": crowd["counts"].decode()}  # a compressed RLE
    gt = {
        "images": [image(1), image(2)],
        "categories": CATS,
        "annotations": [
            {
                **gt_box(1, 1, 1, [10, 10, 40, 40], area=1200.0),
                "segmentation": [[10, 10, 50, 10, 50, 50, 10, 50]],
            },
            {
                **gt_box(2, 1, 2, [60, 10, 60, 60], area=1800.0),
                "segmentation": [[60, 10, 120, 10, 60, 70]],
            },
            {**gt_box(3, 2, 1, [0, 0, 200, 100], crowd=1, area=20000.0), "segmentation": crowd},
        ],
    }

    def mask_result(image_id, cat, polygon, score):
        r = mask_utils.merge(mask_utils.frPyObjects([polygon], 100, 200))
        r["counts"] = r["counts"].decode()
        return {"image_id": image_id, "category_id": cat, "segmentation": r, "score": score}

    results = [
        mask_result(1, 1, [12, 10, 50, 10, 50, 48, 12, 48], 0.9),
        mask_result(1, 2, [60, 10, 120, 10, 62, 70], 0.8),
        mask_result(1, 2, [60, 10, 100, 10, 60, 40], 0.7),
        mask_result(2, 1, [20, 20, 60, 20, 60, 60], 0.6),  # on the crowd
    ]
    assert_parity(gt, results, iou_type="segm")


def _with_masks(gt: dict, results: list, seed: int, boxes: bool = True) -> tuple[dict, list]:
    """Masks for generated data: an irregular ellipse in each box, as a polygon in the ground
    truth (crowds as uncompressed RLE, as COCO ships them) and compressed RLE in the results
    (with their boxes, as detectors write them, or without: masks only)."""
    rng = np.random.default_rng(seed)
    height, width = gt["images"][0]["height"], gt["images"][0]["width"]

    def polygon(box):
        angle = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        radius = 0.5 * rng.uniform(0.8, 1.0, len(angle))
        x = box[0] + box[2] / 2 + box[2] * radius * np.cos(angle)
        y = box[1] + box[3] / 2 + box[3] * radius * np.sin(angle)
        return np.stack([x, y], axis=1).ravel().round(2).tolist()

    for ann in gt["annotations"]:
        if ann["iscrowd"]:  # the box's pixels
            ann["segmentation"] = _uncompressed_rle(ann["bbox"], height, width)
        else:
            ann["segmentation"] = [polygon(ann["bbox"])]
        rle = mask_utils.frPyObjects(ann["segmentation"], height, width)
        ann["area"] = float(mask_utils.area(rle if isinstance(rle, dict) else rle[0]))
    out = []
    for r in results:
        rle = mask_utils.frPyObjects([polygon(r["bbox"])], height, width)[0]
        entry = {**r, "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}}
        if not boxes:
            del entry["bbox"]
        out.append(entry)
    return gt, out


def _uncompressed_rle(box: list, height: int, width: int) -> dict:
    """COCO's uncompressed RLE of the pixels in ``box``: run lengths in column order, from a
    run of zeros."""
    mask = np.zeros((height, width), dtype=np.uint8)
    x, y, w, h = (round(v) for v in box)
    mask[max(y, 0) : y + max(h, 1), max(x, 0) : x + max(w, 1)] = 1
    flat = mask.ravel(order="F")
    runs = np.diff(np.flatnonzero(np.r_[True, flat[1:] != flat[:-1], True])).tolist()
    return {"counts": [0, *runs] if flat[0] else runs, "size": [height, width]}


@pytest.mark.parametrize("seed", [0, 1])
def test_segm_on_generated_masks_equals_pycocotools(seed):
    # several objects per image and class: pairs with 2 and more gts, crowds, ties
    gt, results = coco_like(num_images=25, num_classes=3, objects_per_image=6, seed=seed)
    assert any(a["iscrowd"] for a in gt["annotations"])
    result = assert_parity(*_with_masks(gt, results, seed), iou_type="segm")
    assert 0.05 < result.stats["AP"] < 0.9
    # masks without boxes: areas and boxes come from the masks
    assert_parity(*_with_masks(gt, results, seed, boxes=False), iou_type="segm")


def test_faster_coco_eval_backend_agrees():
    pytest.importorskip("faster_coco_eval")
    gt, results = coco_like(num_images=30, num_classes=4, seed=3)
    assert_parity(gt, results, backend="faster-coco-eval")


# -- bad input: one message naming the file and the problem -----------------------------------


def test_results_naming_images_the_ground_truth_lacks(tmp_path):
    gt, results = coco_like(num_images=3, num_classes=2, seed=0)
    results.append(det(999, 1, [0, 0, 5, 5], 0.5))
    path = tmp_path / "res.json"
    path.write_text(json.dumps(results))
    messages = set()
    for backend in ("cvkit", "pycocotools"):
        with pytest.raises(CocoEvalInputError) as err:
            evaluate_coco(gt, path, backend=backend)
        messages.add(str(err.value))
    assert messages == {
        f"COCO file '{path}': results[{len(results) - 1}] names image_id 999, which is not in "
        "'images' of <ground truth> (ids: 1, 4, 7); 1 of "
        f"{len(results)} results name images it lacks: evaluate against the ground truth these "
        "results were made for"
    }


def test_a_detection_without_score_or_with_a_bad_box(tmp_path):
    gt, results = coco_like(num_images=3, num_classes=2, seed=0)
    broken = copy.deepcopy(results)
    del broken[2]["score"]
    with pytest.raises(CocoEvalInputError) as err:
        evaluate_coco(gt, broken)
    assert str(err.value) == "<results>: results[2] has no 'score'; a 'score' is a number"
    broken = copy.deepcopy(results)
    broken[1]["bbox"] = [1, 2, 3]
    with pytest.raises(CocoEvalInputError) as err:
        evaluate_coco(gt, broken)
    assert str(err.value) == (
        "<results>: results[1] has bbox [1, 2, 3]; a 'bbox' is 4 finite numbers "
        "[x, y, width, height] in pixels"
    )
    broken = copy.deepcopy(results)
    broken[3] = "oops"
    with pytest.raises(CocoEvalInputError, match=r"^<results>: results\[3\] is a JSON string, "):
        evaluate_coco(gt, broken)


def test_results_naming_unknown_categories_are_not_scored_with_a_warning():
    gt, results = coco_like(num_images=3, num_classes=2, seed=0)
    results.insert(1, det(results[0]["image_id"], 9, [0, 0, 5, 5], 0.5))
    with pytest.warns(UserWarning) as record:
        evaluate_coco(gt, results)
    assert str(record[0].message) == (
        "<results>: results[1] names category_id 9, which is not in 'categories' of "
        f"<ground truth> (ids: 1, 2); 1 of {len(results)} results name categories it lacks "
        "and are not scored, as in pycocotools"
    )


def test_unreadable_files_are_named(tmp_path):
    bad = tmp_path / "gt.json"
    bad.write_text("{not json")
    with pytest.raises(CocoEvalInputError) as err:
        evaluate_coco(bad, [])
    assert str(err.value) == (
        f"COCO file '{bad}' is not valid JSON: Expecting property name enclosed in double "
        "quotes at line 1, column 2"
    )
    with pytest.raises(CocoEvalInputError) as err:  # also a FileNotFoundError
        evaluate_coco(tmp_path / "missing.json", [])
    assert isinstance(err.value, FileNotFoundError)
    assert str(err.value) == f"COCO file '{tmp_path / 'missing.json'}' does not exist"
    with pytest.raises(CocoEvalInputError, match=r"^<ground truth> has no 'annotations' list"):
        evaluate_coco({"images": [], "categories": []}, [])
    with pytest.raises(CocoEvalInputError, match=r"^<results> holds a JSON object, not a list"):
        evaluate_coco({"images": [], "annotations": [], "categories": []}, {"x": 1})


def test_annotations_pycocotools_ignores_are_not_checked():
    """The evaluator keeps pycocotools' tolerance: only the entries it scores must convert."""
    gt = {
        "images": [image(1)],
        "annotations": [
            gt_box(1, 1, 1, [0, 0, 10, 10]),
            {**gt_box(2, 55, 1, [0, 0, 10, 10]), "area": "?"},  # image 55 is not listed
        ],
        "categories": CATS,
    }
    results = [det(1, 1, [0, 0, 10, 10], 0.9)]
    assert assert_parity(gt, results).stats["AP"] == pytest.approx(1.0)
    gt["annotations"][0]["area"] = "?"
    with pytest.raises(CocoEvalInputError) as err:
        evaluate_coco(gt, results)
    assert str(err.value) == (
        "<ground truth>: annotation id 1 has area '?'; an 'area' is a finite number of pixels"
    )
