"""The cvkit-classic plugin (plugins/cvkit_classic): the classic CNNs as cvkit backbones.

Install it first: ``pip install --no-deps -e plugins/cvkit_classic``. If it is not installed
the module is imported from its folder, so everything but the entry-point checks still runs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvkit import plugins
from cvkit.builder import build
from cvkit.errors import ConfigError
from cvkit.registry import BACKBONES

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "cvkit_classic"

try:
    importlib.metadata.distribution("cvkit-classic")
    INSTALLED = True
except importlib.metadata.PackageNotFoundError:
    INSTALLED = False
    if importlib.util.find_spec("cvkit_classic") is None:
        sys.path.insert(0, str(PLUGIN_DIR))
    import cvkit_classic  # noqa: F401  (registers the backbones)

# Each net's stages as (channels, stride), written out from the papers' tables.
STAGES = {
    "LeNet5": [(6, 2), (16, 4), (120, 4)],
    "AlexNet": [(96, 8), (256, 16), (384, 16), (384, 16), (256, 32)],
    "VGG11": [(64, 2), (128, 4), (256, 8), (512, 16), (512, 32)],
    "NiN": [(96, 8), (256, 16), (384, 32), (1024, 32)],
    "GoogLeNet": [(64, 2), (192, 4), (480, 8), (832, 16), (1024, 32)],
    "ResNet18": [(64, 2), (64, 4), (128, 8), (256, 16), (512, 32)],
}
NAMES = list(STAGES)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # At these sizes a conv is microseconds of work; on a busy 2-core machine PyTorch's thread
    # pool makes each forward ~20x slower than one thread does.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def every_stage() -> dict[str, nn.Module]:
    """One backbone per name, returning every stage, in eval mode; built once for the module."""
    torch.manual_seed(0)
    return {
        name: BACKBONES.get(name)(out_indices=tuple(range(len(stages)))).eval()
        for name, stages in STAGES.items()
    }


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_params(c_in: int, c_out: int, k: int, groups: int = 1, bias: bool = True) -> int:
    """Parameters of one ``k``x``k`` conv."""
    return c_out * (c_in // groups) * k * k + (c_out if bias else 0)


# -- layout and shapes ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_stage_layout(name: str, every_stage: dict[str, nn.Module]) -> None:
    bb = every_stage[name]
    assert [(s.channels, s.stride) for s in bb.feature_info] == STAGES[name]
    assert len(bb.stages) == len(STAGES[name])


@pytest.mark.parametrize("hw", [(32, 32), (64, 64), (50, 37), (1, 1)])
@pytest.mark.parametrize("name", NAMES)
def test_every_stage_is_ceil_of_input_over_stride(
    name: str, hw: tuple[int, int], every_stage: dict[str, nn.Module]
) -> None:
    # Every net pads its convs and pools so that a stage of stride s maps H to exactly
    # ceil(H / s): the odd 50x37 checks the rounding, 32x32 and 1x1 that nothing collapses.
    bb = every_stage[name]
    with torch.no_grad():
        outs = bb(torch.randn(2, 3, *hw))
    assert len(outs) == len(bb.out_indices) == len(STAGES[name])
    for out, spec in zip(outs, bb.feature_info, strict=True):
        expected = (
            2,
            spec.channels,
            math.ceil(hw[0] / spec.stride),
            math.ceil(hw[1] / spec.stride),
        )
        assert tuple(out.shape) == expected


@pytest.mark.parametrize("name", NAMES)
def test_selected_outputs_and_one_channel_input(name: str) -> None:
    bb = BACKBONES.get(name)(in_chans=1, out_indices=(1, -1))
    last = len(STAGES[name]) - 1
    assert bb.out_indices == (1, last)
    assert [(s.channels, s.stride) for s in bb.feature_info] == [
        STAGES[name][1],
        STAGES[name][last],
    ]
    with torch.no_grad():
        outs = bb.eval()(torch.randn(2, 1, 32, 32))
    assert [o.shape[1] for o in outs] == [s.channels for s in bb.feature_info]


# 224x224, the size the papers' nets (but LeNet) were designed for: the last map, by hand.
LAST_AT_224 = {
    "LeNet5": (120, 56, 56),
    "AlexNet": (256, 7, 7),
    "VGG11": (512, 7, 7),
    "NiN": (1024, 7, 7),
    "GoogLeNet": (1024, 7, 7),
    "ResNet18": (512, 7, 7),
}


@pytest.mark.parametrize("name", NAMES)
def test_last_map_at_224(name: str, every_stage: dict[str, nn.Module]) -> None:
    with torch.no_grad():
        out = every_stage[name](torch.randn(1, 3, 224, 224))[-1]
    assert tuple(out.shape) == (1, *LAST_AT_224[name])


# -- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_out_of_range_index_names_the_class_and_stage_count(name: str) -> None:
    n = len(STAGES[name])
    for bad in (n, -n - 1):
        with pytest.raises(
            ValueError, match=rf"^{name}: out_indices has {bad}, but there are {n} stages"
        ):
            BACKBONES.get(name)(out_indices=(bad,))


@pytest.mark.parametrize("name", NAMES)
def test_bad_in_chans_raises(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: in_chans must be at least 1, got 0"):
        BACKBONES.get(name)(in_chans=0)


def test_nin_arguments() -> None:
    bb = BACKBONES.get("NiN")(out_channels=64, dropout=0.0)
    assert bb.feature_info[-1].channels == 64
    with pytest.raises(ValueError, match="NiN: dropout must be in"):
        BACKBONES.get("NiN")(dropout=1.0)
    with pytest.raises(ValueError, match="NiN: out_channels must be at least 1"):
        BACKBONES.get("NiN")(out_channels=0)


@pytest.mark.parametrize("name", NAMES)
def test_frozen_stages(name: str) -> None:
    bb = BACKBONES.get(name)(frozen_stages=2)
    trainable = [all(p.requires_grad for p in s.parameters()) for s in bb.stages]
    frozen = [not any(p.requires_grad for p in s.parameters()) for s in bb.stages]
    assert frozen[:2] == [True, True]
    assert all(trainable[2:])


def test_config_builder_checks_and_builds_them() -> None:
    bb = build({"type": "NiN", "in_chans": 1, "out_indices": [1, 3], "out_channels": 64}, BACKBONES)
    assert bb.out_indices == (1, 3)
    assert [(s.channels, s.stride) for s in bb.feature_info] == [(256, 16), (64, 32)]
    bb = build({"type": "VGG11", "batch_norm": True}, BACKBONES)
    assert any(isinstance(m, nn.BatchNorm2d) for m in bb.modules())
    with pytest.raises(ConfigError, match="unknown argument 'width'"):
        build({"type": "ResNet18", "width": 2}, BACKBONES)
    with pytest.raises(ConfigError, match="expected bool"):
        build({"type": "AlexNet", "grouped": "yes"}, BACKBONES)


# -- the plugin machinery --------------------------------------------------------------------


def test_registry_says_the_plugin_registered_them() -> None:
    for name in NAMES:
        source = BACKBONES.entry(name).source
        if INSTALLED:
            assert source == "plugin cvkit-classic"
        else:
            assert source.startswith("cvkit_classic.")


@pytest.mark.skipif(not INSTALLED, reason="pip install --no-deps -e plugins/cvkit_classic")
def test_entry_point_is_declared_and_loads() -> None:
    eps = [
        ep for ep in importlib.metadata.entry_points(group="cvkit.plugins") if ep.name == "classic"
    ]
    assert [ep.value for ep in eps] == ["cvkit_classic"]
    assert eps[0].dist is not None and eps[0].dist.name == "cvkit-classic"
    records = [r for r in plugins.report() if r.name == "classic"]
    assert records and all(r.ok for r in records), [r.error for r in records]


# -- training: gradients reach every stage ---------------------------------------------------


@pytest.mark.parametrize(("name", "lr"), [("LeNet5", 1e-2), ("ResNet18", 1e-3)])
def test_a_few_steps_fit_a_fixed_batch(name: str, lr: float) -> None:
    torch.manual_seed(0)
    bb = BACKBONES.get(name)(in_chans=1)
    head = nn.Linear(bb.feature_info[-1].channels, 4)
    opt = torch.optim.Adam([*bb.parameters(), *head.parameters()], lr=lr)
    x, y = torch.randn(4, 1, 32, 32), torch.arange(4)
    losses = []
    for step in range(20):
        opt.zero_grad()
        loss = F.cross_entropy(head(bb(x)[-1].mean(dim=(2, 3))), y)
        loss.backward()
        if step == 0:
            for i, stage in enumerate(bb.stages):
                grads = [p.grad for p in stage.parameters()]
                assert all(g is not None for g in grads), f"stage {i} has no gradient"
                assert sum(g.abs().sum().item() for g in grads) > 0, f"stage {i} gradient is 0"
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# -- parameter counts and numerics against references ----------------------------------------


def _randomise_batch_norm(module: nn.Module) -> None:
    """Non-trivial affine parameters and running statistics, so eval-mode BN is tested too."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)


def _copy_by_order(src: nn.Module, dst: nn.Module) -> None:
    """Load ``src``'s state into ``dst`` entry by entry; the shapes must agree in order."""
    src_state, dst_state = src.state_dict(), dst.state_dict()
    assert [tuple(v.shape) for v in src_state.values()] == [
        tuple(v.shape) for v in dst_state.values()
    ]
    dst.load_state_dict(dict(zip(dst_state, src_state.values(), strict=True)))


def test_resnet18_is_torchvision_resnet18_without_fc() -> None:
    tv_models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    tv = tv_models.resnet18(weights=None).eval()
    ours = BACKBONES.get("ResNet18")(out_indices=(0, 1, 2, 3, 4)).eval()
    assert n_params(ours) == n_params(tv) - n_params(tv.fc) == 11_176_512
    _randomise_batch_norm(tv)
    _copy_by_order(nn.Sequential(*list(tv.children())[:-2]), ours)
    tv_stages = [
        nn.Sequential(tv.conv1, tv.bn1, tv.relu),
        nn.Sequential(tv.maxpool, tv.layer1),
        tv.layer2,
        tv.layer3,
        tv.layer4,
    ]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outs = ours(x)
        for stage, out in zip(tv_stages, outs, strict=True):
            x = stage(x)
            torch.testing.assert_close(out, x)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg11_is_torchvision_vgg11_features(batch_norm: bool) -> None:
    vgg = pytest.importorskip("torchvision.models.vgg")
    torch.manual_seed(0)
    tv = vgg.make_layers(vgg.cfgs["A"], batch_norm=batch_norm).eval()  # vgg11(_bn).features
    ours = BACKBONES.get("VGG11")(batch_norm=batch_norm, out_indices=(0, 1, 2, 3, 4)).eval()
    assert n_params(ours) == n_params(tv) == (9_225_984 if batch_norm else 9_220_480)
    _randomise_batch_norm(tv)
    _copy_by_order(tv, ours)
    x = torch.randn(2, 3, 64, 64)  # even sizes: ceil_mode pooling changes nothing here
    with torch.no_grad():
        outs = ours(x)
        tv_pooled = []
        for layer in tv:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                tv_pooled.append(x)
    for out, ref in zip(outs, tv_pooled, strict=True):
        torch.testing.assert_close(out, ref)


# torchvision's AlexNet is the 64-192-384-256-256 variant of "One weird trick" (2014) and its
# GoogLeNet has batch norm and a 3x3 conv where the paper's 5x5 branch is, so neither is a
# reference; their counts come from the papers' tables and the original Caffe releases.


def test_alexnet_parameter_count() -> None:
    widths = [(3, 96, 11, 1), (96, 256, 5, 2), (256, 384, 3, 1), (384, 384, 3, 2), (384, 256, 3, 2)]
    for grouped in (False, True):
        expected = sum(conv_params(i, o, k, g if grouped else 1) for i, o, k, g in widths)
        assert n_params(BACKBONES.get("AlexNet")(grouped=grouped)) == expected
    # The two-GPU net as released (Caffe's bvlc_alexnet): 60,965,224 parameters, of which the
    # three fully-connected layers hold 58,631,144.
    assert n_params(BACKBONES.get("AlexNet")(grouped=True)) == 60_965_224 - 58_631_144


def test_googlenet_parameter_count_and_table_1() -> None:
    from cvkit_classic.googlenet import Inception

    # Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj, and the output depth.
    table = [
        (64, 96, 128, 16, 32, 32, 256),
        (128, 128, 192, 32, 96, 64, 480),
        (192, 96, 208, 16, 48, 64, 512),
        (160, 112, 224, 24, 64, 64, 512),
        (128, 128, 256, 24, 64, 64, 512),
        (112, 144, 288, 32, 64, 64, 528),
        (256, 160, 320, 32, 128, 128, 832),
        (256, 160, 320, 32, 128, 128, 832),
        (384, 192, 384, 48, 128, 128, 1024),
    ]
    bb = BACKBONES.get("GoogLeNet")()
    modules = [m for m in bb.modules() if isinstance(m, Inception)]
    assert [m.out_channels for m in modules] == [row[-1] for row in table]
    expected = conv_params(3, 64, 7) + conv_params(64, 64, 1) + conv_params(64, 192, 3)
    c_in = 192
    for c1, r3, c3, r5, c5, proj, depth in table:
        expected += conv_params(c_in, c1, 1) + conv_params(c_in, r3, 1) + conv_params(r3, c3, 3)
        expected += conv_params(c_in, r5, 1) + conv_params(r5, c5, 5) + conv_params(c_in, proj, 1)
        c_in = depth
    assert n_params(bb) == expected
    # Caffe's bvlc_googlenet without auxiliary classifiers: 6,998,552, with a 1024x1000 linear.
    assert n_params(bb) == 6_998_552 - (1024 * 1000 + 1000)


def test_nin_parameter_count() -> None:
    def mlpconv(c_in: int, c: int, k: int, c_out: int) -> int:
        return conv_params(c_in, c, k) + conv_params(c, c, 1) + conv_params(c, c_out, 1)

    expected = (
        mlpconv(3, 96, 11, 96)
        + mlpconv(96, 256, 5, 256)
        + mlpconv(256, 384, 3, 384)
        + mlpconv(384, 1024, 3, 10)
    )
    assert n_params(BACKBONES.get("NiN")(out_channels=10)) == expected


def test_lenet5_parameter_count() -> None:
    # C1 156, C3 2,416 (fully connected; the paper's sparse table gives 1,516), C5 48,120.
    expected = conv_params(1, 6, 5) + conv_params(6, 16, 5) + conv_params(16, 120, 5)
    assert expected == 156 + 2_416 + 48_120
    assert n_params(BACKBONES.get("LeNet5")(in_chans=1)) == expected
