"""CocoDetection and collate_detection on tiny COCO files written to a temp folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import cvkit
from cvkit.coco_file import CocoFormatError
from cvkit.data.collate import collate_detection
from cvkit.data.loader import build_loader
from cvkit.registry import DATASETS

GREEN = (0, 255, 0)  # RGB
# Category ids on purpose out of order and with gaps: labels follow the sorted ids.
CATEGORIES = [{"id": 7, "name": "bird"}, {"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}]


def _png(path: Path, height: int, width: int, box=None, depth=np.uint8, channels=3) -> None:
    """A black image (green inside ``box``, xyxy), written with cv2 for any file name."""
    image = np.zeros((height, width, 3), np.uint8)
    if box is not None:
        x1, y1, x2, y2 = box
        image[y1:y2, x1:x2] = GREEN[::-1]  # BGR
    if channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if depth == np.uint16:
        image = image.astype(np.uint16) * 257
    ok, buffer = cv2.imencode(".png", image)
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer.tofile(str(path))


def _ann(ann_id: int, image_id: int, cat_id: int, bbox: list, **extra) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": cat_id, "bbox": bbox, **extra}


def _coco_dict() -> dict:
    return {
        "images": [
            {"id": 2, "file_name": "b.png", "width": 50, "height": 30},
            {"id": 1, "file_name": "sub/a.png", "width": 60, "height": 40},
            {"id": 3, "file_name": "empty.png", "width": 20, "height": 20},
        ],
        "annotations": [
            _ann(10, 1, 3, [10, 5, 20, 10], iscrowd=0, area=200),
            _ann(11, 1, 7, [0, 0, 60, 40], iscrowd=1, area=2400),
            _ann(12, 2, 1, [5, 6, 7, 8], iscrowd=0, area=56),
        ],
        "categories": [dict(c) for c in CATEGORIES],  # cases change their copy
    }


@pytest.fixture
def tiny(tmp_path: Path):
    """``make(data=None, name="ann.json") -> (ann_file, image_dir)`` with three images."""
    images = tmp_path / "images"
    _png(images / "sub" / "a.png", 40, 60, box=(10, 5, 30, 15))
    _png(images / "b.png", 30, 50)
    _png(images / "empty.png", 20, 20)

    def make(data: dict | list | None = None, name: str = "ann.json") -> tuple[Path, Path]:
        path = tmp_path / name
        path.write_text(json.dumps(_coco_dict() if data is None else data))
        return path, images

    return make


def _build(ann_file: Path, image_dir: Path, **kwargs):
    cfg = {"type": "CocoDetection", "ann_file": str(ann_file), "image_dir": str(image_dir)}
    return cvkit.build({**cfg, **kwargs}, DATASETS)


def _build_error(kind: type[Exception], ann_file: Path, image_dir: Path, **kwargs) -> str:
    """The message of the ``kind`` error construction raised: the builder passes a bad file's
    error on as it is (exit code 1), noting the config path that read it."""
    with pytest.raises(kind) as err:
        _build(ann_file, image_dir, **kwargs)
    assert not isinstance(err.value, cvkit.ConfigError)
    assert any(note.startswith("read by ") for note in err.value.__notes__)
    return str(err.value)


def _config_error(ann_file: Path, image_dir: Path, **kwargs) -> str:
    """The message of the ``ValueError`` an argument of the config caused: the builder wraps
    it in a ConfigError naming the component (exit code 2)."""
    with pytest.raises(cvkit.ConfigError) as err:
        _build(ann_file, image_dir, **kwargs)
    assert isinstance(err.value.__cause__, ValueError)
    assert str(err.value.__cause__) in str(err.value)  # shown whole to the user
    return str(err.value.__cause__)


# -- loading ------------------------------------------------------------------------------------


def test_labels_follow_sorted_category_ids_both_ways(tiny):
    ds = _build(*tiny())
    assert ds.classes == ["cat", "dog", "bird"]
    assert ds.cat_ids == [1, 3, 7]
    assert ds.label_of_cat == {1: 0, 3: 1, 7: 2}
    assert all(ds.label_of_cat[ds.cat_ids[label]] == label for label in range(3))
    assert ds.image_ids == [1, 2, 3]  # sorted by id, not file order


def test_item_format_and_xywh_to_xyxy(tiny):
    item = _build(*tiny())[0]
    assert set(item) == {"image", "boxes", "labels", "iscrowd", "image_id", "orig_size"}
    assert item["image"].shape == (40, 60, 3) and item["image"].dtype == np.uint8
    assert item["image"][10, 20].tolist() == list(GREEN)  # RGB
    assert item["boxes"].dtype == np.float32 and item["labels"].dtype == np.int64
    assert item["iscrowd"].dtype == bool
    np.testing.assert_array_equal(item["boxes"], [[10, 5, 30, 15], [0, 0, 60, 40]])
    assert item["labels"].tolist() == [1, 2]  # dog, bird
    assert item["image_id"] == 1 and item["orig_size"] == (40, 60)


def test_crowd_kept_with_flag_and_empty_images_kept(tiny):
    ds = _build(*tiny())
    assert ds[0]["iscrowd"].tolist() == [False, True]
    empty = ds[2]
    assert empty["image_id"] == 3 and empty["boxes"].shape == (0, 4)
    assert empty["labels"].shape == (0,) and empty["iscrowd"].shape == (0,)
    assert _build(*tiny(), keep_empty=False).image_ids == [1, 2]


def test_degenerate_dropped_and_outside_clipped_in_one_warning(tiny, caplog):
    data = _coco_dict()
    data["annotations"] += [
        _ann(20, 2, 1, [3, 3, 0.5, 9]),  # too thin
        _ann(21, 2, 1, [60, 3, 5, 5]),  # outside the image
        _ann(22, 2, 1, [40, -4, 20, 10]),  # reaches out of it
        _ann(23, 2, 1, [4, 4, 10, -3]),  # negative height
    ]
    with caplog.at_level(logging.WARNING, logger="cvkit.data"):
        ds = _build(*tiny(data))
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "dropped 3 of 7 boxes" in message and "annotation id 20" in message
    assert "clipped 1 boxes" in message and "annotation id 22" in message
    assert "ann.json" in message
    np.testing.assert_array_equal(ds[1]["boxes"], [[5, 6, 12, 14], [40, 0, 50, 6]])


def test_clean_file_logs_nothing(tiny, caplog):
    with caplog.at_level(logging.WARNING, logger="cvkit.data"):
        _build(*tiny())
    assert caplog.records == []


def test_missing_iscrowd_and_area_are_filled_and_counted(tiny, caplog):
    data = _coco_dict()
    for ann in data["annotations"]:
        del ann["iscrowd"], ann["area"]
    with caplog.at_level(logging.WARNING, logger="cvkit.data"):
        ds = _build(*tiny(data))
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "'iscrowd' to 0 in 3 annotations" in message
    assert "'area' to the box area in 3 annotations" in message
    assert ds.coco.anns[12]["area"] == 56 and ds.coco.anns[12]["iscrowd"] == 0
    assert ds[0]["iscrowd"].tolist() == [False, False]


def test_any_image_type_and_non_ascii_names(tmp_path):
    _png(tmp_path / "ñandú 16.png", 12, 16, box=(2, 2, 6, 6), depth=np.uint16, channels=1)
    data = {
        "images": [{"id": 1, "file_name": "ñandú 16.png", "width": 16, "height": 12}],
        "annotations": [_ann(1, 1, 1, [2, 2, 4, 4])],
        "categories": [{"id": 1, "name": "x"}],
    }
    (tmp_path / "a.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    item = _build(tmp_path / "a.json", tmp_path)[0]
    assert item["image"].shape == (12, 16, 3) and item["image"].dtype == np.uint8
    assert item["image"][3, 3, 0] == item["image"][3, 3, 1] > 100  # grey, scaled to 8 bits


# -- box-aware transforms ----------------------------------------------------------------------


def _green_extent(image: np.ndarray) -> list[int]:
    ys, xs = np.nonzero((image[:, :, 1] > 128) & (image[:, :, 0] < 128))
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_horizontal_flip_moves_boxes(tiny):
    ds = _build(*tiny(), transforms=[{"type": "HorizontalFlip", "p": 1.0}])
    item = ds[0]
    width = item["image"].shape[1]
    # x1' = W - x2 and x2' = W - x1; y unchanged; labels and crowd flags travel along.
    np.testing.assert_allclose(item["boxes"], [[60 - 30, 5, 60 - 10, 15], [0, 0, 60, 40]])
    assert width == 60 and item["labels"].tolist() == [1, 2]
    assert item["iscrowd"].tolist() == [False, True]
    np.testing.assert_allclose(item["boxes"][0], _green_extent(item["image"]), atol=1e-4)


def test_resize_keeping_aspect_keeps_boxes_on_the_pixels(tiny):
    transforms = [
        {"type": "LongestMaxSize", "max_size": 120},
        {"type": "PadIfNeeded", "min_height": 120, "min_width": 120, "position": "top_left"},
    ]
    item = _build(*tiny(), transforms=transforms)[0]
    assert item["image"].shape == (120, 120, 3)
    np.testing.assert_allclose(item["boxes"], [[20, 10, 60, 30], [0, 0, 120, 80]], atol=1e-4)
    np.testing.assert_allclose(item["boxes"][0], _green_extent(item["image"]), atol=1)
    assert item["orig_size"] == (40, 60)


def test_scale_jitter_moves_boxes_with_the_pixels(tiny):
    ds = _build(*tiny(), transforms=[{"type": "RandomScale", "scale_limit": [-0.5, 0.5], "p": 1.0}])
    sizes = set()
    for seed in range(6):
        ds.transforms.set_random_seed(seed)
        item = ds[0]
        sizes.add(item["image"].shape[:2])
        np.testing.assert_allclose(item["boxes"][0], _green_extent(item["image"]), atol=1.5)
        assert item["labels"].tolist() == [1, 2] and item["orig_size"] == (40, 60)
    assert len(sizes) > 3  # the scale really varies


def test_bbox_safe_random_crop_keeps_every_box(tiny):
    transforms = [{"type": "RandomSizedBBoxSafeCrop", "height": 32, "width": 32, "p": 1.0}]
    ds = _build(*tiny(), transforms=transforms)
    for seed in range(6):
        ds.transforms.set_random_seed(seed)
        item = ds[0]
        assert item["image"].shape == (32, 32, 3)
        assert item["labels"].tolist() == [1, 2] and item["iscrowd"].tolist() == [False, True]
        np.testing.assert_allclose(item["boxes"][0], _green_extent(item["image"]), atol=1.5)


def test_crop_drops_boxes_with_their_labels(tiny):
    item = _build(*tiny(), transforms=[{"type": "Crop", "x_max": 8, "y_max": 8}])[0]
    # the dog box (x from 10) is cropped away; the crowd box survives, clipped
    np.testing.assert_allclose(item["boxes"], [[0, 0, 8, 8]], atol=1e-4)
    assert item["labels"].tolist() == [2] and item["iscrowd"].tolist() == [True]


def test_loader_reseeds_box_transforms_per_sample(tiny):
    transforms = [{"type": "HorizontalFlip", "p": 0.5}, {"type": "VerticalFlip", "p": 0.5}]
    ds = _build(*tiny(), transforms=transforms)

    def boxes() -> list:
        loader = build_loader(ds, 3, shuffle=True, seed=5, collate_fn=collate_detection)
        loader.sampler.set_epoch(2)
        return [[t.boxes.tolist() for t in batch.targets] for batch in loader]

    assert boxes() == boxes()


# -- bad input: one message naming the file and the id -----------------------------------------


def _without(key):
    return lambda d: d.pop(key)


def _set(section, index, **values):
    return lambda d: d[section][index].update(values)


BAD = {
    "no annotations": (_without("annotations"), "has no 'annotations' list"),
    "no images": (_without("images"), "has no 'images' list"),
    "no categories": (_without("categories"), "has no 'categories' list"),
    "unknown image": (_set("annotations", 1, image_id=99), "annotation id 11 names image_id 99"),
    "unknown category": (
        _set("annotations", 2, category_id=5),
        "annotation id 12 names category_id 5, which is not in 'categories' (ids: 1, 3, 7)",
    ),
    "repeated image id": (_set("images", 2, id=1), "repeats image id 1 (images[1] and images[2])"),
    "repeated annotation id": (_set("annotations", 2, id=10), "repeats annotation id 10"),
    "bbox of 3": (_set("annotations", 0, bbox=[1, 2, 3]), "annotation id 10 has bbox [1, 2, 3]"),
    "bbox text": (_set("annotations", 0, bbox=[1, 2, "3", 4]), "annotation id 10 has bbox"),
    "parent path": (
        _set("images", 0, file_name="../b.png"),
        "image id 2 has file_name '../b.png', which points outside image_dir",
    ),
    "absolute path": (
        _set("images", 0, file_name="/etc/b.png"),
        "image id 2 has file_name '/etc/b.png', an absolute path",
    ),
    "no size": (_set("images", 1, width=None), "image id 1 has width None"),
    "image_id text": (
        _set("annotations", 1, image_id="1"),
        "annotation id 11 has image_id '1'; an 'image_id' is the integer id of an entry of "
        "'images'",
    ),
    "annotation not an object": (
        lambda d: d["annotations"].insert(1, "oops"),
        "annotations[1] is a JSON string, not an object",
    ),
    "no category id": (
        lambda d: d["categories"][2].pop("id"),
        "categories[2] has no 'id'; an 'id' is an integer",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_file_stops_at_construction_naming_file_and_id(tiny, case):
    change, expected = BAD[case]
    data = _coco_dict()
    change(data)
    ann_file, images = tiny(data)
    message = _build_error(CocoFormatError, ann_file, images)
    assert message.startswith(f"COCO file '{ann_file}'")
    assert expected in message


def test_section_typo_gets_a_suggestion(tiny):
    data = _coco_dict()
    data["annotation"] = data.pop("annotations")
    ann_file, images = tiny(data)
    with pytest.raises(CocoFormatError) as err:  # the class itself, without the builder
        cvkit.data.coco.CocoDetection(str(ann_file), str(images))
    assert str(err.value) == (
        f"COCO file '{ann_file}' has no 'annotations' list; a COCO detection file is an object "
        "with 'images', 'annotations' and 'categories' lists (this one has: 'images', "
        "'categories', 'annotation'); did you mean 'annotation'?"
    )


def test_json_error_gives_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "images": [],\n  "annotations": [,]\n}')
    assert _build_error(CocoFormatError, path, tmp_path) == (
        f"COCO file '{path}' is not valid JSON: Expecting value at line 3, column 19"
    )


def test_missing_annotation_file_and_image_dir(tiny, tmp_path):
    message = _build_error(FileNotFoundError, tmp_path / "nope.json", tmp_path)
    assert message == f"COCO file '{tmp_path / 'nope.json'}' does not exist"
    ann_file, _ = tiny()
    message = _build_error(FileNotFoundError, ann_file, tmp_path / "elsewhere")
    assert message == (
        f"image_dir '{tmp_path / 'elsewhere'}' (for COCO file '{ann_file}') does not exist"
    )


# -- one reader: training data and `cvkit coco-eval` word a broken file the same way -------------


def _both_messages(ann_file: Path, image_dir: Path) -> tuple[str, str]:
    """The message CocoDetection raises for ``ann_file``, and the one ``coco-eval`` raises."""
    from cvkit.evaluation.coco_map import evaluate_coco

    with pytest.raises(CocoFormatError) as training:
        cvkit.data.coco.CocoDetection(str(ann_file), str(image_dir))
    with pytest.raises(CocoFormatError) as evaluation:
        evaluate_coco(ann_file, [])
    return str(training.value), str(evaluation.value)


def _then(change):
    """``change`` mutates the data in place; the case writes the changed data."""
    return lambda d: (change(d), d)[1]


SAME = {
    "not an object": (lambda d: [d], "holds a JSON array, not an object with 'images', "),
    "no annotations": (_then(_without("annotations")), "has no 'annotations' list; a COCO"),
    "section typo": (
        _then(lambda d: d.update(annotation=d.pop("annotations"))),
        "did you mean 'annotation'?",
    ),
    "images not a list": (
        _then(lambda d: d.update(images={"id": 1})),
        "has a JSON object as 'images', not a list",
    ),
    "annotation not an object": (
        _then(lambda d: d["annotations"].insert(0, 7)),
        ": annotations[0] is a JSON number, not an object",
    ),
    "bbox of 3": (
        _then(_set("annotations", 0, bbox=[1, 2, 3])),
        ": annotation id 10 has bbox [1, 2, 3]; a 'bbox' is 4 finite numbers [x, y, width, "
        "height] in pixels",
    ),
    "image_id null": (
        _then(_set("annotations", 2, image_id=None)),
        ": annotation id 12 has image_id None; an 'image_id' is the integer id of an entry of "
        "'images'",
    ),
    "category_id text": (
        _then(_set("annotations", 1, category_id="dog")),
        ": annotation id 11 has category_id 'dog'; a 'category_id' is the integer id",
    ),
    "area text": (
        _then(_set("annotations", 0, area="big")),
        ": annotation id 10 has area 'big'; an 'area' is a finite number of pixels",
    ),
    "image without id": (
        _then(lambda d: d["images"][1].pop("id")),
        ": images[1] has no 'id'; an 'id' is an integer",
    ),
    "category id text": (
        _then(_set("categories", 0, id="seven")),
        ": categories[0] has id 'seven'; an 'id' is an integer",
    ),
}


@pytest.mark.parametrize("case", list(SAME))
def test_a_broken_file_gets_one_message_from_training_and_coco_eval(tiny, case):
    change, expected = SAME[case]
    ann_file, images = tiny(change(_coco_dict()))
    training, evaluation = _both_messages(ann_file, images)
    assert training == evaluation
    assert training.startswith(f"COCO file '{ann_file}'")
    assert expected in training


def test_unreadable_files_get_one_message_from_both(tiny, tmp_path):
    _, images = tiny()
    cases = {
        tmp_path / "nope.json": (None, f"COCO file '{tmp_path / 'nope.json'}' does not exist"),
        images: (None, f"COCO file '{images}' is a folder, not a file"),
        tmp_path / "latin1.json": (
            '{"images": "caf\xe9"}'.encode("latin-1"),
            f"COCO file '{tmp_path / 'latin1.json'}' is not UTF-8 text (byte 15); save it as "
            "UTF-8 JSON",
        ),
        tmp_path / "cut.json": (
            b'{"images": [',
            f"COCO file '{tmp_path / 'cut.json'}' is not valid JSON: Expecting value at line 1, "
            "column 13",
        ),
    }
    for path, (content, expected) in cases.items():
        if content is not None:
            path.write_bytes(content)
        training, evaluation = _both_messages(path, images)
        assert training == evaluation == expected


def test_missing_image_file_counted_and_named(tiny):
    data = _coco_dict()
    data["images"][0]["file_name"] = "gone.png"
    data["images"][2]["file_name"] = "gone too.png"
    ann_file, images = tiny(data)
    assert _build_error(FileNotFoundError, ann_file, images) == (
        f"COCO file '{ann_file}': 2 of 3 image files are missing from image_dir '{images}', "
        f"e.g. image id 2: 'gone.png' (looked for '{images / 'gone.png'}')"
    )


def test_class_names_must_match(tiny):
    ann_file, images = tiny()
    message = _config_error(ann_file, images, class_names=["cat", "bird", "dog"])
    assert message == (
        f"class_names ['cat', 'bird', 'dog'] do not match the categories of COCO file "
        f"'{ann_file}' (in category-id order): ['cat', 'dog', 'bird']; fix class_names or the file"
    )
    assert _build(ann_file, images, class_names=["cat", "dog", "bird"]).classes[2] == "bird"


def test_image_size_disagreeing_with_file_is_named_when_read(tiny):
    data = _coco_dict()
    data["images"][1].update(width=40, height=60)  # a.png is 60 wide, 40 high
    ds = _build(*tiny(data))
    with pytest.raises(ValueError, match=r"image id 1\) is 60x40 pixels .* width and height are"):
        ds[0]


def test_unreadable_image_is_named_when_read(tiny):
    ann_file, images = tiny()
    (images / "b.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"image file '.*b.png' could not be decoded"):
        _build(ann_file, images)[1]


# -- collate -------------------------------------------------------------------------------------


def test_collate_pads_bottom_right_and_keeps_sizes(tiny):
    ds = _build(*tiny())
    batch = collate_detection([ds[0], ds[1], ds[2]])
    assert batch.images.shape == (3, 3, 40, 60) and batch.images.dtype == torch.uint8
    assert batch.image_sizes == [(40, 60), (30, 50), (20, 20)]
    assert batch.images[2, :, 20:, :].eq(0).all() and batch.images[2, :, :, 20:].eq(0).all()
    assert batch.images[0, 1, 10, 20] == 255  # green stays where it was
    first = batch.targets[0]
    assert first.boxes.dtype == torch.float32 and first.labels.dtype == torch.int64
    assert first.iscrowd.tolist() == [False, True] and first.image_id == 1
    assert batch.targets[2].boxes.shape == (0, 4) and batch.targets[1].orig_size == (30, 50)
    assert len(batch) == 3


def test_collate_without_boxes_gives_no_targets():
    batch = collate_detection([{"image": np.zeros((4, 5, 3), np.uint8)}])
    assert batch.targets is None and batch.image_sizes == [(4, 5)]


def test_collate_refuses_float_images():
    item = {"image": np.zeros((4, 5, 3), np.float32), "boxes": np.zeros((0, 4))}
    with pytest.raises(ValueError, match=r"produced float32 images; cvkit expects uint8 .*Norm"):
        collate_detection([item])


# -- one file, split into train and val (more in test_coco_split.py) ------------------------------


def test_a_file_whose_groups_are_single_images_has_an_empty_val(tiny):
    """Image 1 (a dog and a crowd bird: a tie, the smaller id, dog), image 2 (a cat) and the
    empty image 3 are three groups of one image each, and a group of one goes to train."""
    ann_file, images = tiny()
    train = _build(ann_file, images, split="train", val_fraction=0.5, seed=3)
    assert train.image_ids == [1, 2, 3] and train.split == "train"
    assert train.classes == ["cat", "dog", "bird"]
    assert _config_error(ann_file, images, split="val") == (
        f"split 'val' of COCO file '{ann_file}' has no images: a group of a single image always "
        "goes to train; add images, or use split: all"
    )


def test_bad_split_arguments_name_the_argument(tiny):
    ann_file, images = tiny()
    message = _config_error(ann_file, images, split="val", val_fraction=1.0)
    assert message == "val_fraction must be a number in (0, 1), got 1.0"
    with pytest.raises(cvkit.ConfigError) as err:
        _build(ann_file, images, split="test")
    assert "split" in str(err.value) and "'test'" in str(err.value)
