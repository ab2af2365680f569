"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The model of the command-line tests that train for a few seconds on 16 px digits.
TINY_CLASSIFIER = """
model:
  type: ImageClassifier
  backbone: {type: TinyNet, width: 4}
  neck: {type: GlobalPool}
  head: {type: ClsHead, num_classes: 10}
  preprocessor: {type: Preprocessor, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], input_size: 16}
"""


@pytest.fixture
def write(tmp_path: Path):
    """write("a.yaml", text) -> path: a dedented file under a fresh temp folder."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return _write


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None):
    """Run ``python -m cvkit.cli ARGS`` in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cvkit.cli", *args],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
