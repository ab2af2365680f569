"""`cvkit doctor` on seeded corruptions of the embedded shapes data: every planted problem in
one report; the cached image check that `cvkit train` runs before the first step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvkit.config import load_config
from cvkit.data.doctor import image_files
from cvkit.data.doctor.image_files import inspect_images, precheck
from cvkit.data.shapes import ShapesDetection
from cvkit.data.shapes_segmentation import ShapesSegmentation
from cvkit.engine.doctor import doctor_config, doctor_files, render, write_report
from tests.conftest import run_cli


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CVKIT_CACHE", str(tmp_path / "cache"))


def _copy_split(tmp_path: Path, split: str, count: int) -> tuple[Path, Path, dict]:
    """A writable copy of a generated shapes split: (ann_file, image_dir, its JSON)."""
    ds = ShapesDetection(split, num_images=count, image_size=64, root=str(tmp_path / "gen"))
    folder = tmp_path / split
    shutil.copytree(ds.image_dir, folder / "images")
    shutil.copy(ds.ann_file, folder / "ann.json")
    return folder / "ann.json", folder / "images", json.loads(Path(ds.ann_file).read_text())


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data))  # NaN is written as NaN, as Python's json allows


@pytest.fixture
def corrupted(tmp_path):
    """train and val with one of every problem planted; returns the config and what was
    planted, by kind: (a word every example of that kind must contain)."""
    train_ann, train_dir, train = _copy_split(tmp_path, "train", 10)
    val_ann, val_dir, val = _copy_split(tmp_path, "val", 4)
    images, anns = train["images"], train["annotations"]
    by_image = {a["image_id"]: a for a in anns}
    planted = {}
    # a truncated PNG
    cut = train_dir / images[0]["file_name"]
    cut.write_bytes(cut.read_bytes()[:200])
    planted["image-undecodable"] = f"image id {images[0]['id']} "
    # a declared size that is not the file's
    images[1]["width"] += 7
    planted["image-size-mismatch"] = f"image id {images[1]['id']} "
    # a photo whose EXIF orientation turns it: the declared size is the stored grid's
    Image.new("RGB", (40, 24), (90, 120, 30)).save(train_dir / "turned.jpg", exif=_orientation_6())
    images.append({"id": 900, "file_name": "turned.jpg", "width": 40, "height": 24})
    planted["image-size-mismatch"] = "swapped: an EXIF orientation"
    # a missing file
    images.append({"id": 901, "file_name": "nope.png", "width": 64, "height": 64})
    planted["image-missing"] = "image id 901 'nope.png'"
    # the same content under another id
    shutil.copy(train_dir / images[2]["file_name"], train_dir / "copy.png")
    images.append({**images[2], "id": 902, "file_name": "copy.png"})
    planted["duplicate-file"] = "image id 902 'copy.png' has the content of image id"
    # a repeated image id
    images.append({**images[3], "file_name": images[4]["file_name"]})
    planted["duplicate-image-id"] = f"image id {images[3]['id']} "
    a = by_image[images[5]["id"]]
    extra = [
        {**a, "id": 5001, "bbox": [1.0, 2.0, float("nan"), 4.0]},  # NaN
        {**a, "id": 5002, "bbox": [3.0, 3.0, 0.0, 5.0]},  # empty
        {**a, "id": 5003, "bbox": [60.0, 10.0, 20.0, 10.0]},  # reaches outside
        {**a, "id": 5004},  # the same box twice
        {**a, "id": a["id"]},  # a repeated annotation id
        {**a, "id": 5005, "category_id": 42},  # no such category
        {**a, "id": 5006, "image_id": 777},  # no such image
    ]
    anns += extra
    planted.update({
        "box-not-finite": "annotation id 5001",
        "box-empty": "annotation id 5002",
        "box-outside": "annotation id 5003",
        "duplicate-box": f"annotation id 5004 repeats annotation id {a['id']}",
        "duplicate-annotation-id": f"annotation id {a['id']}",
        "unknown-category-id": "annotation id 5005 names category_id 42",
        "unknown-image-id": "annotation id 5006 names image_id 777",
    })  # fmt: skip
    train["categories"].append({"id": 9, "name": "hexagon"})
    planted["unused-category"] = "category id 9 'hexagon'"
    # a training image in val
    shutil.copy(train_dir / images[6]["file_name"], val_dir / "leak.png")
    val["images"].append({**images[6], "id": 990, "file_name": "leak.png"})
    planted["split-overlap"] = "data.val: image id 990 'leak.png' is data.train's image id"
    _write(train_ann, train)
    _write(val_ann, val)
    config = tmp_path / "c.yaml"
    config.write_text(
        "data:\n"
        f"  train: {{type: CocoDetection, ann_file: '{train_ann}', image_dir: '{train_dir}'}}\n"
        f"  val: {{type: CocoDetection, ann_file: '{val_ann}', image_dir: '{val_dir}'}}\n"
        f"run_dir: '{tmp_path / 'runs'}'\n"
    )
    return config, planted


def _orientation_6() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: the picture shows 24 wide, 40 high
    return exif.tobytes()


def test_every_planted_problem_is_in_one_report(corrupted, tmp_path):
    config, planted = corrupted
    report = doctor_config(load_config(str(config)), limit=10)
    found = report.findings.by_kind
    assert set(planted) <= set(found), set(planted) - set(found)
    for kind, words in planted.items():
        assert any(words in example for example in found[kind].examples), (kind, found[kind])
    assert found["image-size-mismatch"].count == 2  # the widened entry and the turned photo
    assert report.exit_code() == 1
    text = render(report)
    assert text.index("errors:") < text.index("warnings:")
    assert "box-outside x1: boxes reaching outside their image" in text
    written = write_report(report, tmp_path / "out")
    saved = json.loads(written[0].read_text())
    assert saved["errors"] > 0 and saved["warnings"] > 0
    assert {f["kind"] for f in saved["findings"]} == set(found)
    assert saved["sources"][0]["stats"]["instances_per_class"]
    assert written[1].name == "dataset.png" and written[1].stat().st_size > 10_000


def test_the_command_lists_them_and_exits_1(corrupted, tmp_path):
    config, planted = corrupted
    out = run_cli("doctor", str(config), "--out", str(tmp_path / "report"))
    assert out.returncode == 1, out.stderr
    for kind in planted:
        assert f"  {kind} x" in out.stdout
    assert "Traceback" not in out.stderr
    assert (tmp_path / "report" / "report.json").is_file()


def test_warnings_fail_only_with_strict(tmp_path):
    ann, image_dir, data = _copy_split(tmp_path, "val", 3)
    data["categories"].append({"id": 9, "name": "hexagon"})
    _write(ann, data)
    report = doctor_files(str(ann), str(image_dir))
    assert list(report.findings.by_kind) == ["unused-category"]
    assert (report.exit_code(), report.exit_code(strict=True)) == (0, 1)
    ann, image_dir, _ = _copy_split(tmp_path / "b", "val", 3)
    clean = doctor_files(str(ann), str(image_dir))
    assert clean.exit_code(strict=True) == 0 and "no problems found" in render(clean)


def test_a_file_that_is_not_coco_is_one_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[1, 2]")
    report = doctor_files(str(path), str(tmp_path))
    assert list(report.findings.by_kind) == ["not-coco"]
    assert "holds a JSON array" in report.findings.by_kind["not-coco"].examples[0]


def test_mask_values_and_sizes(tmp_path):
    ds = ShapesSegmentation("val", num_images=4, image_size=64, root=str(tmp_path / "gen"))
    folder = tmp_path / "seg"
    shutil.copytree(ds.folder, folder)
    masks = sorted((folder / "masks").glob("*.png"))
    bad = np.array(Image.open(masks[0]))
    bad[:2, :2] = 7  # no such class (4 classes, ignore 255)
    Image.fromarray(bad).save(masks[0])
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks[1])
    config = tmp_path / "c.yaml"
    images, masks_dir, split = folder / "images", folder / "masks", folder / "val.txt"
    config.write_text(
        f"data:\n  val: {{type: SegmentationFolder, image_dir: '{images}', mask_dir: "
        f"'{masks_dir}', split_file: '{split}', classes: [background, circle, square, triangle]}}\n"
    )
    report = doctor_config(load_config(str(config)))
    found = report.findings.by_kind
    assert found["mask-values"].count == 1 and "7 (4 px)" in found["mask-values"].examples[0]
    assert found["mask-size-mismatch"].count == 1 and masks[1].name in str(found)
    assert report.sources[0].stats["pixels_per_class"]["background"] > 0


def test_image_check_is_cached_until_a_file_changes(tmp_path, monkeypatch):
    _, image_dir, _ = _copy_split(tmp_path, "val", 3)
    paths = sorted(str(p) for p in image_dir.iterdir())
    first = inspect_images(paths)
    assert all(f.error is None and f.height > 0 for f in first)
    calls = []
    real = image_files.decode_image
    monkeypatch.setattr(
        image_files, "decode_image", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    assert inspect_images(paths) == first and calls == []
    Path(paths[0]).write_bytes(b"not an image")
    again = inspect_images(paths)
    assert len(calls) == 1 and again[0].error is not None and again[1:] == first[1:]


def test_precheck_names_every_bad_file(tmp_path):
    _, image_dir, data = _copy_split(tmp_path, "val", 4)
    files = [str(image_dir / image["file_name"]) for image in data["images"]]
    Path(files[1]).write_bytes(b"")

    class Split:
        def __init__(self) -> None:
            self.files = files
            self.sizes = [(image["height"], image["width"]) for image in data["images"]]

    split = Split()
    split.sizes[2] = (1, 1)
    with pytest.raises(ValueError) as err:
        precheck({"val": split})
    text = str(err.value)
    assert "data.val: 2 of 4 image files cannot be used" in text
    assert files[1] in text and files[2] in text and "the annotations say 1x1" in text
    assert "cvkit doctor CONFIG" in text


def test_train_stops_before_the_first_step_on_a_broken_image(tmp_path):
    from cvkit.engine.run import train

    ann, image_dir, data = _copy_split(tmp_path, "train", 4)
    broken = image_dir / data["images"][2]["file_name"]
    broken.write_bytes(broken.read_bytes()[:100])
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n"
        "  type: RetinaNet\n"
        "  backbone: {type: TinyNet, width: 4, out_indices: [1, 2, 3]}\n"
        "  neck: {type: FPN, out_channels: 8, extra_levels: 0}\n"
        "  head: {type: RetinaHead, num_classes: auto, num_convs: 1, feat_channels: 8}\n"
        f"data:\n  train: {{type: CocoDetection, ann_file: '{ann}', image_dir: '{image_dir}'}}\n"
        f"run_dir: '{tmp_path / 'runs'}'\n"
    )
    with pytest.raises(ValueError, match=r"data\.train: 1 of 4 image files cannot be used"):
        train(load_config(str(config)))
    assert not (tmp_path / "runs").exists()  # nothing started
