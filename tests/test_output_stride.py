"""TimmBackbone(output_stride=...): dilated late stages, the strides reported, weights kept."""

import pytest
import torch

import cvkit
from cvkit.models.backbones.timm_backbone import TimmBackbone
from cvkit.structures import SegBatch


def test_dilated_stages_keep_stride_8_and_report_it():
    plain = TimmBackbone("resnet10t", out_indices=(2, 3, 4))
    dilated = TimmBackbone("resnet10t", out_indices=(2, 3, 4), output_stride=8)
    assert [f.stride for f in plain.feature_info] == [8, 16, 32]
    assert [f.stride for f in dilated.feature_info] == [8, 8, 8]
    maps = dilated(torch.zeros(1, 3, 64, 96))
    assert [tuple(m.shape[-2:]) for m in maps] == [(8, 12)] * 3
    # dilation changes no parameter: the undilated weights load as they are
    missing, unexpected = dilated.load_state_dict(plain.state_dict())
    assert not missing and not unexpected


def test_output_stride_16_on_the_whole_trunk(tmp_path):
    plain = TimmBackbone("resnet10t", features_only=False)
    path = tmp_path / "resnet10t.pth"
    torch.save(plain.model.state_dict(), path)
    trunk = TimmBackbone("resnet10t", features_only=False, output_stride=16, pretrained=str(path))
    assert trunk.feature_info[0].stride == 16
    assert trunk(torch.zeros(1, 3, 64, 64))[0].shape[-2:] == (4, 4)
    assert torch.equal(trunk.model.conv1[0].weight, plain.model.conv1[0].weight)


def test_fcn_on_a_dilated_backbone_segments_at_stride_8():
    model = cvkit.build(
        {
            "type": "Segmenter",
            "backbone": {
                "type": "TimmBackbone",
                "name": "resnet10t",
                "out_indices": [3, 4],
                "output_stride": 8,
            },
            "head": {"type": "FCNHead", "num_classes": 3, "channels": 16},
            "aux_head": {"type": "FCNHead", "num_classes": 3, "in_index": -2, "channels": 8},
        },
        cvkit.MODELS,
    )
    assert model.head.output_stride == 8
    assert model.preprocessor.size_divisor == 8
    images = torch.randint(0, 256, (2, 3, 40, 48), dtype=torch.uint8)
    masks = torch.randint(0, 3, (2, 40, 48))
    batch = SegBatch(images, masks, [(40, 48)] * 2, [(40, 48)] * 2, ["a", "b"])
    losses = model.loss(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    assert model.predict(batch)[0].mask.shape == (40, 48)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "resnet10t", "output_stride": 4}, "output_stride must be 8, 16 or 32"),
        (
            {"name": "vit_tiny_patch16_224", "features_only": False, "output_stride": 8},
            "cannot change its output stride",
        ),
    ],
)
def test_bad_output_stride_names_the_model_and_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        TimmBackbone(**kwargs)
    assert kwargs["name"] in str(err.value)
