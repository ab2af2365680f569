"""The CPU/offline templates, as a new user takes them: copied out of cvkit to a folder of
their own, the data paths edited (nothing else), trained through the command line.

Each template runs two steps on a small generated dataset with the packaged ImageNet
EfficientNet-Lite0 weights (the `weights` extra), no network, then scores its val split.
"""

import shutil

import cv2
import numpy as np
import pytest

from cvkit.config.load import packaged_root
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

SHORT = [
    "train.epochs=1",
    "train.max_steps=2",
    "data.total_batch_size=null",  # the RetinaNet template's base gives the batch in total
    "data.batch_size=4",
    "data.num_workers=0",
    "train.tensorboard=false",
    "run_dir=runs",
    "name=mine",
]


def _copy(template: str, folder, edits: dict[str, str]):
    """The template copied to ``folder/mine.yaml`` with only its data paths changed."""
    text = (packaged_root() / template).read_text()
    for old, new in edits.items():
        assert old in text, f"{template} no longer holds {old!r}"
        text = text.replace(old, new)
    (folder / "mine.yaml").write_text(text)


def _train(folder, env):
    out = run_cli("train", "mine.yaml", *SHORT, cwd=folder, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def shapes_coco(tmp_path_factory):
    """One COCO file and its image folder (the generated shapes), as a user would have them."""
    from cvkit.data.shapes import ShapesDetection

    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CVKIT_CACHE", str(cache))
        ds = ShapesDetection(split="train", num_images=20, image_size=128)
    return ds.ann_file, ds.image_dir, {"CVKIT_CACHE": str(cache)}


@pytest.mark.parametrize(
    "template",
    [
        "detection/retinanet_effl0_fpn_my_dataset.yaml",
        "detection/faster_rcnn_effl0_fpn_my_dataset.yaml",
    ],
)
def test_a_detection_template_trains_on_one_coco_file(tmp_path, shapes_coco, template):
    ann_file, image_dir, env = shapes_coco
    paths = {"data/my_dataset/annotations.json": ann_file, "data/my_dataset/images": image_dir}
    _copy(template, tmp_path, paths)
    out = _train(tmp_path, env)
    assert "3 classes: 0: circle (id 1), 1: square (id 2), 2: triangle (id 3)" in out
    assert "AP50" in out
    assert (tmp_path / "runs" / "mine" / "predictions.png").stat().st_size > 1000


def test_the_classification_template_trains_on_class_folders(tmp_path):
    rng = np.random.default_rng(0)
    for name, colour in (("red", (0, 0, 255)), ("green", (0, 255, 0))):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(10):
            image = rng.integers(0, 60, (90, 120, 3), dtype=np.uint8)
            cv2.circle(image, (60, 45), 25, colour, -1)
            cv2.imwrite(str(tmp_path / "photos" / name / f"{i}.png"), image)
    _copy("classification/efficientnet_lite0_my_dataset.yaml", tmp_path,
          {"data/my_dataset": str(tmp_path / "photos")})  # fmt: skip
    out = _train(tmp_path, {})
    assert "2 classes: 0: green, 1: red" in out
    assert "top1" in out


def test_the_segmentation_template_trains_on_images_and_masks(tmp_path):
    from cvkit.data.shapes_segmentation import ShapesSegmentation

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CVKIT_CACHE", str(tmp_path / "cache"))
        ds = ShapesSegmentation(split="train", num_images=12, image_size=128)
    names = sorted(ds.names)
    (tmp_path / "train.txt").write_text("\n".join(names[:8]) + "\n")
    (tmp_path / "val.txt").write_text("\n".join(names[8:]) + "\n")
    shutil.copytree(ds.image_dir, tmp_path / "images")
    shutil.copytree(ds.mask_dir, tmp_path / "masks")
    edits = {
        "data/my_dataset/images": str(tmp_path / "images"),
        "data/my_dataset/masks": str(tmp_path / "masks"),
        "data/my_dataset/train.txt": str(tmp_path / "train.txt"),
        "data/my_dataset/val.txt": str(tmp_path / "val.txt"),
        "[background, cat, dog]": "[background, circle, square, triangle]",
    }
    _copy("segmentation/fcn_effl0_8s_my_dataset.yaml", tmp_path, edits)
    out = _train(tmp_path, {})
    assert "model.head.num_classes: 4 (auto, from data.train's classes)" in out
    assert "mIoU" in out
