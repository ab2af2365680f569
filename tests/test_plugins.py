"""Plugins: entry points found lazily, failures shown and never hiding the others."""

import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_cli

GOOD = """
from torch import nn

from cvkit.registry import BACKBONES
from cvkit.structures import FeatureSpec


@BACKBONES.register()
class GoodNet(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.feature_info = [FeatureSpec(width, 2)]

    def forward(self, x):
        return [self.conv(x)]
"""


@pytest.fixture
def fake_site(tmp_path: Path) -> Path:
    """A folder that looks like site-packages with one distribution and two entry points."""
    (tmp_path / "good_plug").mkdir()
    (tmp_path / "good_plug" / "__init__.py").write_text(textwrap.dedent(GOOD))
    (tmp_path / "bad_plug.py").write_text("raise ImportError('needs the package foo')\n")
    info = tmp_path / "fakeplugs-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugs\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cvkit.plugins]\ngood = good_plug\nbad = bad_plug\n")
    return tmp_path


def test_entry_point_plugins_load_without_any_import_and_a_broken_one_hides_nothing(fake_site):
    env = {"PYTHONPATH": str(fake_site)}
    out = run_cli("list", "backbones", env=env)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("GoodNet"))
    assert "plugin fakeplugs" in row and "width=4" in row
    assert "TinyNet" in out.stdout  # built-ins are still there

    out = run_cli("list", "--plugins", env=env)
    assert out.returncode == 0
    bad = next(line for line in out.stdout.splitlines() if line.startswith("bad"))
    assert "FAILED: ImportError: needs the package foo" in bad
    good = next(line for line in out.stdout.splitlines() if line.startswith("good "))
    assert good.rstrip().endswith("ok")


def test_not_found_errors_mention_the_plugin_that_failed(fake_site, write):
    cfg = write(
        "c.yaml",
        "model: {type: ImageClassifier, backbone: {type: BadNet},"
        " neck: {type: GlobalPool}, head: {type: ClsHead, num_classes: 2}}\n",
    )
    out = run_cli("config", "print", str(cfg), env={"PYTHONPATH": str(fake_site)})
    assert out.returncode == 2
    assert "'BadNet' is not a registered backbone" in out.stderr
    assert "plugin 'bad' (entry point (fakeplugs)) failed to import: ImportError" in out.stderr


def test_config_imports_a_local_py_file_and_builds_its_backbone(write):
    write("plugins/mine.py", GOOD.replace("GoodNet", "LocalNet"))
    cfg = write(
        "cfg/c.yaml",
        """
        imports: [../plugins/mine.py]
        model:
          type: ImageClassifier
          backbone: {type: LocalNet, width: 6}
          neck: {type: GlobalPool}
          head: {type: ClsHead, num_classes: 2}
    """,
    )
    out = run_cli("config", "print", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "LocalNet" in out.stdout


def test_cli_plugin_flag_imports_a_module(fake_site):
    out = run_cli("--plugin", str(fake_site / "good_plug" / "__init__.py"), "list", "backbones")
    assert out.returncode == 0, out.stderr
    assert "GoodNet" in out.stdout
    out = run_cli("--plugin", "no_such_plugin_module", "list")
    assert out.returncode == 2
    assert "no_such_plugin_module: ModuleNotFoundError" in out.stderr


def test_classic_plugin_is_discovered_without_import():
    out = run_cli("list", "backbones")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:] if line.strip()}
    for name in ("LeNet5", "AlexNet", "VGG11", "NiN", "GoogLeNet", "ResNet18"):
        assert name in rows, f"{name} missing from `cvkit list backbones`"
        assert "plugin cvkit-classic" in rows[name]
    assert rows["TimmBackbone"].split()[1] == "cvkit"
