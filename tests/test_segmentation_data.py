"""Segmentation data: folders of index masks, COCO masks, mask-aware transforms, the shapes demo."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
from PIL import Image

import cvkit
from cvkit.coco_file import CocoFormatError
from cvkit.data.coco_segmentation import CocoSegmentation
from cvkit.data.segmentation import SegmentationFolder
from cvkit.data.segmentation_checks import MaskError, colours_to_indices, read_mask
from cvkit.data.transforms import compose_segmentation
from cvkit.registry import DATASETS

CLASSES = ["background", "cat", "dog", "bird"]
# 256 entries, as VOC's: PIL writes a shorter palette with fewer bits, losing index 255.
VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * 3 * 251 + [224, 224, 192]


def _mask(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    """Blocks of classes 0..3 and a strip of ignore (255)."""
    rng = np.random.default_rng(seed)
    mask = np.repeat(np.repeat(rng.integers(0, 4, (height // 4, width // 4)), 4, 0), 4, 1)
    mask[:, -2:] = 255
    return mask.astype(np.uint8)


def _image_for(mask: np.ndarray) -> np.ndarray:
    """An RGB image whose red channel encodes the class, so moved pixels can be followed."""
    image = np.zeros((*mask.shape, 3), dtype=np.uint8)
    image[..., 0] = np.where(mask == 255, 250, mask.astype(np.int64) * 60)
    image[..., 1] = np.arange(mask.shape[1], dtype=np.uint8)[None, :]  # left-right order
    return image


def _save_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _save_mask(path: Path, mask: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(mask)
    if palette:
        image.putpalette(VOC_PALETTE)
    image.save(path)


def _folder(tmp_path: Path, names=("a", "b", "c"), palette: bool = False) -> Path:
    for k, name in enumerate(names):
        mask = _mask(seed=k)
        _save_rgb(tmp_path / "img" / f"{name}.png", _image_for(mask))
        _save_mask(tmp_path / "masks" / f"{name}.png", mask, palette)
    return tmp_path


def _build(root: Path, **kwargs) -> SegmentationFolder:
    dirs = {"image_dir": str(root / "img"), "mask_dir": str(root / "masks")}
    return SegmentationFolder(**{**dirs, "classes": CLASSES, **kwargs})


# -- reading masks -----------------------------------------------------------------------------


def test_registered_and_built_from_a_config(tmp_path):
    for name in ("SegmentationFolder", "CocoSegmentation", "ShapesSegmentation"):
        assert name in DATASETS.names()
    root = _folder(tmp_path)
    cfg = {"type": "SegmentationFolder", "image_dir": str(root / "img")}
    cfg |= {"mask_dir": str(root / "masks"), "num_classes": 4}
    cfg |= {
        "transforms": [{"type": "PadIfNeeded", "min_height": 32, "min_width": 32, "fill_mask": 255}]
    }
    ds = cvkit.build(cfg, DATASETS)
    assert len(ds) == 3 and ds[0]["mask"].shape == (32, 32) and ds.classes[3] == "class_3"


def test_index_and_palette_pngs_read_as_the_same_indices(tmp_path):
    mask = _mask()
    _save_mask(tmp_path / "l.png", mask)
    _save_mask(tmp_path / "p.png", mask, palette=True)
    assert Image.open(tmp_path / "p.png").mode == "P"
    # OpenCV would hand back the palette's colours; the indices are the classes.
    assert cv2.imread(str(tmp_path / "p.png")).shape == (*mask.shape, 3)
    assert np.array_equal(read_mask(tmp_path / "l.png"), mask)
    assert np.array_equal(read_mask(tmp_path / "p.png"), mask)


def test_palette_folder_gives_items_in_the_contract(tmp_path):
    ds = _build(_folder(tmp_path, palette=True))
    item = ds[1]
    assert set(item) == {"image", "mask", "orig_size", "name"}
    assert item["image"].dtype == np.uint8 and item["image"].shape == (24, 32, 3)
    assert item["mask"].dtype == np.uint8 and np.array_equal(item["mask"], _mask(seed=1))
    assert item["orig_size"] == (24, 32) and item["name"] == "b"
    assert ds.classes == CLASSES and ds.ignore_index == 255
    counts = sum(np.bincount(_mask(seed=k).ravel(), minlength=256) for k in range(3))
    assert ds.class_pixels.tolist() == counts[:4].tolist() and ds.ignored_pixels == counts[255]


def test_16_bit_masks_with_many_classes(tmp_path):
    mask = _mask().astype(np.uint16) * 100  # values 0..300 and the ignore strip
    mask[mask == 25500] = 1000
    _save_rgb(tmp_path / "img" / "a.png", _image_for(_mask()))
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), mask)  # OpenCV writes 16-bit PNGs
    assert Image.open(tmp_path / "masks" / "a.png").mode.startswith("I;16")
    ds = _build(tmp_path, classes=None, num_classes=301, ignore_index=1000)
    flipped = _build(
        tmp_path, classes=None, num_classes=301, ignore_index=1000, transforms=[_flip()]
    )
    item = ds[0]
    assert item["mask"].dtype == np.int64 and np.array_equal(item["mask"], mask)
    assert np.array_equal(flipped[0]["mask"], mask[:, ::-1])


def test_grayscale_saved_as_rgb_is_accepted(tmp_path):
    root = _folder(tmp_path, names=("a",))
    _save_rgb(root / "masks" / "a.png", np.repeat(_mask()[..., None], 3, axis=2))
    assert np.array_equal(_build(root)[0]["mask"], _mask())


def test_colours_to_indices_converts_with_a_palette():
    palette = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
    mask = _mask()
    rgb = np.array(palette + [(9, 9, 9)] * 252, dtype=np.uint8)[mask]
    assert np.array_equal(colours_to_indices(rgb, palette), mask)


# -- pairing and split files ---------------------------------------------------------------


def test_pairs_by_name_across_suffixes_and_subfolders(tmp_path):
    for name, suffix in (("b", ".jpg"), ("sub/a", ".png"), ("c", ".PNG")):
        _save_rgb(tmp_path / "img" / f"{name}{suffix}", _image_for(_mask()))
        _save_mask(tmp_path / "masks" / f"{name}.png", _mask())
    _save_mask(tmp_path / "masks" / "orphan.png", _mask())  # no image: ignored
    (tmp_path / "img" / "notes.txt").write_text("not an image")
    ds = _build(tmp_path)
    assert ds.names == ["b", "c", "sub/a"]
    assert [Path(f).name for f in ds.files] == ["b.jpg", "c.PNG", "a.png"]
    assert all(np.array_equal(ds[i]["mask"], _mask()) for i in range(3))


def test_cityscapes_style_suffixes(tmp_path):
    stem = "aachen/aachen_000000_000019"
    _save_rgb(tmp_path / "img" / f"{stem}_leftImg8bit.png", _image_for(_mask()))
    _save_mask(tmp_path / "masks" / f"{stem}_gtFine_labelIds.png", _mask())
    ds = _build(tmp_path, image_suffixes=["_leftImg8bit.png"], mask_suffix="_gtFine_labelIds.png")
    assert ds.names == [stem] and ds[0]["name"] == stem


def test_split_file_selects_and_orders(tmp_path):
    root = _folder(tmp_path, names=("a", "b", "c", "d"))
    split = root / "train.txt"
    split.write_text("# VOC style\nc\n\na.png\n")
    ds = _build(root, split_file=str(split))
    assert ds.names == ["c", "a"] and len(ds) == 2
    split.write_text("a\nzebra\n")
    with pytest.raises(FileNotFoundError, match=r"names 1 images .*'zebra'"):
        _build(root, split_file=str(split))


def test_split_file_skips_images_without_masks(tmp_path):
    root = _folder(tmp_path, names=("a", "b"))
    _save_rgb(root / "img" / "unlabelled.png", _image_for(_mask()))  # VOC: most have no mask
    split = root / "val.txt"
    split.write_text("b\n")
    assert _build(root, split_file=str(split)).names == ["b"]


# -- bad input, stopped at construction -------------------------------------------------------


def test_size_mismatch_names_the_file_and_both_sizes(tmp_path):
    root = _folder(tmp_path)
    _save_mask(root / "masks" / "b.png", _mask(height=20, width=28))
    with pytest.raises(MaskError) as err:
        _build(root)
    text = str(err.value)
    assert "1 of 3 masks" in text and "b.png' is 28x20" in text and "is 32x24" in text


def test_out_of_range_values_are_listed_with_counts(tmp_path):
    root = _folder(tmp_path)
    mask = _mask(seed=2)
    mask[:3, :5] = 7  # 15 px
    mask[5, 5] = 21  # 1 px
    _save_mask(root / "masks" / "c.png", mask)
    with pytest.raises(MaskError, match=r"c\.png' holds values .*\(0\.\.3\).*7 \(15 px\), 21"):
        _build(root)


def test_every_bad_file_is_listed_in_one_message(tmp_path):
    root = _folder(tmp_path)
    for name in ("a", "b"):
        _save_mask(root / "masks" / f"{name}.png", np.full((24, 32), 9, np.uint8))
    with pytest.raises(MaskError, match=r"(?s)2 of 3 masks.*a\.png.*9 \(768 px\).*b\.png"):
        _build(root)


def test_missing_mask_names_the_image_and_the_expected_path(tmp_path):
    root = _folder(tmp_path)
    (root / "masks" / "b.png").rename(root / "masks" / "b.jpg")
    with pytest.raises(MaskError) as err:
        _build(root)
    text = str(err.value)
    assert "1 of 3 images have no mask" in text and f"'{root / 'img' / 'b.png'}'" in text
    assert f"no mask '{root / 'masks' / 'b.png'}'" in text and "b.jpg': set mask_suffix" in text


def test_colour_mask_is_named_with_a_palette_hint(tmp_path):
    root = _folder(tmp_path)
    rgb = np.array([(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)], np.uint8)[_mask() % 4]
    _save_rgb(root / "masks" / "a.png", rgb)
    with pytest.raises(MaskError, match=r"a\.png' is a colour RGB image .*palette"):
        _build(root)


def test_check_sizes_defers_values_to_reading(tmp_path):
    root = _folder(tmp_path)
    _save_mask(root / "masks" / "c.png", np.full((24, 32), 50, np.uint8))
    ds = _build(root, check="sizes")
    assert ds.class_pixels is None and ds[0]["mask"].shape == (24, 32)
    with pytest.raises(MaskError, match=r"50 \(768 px\)"):
        ds[2]


def test_binary_0_255_masks_get_a_warning(tmp_path, caplog):
    _save_rgb(tmp_path / "img" / "a.png", np.zeros((8, 8, 3), np.uint8))
    _save_mask(tmp_path / "masks" / "a.png", np.where(np.eye(8) > 0, 255, 0).astype(np.uint8))
    with caplog.at_level(logging.WARNING, logger="cvkit.data"):
        _build(tmp_path, classes=["background", "road"])
    assert "divide them by 255" in caplog.text


def test_argument_errors(tmp_path):
    root = _folder(tmp_path)
    with pytest.raises(ValueError, match="give classes"):
        _build(root, classes=None)
    with pytest.raises(ValueError, match=r"ignore_index 2 must lie in 4..65535"):
        _build(root, ignore_index=2)
    with pytest.raises(FileNotFoundError, match=r"mask_dir .* does not exist"):
        _build(root, mask_dir=str(root / "nope"))


# -- mask-aware transforms ----------------------------------------------------------------------


def _flip():
    return A.HorizontalFlip(p=1.0)


def test_flip_moves_the_mask_with_the_image(tmp_path):
    ds = _build(_folder(tmp_path), transforms=[_flip()])
    item = ds[0]
    assert np.array_equal(item["mask"], _mask(seed=0)[:, ::-1])
    assert np.array_equal(item["image"], _image_for(_mask(seed=0))[:, ::-1])


def test_resize_and_affine_keep_only_the_original_values(tmp_path):
    # Even a transform that asks for linear mask interpolation gets nearest.
    resize = A.Resize(37, 53, mask_interpolation=cv2.INTER_LINEAR)
    rotate = A.Affine(rotate=(20, 20), scale=1.3, p=1.0, fill_mask=255)
    ds = _build(_folder(tmp_path), transforms=[resize, rotate])
    mask, image = ds[0]["mask"], ds[0]["image"]
    assert mask.shape == (37, 53) and set(np.unique(mask)) <= {0, 1, 2, 3, 255}
    # where the image shows class c (red = 60 c, away from edges), the mask says c
    inner = cv2.erode((image[..., 0] % 60 == 0).astype(np.uint8), np.ones((3, 3))) > 0
    assert np.mean(mask[inner] == image[..., 0][inner] // 60) > 0.97


def test_pad_fills_masks_with_ignore_and_bad_fills_are_refused(tmp_path):
    root = _folder(tmp_path)
    pad = A.PadIfNeeded(40, 40, position="top_left", fill_mask=255)
    item = _build(root, transforms=[pad])[0]
    assert item["mask"].shape == (40, 40) and (item["mask"][24:] == 255).all()
    assert np.array_equal(item["mask"][:24, :32], _mask())
    with pytest.raises(ValueError, match=r"PadIfNeeded fills masks with fill_mask=9.*255"):
        _build(root, transforms=[A.OneOf([A.PadIfNeeded(40, 40, fill_mask=9)])])


def test_pipeline_reseeding_repeats_the_augmentation():
    pipeline = compose_segmentation([A.RandomCrop(8, 8), _flip()], num_classes=4)
    mask = _mask()
    outs = []
    for _ in range(2):
        pipeline.set_random_seed(123)
        outs.append(pipeline(image=_image_for(mask), mask=mask)["mask"])
    assert np.array_equal(*outs) and compose_segmentation([]) is None


# -- masks from a COCO file ---------------------------------------------------------------------


def _coco(tmp_path: Path, annotations: list[dict]) -> Path:
    _save_rgb(tmp_path / "images" / "one.png", np.zeros((20, 30, 3), np.uint8))
    data = {
        "images": [{"id": 5, "file_name": "one.png", "width": 30, "height": 20}],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            {"id": k + 1, "image_id": 5, "bbox": [0, 0, 1, 1], **a}
            for k, a in enumerate(annotations)
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def _rect(x0, y0, x1, y1) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _coco_build(path: Path, **kwargs) -> CocoSegmentation:
    return CocoSegmentation(str(path), str(path.parent / "images"), **kwargs)


def test_coco_polygons_crowd_and_label_mapping(tmp_path):
    from pycocotools import mask as coco_mask

    crowd = np.zeros((20, 30), np.uint8, order="F")
    crowd[10:20, 20:30] = 1
    rle = coco_mask.encode(crowd)
    rle["counts"] = rle["counts"].decode()
    path = _coco(
        tmp_path,
        [
            {"category_id": 3, "segmentation": _rect(2, 2, 12, 12), "iscrowd": 0},  # cat
            {"category_id": 7, "segmentation": rle, "iscrowd": 1},  # crowd of dogs
            {"category_id": 7, "segmentation": _rect(22, 12, 26, 16)},  # a dog in the crowd
        ],
    )
    ds = _coco_build(path)
    assert ds.classes == ["background", "cat", "dog"]  # category ids 3, 7 sorted
    assert ds.label_of_cat == {3: 1, 7: 2}
    item = ds[0]
    mask = item["mask"]
    assert item["name"] == "one.png" and item["image_id"] == 5 and item["orig_size"] == (20, 30)
    assert mask[5, 5] == 1 and mask[0, 0] == 0 and mask[14, 24] == 2
    assert mask[11, 29] == 255 and mask[19, 21] == 255  # crowd, where no instance is
    assert set(np.unique(mask)) == {0, 1, 2, 255}
    plain = _coco_build(path, background_class=False)[0]["mask"]
    # without a background class: unannotated pixels ignored, categories from label 0
    expected = np.where((mask == 0) | (mask == 255), 255, mask.astype(np.int64) - 1)
    assert np.array_equal(plain, expected) and plain.dtype == np.uint8


def test_coco_overlap_paints_smaller_instances_on_top(tmp_path):
    path = _coco(
        tmp_path,
        [
            {"category_id": 3, "segmentation": _rect(4, 4, 8, 8)},  # small cat, first
            {"category_id": 7, "segmentation": _rect(0, 0, 20, 15)},  # large dog, later
        ],
    )
    mask = _coco_build(path)[0]["mask"]
    assert mask[6, 6] == 1 and mask[12, 12] == 2


def test_coco_bad_segmentations(tmp_path, caplog):
    path = _coco(tmp_path, [{"category_id": 3, "segmentation": [[1, 2, 3, 4]]}])
    with caplog.at_level(logging.WARNING, logger="cvkit.data"):
        assert (_coco_build(path)[0]["mask"] == 0).all()  # a 4-number "polygon" is no box
    assert "dropped 1 polygons" in caplog.text
    path = _coco(tmp_path, [{"category_id": 3}])
    with pytest.raises(CocoFormatError, match=r"annotation id 1 .*detection-only"):
        _coco_build(path)
    rle = {"size": [10, 10], "counts": [100]}
    path = _coco(tmp_path, [{"category_id": 3, "segmentation": rle, "iscrowd": 1}])
    with pytest.raises(CocoFormatError, match=r"RLE of size \[10, 10\] .*\[20, 30\]"):
        _coco_build(path)


def test_coco_image_of_another_size_is_named_at_construction(tmp_path):
    path = _coco(tmp_path, [{"category_id": 3, "segmentation": _rect(2, 2, 12, 12)}])
    _save_rgb(tmp_path / "images" / "one.png", np.zeros((30, 20, 3), np.uint8))
    with pytest.raises(MaskError, match=r"one\.png' is 20x30 .* says 30x20"):
        _coco_build(path)


# -- the embedded dataset -----------------------------------------------------------------------


def test_shapes_segmentation_generates_once_and_matches_the_pictures(tmp_path):
    cfg = {"type": "ShapesSegmentation", "root": str(tmp_path), "num_images": 10}
    ds = cvkit.build({**cfg, "split": "val", "image_size": 64}, DATASETS)
    assert ds.classes == ["background", "circle", "square", "triangle"]
    assert ds.folder == tmp_path / "shapes-seg-v1" / "val-n10-s64-seed0"
    stamp = (ds.folder / "val.txt").stat().st_mtime_ns
    again = cvkit.build({**cfg, "split": "val", "image_size": 64}, DATASETS)
    assert (again.folder / "val.txt").stat().st_mtime_ns == stamp and len(again) == 10
    assert Image.open(ds.mask_files[0]).mode == "P"
    # The detection demo's annotations of the same pictures: every shape's visible pixels
    # (its colour inside its box) carry its class, and the class areas add up.
    det = cvkit.build(
        {"type": "ShapesDetection", "root": str(tmp_path), "split": "val", "num_images": 10,
         "image_size": 64},
        DATASETS,
    )  # fmt: skip
    objects = json.loads((det.folder / "val.json").read_text())["annotations"]
    for i in range(len(ds)):
        item = ds[i]
        assert np.array_equal(item["image"], det[i]["image"])
        area = np.zeros(4, np.int64)
        for obj in (o for o in objects if o["image_id"] == i + 1):
            x, y, w, h = obj["bbox"]
            crop = item["image"][y : y + h, x : x + w]
            own = np.all(crop == obj["color"], axis=2)
            assert (item["mask"][y : y + h, x : x + w][own] == obj["category_id"]).all()
            area[obj["category_id"]] += obj["area"]
        assert (np.bincount(item["mask"].ravel(), minlength=4)[1:] == area[1:]).all()
