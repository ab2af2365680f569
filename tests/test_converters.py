"""cvkit.data.converters: Pascal VOC and YOLO to COCO, boxes checked by hand, every error's text,
and the output read back by cvkit's own COCO reader and dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvkit.coco_file import load_coco_json
from cvkit.data.coco import CocoDetection
from cvkit.data.converters import (
    ConversionError,
    class_names_argument,
    default_label_dir,
    find_class_file,
    read_class_file,
    read_split,
    voc_to_coco,
    yolo_to_coco,
)


def image(path: Path, width: int, height: int, orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((height, width, 3), 90, np.uint8)
    if orientation is None:
        Image.fromarray(pixels).save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(pixels).save(path, exif=exif)
    return path


def voc_xml(path: Path, filename: str, size: tuple[int, int] | None, objects: list) -> Path:
    """objects: (name, xmin, ymin, xmax, ymax, difficult) tuples."""
    parts = [f"<annotation><filename>{filename}</filename>"]
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height></size>")
    for name, x1, y1, x2, y2, difficult in objects:
        parts.append(
            f"<object><name>{name}</name><truncated>0</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts) + "</annotation>")
    return path


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    """VOC/ with a.jpg (40x30, three objects) and b.png (20x20, none)."""
    root = tmp_path / "VOC"
    image(root / "JPEGImages" / "a.jpg", 40, 30)
    image(root / "JPEGImages" / "b.png", 20, 20)
    objects = [
        ("dog", 1, 1, 10, 20, 0),  # 1-based inclusive: the image's corner pixel to (10, 20)
        ("cat", 5, 6, 40, 30, 1),  # difficult, reaching the image's last pixel
        ("dog", 30, 2, 45, 12, 0),  # beyond the right edge: clipped
    ]
    voc_xml(root / "Annotations" / "a.xml", "a.jpg", (40, 30), objects)
    voc_xml(root / "Annotations" / "b.xml", "b.png", (20, 20), [])
    return root


def convert_voc(root: Path, **kwargs):
    return voc_to_coco(root / "Annotations", root / "JPEGImages", **kwargs)


def test_voc_boxes_are_zero_based_continuous_pixels(voc, tmp_path):
    conversion = convert_voc(voc)
    coco = conversion.coco
    assert coco["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in coco["images"]] == [
        (1, "a.jpg", 40, 30),
        (2, "b.png", 20, 20),
    ]
    anns = coco["annotations"]
    # x = xmin - 1, w = xmax - xmin + 1: the whole pixels 1..10 are [0, 10)
    assert [a["bbox"] for a in anns] == [[0, 0, 10, 20], [4, 5, 36, 25], [29, 1, 11, 11]]
    assert [a["area"] for a in anns] == [200, 900, 121]
    assert [a["category_id"] for a in anns] == [2, 1, 2]
    assert [a["iscrowd"] for a in anns] == [0, 1, 0]  # difficult -> crowd by default
    assert [a["difficult"] for a in anns] == [0, 1, 0]
    assert [a["id"] for a in anns] == [1, 2, 3]
    notes = "\n".join(conversion.notes)
    assert "boxes clipped to their image: 1 (e.g. 'a.xml' object 3)" in notes
    assert "difficult objects written with iscrowd 1 (ignored): 1" in notes
    assert "images without objects, kept as negatives: 1 (e.g. 'b.xml')" in notes

    out = conversion.write(tmp_path / "out" / "voc.json")
    assert load_coco_json(out)["annotations"] == anns
    dataset = CocoDetection(str(out), str(voc / "JPEGImages"))
    item = dataset[0]  # decodes the image: its size must be the file's
    assert item["image"].shape == (30, 40, 3)
    np.testing.assert_allclose(item["boxes"], [[0, 0, 10, 20], [4, 5, 40, 30], [29, 1, 40, 12]])
    assert item["iscrowd"].tolist() == [False, True, False]


def test_voc_difficult_keep_and_skip(voc):
    kept = convert_voc(voc, difficult="keep").coco["annotations"]
    assert [a["iscrowd"] for a in kept] == [0, 0, 0]
    assert [a["difficult"] for a in kept] == [0, 1, 0]
    skipped = convert_voc(voc, difficult="skip")
    assert [a["category_id"] for a in skipped.coco["annotations"]] == [2, 2]
    assert any("difficult objects left out (--difficult skip): 1" in n for n in skipped.notes)
    with pytest.raises(ConversionError, match="difficult must be one of"):
        convert_voc(voc, difficult="ignore")


def test_voc_split_list_and_class_order(voc):
    split = voc / "ImageSets" / "Main" / "train.txt"
    split.parent.mkdir(parents=True)
    split.write_text("b\na  1\n\n")
    ids = read_split(split)
    assert ids == ["b", "a"]
    coco = convert_voc(voc, ids=ids, classes=["dog", "cat", "cow"]).coco
    assert [i["file_name"] for i in coco["images"]] == ["b.png", "a.jpg"]
    assert [c["name"] for c in coco["categories"]] == ["dog", "cat", "cow"]
    assert [a["category_id"] for a in coco["annotations"]] == [1, 2, 1]
    assert all(a["image_id"] == 2 for a in coco["annotations"])
    with pytest.raises(ConversionError, match=r"split list .*val.txt' does not exist.*train"):
        read_split(split.with_name("val.txt"))
    with pytest.raises(ConversionError, match=r"1 of the 2 ids .* e\.g\. 'c\.xml'"):
        convert_voc(voc, ids=["a", "c"])


def test_voc_unknown_class_names_the_file_and_the_name(voc):
    with pytest.raises(ConversionError) as err:
        convert_voc(voc, classes=["dog", "cats"])
    message = str(err.value)
    assert "a.xml' object 2 is a 'cat', which is not in the class list" in message
    assert "did you mean 'cats'?" in message
    assert "add it to --classes or correct the name in the XML" in message


def test_voc_missing_image_names_the_xml_and_the_folder(voc):
    (voc / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(ConversionError) as err:
        convert_voc(voc)
    message = str(err.value)
    assert "a.xml' names image 'a.jpg'" in message
    assert f"image folder '{voc / 'JPEGImages'}'" in message
    assert "put the image there" in message


def test_voc_image_found_by_the_xml_name_and_size_checks(voc):
    voc_xml(voc / "Annotations" / "b.xml", "renamed.png", None, [])
    conversion = convert_voc(voc)  # b.png found by the XML's stem; size read from the file
    assert conversion.coco["images"][1]["file_name"] == "b.png"
    notes = "\n".join(conversion.notes)
    assert "images found by the XML file's name" in notes and "sizes read from the image" in notes
    voc_xml(voc / "Annotations" / "b.xml", "b.png", (30, 20), [])
    with pytest.raises(ConversionError, match=r"says the image is 30x20 but .*b.png' is 20x20"):
        convert_voc(voc)
    voc_xml(voc / "Annotations" / "a.xml", "a.jpg", (30, 40), [])
    with pytest.raises(ConversionError, match="width and height are swapped"):
        convert_voc(voc, classes=["dog"])
    voc_xml(voc / "Annotations" / "b.xml", "b.png", (20, 20), [])
    with pytest.raises(ConversionError, match=r"no XML in .* has an object.* pass --classes"):
        convert_voc(voc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<annotation><object>", "is not valid XML"),
        (
            "<annotation><object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
            "<xmax>ten</xmax><ymax>5</ymax></bndbox></object></annotation>",
            "object 1 ('dog') has 'ten' as <xmax>",
        ),
        (
            "<annotation><object><name>dog</name><bndbox><xmin>9</xmin><ymin>1</ymin>"
            "<xmax>3</xmax><ymax>5</ymax></bndbox></object></annotation>",
            "a max below its min",
        ),
        ("<annotation><object><name>dog</name></object></annotation>", "has no <bndbox>"),
    ],
)
def test_voc_malformed_xml_names_the_file(voc, text, expected):
    (voc / "Annotations" / "a.xml").write_text(text)
    with pytest.raises(ConversionError, match=r"a\.xml") as err:
        convert_voc(voc)
    assert expected in str(err.value)


# -- YOLO ----------------------------------------------------------------------------------


@pytest.fixture
def yolo(tmp_path: Path) -> Path:
    """data/images/train: a.png (100x50, two boxes), b.jpg (64x64, no label file), sub/c.png
    (40x40, an empty label file); a label with no image; data.yaml with names by index."""
    root = tmp_path / "data"
    images, labels = root / "images" / "train", root / "labels" / "train"
    image(images / "a.png", 100, 50)
    image(images / "b.jpg", 64, 64)
    image(images / "sub" / "c.png", 40, 40)
    (images / "notes.md").write_text("not an image")
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n\n1 0.95 0.5 0.2 0.2\n")
    (labels / "sub").mkdir()
    (labels / "sub" / "c.txt").write_text("")
    (labels / "zzz.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "data.yaml").write_text("path: .\nnames:\n  0: cat\n  1: dog\n")
    return root


def test_yolo_boxes_sizes_and_images_without_labels(yolo, tmp_path):
    images, labels = yolo / "images" / "train", yolo / "labels" / "train"
    assert default_label_dir(images) == labels
    found = find_class_file(labels, images)
    assert found == yolo / "data.yaml"
    conversion = yolo_to_coco(images, labels, read_class_file(found))
    coco = conversion.coco
    assert coco["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert [(i["file_name"], i["width"], i["height"]) for i in coco["images"]] == [
        ("a.png", 100, 50),
        ("b.jpg", 64, 64),
        ("sub/c.png", 40, 40),
    ]
    # x = (cx - w / 2) * width: (0.5 - 0.1) * 100 = 40, y = (0.5 - 0.2) * 50 = 15
    # the second reaches x = 105 and is clipped at 100
    assert [a["bbox"] for a in coco["annotations"]] == [[40, 15, 20, 20], [85, 20, 15, 10]]
    assert [a["category_id"] for a in coco["annotations"]] == [1, 2]
    assert [a["area"] for a in coco["annotations"]] == [400, 150]
    notes = "\n".join(conversion.notes)
    for note in (
        "files that are not images in the image folder, skipped: 1 (e.g. 'notes.md')",
        "boxes clipped to their image: 1 (e.g. 'a.txt' line 3)",
        "images without a label file, kept with no objects: 1 (e.g. 'b.jpg')",
        "images with an empty label file, kept with no objects: 1 (e.g. 'sub/c.png')",
        "label files without an image, skipped: 1 (e.g. 'zzz.txt')",
    ):
        assert note in notes
    out = conversion.write(tmp_path / "yolo.json")
    dataset = CocoDetection(str(out), str(images))
    assert len(dataset) == 3
    assert dataset[0]["boxes"].tolist() == [[40, 15, 60, 35], [85, 20, 100, 30]]
    assert dataset[1]["boxes"].shape == (0, 4)


def test_yolo_sizes_follow_the_exif_orientation(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    image(images / "turned.jpg", 40, 20, orientation=6)  # stored 40x20, shown 20x40
    labels.mkdir()
    (labels / "turned.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    conversion = yolo_to_coco(images, labels, ["thing"])
    assert conversion.coco["images"][0] | {"id": 0} == {
        "id": 0, "file_name": "turned.jpg", "width": 20, "height": 40,
    }  # fmt: skip
    assert conversion.coco["annotations"][0]["bbox"] == [5, 10, 10, 20]
    out = conversion.write(tmp_path / "out.json")
    assert CocoDetection(str(out), str(images))[0]["image"].shape == (40, 20, 3)


def test_yolo_labels_beside_their_images(tmp_path):
    """Darknet's layout: x.jpg and x.txt in one folder; the .txt files are no stray files."""
    image(tmp_path / "obj" / "x.jpg", 10, 10)
    (tmp_path / "obj" / "x.txt").write_text("0 0.5 0.5 1 1\n")
    (tmp_path / "obj" / "classes.txt").write_text("thing\n")
    conversion = yolo_to_coco(tmp_path / "obj", tmp_path / "obj", ["thing"])
    assert conversion.coco["annotations"][0]["bbox"] == [0, 0, 10, 10]
    assert conversion.notes == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0 0.5 0.5 0.2", "has 4 values ('0 0.5 0.5 0.2'); a YOLO box is 5: class cx cy w h"),
        ("0 0.5 0.5 0.2 0.2 0.9", "a sixth value is usually a confidence score"),
        ("0 0.5 abc 0.2 0.2", ": 'abc' is not a finite number"),
        ("2 0.5 0.5 0.2 0.2", "has class 2, but the class list has 2 classes (indices 0 to 1)"),
        ("1.5 0.5 0.5 0.2 0.2", "has class 1.5"),
        ("0 0.5 0.5 -0.2 0.2", "a negative width or height"),
        ("0 50 25 20 10", "these look like pixels"),
    ],
)
def test_yolo_bad_line_names_the_file_and_line(yolo, line, expected):
    labels = yolo / "labels" / "train"
    (labels / "a.txt").write_text(f"0 0.5 0.5 0.2 0.4\n{line}\n")
    with pytest.raises(ConversionError) as err:
        yolo_to_coco(yolo / "images" / "train", labels, ["cat", "dog"])
    message = str(err.value)
    assert f"label file '{labels / 'a.txt'}' line 2" in message
    assert expected in message


def test_yolo_missing_folders_and_unreadable_images(yolo):
    images = yolo / "images" / "train"
    with pytest.raises(ConversionError, match=r"label folder '.*nowhere' does not exist"):
        yolo_to_coco(images, yolo / "nowhere", ["cat"])
    (images / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ConversionError, match=r"image file '.*broken.png' cannot be read"):
        yolo_to_coco(images, yolo / "labels" / "train", ["cat", "dog"])


def test_class_lists(tmp_path):
    assert class_names_argument(" cat, dog ,cow") == ["cat", "dog", "cow"]
    (tmp_path / "classes.txt").write_text("cat\ndog\n\n")
    assert class_names_argument(str(tmp_path / "classes.txt")) == ["cat", "dog"]
    (tmp_path / "gap.txt").write_text("cat\n\ndog\n")
    with pytest.raises(ConversionError, match=r"gap.txt' line 2 is blank"):
        read_class_file(tmp_path / "gap.txt")
    (tmp_path / "twice.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(ConversionError, match="names 'cat' more than once"):
        read_class_file(tmp_path / "twice.txt")
    with pytest.raises(ConversionError, match=r"'nope\.txt' does not exist"):
        class_names_argument("nope.txt")
    (tmp_path / "list.yaml").write_text(json.dumps({"names": ["a", "b"]}))
    assert read_class_file(tmp_path / "list.yaml") == ["a", "b"]
    (tmp_path / "gaps.yaml").write_text("names: {0: a, 2: c}\n")
    with pytest.raises(ConversionError, match="keys must be the class indices"):
        read_class_file(tmp_path / "gaps.yaml")
    # a YAML file is data: a Python tag is refused, never run
    (tmp_path / "evil.yaml").write_text("names: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(ConversionError, match="not valid YAML"):
        read_class_file(tmp_path / "evil.yaml")
    with pytest.raises(ConversionError, match=r"no class list \(classes.txt, data.yaml"):
        find_class_file(tmp_path / "x" / "a" / "b")
