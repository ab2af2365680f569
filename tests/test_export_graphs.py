"""The exportable graphs in PyTorch: fixed-shape post-processing against brute-force
references, and every task's graph against its eager model's predict (no exporter here;
test_export.py exports them)."""

from __future__ import annotations

import pytest
import torch
from timm.layers import Conv2dSame
from torchvision.ops import MultiScaleRoIAlign

import cvkit
from cvkit.models.deploy import deploy_graph
from cvkit.models.deploy.postprocess import best_detections, kept_by_nms, top_k_padded
from cvkit.models.deploy.roi_pooling import pyramid_roi_align
from cvkit.models.deploy.same_padding import ConstantSamePadConv2d, traceable
from cvkit.ops import batched_nms
from cvkit.registry import MODELS

# Tiny models of every exportable kind; the head weights are perturbed so scores spread
# (a fresh detector scores every anchor near its prior, and ties make orders arbitrary).
RETINANET = {
    "type": "RetinaNet",
    "backbone": {"type": "TinyNet", "width": 8, "out_indices": [1, 2, 3]},
    "neck": {"type": "FPN", "out_channels": 16, "extra_levels": 0},
    "head": {"type": "RetinaHead", "num_classes": 3, "num_convs": 1, "feat_channels": 16},
    "anchor_generator": {
        "type": "AnchorGenerator",
        "sizes": [[12], [24], [48]],
        "scales": [1, 1.3, 1.6],
    },
    "preprocessor": {"type": "Preprocessor", "size_divisor": 16},
}
FASTER_RCNN = {
    "type": "FasterRCNN",
    "backbone": {"type": "TinyNet", "width": 8, "out_indices": [0, 1, 2, 3]},
    "neck": {"type": "FPN", "out_channels": 16, "extra_levels": 1, "extra_type": "maxpool"},
    "rpn_head": {
        "type": "RPNHead",
        "anchor_generator": {"type": "AnchorGenerator", "sizes": [[8], [16], [32], [64], [128]]},
        "pre_nms_top_n": [300, 200],
        "post_nms_top_n": [300, 100],
    },
    "roi_head": {
        "type": "RoIHead",
        "num_classes": 3,
        "roi_strides": [2, 4, 8, 16],
        "fc_channels": 32,
    },
    "preprocessor": {"type": "Preprocessor", "size_divisor": 32},
}
CLASSIFIER = {
    "type": "ImageClassifier",
    "backbone": {"type": "TinyNet", "width": 4},
    "neck": {"type": "GlobalPool"},
    "head": {"type": "ClsHead", "num_classes": 10},
    "preprocessor": {"type": "Preprocessor", "input_size": 32},
}
SEGMENTER = {
    "type": "Segmenter",
    "backbone": {"type": "TinyNet", "width": 8, "out_indices": [1, 2, 3]},
    "head": {"type": "FCNHead", "num_classes": 4, "channels": 16},
}
MODELS_BY_NAME = {
    "retinanet": RETINANET,
    "faster_rcnn": FASTER_RCNN,
    "classifier": CLASSIFIER,
    "segmenter": SEGMENTER,
}


def perturbed(spec: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = cvkit.build(spec, MODELS).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "head" in name:
                p.add_(torch.randn_like(p) * 0.3)
    return model


def photo(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth random uint8 image ``[1, 3, h, w]`` (blurred noise: structure at every scale)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, max(h // 8, 1), max(w // 8, 1), generator=g)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic")
    x = x + 0.1 * torch.rand(1, 3, h, w, generator=g)
    return (x.clamp(0, 1) * 255).to(torch.uint8)


def test_top_k_padded_pads_short_rows_with_the_fill_and_in_range_indices():
    scores = torch.tensor([[0.2, 0.9, 0.5]])
    values, index = top_k_padded(scores, 5, -1.0)
    assert values[0].tolist() == pytest.approx([0.9, 0.5, 0.2, -1.0, -1.0])
    assert index[0, :3].tolist() == [1, 2, 0] and (index < 3).all()


def test_kept_by_nms_equals_batched_nms_image_by_image():
    g = torch.Generator().manual_seed(1)
    b, n = 3, 200
    xy = torch.rand(b, n, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(b, n, 2, generator=g) * 40], -1)
    scores = torch.rand(b, n, generator=g)
    groups = torch.randint(0, 4, (b, n), generator=g)
    kept = kept_by_nms(boxes, scores, groups, 0.5)
    for i in range(b):
        expected = torch.zeros(n, dtype=torch.bool)
        expected[batched_nms(boxes[i], scores[i], groups[i], 0.5)] = True
        assert torch.equal(kept[i], expected)


def test_best_detections_keeps_the_best_valid_rows_and_zero_pads():
    boxes = torch.arange(24, dtype=torch.float32).view(1, 6, 4)
    scores = torch.tensor([[0.1, 0.8, 0.3, 0.9, 0.5, 0.7]])
    labels = torch.tensor([[0, 1, 2, 0, 1, 2]])
    valid = torch.tensor([[True, True, False, False, True, True]])
    det = best_detections(boxes, scores, labels, valid, 6)
    assert det.num_detections.tolist() == [4]
    assert det.scores[0].tolist() == pytest.approx([0.8, 0.7, 0.5, 0.1, 0.0, 0.0])
    assert det.labels[0, :4].tolist() == [1, 2, 1, 0]
    assert torch.equal(det.boxes[0, 0], boxes[0, 1]) and not det.boxes[0, 4:].any()


def test_pyramid_roi_align_equals_torchvision_multiscale_roi_align():
    g = torch.Generator().manual_seed(2)
    strides = (4, 8, 16, 32)
    feats = [torch.rand(2, 5, 256 // s, 192 // s, generator=g) for s in strides]
    xy = torch.rand(2, 60, 2, generator=g) * 150
    rois = torch.cat([xy, xy + 2 + torch.rand(2, 60, 2, generator=g) * 120], -1)
    pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    expected = pooler(dict(zip("0123", feats)), list(rois), [(256, 192)] * 2)
    image = torch.arange(2).repeat_interleave(60)
    found = pyramid_roi_align(feats, strides, rois.reshape(-1, 4), image, 7, 2)
    torch.testing.assert_close(found, expected)


@pytest.mark.parametrize("name", list(MODELS_BY_NAME))
@pytest.mark.parametrize("size", [(96, 128), (77, 101)])
def test_every_graph_gives_what_its_eager_model_predicts(name, size):
    model = perturbed(MODELS_BY_NAME[name])
    graph = deploy_graph(model)
    images = photo(*size)
    inputs = graph.inputs_for(images, (2 * size[0], 3 * size[1] // 2))  # files were larger
    with torch.no_grad():
        out = graph(*inputs)
        expected = graph.eager_outputs(*inputs)
        raw = graph.eager_raw(images)
    n = len(graph.output_names)
    for got, want in zip(out[n:], raw):
        torch.testing.assert_close(got, want)
    if graph.task == "detection":
        assert int(expected[3][0]) > 10  # the perturbed heads do detect
    for got, want in zip(out[:n], expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kernel, stride, dilation", [(3, 2, 1), (5, 2, 1), (3, 1, 2), (4, 2, 1)])
def test_constant_same_padding_equals_timm_conv2d_same_at_multiples_of_the_stride(
    kernel, stride, dilation
):
    torch.manual_seed(0)
    conv = Conv2dSame(3, 4, kernel, stride, dilation=dilation)
    constant = ConstantSamePadConv2d(conv)
    for h, w in ((32, 48), (6, 10), (stride, 2 * stride)):
        x = torch.randn(2, 3, h, w)
        torch.testing.assert_close(constant(x), conv(x))


def test_traceable_swaps_same_padding_only_where_every_size_is_a_multiple_of_the_stride():
    spec = {**SEGMENTER, "preprocessor": {"type": "Preprocessor", "size_divisor": 32}}
    spec["backbone"] = {
        "type": "TimmBackbone",
        "name": "tf_mobilenetv3_small_minimal_100",
        "out_indices": [2, 3, 4],
    }
    graph = deploy_graph(cvkit.build(spec, MODELS).eval())
    traced = traceable(graph)
    assert traced is not graph
    assert not any(isinstance(m, Conv2dSame) for m in traced.modules())
    assert any(isinstance(m, Conv2dSame) for m in graph.modules())  # the reference stays
    images = photo(77, 101)
    with torch.no_grad():
        for got, want in zip(traced(*graph.inputs_for(images)), graph(*graph.inputs_for(images))):
            torch.testing.assert_close(got, want)
    # padded to 16, not a multiple of the backbone's stride 32: the original is traced
    spec["preprocessor"] = {"type": "Preprocessor", "size_divisor": 16}
    graph = deploy_graph(cvkit.build(spec, MODELS).eval())
    assert traceable(graph) is graph


def test_a_model_of_an_unknown_kind_cannot_be_exported_and_says_how_to():
    with pytest.raises(ValueError, match="deploy_graph"):
        deploy_graph(torch.nn.Linear(2, 2))
