"""Issue 17: a backbone's and a neck's ``feature_info`` checked against one forward at build time.

A plugin backbone whose ``feature_info`` disagreed with what its ``forward`` returns used to
train until a head failed far away (``mat1 and mat2 shapes cannot be multiplied (64x96 and
72x10)``). ``build`` now runs the backbone -> neck chain once on a small zeros image and raises
a ``FeatureInfoError`` (a ``ConfigError``: the command line exits with 2) that names the
component (config path, ``type:``, the plugin it came from, its class's file) and says, map by
map, what ``feature_info`` says and what ``forward`` returned.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import cvkit.builder
import cvkit.cli
import cvkit.feature_check as feature_check
from cvkit.builder import build
from cvkit.config.load import load_config
from cvkit.errors import ConfigError, FeatureInfoError
from cvkit.registry import BACKBONES, MODELS, NECKS
from cvkit.structures import FeatureSpec
from tests.conftest import TINY_CLASSIFIER

PLUGIN = "plugin fake-vision"  # the source an entry point's distribution gives its components
THIS_FILE = str(Path(__file__).resolve())


class FcTwoMaps(nn.Module):
    """Two maps: 8 channels at stride 8, 16 channels at stride 16. ``feature_info`` is the
    class's ``claim``, which the liars below get wrong."""

    claim: tuple[FeatureSpec, ...] = (FeatureSpec(8, 8), FeatureSpec(16, 16))

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        self.c8 = nn.Conv2d(in_chans, 8, 3, stride=8, padding=1)
        self.c16 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.feature_info = list(self.claim)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = self.c8(x)
        return [a, self.c16(a)]


class FcChannelLiar(FcTwoMaps):
    claim = (FeatureSpec(8, 8), FeatureSpec(24, 16))  # the second map has 16 channels


class FcStrideLiar(FcTwoMaps):
    claim = (FeatureSpec(8, 8), FeatureSpec(16, 32))  # the second map is at stride 16


class FcCountLiar(FcTwoMaps):
    claim = (FeatureSpec(8, 8), FeatureSpec(16, 16), FeatureSpec(32, 32))  # returns two


class FcRaiser(FcTwoMaps):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise RuntimeError(f"FcRaiser wants 224x224 images, got {tuple(x.shape)}")


class FcDictNet(FcTwoMaps):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        a = self.c8(x)
        return {"c8": a, "c16": self.c16(a)}


class FcLyingPool(nn.Module):
    """A plugin neck: pools the last map, and says it has twice its channels."""

    def __init__(self, in_channels: list[int]) -> None:
        super().__init__()
        self.feature_info = [FeatureSpec(2 * in_channels[-1], 0)]

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return feats[-1].mean(dim=(2, 3))


class FcStatefulNet(FcTwoMaps):
    """What a check must not disturb: batch-norm statistics (in train mode), a buffer its
    forward changes in place, a random number drawn in forward, a submodule kept in eval mode
    (as ``norm_eval`` does); counts its forwards."""

    forwards = 0
    seen: torch.Tensor

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__(in_chans)
        self.bn = nn.BatchNorm2d(8)
        self.frozen_bn = nn.BatchNorm2d(16).eval()
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        type(self).forwards += 1
        self.seen += 1
        a = self.bn(self.c8(x)) + 0 * torch.rand(())
        return [a, self.frozen_bn(self.c16(a))]


class FcCountingFPN(nn.Module):
    forwards = 0

    def __init__(self, in_channels: list[int], in_strides: list[int]) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, 4, 1) for c in in_channels)
        self.feature_info = [FeatureSpec(4, s) for s in in_strides]

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        type(self).forwards += 1
        return [conv(f) for conv, f in zip(self.lateral, feats)]


PLUGIN_BACKBONES: list[type[nn.Module]] = [
    FcTwoMaps,
    FcChannelLiar,
    FcStrideLiar,
    FcCountLiar,
    FcRaiser,
    FcDictNet,
    FcStatefulNet,
]
PLUGIN_NECKS: list[type[nn.Module]] = [FcLyingPool, FcCountingFPN]


@pytest.fixture(scope="module", autouse=True)
def plugin_components() -> Iterator[None]:
    """Register the classes above as a plugin's would be, and take them out afterwards."""
    for cls in PLUGIN_BACKBONES:
        BACKBONES.add(cls, source=PLUGIN)
    for cls in PLUGIN_NECKS:
        NECKS.add(cls, source=PLUGIN)
    yield
    for cls in PLUGIN_BACKBONES:
        BACKBONES._entries.pop(cls.__name__)
    for cls in PLUGIN_NECKS:
        NECKS._entries.pop(cls.__name__)


def classifier(backbone: str | dict, neck: str = "GlobalPool") -> dict:
    if isinstance(backbone, str):
        backbone = {"type": backbone}
    return {
        "type": "ImageClassifier",
        "backbone": backbone,
        "neck": {"type": neck},
        "head": {"type": "ClsHead", "num_classes": 10},
    }


def build_error(cfg: dict) -> FeatureInfoError:
    with pytest.raises(FeatureInfoError) as info:
        build(cfg, MODELS, path="model")
    assert isinstance(info.value, ConfigError)  # the command line's exit code 2
    return info.value


def line_of(cls: type, text: str) -> str:
    """``file:line`` of the line of ``cls``'s source that contains ``text``."""
    import inspect

    lines, start = inspect.getsourcelines(cls)
    return f"{THIS_FILE}:{start + next(i for i, s in enumerate(lines) if text in s)}"


def test_a_truthful_plugin_backbone_builds():
    model = build(classifier("FcTwoMaps"), MODELS, path="model")
    assert model.head.fc.in_features == 16


def test_channels_that_differ_name_the_component_its_plugin_and_each_map():
    err = build_error(classifier("FcChannelLiar"))
    assert err.where == "model.backbone"
    assert str(err).splitlines() == [
        "model.backbone: backbone `type: FcChannelLiar` (from plugin fake-vision): feature_info "
        "does not match what forward returned, for a zeros image [1, 3, 32, 32] (build-time "
        "check of feature_info)",
        "  map 0: feature_info[0] FeatureSpec(channels=8, stride=8) -> [1, 8, 4, 4]; forward "
        "returned [1, 8, 4, 4]: ok",
        "  map 1: feature_info[1] FeatureSpec(channels=24, stride=16) -> [1, 24, 2, 2]; "
        "forward returned [1, 16, 2, 2]: 16 channels, not 24",
        f"  fix FcChannelLiar ({line_of(FcChannelLiar, 'class')}): feature_info must list one "
        "FeatureSpec(channels, stride) per map its forward returns, in the same order (stride "
        "= input size / map size; 0 for a pooled [B, C] vector), or forward must return what "
        "it lists; the builder wires the next component's in_channels and in_strides from it",
    ]


def test_a_stride_that_differs_says_which_stride_the_map_has():
    err = build_error(classifier("FcStrideLiar"))
    # twice the largest stride claimed: a map at half or twice its stride cannot pass
    assert "for a zeros image [1, 3, 64, 64]" in str(err)
    assert (
        "map 1: feature_info[1] FeatureSpec(channels=16, stride=32) -> [1, 16, 2, 2]; forward "
        "returned [1, 16, 4, 4]: 4x4 is stride 16 for a 64x64 input, not 32"
    ) in str(err)
    assert "map 0: feature_info[0] FeatureSpec(channels=8, stride=8) -> [1, 8, 8, 8]; " in str(err)


def test_a_number_of_maps_that_differs_is_counted_and_the_missing_map_named():
    text = str(build_error(classifier("FcCountLiar")))
    assert "backbone `type: FcCountLiar` (from plugin fake-vision): " in text
    assert (
        "feature_info does not match what forward returned (feature_info lists 3 maps, "
        "forward returned 2), for a zeros image [1, 3, 64, 64]"
    ) in text
    assert (
        "map 2: feature_info[2] FeatureSpec(channels=32, stride=32) -> [1, 32, 2, 2]; forward "
        "returned nothing: missing"
    ) in text


def test_a_forward_that_raises_is_reported_with_the_component_the_plugin_and_the_line():
    err = build_error(classifier("FcRaiser"))
    assert isinstance(err.__cause__, RuntimeError)  # the original, with its traceback
    assert str(err).splitlines() == [
        "model.backbone: backbone `type: FcRaiser` (from plugin fake-vision): forward raised "
        "RuntimeError: FcRaiser wants 224x224 images, got (1, 3, 32, 32), for a zeros image "
        "[1, 3, 32, 32] (build-time check of feature_info)",
        f'  raised at {line_of(FcRaiser, "raise")}, in forward: raise RuntimeError(f"FcRaiser '
        'wants 224x224 images, got {tuple(x.shape)}")',
        f"  fix FcRaiser.forward ({line_of(FcRaiser, 'class')}): the model calls it the same "
        "way (Tensor[B, in_chans, H, W] for H and W multiples of its largest stride), and it "
        "must return one [B, C, H/stride, W/stride] map per feature_info entry",
    ]


def test_a_forward_that_returns_no_list_of_maps():
    text = str(build_error(classifier("FcDictNet")))
    assert "backbone `type: FcDictNet` (from plugin fake-vision): " in text
    assert (
        "forward returned a dict, not a list or tuple of [B, C, H, W] tensors, for a zeros "
        "image [1, 3, 32, 32]"
    ) in text
    assert (
        "feature_info says 2 map(s): FeatureSpec(channels=8, stride=8) -> [1, 8, 4, 4]; "
        "FeatureSpec(channels=16, stride=16) -> [1, 16, 2, 2]"
    ) in text


def test_a_neck_is_fed_the_backbones_maps_and_a_global_stride_0_is_a_vector():
    err = build_error(classifier("FcTwoMaps", neck="FcLyingPool"))
    assert err.where == "model.neck"
    text = str(err)
    assert "model.neck: neck `type: FcLyingPool` (from plugin fake-vision): " in text
    assert "for the backbone's maps [1, 8, 4, 4], [1, 16, 2, 2]" in text
    assert (
        "map 0: feature_info[0] FeatureSpec(channels=32, stride=0) -> [1, 32]; forward "
        "returned [1, 16]: 16 channels, not 32"
    ) in text


def test_a_neck_whose_config_sets_wrong_in_channels_is_named_with_its_config():
    cfg = {
        "type": "RetinaNet",
        "backbone": {"type": "TinyNet", "width": 4, "out_indices": [1, 2, 3]},
        "neck": {"type": "FPN", "in_channels": [8, 16, 99], "out_channels": 8},
        "head": {"type": "RetinaHead", "num_classes": 2, "feat_channels": 8, "num_convs": 1},
    }
    err = build_error(cfg)
    text = str(err)
    assert err.where == "model.neck"
    assert "model.neck: neck `type: FPN` (built into cvkit): forward raised RuntimeError: " in text
    assert "forward raised RuntimeError: " in text and "for the backbone's maps" in text
    assert "its in_channels/in_strides are set in the config: they must match" in text


def test_the_file_of_the_config_is_named(write):
    cfg = write("model.yaml", "model: " + repr(classifier("FcChannelLiar")).replace("'", '"'))
    config = load_config(str(cfg))
    with pytest.raises(FeatureInfoError) as info:
        build(config.data["model"], MODELS, path="model", describe=config.describe)
    assert str(info.value).splitlines()[-1] == f"  in {cfg}"


@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param(classifier({"type": "TinyNet", "width": 4}), id="classifier"),
        pytest.param(classifier({"type": "TinyNet", "width": 4, "in_chans": 1}), id="one-channel"),
        pytest.param(
            {
                "type": "RetinaNet",
                "backbone": {"type": "TinyNet", "width": 4, "out_indices": [1, 2, 3]},
                "neck": {"type": "FPN", "out_channels": 8, "extra_levels": 2},
                "head": {
                    "type": "RetinaHead",
                    "num_classes": 2,
                    "feat_channels": 8,
                    "num_convs": 1,
                },
            },
            id="retinanet",
        ),
        pytest.param(
            {
                "type": "FasterRCNN",
                "backbone": {"type": "TinyNet", "width": 4, "out_indices": [0, 1, 2]},
                "neck": {
                    "type": "FPN",
                    "out_channels": 8,
                    "extra_levels": 1,
                    "extra_type": "maxpool",
                },
                "rpn_head": {
                    "type": "RPNHead",
                    "anchor_generator": {
                        "type": "AnchorGenerator",
                        "sizes": [[16], [24], [32], [48]],
                    },
                },
                "roi_head": {
                    "type": "RoIHead",
                    "num_classes": 2,
                    "roi_strides": [2, 4, 8],
                    "fc_channels": 16,
                },
            },
            id="faster-rcnn",
        ),
        pytest.param(
            {
                "type": "Segmenter",
                "backbone": {
                    "type": "TimmBackbone",
                    "name": "resnet10t",
                    "out_indices": [2, 3, 4],
                    "output_stride": 16,
                    "norm_eval": True,
                },
                "head": {"type": "FCNHead", "num_classes": 3},
            },
            id="segmenter-timm-dilated",
        ),
        pytest.param(classifier("FcStatefulNet", neck="GlobalPool"), id="stateful-plugin"),
    ],
)
def test_built_in_models_build_and_the_check_changes_no_state_and_no_random_number(
    cfg: dict, monkeypatch: pytest.MonkeyPatch
):
    runs: list[int] = []
    run_chain = feature_check._run_chain

    def counted(*args):
        runs.append(1)
        run_chain(*args)

    monkeypatch.setattr(feature_check, "_run_chain", counted)
    torch.manual_seed(0)
    checked = build(cfg, MODELS, path="model").train()
    rng_checked = torch.get_rng_state()
    assert runs == [1]  # one forward of the chain per model

    monkeypatch.setattr(cvkit.builder, "check_feature_info", lambda *a, **k: None)
    torch.manual_seed(0)
    unchecked = build(cfg, MODELS, path="model").train()
    assert torch.equal(torch.get_rng_state(), rng_checked)
    ours, theirs = checked.state_dict(), unchecked.state_dict()
    assert list(ours) == list(theirs)
    for key in ours:  # bit for bit, batch-norm statistics and counters included
        assert torch.equal(ours[key], theirs[key]), key
    flags = [(name, m.training) for name, m in checked.named_modules()]
    assert flags == [(name, m.training) for name, m in unchecked.named_modules()]


def test_the_chain_runs_once_and_the_stateful_backbone_is_left_as_it_was():
    FcStatefulNet.forwards = FcCountingFPN.forwards = 0
    cfg = {
        "type": "tests.test_builder:Task",
        "backbone": {"type": "FcStatefulNet"},
        "neck": {"type": "FcCountingFPN"},
        "head": {"type": "tests.test_builder:RecordingHead", "num_classes": 2},
    }
    threads = torch.get_num_threads()
    model = build(cfg, MODELS, path="model")
    assert (FcStatefulNet.forwards, FcCountingFPN.forwards) == (1, 1)
    assert torch.get_num_threads() == threads  # the check runs on one, and gives them back
    backbone = model.backbone
    assert backbone.training and backbone.bn.training and not backbone.frozen_bn.training
    assert backbone.seen.item() == 0  # the buffer its forward bumped is restored
    assert backbone.bn.num_batches_tracked.item() == 0
    assert torch.equal(backbone.bn.running_mean, torch.zeros(8))


def test_components_without_forward_or_feature_info_are_not_run():
    # tests/test_builder.py's recording components have feature_info but no forward
    from tests.test_builder import _cfg

    task = build(_cfg())
    assert task.neck.in_channels == [4, 8]


def test_a_backbone_built_on_its_own_is_checked():
    with pytest.raises(FeatureInfoError, match=r"^<config>: backbone `type: FcChannelLiar`"):
        build({"type": "FcChannelLiar"}, BACKBONES)
    assert build({"type": "FcTwoMaps", "in_chans": 2}, BACKBONES).c8.in_channels == 2


@pytest.mark.parametrize(
    ("strides", "size"),
    [([], 32), ([4, 8, 16], 32), ([8, 16, 32], 64), ([8, 16, 32, 64, 128], 256), ([12, 32], 96)],
)
def test_check_image_size(strides: list[int], size: int):
    assert feature_check._check_size(strides) == size


def test_cli_exits_2_and_names_the_plugin_file(write, capsys):
    """The issue's case end to end, in process: a local plugin file in the config's
    ``imports:`` (its class taken out of the registry afterwards)."""
    write(
        "liar_plugin.py",
        """
        from torch import nn

        from cvkit.registry import BACKBONES
        from cvkit.structures import FeatureSpec


        @BACKBONES.register()
        class IssueNet(nn.Module):
            def __init__(self, in_chans: int = 3) -> None:
                super().__init__()
                self.conv = nn.Conv2d(in_chans, 96, 3, stride=16, padding=1)
                self.feature_info = [FeatureSpec(72, 16)]  # it returns 96 channels

            def forward(self, x):
                return [self.conv(x)]
        """,
    )
    text = TINY_CLASSIFIER.replace("{type: TinyNet, width: 4}", "{type: IssueNet}")
    cfg = write("tiny.yaml", "imports: [./liar_plugin.py]\n" + textwrap.dedent(text))
    try:
        code = cvkit.cli.main(["analyze", str(cfg), "--input-size", "32", "32"])
    finally:
        BACKBONES._entries.pop("IssueNet", None)
    out = capsys.readouterr()
    assert code == 2, out.err
    plugin = cfg.parent / "liar_plugin.py"
    assert (
        f"error: model.backbone: backbone `type: IssueNet` (from config imports {plugin}): "
        "feature_info does not match what forward returned, for a zeros image [1, 3, 32, 32]"
    ) in out.err
    assert f"fix IssueNet ({plugin}:8): feature_info must list" in out.err
    assert "forward returned [1, 96, 2, 2]: 96 channels, not 72" in out.err
    assert f"in {cfg}" in out.err
