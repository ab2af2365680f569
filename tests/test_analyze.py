"""`cvkit analyze`: per-module FLOPs against hand counts, the pinned ResNet-50 GMACs and the
parameter counts of the R50 configs against torchvision's equivalent models."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cvkit.config import load_config
from cvkit.engine.analyze import analyze, render
from cvkit.errors import ConfigError
from cvkit.models.cost import measure, table
from tests.conftest import ROOT, TINY_CLASSIFIER
from tests.test_tools import tool

TINY_DETECTOR = """
model:
  type: RetinaNet
  backbone: {type: TinyNet, width: 8, out_indices: [1, 2, 3]}
  neck: {type: FPN, out_channels: 16, extra_levels: 0}
  head: {type: RetinaHead, num_classes: auto, num_convs: 1, feat_channels: 16, num_anchors: 1}
  anchor_generator:
    {type: AnchorGenerator, sizes: [[12], [24], [48]], scales: [1.0], aspect_ratios: [1.0]}
  preprocessor: {type: Preprocessor, size_divisor: 32}
data:
  val: {type: ShapesDetection, split: val, num_images: 6, image_size: 96}
"""


def test_flops_of_each_module_match_a_hand_count():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 5 * 6, 7)
    )
    x = torch.randn(2, 3, 5, 6)
    cost = measure(lambda: model(x), model, model, [tuple(x.shape)])
    conv = 2 * (3 * 3 * 3) * 8 * (5 * 6) * 2  # 2 FLOPs x (k*k*Cin) x Cout x H*W x batch
    linear = 2 * (8 * 5 * 6) * 7 * 2
    by_path = {layer.path: layer for layer in cost.layers}
    assert by_path["0"].flops == conv and by_path["3"].flops == linear
    assert by_path["1"].flops == 0 and cost.flops == by_path[""].flops == conv + linear
    assert cost.macs == (conv + linear) / 2
    assert by_path["0"].params == 3 * 3 * 3 * 8 + 8
    assert by_path["0"].output == "2x8x5x6" and by_path["3"].output == "2x7"
    assert cost.params == sum(p.numel() for p in model.parameters())
    text = table(cost, depth=1)
    assert "Conv2d" in text and "2x8x5x6" in text


def test_resnet50_classifier_is_torchvisions_4_09_gmacs():
    """torchvision's metadata gives ResNet-50 4.09 GFLOPS, meaning multiply-adds (GMACs)."""
    cfg = load_config("cvkit://_base_/models/resnet50_classifier.yaml")
    analysis = analyze(cfg, input_size=(224, 224))
    assert abs(analysis.costs[0].macs / 1e9 - 4.09) / 4.09 < 0.01
    assert analysis.costs[0].params == 25_557_032  # torchvision's resnet50
    text = render(analysis, depth=3)
    assert "4.089 GMACs" in text and "FLOPs = 2 x multiply-adds" in text
    assert "backbone.model.layer4" in text


@pytest.mark.slow
def test_tools_analyze_prints_the_table(write):
    """tools/analyze.py is `cvkit analyze`: its help and a tiny run, through the script."""
    assert "usage: cvkit analyze" in tool("analyze.py", "--help", cwd=ROOT).stdout
    config = write("tiny.yaml", TINY_CLASSIFIER)
    out = tool("analyze.py", str(config), "--input-size", "32", "32", "--depth", "1", cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "ImageClassifier (classification), input 1x3x32x32 uint8" in out.stdout
    assert "GMACs" in out.stdout and "not counted: no other operators ran" in out.stdout


def _torchvision_retinanet() -> nn.Module:
    from torchvision.models import resnet50
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    # P6 from C5 (2048 channels), as in the paper and cvkit's `extra_from: input`
    body = _resnet_fpn_extractor(resnet50(), 5, [2, 3, 4], LastLevelP6P7(2048, 256))
    return RetinaNet(body, num_classes=80)


def _torchvision_faster_rcnn() -> nn.Module:
    from torchvision.models import resnet50
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

    return FasterRCNN(_resnet_fpn_extractor(resnet50(), 5), num_classes=81)  # 80 + background


def _torchvision_fcn() -> nn.Module:
    from torchvision.models.segmentation import fcn_resnet50

    return fcn_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)


# Both sides use trainable batch norm (torchvision's detection builders default to
# FrozenBatchNorm2d, whose weights are buffers, not parameters). torchvision's Faster R-CNN
# predictor also regresses a box for the background class, 4 x (1024 + 1) parameters that
# cvkit's RoIHead does not have.
@pytest.mark.parametrize(
    ("config", "reference", "difference"),
    [
        ("retinanet_r50_fpn.yaml", _torchvision_retinanet, 0),
        ("faster_rcnn_r50_fpn.yaml", _torchvision_faster_rcnn, -4 * (1024 + 1)),
        ("fcn_r50_d8.yaml", _torchvision_fcn, 0),
    ],
)
def test_r50_configs_have_torchvisions_parameter_counts(write, config, reference, difference):
    path = write("m.yaml", f"_base_: cvkit://_base_/models/{config}\n")
    analysis = analyze(load_config(str(path)), input_size=(256, 256))
    expected = sum(p.numel() for p in reference().parameters())
    assert analysis.costs[0].params == expected + difference


def test_detector_reports_the_spread_over_validation_images(write, tmp_path, monkeypatch):
    monkeypatch.setenv("CVKIT_CACHE", str(tmp_path / "cache"))
    analysis = analyze(load_config(str(write("det.yaml", TINY_DETECTOR))), num_images=4)
    assert sum(analysis.images) == len(analysis.input_sizes) == 4
    assert len(analysis.costs) >= 2  # the shapes images differ in size, so do their costs
    assert all(h % 32 == 0 and w % 32 == 0 for h, w in analysis.sizes)  # after the padding
    assert analysis.costs[0].uncounted.get("torchvision::nms", 0) >= 1
    text = render(analysis, depth=1)
    assert "not counted: torchvision::nms" in text
    assert "over 4 images of data.val" in text and "GFLOPs mean" in text
    per_image = analysis.flops_per_image()
    # each size is measured once; a larger padded input costs more
    by_area = sorted(zip([h * w for h, w in analysis.sizes], [c.flops for c in analysis.costs]))
    assert [f for _, f in by_area] == sorted(f for _, f in by_area)
    assert len(per_image) == 4


def test_auto_class_count_with_input_size_is_a_clear_error(write):
    cfg = load_config(str(write("det.yaml", TINY_DETECTOR)))
    with pytest.raises(
        ConfigError, match=r"model\.head\.num_classes is auto, and with --input-size"
    ):
        analyze(cfg, input_size=(64, 64))


def test_input_size_outside_pad_to_is_a_clear_error(write):
    text = TINY_DETECTOR.replace("size_divisor: 32}", "size_divisor: 32, pad_to: 96}")
    cfg = load_config(str(write("det.yaml", text)), ["model.head.num_classes=3"])
    with pytest.raises(ValueError, match="--input-size 128 128 is outside what the model takes"):
        analyze(cfg, input_size=(128, 128))


def test_json_lists_every_module(write):
    cfg = load_config(str(write("det.yaml", TINY_DETECTOR)), ["model.head.num_classes=3"])
    from cvkit.engine.analyze import to_json

    report = json.loads(json.dumps(to_json(analyze(cfg, input_size=(64, 96)))))
    paths = [layer["path"] for layer in report["sizes"][0]["layers"]]
    assert "backbone" in paths and "head" in paths
    assert report["flops_mean"] == report["sizes"][0]["flops"] > 0
