"""tools/: each script's --help, and a tiny run of train.py then test.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_cli_engine import CONFIG

pytestmark = pytest.mark.slow


def tool(script: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / script), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_train_then_test_a_tiny_classifier(tmp_path):
    assert "usage: cvkit train" in tool("train.py", "--help", cwd=tmp_path).stdout
    assert "tools/test.py CFG CHECKPOINT" in tool("test.py", "--help", cwd=tmp_path).stdout
    (tmp_path / "c.yaml").write_text(CONFIG)
    out = tool("train.py", "c.yaml", "train.max_steps=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = tool("test.py", "c.yaml", "runs/cli/last.pt", "--out", "ev", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "top1" in out.stdout and (tmp_path / "ev" / "eval.json").is_file()
    wrong = tool("test.py", "c.yaml", cwd=tmp_path)
    assert wrong.returncode == 2 and "tools/test.py CFG CHECKPOINT" in wrong.stderr


# -- voc2coco.py, yolo2coco.py, browse_dataset.py -------------------------------------------


def load_tool(name: str):
    """A script of tools/ as a module, to run its main() in this process (no start-up cost)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"tools_{name}", ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_new_tools_answer_help():
    for script, option in (
        ("voc2coco.py", "--difficult {crowd,keep,skip}"),
        ("yolo2coco.py", "--labels LABELS"),
        ("browse_dataset.py", "--split {train,val,test}"),
    ):
        out = tool(script, "--help", cwd=ROOT)
        assert out.returncode == 0, out.stderr
        assert f"usage: {script}" in out.stdout and option in out.stdout


def test_voc2coco_and_yolo2coco_write_files_cvkit_reads(tmp_path, capsys):
    from cvkit.data.coco import CocoDetection
    from tests.test_converters import image, voc_xml

    voc = tmp_path / "VOC2007"
    image(voc / "JPEGImages" / "1.jpg", 32, 24)
    image(voc / "JPEGImages" / "2.jpg", 16, 16)
    voc_xml(voc / "Annotations" / "1.xml", "1.jpg", (32, 24), [("dog", 3, 4, 12, 20, 0)])
    voc_xml(voc / "Annotations" / "2.xml", "2.jpg", (16, 16), [("cat", 1, 1, 16, 16, 1)])
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "train.txt").write_text("1\n")
    out = tmp_path / "voc.json"
    args = [str(voc), "--split", "train", "--classes", "cat,dog", "--out", str(out)]
    assert load_tool("voc2coco").main(args) == 0
    assert "1 images, 1 annotations, 2 categories" in capsys.readouterr().out
    item = CocoDetection(str(out), str(voc / "JPEGImages"))[0]
    assert item["boxes"].tolist() == [[2, 3, 12, 20]] and item["labels"].tolist() == [1]
    assert load_tool("voc2coco").main([str(voc), "--classes", "dog"]) == 1
    assert "error: '" in (err := capsys.readouterr().err) and "is a 'cat'" in err

    data = tmp_path / "yolo"
    image(data / "images" / "val" / "x.png", 50, 40)
    image(data / "images" / "val" / "y.png", 30, 30)
    (data / "labels" / "val").mkdir(parents=True)
    (data / "labels" / "val" / "x.txt").write_text("1 0.5 0.5 0.4 0.5\n")
    (data / "classes.txt").write_text("cat\ndog\n")
    yolo2coco = load_tool("yolo2coco")
    assert yolo2coco.main([str(data / "images" / "val"), "--out", str(tmp_path / "y.json")]) == 0
    printed = capsys.readouterr().out
    assert f"classes from {data / 'classes.txt'}" in printed
    assert "2 images, 1 annotations, 2 categories" in printed
    item = CocoDetection(str(tmp_path / "y.json"), str(data / "images" / "val"))[0]
    assert item["boxes"].tolist() == [[15, 10, 35, 30]] and item["labels"].tolist() == [1]
    (data / "labels" / "val" / "y.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    assert yolo2coco.main([str(data / "images" / "val"), "--classes", "cat,dog"]) == 1
    assert "y.txt' line 1 has class 5" in capsys.readouterr().err


def test_browse_dataset_draws_shapes_after_their_augmentation(tmp_path):
    import cv2

    config = ROOT / "configs" / "detection" / "retinanet_effl0_fpn_8e_shapes.yaml"
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "browse_dataset.py"), str(config),
         "data.train.num_images=5", "-n", "5"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "CVKIT_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    png = tmp_path / "browse_retinanet_effl0_fpn_8e_shapes" / "train.png"
    assert out.stdout.strip() == f"wrote {png.relative_to(tmp_path)}"
    grid = cv2.imread(str(png))
    assert grid.shape[0] >= 2 * 96 and grid.shape[1] >= 4 * 96  # 5 samples: 2 rows of 4


def test_browse_dataset_in_process_classification_and_errors(tmp_path, capsys):
    import cv2

    from cvkit.config import load_config
    from cvkit.engine.browse import browse_dataset

    config = ROOT / "configs" / "classification" / "tinynet_3e_digits.yaml"
    paths = browse_dataset(load_config(config), "val", 20, tmp_path / "digits")
    assert [p.name for p in paths] == ["val_1.png", "val_2.png"]  # 16 a grid
    assert cv2.imread(str(paths[1])).shape[:2] == (96, 4 * 96)  # 16 px digits, enlarged
    browse = load_tool("browse_dataset")
    assert browse.main([str(config), "--split", "test"]) == 2
    assert "data.test: the config has no data.test to browse" in capsys.readouterr().err
    assert browse.main([str(config), "data.val.per_class=1000", "--split", "val"]) == 2
    assert "fewer than per_class=1000" in capsys.readouterr().err


def test_draw_sample_kinds():
    import numpy as np

    from cvkit.visualize.samples import draw_sample

    image = np.zeros((100, 120, 3), np.uint8)
    boxes = np.array([[10, 10, 50, 60], [100, 20, 130, 40]], np.float32)  # the second sticks out
    item = {"image": image, "boxes": boxes, "labels": np.array([0, 1]), "iscrowd": [0, 1]}
    drawn = draw_sample(item, ["cat", "dog"], "#3")
    assert drawn.shape == image.shape and drawn[35, 10].any() and not drawn[35, 30].any()
    mask = np.zeros((100, 120), np.uint8)
    mask[20:40, 20:40], mask[90:, :] = 1, 255
    overlay = draw_sample({"image": image, "mask": mask}, ["background", "blob"], "#0")
    assert overlay[30, 30].any() and not overlay[60, 60].any()  # the background stays clear
    wrong = draw_sample({"image": image, "mask": mask[:50]}, ["background", "blob"])
    assert not wrong[30, 30].any()  # a mask of another size is reported, not drawn
    small = draw_sample((np.zeros((16, 16), np.float32), 1), ["zero", "one"])
    assert small.shape == (96, 96, 3)
    with pytest.raises(TypeError, match="expected \\(image, label\\), or a dict"):
        draw_sample({"image": image}, [])
