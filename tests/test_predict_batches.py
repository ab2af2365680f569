"""Prediction on image files in batches: a worker decodes beside the model, and only images
that the network sees at one padded size share a batch, so the records are exactly those of
one image at a time, in the files' order."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import cvkit
from cvkit.engine.predict import _pipeline, expand_images
from cvkit.engine.tasks import PredictRequest, task_of
from cvkit.engine.tasks.file_batches import file_batches, network_size
from cvkit.registry import MODELS
from tests.test_tasks import _classifier as tiny_classifier
from tests.test_tasks import _segmenter as tiny_segmenter

# (h, w): with size_divisor 32 several pad to 64x64, others to 64x96, 96x32, 32x32
SIZES = [(40, 50), (64, 64), (70, 30), (33, 60), (40, 50), (64, 90), (20, 20), (64, 64),
         (50, 70), (33, 60), (96, 30), (40, 50), (64, 64), (25, 31)]  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    root.mkdir()
    for i, (h, w) in enumerate(SIZES):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        image = cv2.GaussianBlur(image, (5, 5), 2)  # some structure for the convs to find
        cv2.imwrite(str(root / f"img_{i:02d}.png"), image)
    return root


def _detector() -> nn.Module:
    torch.manual_seed(0)
    model = cvkit.build(
        {
            "type": "RetinaNet",
            "backbone": {"type": "TinyNet", "width": 4, "out_indices": [1, 2, 3]},
            "neck": {"type": "FPN", "out_channels": 8, "extra_levels": 0},
            "head": {"type": "RetinaHead", "num_classes": 3, "num_convs": 1, "feat_channels": 8},
            "preprocessor": {"type": "Preprocessor", "size_divisor": 32},
        },
        MODELS,
    )
    with torch.no_grad():  # scores round 0.5 rather than the prior's 0.01: many detections
        model.head.cls_logits.bias.zero_()
    return model.eval()


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    return tiny_classifier()


def _segmenter() -> nn.Module:
    torch.manual_seed(0)
    return tiny_segmenter()


def _request(transforms: list | None = None, **kw) -> PredictRequest:
    pipeline = (lambda skip: _pipeline(transforms, skip, "data.val")) if transforms else None
    return PredictRequest(
        classes=["a", "b", "c"],
        cat_ids=[1, 2, 3],
        pipeline=pipeline or (lambda skip: None),
        **kw,
    )


def _both(model: nn.Module, files: list[str], transforms: list | None = None, **kw):
    """(records at batch 8 with a worker, records at batch 1 inline, forward passes of the
    batched run)."""
    task = task_of(model)
    one = task.predict_images(model, files, _request(transforms, batch_size=1, workers=0, **kw))
    sizes: list[int] = []
    predict = model.predict
    model.predict = lambda batch: sizes.append(len(batch)) or predict(batch)  # type: ignore
    many = task.predict_images(model, files, _request(transforms, batch_size=8, workers=1, **kw))
    return many, one, sizes


@pytest.mark.parametrize("transforms", [None, [{"type": "LongestMaxSize", "max_size": 56}]])
def test_batched_detections_equal_one_image_at_a_time_in_file_order(folder, transforms):
    files = expand_images([str(folder)])
    many, one, sizes = _both(_detector(), files, transforms)
    assert many == one
    assert [r["image"] for r in many] == files
    assert [r["image_id"] for r in many] == list(range(1, len(files) + 1))
    assert sum(len(r["detections"]) for r in many) > 0
    assert sum(sizes) == len(files) and max(sizes) > 1 and len(sizes) < len(files)


def test_a_batch_holds_only_images_of_one_padded_size(folder):
    model = _detector()
    files = expand_images([str(folder)])
    key = lambda h, w: network_size(model, h, w)  # noqa: E731
    batches = list(file_batches(files, None, key, 3, workers=1))
    assert sorted(f.index for b in batches for f in b) == list(range(len(files)))
    for batch in batches:
        assert len(batch) <= 3 and len({key(*f.image.shape[:2]) for f in batch}) == 1
        assert [f.index for f in batch] == sorted(f.index for f in batch)
    assert network_size(model, 40, 50) == network_size(model, 64, 64) != network_size(model, 65, 64)


def test_batched_drawings_and_results_file_match_one_at_a_time(folder, tmp_path):
    model, files = _detector(), expand_images([str(folder)])
    task = task_of(model)
    for name, batch, workers in (("one", 1, 0), ("many", 8, 1)):
        request = _request(batch_size=batch, workers=workers, out_dir=tmp_path / name)
        task.predict_images(model, files, request)
    for name in ("results.json", "images.json"):
        one = json.loads((tmp_path / "one" / name).read_text())
        assert json.loads((tmp_path / "many" / name).read_text()) == one
    drawn = sorted(p.name for p in (tmp_path / "many").glob("*.png"))
    assert drawn == sorted(Path(f).stem + ".png" for f in files)


def test_batched_classes_equal_one_image_at_a_time(folder):
    files = expand_images([str(folder)])
    many, one, sizes = _both(_classifier(), files)
    assert many == one and [r["image"] for r in many] == files
    assert max(sizes) > 1  # the three 40x50 (and 64x64) images share a batch


def test_batched_masks_equal_one_image_at_a_time(folder, tmp_path):
    files = expand_images([str(folder)])
    many, one, sizes = _both(_segmenter(), files)
    assert many == one and [r["image"] for r in many] == files
    assert max(sizes) > 1 and len(sizes) < len(files)


@pytest.mark.parametrize("workers", [0, 1])
def test_an_unreadable_file_gives_the_clear_error(folder, workers):
    (folder / "img_05.png").write_bytes(b"not an image")
    files = expand_images([str(folder)])
    request = _request(batch_size=8, workers=workers)
    model = _detector()
    with pytest.raises(ValueError, match=r"img_05\.png") as caught:
        task_of(model).predict_images(model, files, request)
    assert "DataLoader worker" not in str(caught.value)
    missing = [*files[:3], str(folder / "gone.png")]
    with pytest.raises(FileNotFoundError, match=r"gone\.png' does not exist"):
        task_of(model).predict_images(model, missing, request)
