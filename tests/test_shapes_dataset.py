"""ShapesDetection: generated once, deterministic, exact boxes, a real COCO file on disk."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

import cvkit
from cvkit.data import shapes
from cvkit.data.collate import collate_detection
from cvkit.data.image_io import read_image
from cvkit.data.loader import build_loader
from cvkit.registry import DATASETS

N_TRAIN, N_VAL = 24, 8


def _build(root: Path, **kwargs):
    return cvkit.build({"type": "ShapesDetection", "root": str(root), **kwargs}, DATASETS)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A cache with a small train and val split, generated once for the module."""
    folder = tmp_path_factory.mktemp("cache")
    _build(folder, split="train", num_images=N_TRAIN)
    _build(folder, split="val", num_images=N_VAL)
    return folder


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((folder / "images").iterdir())
    }


def test_layout_classes_and_pycocotools(root):
    ds = _build(root, split="train", num_images=N_TRAIN)
    assert ds.folder == root / "shapes-v1" / f"train-n{N_TRAIN}-s192-seed0"
    assert ds.classes == ["circle", "square", "triangle"] and ds.cat_ids == [1, 2, 3]
    coco = COCO(str(ds.folder / "train.json"))
    assert len(coco.getImgIds()) == N_TRAIN == len(ds)
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == list(ds.classes)
    counts = [len(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()]
    assert max(counts) <= 4 and sum(counts) >= N_TRAIN
    assert {a["category_id"] for a in coco.dataset["annotations"]} == {1, 2, 3}


def test_items_are_detection_items(root):
    ds = _build(root, split="val", num_images=N_VAL)
    item = ds[0]
    height, width = item["image"].shape[:2]
    assert item["image"].dtype == np.uint8 and 150 <= height <= 240 and 150 <= width <= 240
    assert item["boxes"].dtype == np.float32 and item["boxes"].shape[1] == 4
    assert item["orig_size"] == (height, width) and not item["iscrowd"].any()
    sides = np.concatenate([ds[i]["boxes"][:, 2:] - ds[i]["boxes"][:, :2] for i in range(N_VAL)])
    assert sides.min() >= 8 and sides.max() <= 120


def test_boxes_enclose_the_drawn_pixels_exactly(root):
    folder = shapes.shapes_folder("train", N_TRAIN, 192, 0, root)
    coco = json.loads((folder / "train.json").read_text())
    files = {image["id"]: folder / "images" / image["file_name"] for image in coco["images"]}
    for ann in coco["annotations"]:
        image = read_image(files[ann["image_id"]])
        x, y, w, h = ann["bbox"]
        ours = np.all(image == ann["color"], axis=2)
        # around the box (2 px margin): every pixel of the shape's colour is inside the box
        y0, x0 = max(0, y - 2), max(0, x - 2)
        ring = ours[y0 : y + h + 2, x0 : x + w + 2].copy()
        ring[y - y0 : y - y0 + h, x - x0 : x - x0 + w] = False
        assert not ring.any(), ann
        inside = ours[y : y + h, x : x + w]
        # ... and the shape touches all four edges of the box
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        assert inside.sum() == ann["area"]


def test_generation_is_deterministic(tmp_path, root):
    again = _build(tmp_path, split="train", num_images=N_TRAIN).folder
    first = shapes.shapes_folder("train", N_TRAIN, 192, 0, root)
    assert (again / "train.json").read_bytes() == (first / "train.json").read_bytes()
    assert _digests(again) == _digests(first)
    # image i does not depend on how many images were asked for
    fewer = _build(tmp_path, split="train", num_images=5).folder
    assert _digests(fewer) == {k: v for k, v in _digests(first).items() if k < "000005"}


def test_other_seed_or_size_is_another_folder_with_other_images(tmp_path, root):
    first = _digests(shapes.shapes_folder("train", N_TRAIN, 192, 0, root))
    other = _build(tmp_path, split="train", num_images=3, seed=1).folder
    assert other.name == "train-n3-s192-seed1"
    assert not set(_digests(other).values()) & set(first.values())
    small = _build(tmp_path, split="train", num_images=2, image_size=96)
    assert max(small[0]["image"].shape[:2]) <= 120


def test_splits_are_disjoint(root):
    train = _digests(shapes.shapes_folder("train", N_TRAIN, 192, 0, root))
    val = _digests(shapes.shapes_folder("val", N_VAL, 192, 0, root))
    assert not set(train.values()) & set(val.values())


def test_cache_is_reused_not_regenerated(root, monkeypatch):
    folder = shapes.shapes_folder("train", N_TRAIN, 192, 0, root)
    before = os.stat(folder / "train.json").st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a cached split")

    monkeypatch.setattr(shapes, "write_split", fail)
    assert len(_build(root, split="train", num_images=N_TRAIN)) == N_TRAIN
    assert os.stat(folder / "train.json").st_mtime_ns == before


def test_crash_leaves_no_half_cache(tmp_path, monkeypatch):
    real = shapes.draw_image
    calls = []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(shapes, "draw_image", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path, split="val", num_images=4)
    assert list((tmp_path / "shapes-v1").iterdir()) == []  # no folder, no scratch left
    monkeypatch.setattr(shapes, "draw_image", real)
    assert len(_build(tmp_path, split="val", num_images=4)) == 4


def test_cache_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CVKIT_CACHE", str(tmp_path / "env"))
    assert shapes.cache_root() == tmp_path / "env"
    assert shapes.cache_root("elsewhere") == Path("elsewhere")
    monkeypatch.delenv("CVKIT_CACHE")
    assert shapes.cache_root() == Path.home() / ".cache" / "cvkit"


def test_bad_arguments_are_config_errors(tmp_path):
    with pytest.raises(cvkit.ConfigError, match="split"):
        _build(tmp_path, split="test")
    with pytest.raises(cvkit.ConfigError, match="num_images must be an integer >= 1, got 0"):
        _build(tmp_path, num_images=0)


def test_loader_batches_with_box_aware_transforms(root):
    transforms = [
        {"type": "LongestMaxSize", "max_size": 128},
        {"type": "HorizontalFlip", "p": 0.5},
    ]
    ds = _build(root, split="val", num_images=N_VAL, transforms=transforms)
    loader = build_loader(ds, 4, shuffle=True, seed=1, collate_fn=collate_detection)
    batch = next(iter(loader))
    assert batch.images.shape[0] == 4 and max(batch.images.shape[2:]) == 128
    for (h, w), target in zip(batch.image_sizes, batch.targets):
        assert max(h, w) == 128 and target.boxes.dtype == torch.float32
        if len(target.boxes):
            assert target.boxes[:, 2].max() <= w and target.boxes[:, 3].max() <= h
