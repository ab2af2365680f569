"""The command line, through subprocess."""

import pytest

from cvkit import __version__
from tests.conftest import ROOT, run_cli


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"cvkit {__version__}"


@pytest.mark.parametrize(
    "command", [[], ["list"], ["config"], ["config", "print"], ["train"], ["demo"]]
)
def test_every_command_has_help(command):
    out = run_cli(*command, "--help")
    assert out.returncode == 0
    assert "usage: cvkit" in out.stdout
    assert len(out.stdout.splitlines()) > 4
    if not command:  # the overview names every command
        for name in ("train", "eval", "export", "analyze", "doctor", "embed", "coco-eval"):
            assert f"    {name} " in out.stdout, name


def test_list_all_and_one_kind_with_parameters():
    out = run_cli("list")
    assert out.returncode == 0
    assert any(line.startswith("backbones") for line in out.stdout.splitlines())
    out = run_cli("list", "heads")
    assert "ClsHead" in out.stdout and "num_classes, dropout=0.0" in out.stdout
    out = run_cli("list", "bakbones")
    assert out.returncode == 2 and "did you mean 'backbones'?" in out.stderr


def test_config_print_resolves_bases_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "model: {type: ImageClassifier, backbone: {type: TinyNet}, neck: {type: GlobalPool},"
        " head: {type: ClsHead, num_classes: 10}}\ntrain: {epochs: 5}\n"
    )
    (tmp_path / "c.yaml").write_text("_base_: base.yaml\ntrain: {epochs: 7}\n")
    out = run_cli(
        "config",
        "print",
        str(tmp_path / "c.yaml"),
        "train.epochs=2",
        "model.backbone.width=4",
        "--origins",
    )
    assert out.returncode == 0, out.stderr
    assert "epochs: 2" in out.stdout and "width: 4" in out.stdout
    assert "#   train.epochs: the command line" in out.stdout


def test_widht_typo_fails_before_anything_is_built(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "model: {type: ImageClassifier, backbone: {type: TinyNet, widht: 64},"
        " neck: {type: GlobalPool}, head: {type: ClsHead, num_classes: 10}}\n"
        "data: {train: {type: DigitsClassification}}\n"
    )
    out = run_cli("train", str(tmp_path / "c.yaml"), cwd=tmp_path)
    assert out.returncode == 2
    assert "model.backbone.widht: TinyNet got an unknown argument 'widht'" in out.stderr
    assert "did you mean 'width'?" in out.stderr
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_every_shipped_config_resolves(capsys):
    # in this process (the command's own entry, `cvkit.cli.main`): a subprocess per config
    # spent most of its time importing torch
    from cvkit.cli import main

    configs = sorted((ROOT / "configs").rglob("*.yaml"))
    configs = [c for c in configs if "_base_" not in c.parts]
    assert configs
    for path in configs:
        code = main(["config", "print", str(path)])
        out = capsys.readouterr()
        assert code == 0 and "model:" in out.out, f"{path}: {out.err}"


def test_the_demo_trains_the_shipped_config_by_its_packaged_name():
    from cvkit.cli import DEMO_CONFIG
    from cvkit.config import load_config

    assert DEMO_CONFIG == "cvkit://detection/retinanet_effl0_fpn_8e_shapes.yaml"
    cfg = load_config(DEMO_CONFIG)
    shipped = ROOT / "configs" / "detection" / "retinanet_effl0_fpn_8e_shapes.yaml"
    assert cfg.file.read_text() == shipped.read_text()
    assert cfg.data == load_config(shipped).data
