"""tools/: each script's --help, and a tiny run of train.py then test.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_cli_engine import CONFIG

pytestmark = pytest.mark.slow


def tool(script: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / script), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_train_then_test_a_tiny_classifier(tmp_path):
    assert "usage: cvkit train" in tool("train.py", "--help", cwd=tmp_path).stdout
    assert "tools/test.py CFG CHECKPOINT" in tool("test.py", "--help", cwd=tmp_path).stdout
    (tmp_path / "c.yaml").write_text(CONFIG)
    out = tool("train.py", "c.yaml", "train.max_steps=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = tool("test.py", "c.yaml", "runs/cli/last.pt", "--out", "ev", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "top1" in out.stdout and (tmp_path / "ev" / "eval.json").is_file()
    wrong = tool("test.py", "c.yaml", cwd=tmp_path)
    assert wrong.returncode == 2 and "tools/test.py CFG CHECKPOINT" in wrong.stderr
