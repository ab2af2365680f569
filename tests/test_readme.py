"""The README's plugin walkthrough, run as a new user would: only what the README says."""

import re

from tests.conftest import ROOT, run_cli

BLOCK = re.compile(r'```\w+ title="([^"]+)"\n(.*?)```', re.S)


def test_readme_plugin_walkthrough_registers_a_backbone_a_config_builds(tmp_path):
    files = dict(BLOCK.findall((ROOT / "README.md").read_text()))
    assert set(files) >= {"my_plugin.py", "my_config.yaml"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    out = run_cli("train", "my_config.yaml", "train.max_steps=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "top1:" in out.stdout
    assert "TwoConvNet" in (tmp_path / "runs" / "my_config" / "config.yaml").read_text()
    out = run_cli("--plugin", "my_plugin.py", "list", "backbones", cwd=tmp_path)
    assert "TwoConvNet" in out.stdout
