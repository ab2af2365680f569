"""CocoDetection's ``split``/``val_fraction``/``seed``: one COCO file, train and val by cvkit.

The split is seeded and stratified by image; everything a split exposes (items, ``files``,
``targets``, its ``coco`` index and so its COCO mAP) covers only its own images, while the
label map stays the whole file's.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import cvkit
from cvkit.config import from_dict
from cvkit.config.class_count import fill_from_classes
from cvkit.data.coco import CocoDetection, _split_groups
from cvkit.engine.tasks.detection import DetectionTask
from cvkit.evaluation.coco_map import evaluate_coco
from cvkit.registry import DATASETS
from cvkit.structures import DetPrediction

# Ids with gaps and out of order: labels follow the sorted ids (1 -> 0, 4 -> 1, 9 -> 2).
CATEGORIES = [{"id": 9, "name": "zebra"}, {"id": 1, "name": "ant"}, {"id": 4, "name": "cow"}]
SIZE = (24, 32)  # height, width of every image


def _dataset_dict(seed: int = 0) -> dict:
    """40 images: 20 mostly ant, 12 mostly cow, 3 zebra, 5 without annotations; some crowd."""
    rng = np.random.default_rng(seed)
    mains = [1] * 20 + [4] * 12 + [9] * 3 + [None] * 5
    images, annotations = [], []
    for i, main in enumerate(mains):
        image_id = 3 * i + 2  # gaps, and file order below is not id order
        images.append(
            {"id": image_id, "file_name": f"im{i:02d}.png", "height": SIZE[0], "width": SIZE[1]}
        )
        if main is None:
            continue
        others = [c for c in (1, 4, 9) if c != main]
        cats = [main, main, int(rng.choice(others))]  # the main category most often
        for j, cat in enumerate(cats):
            x, y = float(rng.integers(0, 16)), float(rng.integers(0, 10))
            w, h = float(rng.integers(4, 16)), float(rng.integers(4, 14))  # inside the image
            annotations.append(
                {
                    "id": 1000 + 10 * i + j,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(j == 2 and i % 7 == 0),
                }
            )
    images.reverse()
    return {"images": images, "annotations": annotations, "categories": copy.deepcopy(CATEGORIES)}


@pytest.fixture(scope="module")
def coco_file(tmp_path_factory) -> tuple[Path, Path, dict]:
    """``(ann_file, image_dir, data)``: the 40-image file and its (black) images."""
    root = tmp_path_factory.mktemp("coco_split")
    data = _dataset_dict()
    (root / "images").mkdir()
    for image in data["images"]:
        ok, buffer = cv2.imencode(".png", np.zeros((*SIZE, 3), np.uint8))
        assert ok
        buffer.tofile(str(root / "images" / image["file_name"]))
    ann_file = root / "ann.json"
    ann_file.write_text(json.dumps(data))
    return ann_file, root / "images", data


def _build(coco_file, **kwargs) -> CocoDetection:
    ann_file, image_dir, _ = coco_file
    cfg = {"type": "CocoDetection", "ann_file": str(ann_file), "image_dir": str(image_dir)}
    return cvkit.build({**cfg, **kwargs}, DATASETS)


def _main_category(data: dict) -> dict[int, int | None]:
    """Image id -> its most frequent category id (ties: the smallest), ``None`` when empty."""
    out: dict[int, int | None] = {image["id"]: None for image in data["images"]}
    for image_id in out:
        counts = Counter(a["category_id"] for a in data["annotations"] if a["image_id"] == image_id)
        if counts:
            out[image_id] = min(counts, key=lambda c: (-counts[c], c))
    return out


def test_train_and_val_are_disjoint_cover_the_file_and_are_seeded(coco_file):
    _, _, data = coco_file
    train, val = _build(coco_file, split="train"), _build(coco_file, split="val")
    assert set(train.image_ids).isdisjoint(val.image_ids)
    assert sorted(train.image_ids + val.image_ids) == sorted(im["id"] for im in data["images"])
    assert train.image_ids == sorted(train.image_ids) and val.image_ids == sorted(val.image_ids)
    # the same arguments give the same split; another seed another one
    assert _build(coco_file, split="val").image_ids == val.image_ids
    assert _build(coco_file, split="val", seed=1).image_ids != val.image_ids
    # every image by default
    everything = _build(coco_file)
    assert everything.split == "all" and len(everything) == len(data["images"])
    assert "split='val'" in repr(val) and "split=" not in repr(everything)


def test_the_split_is_pinned_on_every_machine(coco_file):
    """The split is NumPy's seeded permutation of each group: pinned, so a change shows."""
    assert _build(coco_file, split="val").image_ids == [14, 29, 32, 56, 80, 83, 101, 113]


def test_each_group_keeps_its_share(coco_file):
    _, _, data = coco_file
    main = _main_category(data)
    sizes = Counter(main.values())
    assert sizes == {1: 20, 4: 12, 9: 3, None: 5}
    for fraction in (0.2, 0.5):
        val = _build(coco_file, split="val", val_fraction=fraction)
        got = Counter(main[i] for i in val.image_ids)
        for group, n in sizes.items():
            assert got[group] == min(max(int(np.floor(n * fraction + 0.5)), 1), n - 1), group


def test_the_group_of_an_image_is_its_most_frequent_category_ties_to_the_smallest_id():
    def ann(image_id, cat):
        return {"image_id": image_id, "category_id": cat}

    images = [{"id": i} for i in (5, 6, 7, 8)]
    label_of_cat = {1: 0, 4: 1, 9: 2}
    annotations = [
        *[ann(5, 9), ann(5, 9), ann(5, 1)],  # zebra twice: zebra
        *[ann(6, 9), ann(6, 4)],  # a tie: the smaller id, cow
        *[ann(8, 4), ann(8, 1), ann(8, 9), ann(8, 1), ann(8, 4)],  # ant and cow tie: ant
    ]  # image 7 has none
    assert _split_groups(annotations, images, label_of_cat).tolist() == [2, 1, -1, 0]
    assert _split_groups([], images, label_of_cat).tolist() == [-1] * 4


def test_everything_a_split_exposes_is_its_own_images(coco_file):
    _, _, data = coco_file
    everything = _build(coco_file)
    row = {image_id: r for r, image_id in enumerate(everything.image_ids)}
    for split in ("train", "val"):
        ds = _build(coco_file, split=split)
        rows = [row[i] for i in ds.image_ids]
        assert len(ds) == len(ds.image_ids) == len(ds.files) == len(ds.sizes) == len(ds.targets)
        assert ds.files == [everything.files[r] for r in rows]
        assert ds.sizes == [everything.sizes[r] for r in rows]
        for mine, whole in zip(ds.targets, (everything.targets[r] for r in rows)):
            for a, b in zip(mine, whole):
                np.testing.assert_array_equal(a, b)
        item = ds[len(ds) - 1]
        assert item["image_id"] == ds.image_ids[-1]
        np.testing.assert_array_equal(item["boxes"], ds.targets[-1][0])
        # the COCO index holds the split's images and their annotations, every category
        assert sorted(ds.coco.imgs) == ds.image_ids
        assert {a["image_id"] for a in ds.coco.dataset["annotations"]} <= set(ds.image_ids)
        expected = [a["id"] for a in data["annotations"] if a["image_id"] in set(ds.image_ids)]
        assert sorted(ds.coco.anns) == sorted(expected)
        assert sorted(ds.coco.cats) == [1, 4, 9]
        # one label map for every split
        assert ds.classes == everything.classes == ["ant", "cow", "zebra"]
        assert ds.cat_ids == everything.cat_ids == [1, 4, 9]


def test_num_classes_auto_counts_every_category_of_the_file(coco_file):
    val = _build(coco_file, split="val", val_fraction=0.1)
    # zebra images are too few for a 10% val share (one of three at least: kept), but the
    # label map is the file's whatever the split holds
    cfg = from_dict(
        {"model": {"type": "RetinaNet", "head": {"type": "RetinaHead", "num_classes": "auto"}}}
    )
    assert fill_from_classes(cfg, val.classes, "data.val") == ["model.head.num_classes"]
    assert cfg.get("model.head.num_classes") == 3


def test_keep_empty_and_min_box_size_never_move_an_image_across(coco_file):
    val = _build(coco_file, split="val")
    train = _build(coco_file, split="train", keep_empty=False, min_box_size=6)
    assert set(train.image_ids).isdisjoint(val.image_ids)
    assert set(_build(coco_file, split="val", keep_empty=False).image_ids) < set(val.image_ids)


def _predictions(ds: CocoDetection, perfect: bool, seed: int = 0) -> list[DetPrediction]:
    """The split's own non-crowd boxes as detections (jittered, some relabelled if not
    ``perfect``), plus a low-scoring false positive per image."""
    rng = np.random.default_rng(seed)
    out = []
    for image_id, (boxes, labels, crowd) in zip(ds.image_ids, ds.targets):
        boxes, labels = boxes[~crowd].copy(), labels[~crowd].copy()
        scores = np.linspace(0.9, 0.5, len(boxes), dtype=np.float32)
        if not perfect:
            boxes += rng.normal(0, 1.5, boxes.shape).astype(np.float32)
            flip = rng.random(len(labels)) < 0.2
            labels[flip] = (labels[flip] + 1) % 3
            scores = rng.random(len(boxes)).astype(np.float32)
        boxes = np.concatenate([boxes, [[20, 14, 31, 23]]]).astype(np.float32)
        labels = np.concatenate([labels, [0]]).astype(np.int64)
        scores = np.concatenate([scores, [0.01 if perfect else 0.3]]).astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        out.append(
            DetPrediction(
                torch.from_numpy(boxes[order]),
                torch.from_numpy(scores[order]),
                torch.from_numpy(labels[order]),
                image_id,
            )
        )
    return out


def _evaluate(ds: CocoDetection, predictions: list[DetPrediction]):
    evaluator = DetectionTask().evaluator(torch.nn.Identity(), ds)  # what cvkit eval builds
    evaluator.process(None, predictions)
    return evaluator, evaluator.compute()


def test_perfect_predictions_on_a_val_split_score_ap_one(coco_file):
    """Boxes are inside their images, so the dataset's targets are the file's boxes; the
    train images of the file are not in the ground truth, so they are not missed."""
    val = _build(coco_file, split="val")
    evaluator, stats = _evaluate(val, _predictions(val, perfect=True))
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    assert stats["AR100"] == pytest.approx(1.0)
    # against the whole file the train images' objects would count as missed
    whole = evaluate_coco(_build(coco_file).coco, evaluator.results)
    assert whole.stats["AR100"] < 0.5


@pytest.mark.parametrize("split", ["val", "train"])
def test_split_evaluation_equals_pycocotools_on_a_file_of_the_split_only(
    coco_file, tmp_path, split
):
    _, _, data = coco_file
    ds = _build(coco_file, split=split)
    evaluator, stats = _evaluate(ds, _predictions(ds, perfect=False))
    assert 0.05 < stats["AP"] < 0.95  # a real curve
    # a COCO file holding only the split's images and their annotations, as a user would cut it
    kept = set(ds.image_ids)
    only = {
        "images": [im for im in data["images"] if im["id"] in kept],
        "annotations": [a for a in data["annotations"] if a["image_id"] in kept],
        "categories": data["categories"],
    }
    gt_file, results_file = tmp_path / "split.json", tmp_path / "results.json"
    gt_file.write_text(json.dumps(only))
    results_file.write_text(json.dumps(evaluator.results))
    reference = evaluate_coco(gt_file, results_file, backend="pycocotools")
    coco_eval = evaluate_coco(gt_file, results_file)  # what `cvkit coco-eval` computes
    for name, value in reference.stats.items():
        assert stats[name] == pytest.approx(value, abs=1e-12), name
        assert coco_eval.stats[name] == stats[name], name
    np.testing.assert_allclose(evaluator.result.precision, reference.precision, rtol=0, atol=0)
    assert evaluator.result.per_class == coco_eval.per_class


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "test"}, "split must be one of 'train', 'val', 'all', got 'test'"),
        ({"split": "val", "val_fraction": 0.0}, "val_fraction must be a number in (0, 1), got 0.0"),
        ({"split": "val", "val_fraction": 1}, "val_fraction must be a number in (0, 1), got 1"),
        ({"val_fraction": 1.5}, "val_fraction must be a number in (0, 1), got 1.5"),
        ({"split": "val", "seed": -1}, "seed must be a non-negative integer, got -1"),
    ],
)
def test_bad_split_arguments_are_named_before_the_file_is_read(tmp_path, kwargs, message):
    missing = tmp_path / "not_there.json"  # never read: the arguments are checked first
    with pytest.raises(ValueError) as err:
        CocoDetection(str(missing), str(tmp_path), **kwargs)
    assert str(err.value) == message


def test_a_split_without_images_is_named(tmp_path, coco_file):
    _, image_dir, data = coco_file
    one = {**data, "images": data["images"][:1], "annotations": []}
    ann_file = tmp_path / "one.json"
    ann_file.write_text(json.dumps(one))
    assert len(CocoDetection(str(ann_file), str(image_dir), split="train")) == 1
    with pytest.raises(ValueError, match=r"split 'val' of COCO file '.*one.json' has no images"):
        CocoDetection(str(ann_file), str(image_dir), split="val")
    none = tmp_path / "none.json"
    none.write_text(json.dumps({**data, "images": [], "annotations": []}))
    assert len(CocoDetection(str(none), str(image_dir))) == 0
    with pytest.raises(ValueError, match="has no images to split into train and val"):
        CocoDetection(str(none), str(image_dir), split="train")


def test_the_load_warning_names_the_split(coco_file, caplog):
    with caplog.at_level(logging.WARNING, logger="cvkit.data"):
        _build(coco_file, split="val", min_box_size=10)
    assert "(split 'val'): dropped" in caplog.text
