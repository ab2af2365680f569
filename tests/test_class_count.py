"""`num_classes: auto` (or left out where the class has no default): which keys the data
fills, what a run prints and stores, eval/predict filling it from the checkpoint, the errors."""

import pytest

from cvkit.config import from_dict
from cvkit.config.class_count import (
    auto_class_keys,
    fill_class_count,
    fill_from_classes,
    with_check_count,
)
from cvkit.engine import run
from cvkit.errors import ConfigError
from tests.conftest import run_cli


def test_auto_and_left_out_required_counts_are_found_at_any_depth():
    cfg = from_dict(
        {
            "model": {
                "type": "FasterRCNN",
                "backbone": {"type": "TinyNet"},
                "neck": {"type": "FPN", "out_channels": 16},
                "rpn_head": {"type": "RPNHead"},
                "roi_head": {"type": "RoIHead"},  # required, left out
            }
        }
    )
    assert auto_class_keys(cfg) == ["model.roi_head.num_classes"]
    seg = from_dict(
        {
            "model": {
                "type": "Segmenter",
                "backbone": {"type": "TinyNet"},
                "head": {"type": "FCNHead", "num_classes": "auto"},
                "aux_head": {"type": "FCNHead", "num_classes": 4},  # stated: kept
            }
        }
    )
    assert auto_class_keys(seg) == ["model.head.num_classes"]
    assert fill_class_count(seg, 7, "the test") == ["model.head.num_classes"]
    assert seg.get("model.head.num_classes") == 7 and seg.get("model.aux_head.num_classes") == 4
    assert seg.describe("model.head.num_classes") == "the test"


def test_the_check_copy_counts_one_and_leaves_the_config_alone():
    spec = {"type": "ImageClassifier", "head": {"type": "ClsHead", "num_classes": "auto"}}
    assert with_check_count(spec)["head"]["num_classes"] == 1
    assert spec["head"]["num_classes"] == "auto"


def test_a_word_other_than_auto_is_checked_as_a_number():
    head = {"type": "ClsHead", "num_classes": "ten"}
    model = {"type": "ImageClassifier", "backbone": {"type": "TinyNet"}, "head": head}
    cfg = from_dict({"model": {**model, "neck": {"type": "GlobalPool"}}})
    assert auto_class_keys(cfg) == []
    with pytest.raises(ConfigError) as err:
        run.validate(cfg)
    assert "model.head.num_classes: expected int, got str 'ten'" in str(err.value)


def test_a_source_without_class_names_cannot_fill_auto():
    cfg = from_dict({"model": {"type": "ImageClassifier", "head": {"num_classes": "auto"}}})
    with pytest.raises(ConfigError) as err:
        fill_from_classes(cfg, [], "data.train (Unnamed)")
    assert str(err.value).splitlines() == [
        "model.head.num_classes: model.head.num_classes is auto, but data.train (Unnamed) has "
        "no class names to count",
        "  set model.head.num_classes to the number of classes",
    ]
    assert fill_from_classes(from_dict({"model": {"type": "ImageClassifier"}}), [], "x") == []


CONFIG = """
model:
  type: ImageClassifier
  backbone: {type: TinyNet, width: 4}
  neck: {type: GlobalPool}
  head: {type: ClsHead, num_classes: auto}
  preprocessor: {type: Preprocessor, input_size: 16}
data:
  train: {type: DigitsClassification, split: train, per_class: 10, image_size: 16}
  val: {type: DigitsClassification, split: val, per_class: 3, image_size: 16}
  batch_size: 50
  num_workers: 0
train: {epochs: 1, max_steps: 1, optimizer: {type: SGD, lr: 0.1}, tensorboard: false}
eval: {plots: false}
run_dir: runs
name: auto
"""


def test_a_run_fills_prints_and_stores_the_count_and_eval_predict_reuse_it(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    out = run_cli("config", "print", "c.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "num_classes: auto" in out.stdout  # filled only when there is data to count
    out = run_cli("train", "c.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "10 classes: 0: 0, 1: 1, 2: 2" in out.stdout
    assert "model.head.num_classes: 10 (auto, from data.train's classes)" in out.stdout
    assert "num_classes: 10" in (tmp_path / "runs" / "auto" / "config.yaml").read_text()
    out = run_cli("eval", "c.yaml", "--checkpoint", "runs/auto/last.pt", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "top1" in out.stdout
