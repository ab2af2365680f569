from collections.abc import Sequence

import pytest
import torch
from torch import nn

import cvkit
from cvkit.builder import build
from cvkit.errors import ConfigError, MissingArgumentError, UnknownArgumentError, ValueTypeError
from cvkit.registry import BACKBONES, HEADS, MODELS, NECKS, Registry
from cvkit.structures import FeatureSpec

BUILT: list[str] = []


class RecordingBackbone(nn.Module):
    def __init__(self, width: int = 8, out_indices: tuple[int, ...] = (0, 1)) -> None:
        super().__init__()
        BUILT.append("backbone")
        self.width = width
        self.out_indices = out_indices
        self.feature_info = [FeatureSpec(width * 2**i, 4 * 2**i) for i in out_indices]


class RecordingNeck(nn.Module):
    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: list[int] | None = None,
        out_channels: int = 16,
    ) -> None:
        super().__init__()
        BUILT.append("neck")
        self.in_channels = list(in_channels)
        self.in_strides = in_strides
        self.feature_info = [FeatureSpec(out_channels, 8)]


class RecordingHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, scale: float = 1.0) -> None:
        super().__init__()
        BUILT.append("head")
        self.in_channels, self.num_classes, self.scale = in_channels, num_classes, scale


class Task(nn.Module):
    def __init__(self, backbone: nn.Module, neck: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head


def _cfg(**head):
    return {
        "type": "tests.test_builder:Task",
        "backbone": {"type": "tests.test_builder:RecordingBackbone", "width": 4},
        "neck": {"type": "tests.test_builder:RecordingNeck"},
        "head": {"type": "tests.test_builder:RecordingHead", "num_classes": 3, **head},
    }


def test_builds_bottom_up_and_wires_in_channels_from_feature_info():
    BUILT.clear()
    task = build(_cfg())
    assert BUILT == ["backbone", "neck", "head"]
    assert task.neck.in_channels == [4, 8]  # Sequence[int] gets every map's channels
    assert task.neck.in_strides == [4, 8]
    assert task.head.in_channels == 16  # int gets the last map's channels


def test_every_key_is_checked_before_anything_is_built():
    BUILT.clear()
    with pytest.raises(UnknownArgumentError) as err:
        build(_cfg(num_clases=3))
    assert BUILT == []  # the backbone was not constructed either
    assert err.value.where == "head.num_clases"
    assert "did you mean 'num_classes'?" in str(err.value)


def test_values_are_checked_and_converted_to_the_annotation():
    head = build(
        {"type": "tests.test_builder:RecordingHead", "in_channels": 2, "num_classes": 3, "scale": 2}
    )
    assert isinstance(head.scale, float) and head.scale == 2.0
    bb = build({"type": "tests.test_builder:RecordingBackbone", "out_indices": [0]})
    assert bb.out_indices == (0,)  # YAML lists become tuples where a tuple is asked for
    with pytest.raises(ValueTypeError, match=r"expected int, got str 'x'"):
        build({"type": "tests.test_builder:RecordingBackbone", "width": "x"})
    with pytest.raises(ValueTypeError, match="expected int, got bool"):
        build({"type": "tests.test_builder:RecordingBackbone", "width": True})


def test_missing_required_argument_and_unwirable_in_channels():
    with pytest.raises(MissingArgumentError, match="missing the required argument 'num_classes'"):
        build({"type": "tests.test_builder:RecordingHead", "in_channels": 2})
    cfg = {
        "type": "tests.test_builder:Task",
        "backbone": {"type": "torch.nn:Identity"},
        "neck": {"type": "tests.test_builder:RecordingNeck"},
        "head": {"type": "tests.test_builder:RecordingHead", "num_classes": 2},
    }
    with pytest.raises(MissingArgumentError, match="needs 'in_channels'"):
        build(cfg)


def test_nested_component_type_must_fit_the_annotation():
    cfg = {
        "type": "cvkit.models.tasks.classifier:ImageClassifier",
        "backbone": {"type": "TimmBackbone", "name": "resnet18"},
        "neck": {"type": "GlobalPool"},
        "head": {"type": "ClsHead", "num_classes": 2},
        "preprocessor": {"type": "torch.nn:Identity"},
    }
    with pytest.raises(ValueTypeError, match=r"expected Preprocessor \| None, got a Identity"):
        build(cfg, MODELS)


def test_argument_name_picks_the_registry():
    with pytest.raises(ConfigError, match="'TimmBackbone' is not a registered neck"):
        build(
            {
                "type": "ImageClassifier",
                "backbone": {"type": "TimmBackbone", "name": "resnet18"},
                "neck": {"type": "TimmBackbone", "name": "resnet18"},
                "head": {"type": "ClsHead", "num_classes": 2},
            },
            MODELS,
        )


def test_constructor_value_errors_become_config_errors_with_the_path():
    with pytest.raises(ConfigError) as err:
        build({"type": "ClsHead", "in_channels": 4, "num_classes": 0}, HEADS, path="model.head")
    assert err.value.where == "model.head"
    assert "num_classes must be at least 1" in str(err.value)
    assert isinstance(err.value.__cause__, ValueError)


def test_build_with_a_registry_and_defaults():
    head = build({"type": "ClsHead", "in_channels": 4}, HEADS, num_classes=5)
    assert head.fc.out_features == 5
    neck = build({"type": "GlobalPool", "in_channels": [3, 7]}, NECKS)
    assert neck([torch.zeros(1, 3, 2, 2), torch.ones(1, 7, 2, 2)]).shape == (1, 7)


def test_classifier_from_registry_parts_runs():
    model = cvkit.build(
        {
            "type": "ImageClassifier",
            "backbone": {"type": "TimmBackbone", "name": "resnet18"},
            "neck": {"type": "GlobalPool"},
            "head": {"type": "ClsHead", "num_classes": 4},
        }
    )
    assert model.head.in_channels == 512
    out = model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert out.shape == (2, 4)


def test_fresh_registry_components_build_too():
    reg = Registry("widget")

    @reg.register()
    class Widget:
        def __init__(self, size: int = 1) -> None:
            self.size = size

    assert build({"type": "Widget", "size": 3}, reg).size == 3
    assert BACKBONES.get("TimmBackbone")  # the global registries are untouched


def test_fixed_length_tuple_values_are_checked_in_place():
    from cvkit.config.typecheck import check_value

    assert check_value([10, 10, 5, 5], tuple[float, float, float, float], "w") == (
        10.0,
        10.0,
        5.0,
        5.0,
    )
    with pytest.raises(ValueTypeError):
        check_value([1, "x"], tuple[int, int], "w")
