"""The task protocol and the task table: one forward for loss and predictions, one table for
batching, evaluation, reports and prediction, and clear errors for models that do not fit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cvkit
from cvkit.engine.tasks import Task, task_of
from cvkit.registry import MODELS, TASKS
from cvkit.structures import ClsBatch, SegBatch
from tests.conftest import run_cli


def _classifier() -> nn.Module:
    cfg = {
        "type": "ImageClassifier",
        "backbone": {"type": "TinyNet", "width": 4},
        "neck": {"type": "GlobalPool"},
        "head": {"type": "ClsHead", "num_classes": 3},
    }
    return cvkit.build(cfg, MODELS).eval()


def _segmenter() -> nn.Module:
    cfg = {
        "type": "Segmenter",
        "backbone": {"type": "TinyNet", "width": 4, "out_indices": [1, 2, 3]},
        "head": {"type": "FCNHead", "num_classes": 3},
    }
    return cvkit.build(cfg, MODELS).eval()


def _count_backbone_calls(model: nn.Module) -> list[int]:
    calls = [0]
    model.backbone.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_the_built_in_tasks_are_registered():
    assert {"classification", "detection", "segmentation"} <= set(TASKS.names())
    assert task_of(_classifier()).default_metric == "top1"
    assert task_of(_segmenter()).default_metric == "mIoU"


def test_classifier_loss_and_predict_is_one_forward_with_the_same_results():
    torch.manual_seed(0)
    model = _classifier()
    batch = ClsBatch(torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8), torch.arange(4) % 3)
    losses, predictions = model.loss(batch), model.predict(batch)
    calls = _count_backbone_calls(model)
    both_losses, both_predictions = model.loss_and_predict(batch)
    assert calls[0] == 1
    assert torch.equal(both_losses["loss_cls"], losses["loss_cls"])
    for a, b in zip(both_predictions, predictions):
        assert torch.equal(a.probs, b.probs) and a.label == b.label and a.score == b.score


def test_segmenter_loss_and_predict_is_one_forward_with_the_same_results():
    torch.manual_seed(0)
    model = _segmenter()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    masks = torch.randint(0, 3, (2, 32, 32))
    batch = SegBatch(images, masks, [(32, 32), (24, 28)], [(32, 32), (48, 40)], ["a", "b"])
    losses, predictions = model.loss(batch), model.predict(batch)
    calls = _count_backbone_calls(model)
    both_losses, both_predictions = model.loss_and_predict(batch)
    assert calls[0] == 1
    assert torch.equal(both_losses["loss_seg"], losses["loss_seg"])
    for a, b in zip(both_predictions, predictions):
        assert torch.equal(a.mask, b.mask) and a.mask.shape == b.mask.shape


class _Keypoints(nn.Module):
    task = "keypoints"

    @property
    def num_classes(self) -> int:
        return 1

    def loss(self, batch):
        return {}

    def predict(self, batch):
        return []

    def loss_and_predict(self, batch):
        return {}, []


def test_an_unknown_task_is_a_config_error_that_says_how_to_add_one():
    with pytest.raises(cvkit.ConfigError) as info:
        task_of(_Keypoints())
    text = str(info.value)
    assert "_Keypoints is a 'keypoints' model, and no task of that name is registered" in text
    assert "classification, detection, segmentation" in text
    assert "@TASKS.register('keypoints')" in text


def test_a_model_without_the_protocol_is_a_config_error_that_names_the_method():
    class OldStyle(nn.Module):
        task = "classification"

        def loss(self, batch):
            return {}

        def predict(self, batch):
            return []

    with pytest.raises(cvkit.ConfigError, match=r"OldStyle has no loss_and_predict; the engine"):
        task_of(OldStyle())


def test_a_plugin_adds_a_task_by_registering_its_entry():
    class KeypointTask(Task):
        default_metric = "AP"

    TASKS.add(KeypointTask, "keypoints")
    try:
        task = task_of(_Keypoints())
        assert isinstance(task, KeypointTask) and task.name == "keypoints"
    finally:
        TASKS._entries.pop("keypoints")


PLUGIN = """
import torch
from torch import nn

from cvkit.registry import MODELS


@MODELS.register()
class PoseNet(nn.Module):
    task = "pose"

    def __init__(self, num_classes: int = 1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scale = nn.Parameter(torch.ones(1))
"""

CONFIG = """
imports: [./pose_plugin.py]
model: {type: PoseNet}
data:
  train: {type: DigitsClassification, split: train, image_size: 16}
  num_workers: 0
train: {epochs: 1, tensorboard: false}
run_dir: runs
"""


def test_cli_a_plugin_model_with_an_unknown_task_exits_2_with_one_message(tmp_path):
    (tmp_path / "pose_plugin.py").write_text(PLUGIN)
    (tmp_path / "c.yaml").write_text(CONFIG)
    out = run_cli("train", "c.yaml", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "PoseNet is a 'pose' model, and no task of that name is registered" in out.stderr
    assert "Traceback" not in out.stderr
