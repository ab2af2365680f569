"""read_image and ClassificationFolder on small images written to a temp folder."""

import logging
import struct

import cv2
import numpy as np
import pytest
import torch

import cvkit
from cvkit.config import from_dict
from cvkit.data.image_folder import ClassificationFolder
from cvkit.data.image_io import read_image
from cvkit.data.loader import build_loader
from cvkit.engine.checkpoint import load_checkpoint
from cvkit.engine.run import train
from cvkit.registry import DATASETS

RED_BGR = (0, 0, 255)


def _write(path, image, ext=None):
    """cv2.imencode + tofile: works for any file name, whatever the platform."""
    ok, buffer = cv2.imencode(ext or path.suffix, image)
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer.tofile(str(path))
    return path


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A JPEG with an EXIF APP1 segment holding only the orientation tag (0x0112)."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


# -- read_image -----------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp"])
def test_pure_red_reads_as_red_rgb(tmp_path, ext):
    path = _write(tmp_path / f"red{ext}", np.full((6, 7, 3), RED_BGR, np.uint8))
    image = read_image(path)
    assert image.shape == (6, 7, 3) and image.dtype == np.uint8
    assert image.flags.c_contiguous
    r, g, b = image[3, 3].tolist()
    assert r >= 250 and g <= 5 and b <= 5  # JPEG is lossy, PNG exact


def test_grayscale_becomes_three_equal_channels(tmp_path):
    path = _write(tmp_path / "gray.png", np.full((4, 5), 77, np.uint8))
    image = read_image(path)
    assert image.shape == (4, 5, 3)
    assert np.all(image == 77)


def test_alpha_is_dropped_not_composited(tmp_path):
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[...] = (30, 20, 10, 0)  # fully transparent, colour kept underneath
    image = read_image(_write(tmp_path / "rgba.png", bgra))
    assert image.shape == (4, 5, 3)
    assert image[0, 0].tolist() == [10, 20, 30]


def test_16_bit_is_scaled_not_truncated(tmp_path):
    values = np.array([[0, 300, 128 * 257, 65535]], np.uint16)  # truncation: 0, 44, 128, 255
    image = read_image(_write(tmp_path / "deep.png", values))
    assert image.dtype == np.uint8
    assert image[0, :, 0].tolist() == [0, 1, 128, 255]
    color = np.zeros((2, 2, 3), np.uint16)
    color[..., 2] = 65535  # red in BGR
    assert read_image(_write(tmp_path / "deep_red.png", color))[0, 0].tolist() == [255, 0, 0]


def test_non_ascii_file_name(tmp_path):
    path = _write(tmp_path / "katze_ü_猫.png", np.full((3, 3, 3), RED_BGR, np.uint8))
    assert read_image(path)[0, 0].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied_unless_asked_not_to(tmp_path):
    jpeg = cv2.imencode(".jpg", np.zeros((20, 40, 3), np.uint8))[1]
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_with_exif_orientation(bytes(jpeg), 6))  # 6: rotate 90 degrees
    assert read_image(path).shape == (40, 20, 3)
    assert read_image(path, exif_orientation=False).shape == (20, 40, 3)


def test_jpeg_with_data_after_its_end_reads(tmp_path):
    jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), RED_BGR, np.uint8))[1]
    path = tmp_path / "trailer.jpg"
    path.write_bytes(bytes(jpeg) + b"\xff\xda\x00\x08appended video, not JPEG")
    assert read_image(path)[4, 4, 0] >= 250


@pytest.mark.parametrize("progressive", [0, 1])
def test_truncated_jpeg_is_a_value_error(tmp_path, progressive):
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_PROGRESSIVE, progressive])[1]
    path = tmp_path / "cut.jpg"
    for cut in (len(jpeg) // 2, len(jpeg) - 2):  # in the data; just before the end marker
        path.write_bytes(bytes(jpeg)[:cut])
        with pytest.raises(ValueError, match=r"cut\.jpg' could not be decoded"):
            read_image(path)


def test_text_file_named_jpg_and_empty_file_are_value_errors(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match=r"image file '.*notes\.jpg' could not be decoded"):
        read_image(tmp_path / "notes.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.png' could not be decoded"):
        read_image(tmp_path / "empty.png")


def test_missing_file_and_folder_are_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image file '.*nope\.png' does not exist"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError, match="is a folder, not an image file"):
        read_image(tmp_path)


def test_float_pixels_are_refused_with_the_type(tmp_path):
    path = _write(tmp_path / "float.tif", np.full((4, 4, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match="float32 pixels; read_image reads 8- and 16-bit"):
        read_image(path)


# -- ClassificationFolder ---------------------------------------------------------------------

CLASSES = ["ant", "bee", "cat"]


@pytest.fixture
def tree(tmp_path):
    """root/{ant,bee,cat}/ with 5 images each, of mixed sizes and formats."""
    root = tmp_path / "images"
    sizes = [(10, 12), (16, 16), (20, 9), (7, 30), (12, 12)]
    for label, name in enumerate(CLASSES):
        for i, (h, w) in enumerate(sizes):
            ext = ".png" if i % 2 else ".jpg"
            _write(root / name / f"{i}{ext}", np.full((h, w, 3), 40 * label, np.uint8))
    return root


def _build(**kwargs):
    return cvkit.build({"type": "ClassificationFolder", **kwargs}, DATASETS)


def test_builds_from_a_config_with_sorted_classes_and_labels(tree):
    ds = _build(root=str(tree), image_size=12)
    assert ds.classes == CLASSES
    assert len(ds) == 15
    assert ds.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert ds.files == sorted(ds.files)
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (12, 12, 3) and image.dtype == np.uint8
        assert isinstance(label, int) and abs(int(image.mean()) - 40 * label) <= 2


def test_train_val_split_and_kfold(tree):
    train_ds = _build(root=str(tree), split="train", val_fraction=0.4, seed=3)
    val_ds = _build(root=str(tree), split="val", val_fraction=0.4, seed=3)
    assert not set(train_ds.files) & set(val_ds.files)
    assert len(train_ds) + len(val_ds) == 15
    assert sorted(val_ds.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    folds = [set(_build(root=str(tree), split="val", folds=5, fold=f).files) for f in range(5)]
    assert set().union(*folds) == set(_build(root=str(tree)).files)
    assert sum(map(len, folds)) == 15


def test_explicit_classes_choose_and_order_the_labels(tree):
    ds = _build(root=str(tree), classes=["cat", "ant"])
    assert ds.classes == ["cat", "ant"]
    assert ds.labels.tolist() == [0] * 5 + [1] * 5
    assert all("/cat/" in f for f in ds.files[:5])


def test_subfolders_uppercase_extensions_and_hidden_files(tree, caplog):
    _write(tree / "ant" / "batch2" / "X.PNG", np.zeros((4, 4, 3), np.uint8))
    (tree / "ant" / ".DS_Store").write_bytes(b"\0")
    (tree / ".ipynb_checkpoints").mkdir()
    with caplog.at_level(logging.WARNING, logger="cvkit.data"):
        ds = _build(root=str(tree))
    assert ds.classes == CLASSES
    assert sum(ds.labels == 0) == 6
    assert caplog.records == []  # hidden files are not reported


def test_transforms_then_resize(tree):
    half = np.zeros((8, 8, 3), np.uint8)
    half[:, :4] = RED_BGR
    _write(tree / "ant" / "0.png", half)
    ds = _build(root=str(tree), transforms=[{"type": "HorizontalFlip", "p": 1.0}], image_size=16)
    image, _ = ds[ds.files.index(str(tree / "ant" / "0.png"))]
    assert image.shape == (16, 16, 3)
    assert image[8, 15].tolist() == [255, 0, 0] and image[8, 0].tolist() == [0, 0, 0]


def test_a_loader_batch_stacks(tree):
    ds = _build(root=str(tree), split="train", image_size=12)
    batch = next(iter(build_loader(ds, batch_size=4, shuffle=True, num_workers=0)))
    assert batch.images.shape == (4, 3, 12, 12) and batch.images.dtype == torch.uint8
    assert batch.labels.dtype == torch.int64


# -- ClassificationFolder: bad input ----------------------------------------------------------


def test_root_missing(tmp_path):
    with pytest.raises(ValueError, match=r"dataset root '.*nowhere' does not exist; set root"):
        ClassificationFolder(str(tmp_path / "nowhere"))


def test_root_without_class_folders(tmp_path):
    _write(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"has no class folders; it holds 1 files directly"):
        ClassificationFolder(str(tmp_path))


def test_empty_class_folder_is_an_error_that_names_it(tree):
    (tree / "bee_empty").mkdir()
    with pytest.raises(ValueError, match=r"'.*bee_empty' hold no image files .* shift the label"):
        ClassificationFolder(str(tree))


def test_unknown_class_names_the_folders_and_the_closest(tree):
    with pytest.raises(ValueError, match=r"classes names 'bea' but .* ant, bee, cat.*'bee'\?"):
        ClassificationFolder(str(tree), classes=["ant", "bea"])


def test_unknown_extensions_are_counted_in_one_warning(tree, caplog):
    (tree / "ant" / "notes.txt").write_text("x")
    (tree / "bee" / "clip.gif").write_bytes(b"GIF89a")
    with caplog.at_level(logging.WARNING, logger="cvkit.data"):
        ds = ClassificationFolder(str(tree))
    assert len(ds) == 15
    [record] = caplog.records
    assert record.name == "cvkit.data"
    assert "ignored 2 file(s)" in record.message and "notes.txt" in record.message


def test_unreadable_image_names_the_file_when_read(tree):
    (tree / "cat" / "broken.png").write_text("not a png")
    ds = ClassificationFolder(str(tree))  # indexing does not decode
    with pytest.raises(ValueError, match=r"broken\.png' could not be decoded"):
        ds[ds.files.index(str(tree / "cat" / "broken.png"))]


def test_val_split_with_one_image_per_class_is_empty_and_says_why(tmp_path):
    for name in CLASSES:
        _write(tmp_path / name / "only.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"split 'val' of .* has no images: a class with a single"):
        ClassificationFolder(str(tmp_path), split="val")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "test"}, r"split must be one of 'train', 'val', 'all', got 'test'"),
        ({"val_fraction": 1.5}, r"val_fraction must be a number in \(0, 1\)"),
        ({"folds": 1}, r"2 <= k <="),
        ({"fold": 1}, r"fold=1 is set but folds is not"),
        ({"image_size": 0}, r"image_size must be a positive integer"),
        ({"extensions": ()}, r"extensions must be a non-empty list"),
        ({"classes": ["ant", "ant"]}, r"classes lists 'ant' more than once"),
    ],
)
def test_bad_arguments(tree, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClassificationFolder(str(tree), **kwargs)


def test_config_errors_name_the_config_path(tree):
    with pytest.raises(cvkit.ConfigError, match=r"data\.train: .*'bea'"):
        cvkit.build(
            {"type": "ClassificationFolder", "root": str(tree), "classes": ["bea"]},
            DATASETS,
            path="data.train",
        )


# -- training on a folder -------------------------------------------------------------------


@pytest.mark.slow
def test_classifier_trains_on_an_image_folder(tree, tmp_path):
    folder = {"type": "ClassificationFolder", "root": str(tree), "image_size": 16, "seed": 0}
    cfg = from_dict(
        {
            "model": {
                "type": "ImageClassifier",
                "backbone": {"type": "TinyNet", "width": 8},
                "neck": {"type": "GlobalPool"},
                "head": {"type": "ClsHead", "num_classes": 3},
            },
            "data": {
                "train": {**folder, "split": "train"},
                "val": {**folder, "split": "val"},
                "batch_size": 4,
                "num_workers": 0,
            },
            "train": {"epochs": 1, "max_steps": 3, "log_interval": 1, "device": "cpu"},
            "run_dir": str(tmp_path / "runs"),
            "name": "folder",
        }
    )
    result = train(cfg)
    assert (result.run_dir / "last.pt").is_file()
    assert load_checkpoint(result.run_dir / "last.pt")["classes"] == CLASSES
