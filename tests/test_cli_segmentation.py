"""Segmentation through the command line: train, eval, predict, on a tiny shapes dataset."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

CONFIG = """
model:
  type: Segmenter
  backbone: {type: TinyNet, width: 8, out_indices: [1, 2, 3]}
  head: {type: FCNHead, num_classes: auto, variant: 8s, channels: 16}
  aux_head: {type: FCNHead, in_index: -2}  # num_classes left out: from the data too
  preprocessor: {type: Preprocessor, size_divisor: 16, pad_to: 160}
data:
  train: {type: ShapesSegmentation, split: train, num_images: 8, image_size: 128}
  val: {type: ShapesSegmentation, split: val, num_images: 4, image_size: 128}
  batch_size: 4
  num_workers: 0
train: {epochs: 1, max_steps: 2, optimizer: {type: AdamW, lr: 1.0e-3}, tensorboard: false}
run_dir: runs
name: seg
"""
CLASSES = ["background", "circle", "square", "triangle"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seg")
    (folder / "c.yaml").write_text(CONFIG)
    env = {"CVKIT_CACHE": str(folder / "cache")}
    out = run_cli("train", "c.yaml", cwd=folder, env=env)
    assert out.returncode == 0, out.stderr
    for key in ("head", "aux_head"):
        assert f"model.{key}.num_classes: 4 (auto, from data.train's classes)" in out.stdout
    return folder, env, out.stdout


def test_train_logs_miou_and_writes_the_report_and_a_picture(trained):
    folder, _, stdout = trained
    eval_line = next(
        line
        for line in stdout.splitlines()
        if line.startswith("epoch 1/1 step 2") and "mIoU" in line
    )
    assert "mIoU" in eval_line and "pixel_acc" in eval_line and "val_loss" in eval_line
    run = folder / "runs" / "seg"
    report = json.loads((run / "eval.json").read_text())
    assert 0.0 <= report["metrics"]["mIoU"] <= 1.0
    assert set(report["per_class"]) == set(CLASSES)
    assert all("IoU" in v for v in report["per_class"].values())
    assert (run / "predictions.png").stat().st_size > 1000


def test_eval_and_predict_with_the_checkpoint(trained):
    folder, env, _ = trained
    out = run_cli(
        "eval", "c.yaml", "--checkpoint", "runs/seg/last.pt", "--out", "ev", cwd=folder, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "mIoU" in out.stdout
    assert "mIoU" in json.loads((folder / "ev" / "eval.json").read_text())["metrics"]

    images = next((folder / "cache").rglob("val-*")) / "images"  # a folder of 4 images
    args = ["predict", "c.yaml", str(images), "--checkpoint", "runs/seg/last.pt"]
    out = run_cli(*args, "--out", "pred", "--json", cwd=folder, env=env)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert len(results) == 4
    for result, image in zip(results, sorted(images.iterdir())):
        assert result["image"] == str(image)
        assert set(result["class_shares"]) <= set(CLASSES)
        assert sum(result["class_shares"].values()) == pytest.approx(1.0, abs=1e-3)
        mask = Image.open(folder / result["mask"])
        assert mask.mode == "P"  # colours in a viewer, indices when read
        with Image.open(image) as picture:
            assert mask.size == picture.size
        values = np.asarray(mask)
        assert values.dtype == np.uint8 and values.max() < len(CLASSES)
        assert result["mask"] == f"pred/{image.stem}.png"
        assert result["overlay"] == f"pred/{image.stem}_overlay.jpg"
        assert (folder / result["overlay"]).stat().st_size > 500


def test_an_ignore_index_that_differs_from_the_data_stops_before_training(trained):
    folder, env, _ = trained
    out = run_cli("train", "c.yaml", "model.ignore_index=0", "name=ig", cwd=folder, env=env)
    assert out.returncode == 2
    assert (
        "data.train.ignore_index: data.train marks unlabelled pixels with 255 but "
        "model.ignore_index is 0" in out.stderr
    )
    assert "set model.ignore_index=255" in out.stderr
    assert not (folder / "runs" / "ig").exists()


def test_a_class_count_that_disagrees_with_the_data_names_the_key(trained):
    folder, env, _ = trained
    overrides = ["model.head.num_classes=5", "model.aux_head.num_classes=5"]
    out = run_cli("train", "c.yaml", *overrides, cwd=folder, env=env)
    assert out.returncode == 2
    assert "model.head.num_classes: the model has num_classes=5 but data.train has 4" in out.stderr
    assert "set model.head.num_classes=4" in out.stderr


def test_export_to_onnx_then_predict_and_eval_from_it_as_from_the_checkpoint(trained):
    folder, env, _ = trained
    out = run_cli("export", "runs/seg/last.pt", "--out", "seg.onnx", cwd=folder, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("  checked ") == 3 and "mask: " in out.stdout
    images = next((folder / "cache").rglob("val-*")) / "images"
    want = json.loads(
        run_cli("predict", "c.yaml", str(images), "--checkpoint", "runs/seg/last.pt",
                "--out", "ckpt", "--json", cwd=folder, env=env).stdout
    )  # fmt: skip
    out = run_cli("predict", "seg.onnx", str(images), "--out", "onnx", "--json", cwd=folder)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert [r["image"] for r in got] == [r["image"] for r in want] and len(got) == 4
    for g, w in zip(got, want):
        eager, exported = (np.asarray(Image.open(folder / r["mask"])) for r in (w, g))
        assert exported.shape == eager.shape and (exported == eager).mean() >= 0.999
        assert g["overlay"].startswith("onnx/")
    miou = {}
    for name in ("runs/seg/last.pt", "seg.onnx"):
        out = run_cli("eval", "c.yaml", "--checkpoint", name, "--out", "ev_" + name[-4:],
                      cwd=folder, env=env)  # fmt: skip
        assert out.returncode == 0, out.stderr
        miou[name] = json.loads((folder / ("ev_" + name[-4:]) / "eval.json").read_text())
    a, b = (m["metrics"]["mIoU"] for m in miou.values())
    assert abs(a - b) <= 0.001
