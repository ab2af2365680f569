"""Packaged configs: ``cvkit://<path>`` names the configs that ship with cvkit, as a file to
load or as a ``_base_``, so a template copied anywhere keeps working."""

import shutil

import pytest

from cvkit.config import load_config
from cvkit.config.load import PACKAGED, packaged_configs, packaged_root
from cvkit.engine.run import validate
from cvkit.errors import ConfigFileError
from tests.conftest import ROOT, run_cli

DEMO = "cvkit://detection/retinanet_effl0_fpn_8e_shapes.yaml"
TEMPLATES = [
    "detection/retinanet_r50_fpn_1x_my_dataset.yaml",
    "detection/faster_rcnn_r50_fpn_1x_my_dataset.yaml",
    "segmentation/fcn_r50_8s_my_dataset.yaml",
]


def test_every_shipped_config_is_packaged_under_its_path():
    shipped = sorted(
        p.relative_to(ROOT / "configs").as_posix() for p in ROOT.glob("configs/**/*.yaml")
    )
    assert list(packaged_configs()) == [PACKAGED + p for p in shipped]
    assert (packaged_root() / "detection" / "retinanet_effl0_fpn_8e_shapes.yaml").is_file()


def test_load_by_packaged_name_is_the_file_of_configs():
    cfg = load_config(DEMO, ["train.epochs=1"])
    plain = load_config(ROOT / "configs" / "detection" / "retinanet_effl0_fpn_8e_shapes.yaml")
    assert cfg.get("model.type") == "RetinaNet" and cfg.get("train.epochs") == 1
    assert cfg.data == {**plain.data, "train": {**plain.data["train"], "epochs": 1}}
    assert cfg.file.stem == "retinanet_effl0_fpn_8e_shapes"  # the run's default name


def test_relative_bases_inside_a_packaged_config_stay_relative_to_it():
    # fcn_r50_8s_voc.yaml names ../_base_/models/fcn_r50_8s.yaml: relative to the package
    cfg = load_config("cvkit://segmentation/fcn_r50_8s_voc.yaml")
    assert cfg.get("model.type") == "Segmenter"
    assert [str(p.name) for p in cfg.chain] == [
        "fcn_r50_8s_voc.yaml",
        "fcn_r50_8s.yaml",
        "voc_segmentation.yaml",
    ]
    assert cfg.origins["model.backbone.type"] == "cvkit://_base_/models/fcn_r50_8s.yaml"


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_template_copied_anywhere_loads_and_validates(template, tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere" / "mine.yaml"
    copy.parent.mkdir()
    shutil.copy(ROOT / "configs" / template, copy)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(copy)
    validate(cfg)
    assert cfg.get("data.train.image_dir", "").startswith("data/my_dataset/")
    assert all(o.startswith(PACKAGED) or o.endswith("mine.yaml") for o in cfg.origins.values())


def test_describe_and_origins_name_packaged_files_by_cvkit_names(write):
    mine = write("mine.yaml", "_base_: cvkit://detection/retinanet_r50_fpn_1x_my_dataset.yaml\n")
    cfg = load_config(mine, ["train.epochs=2"])
    described = cfg.describe("model.anchor_generator.sizes")
    assert described.startswith("cvkit://_base_/models/retinanet_r50_fpn.yaml (_base_ chain: ")
    assert "mine.yaml -> cvkit://detection/retinanet_r50_fpn_1x_my_dataset.yaml -> " in described
    assert "site-packages" not in described and "/configs/" not in described
    assert cfg.describe("model.head.num_classes").startswith(
        "cvkit://detection/retinanet_r50_fpn_1x_my_dataset.yaml"
    )
    assert cfg.describe("train.epochs").startswith("the command line")


def test_unknown_packaged_name_names_the_closest_and_the_list_command(write):
    with pytest.raises(ConfigFileError) as err:
        load_config("cvkit://detection/retinanet_r50_fpn_1x_cooc.yaml")
    text = str(err.value)
    assert "'cvkit://detection/retinanet_r50_fpn_1x_cooc.yaml' is not a config" in text
    assert "did you mean 'cvkit://detection/retinanet_r50_fpn_1x_coco.yaml'" in text
    assert "`cvkit list configs`" in text

    mine = write("mine.yaml", "_base_: [cvkit://_base_/models/retinanet.yaml]\n")
    with pytest.raises(ConfigFileError) as err:
        load_config(mine)
    assert "mine.yaml: 'cvkit://_base_/models/retinanet.yaml' is not a config" in str(err.value)
    assert "did you mean 'cvkit://_base_/models/retinanet_r50_fpn.yaml'" in str(err.value)

    with pytest.raises(ConfigFileError, match="packaged configs in detection/: cvkit://"):
        load_config("cvkit://detection")
    with pytest.raises(ConfigFileError, match="is not a config that ships"):
        load_config("cvkit://../pyproject.toml")  # nothing outside the package


def test_a_copy_with_relative_bases_is_told_the_packaged_name(write):
    mine = write("mine.yaml", "_base_: [../_base_/models/retinanet_r50_fpn.yaml]\n")
    with pytest.raises(ConfigFileError) as err:
        load_config(mine)
    assert "`_base_: cvkit://_base_/models/retinanet_r50_fpn.yaml` finds it" in str(err.value)


def test_cli_lists_the_packaged_configs_and_loads_them_by_name(tmp_path):
    out = run_cli("list", "configs", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith(DEMO + "  ") and "What `make demo` trains" in line for line in lines)
    assert sum(line.startswith(PACKAGED) for line in lines) == len(packaged_configs())
    out = run_cli("list", "configs", "detection/*_coco.yaml", cwd=tmp_path)
    assert [line.split()[0] for line in out.stdout.splitlines() if line.startswith(PACKAGED)] == [
        "cvkit://detection/faster_rcnn_r50_fpn_1x_coco.yaml",
        "cvkit://detection/retinanet_r50_fpn_1x_coco.yaml",
    ]
    out = run_cli("config", "print", DEMO, "train.epochs=1", "--origins", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"#   model.type: {DEMO}" in out.stdout and "epochs: 1" in out.stdout
