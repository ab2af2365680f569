"""curves.png from metrics.jsonl: which curves, one record per (phase, step), and the file."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from cvkit.engine.curves import curve_keys, read_metrics, write_curves
from tests.conftest import ROOT


def _write(folder, records, extra_lines=()):
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def _train(step, loss, lr=1e-3):
    return {"phase": "train", "epoch": 1, "step": step, "lr": lr, "loss": loss,
            "loss_cls": loss / 2, "loss_box": loss / 2}  # fmt: skip


def test_a_resumed_step_is_drawn_once_with_its_later_record_and_a_torn_line_is_skipped(tmp_path):
    first, again = _train(20, 1.0), _train(20, 0.8)
    _write(tmp_path, [_train(10, 1.2), first, again], extra_lines=['{"phase": "tr'])
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [10, 20] and records[1]["loss"] == 0.8


def test_the_curves_are_the_losses_the_lr_and_the_evaluation_headlines(tmp_path):
    val = {"phase": "val", "epoch": 1, "step": 20, "AP": 0.4, "AP50": 0.7, "APl": -1.0,
           "AR100": 0.5, "val_loss": 0.9}  # fmt: skip
    _write(tmp_path, [_train(10, 1.2), _train(20, 1.0), val])
    keys = curve_keys(read_metrics(tmp_path), metric="AR100")
    # AR100 as the run's metric; APl (-1: no large objects) and the other AR values are not drawn
    assert keys == ["loss", "loss_cls", "loss_box", "lr", "AR100", "AP", "AP50", "val_loss"]


def test_write_curves_draws_a_png_and_nothing_without_records(tmp_path):
    assert write_curves(tmp_path) is None
    _write(tmp_path, [_train(10, 1.2), _train(20, 1.0)])
    path = write_curves(tmp_path)
    assert path == tmp_path / "curves.png"
    image = np.asarray(Image.open(path))
    assert image.shape[0] > 300 and image.std() > 10  # a drawing, not a blank canvas


def _tool(*args, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "plot_logs.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_plot_logs_overlays_runs_and_names_what_it_cannot_draw(tmp_path):
    assert "Overlay the curves of several runs" in _tool("--help", cwd=tmp_path).stdout
    for name, loss in (("a", 1.0), ("b", 0.7)):
        (tmp_path / name).mkdir()
        _write(tmp_path / name, [_train(10, loss + 0.2), _train(20, loss)])
    out = _tool("a", "b", "--out", "both.png", cwd=tmp_path)
    assert out.returncode == 0 and "wrote both.png" in out.stdout, out.stderr
    assert (tmp_path / "both.png").stat().st_size > 1000
    wrong = _tool("a", "--keys", "mAP", cwd=tmp_path)
    assert wrong.returncode == 2 and "no numeric values for ['mAP']" in wrong.stderr
    (tmp_path / "empty").mkdir()
    empty = _tool("a", "empty", cwd=tmp_path)
    assert empty.returncode == 1 and "empty: no metrics.jsonl" in empty.stderr
