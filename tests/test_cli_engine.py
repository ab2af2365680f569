"""train --resume, eval, predict and export through the command line."""

import json

import cv2
import numpy as np
import pytest

from cvkit.engine.checkpoint import load_checkpoint
from tests.conftest import TINY_CLASSIFIER, run_cli

CONFIG = (
    TINY_CLASSIFIER
    + """data:
  train: {type: DigitsClassification, split: train, image_size: 16}
  val: {type: DigitsClassification, split: val, image_size: 16}
  batch_size: 128
  num_workers: 0
train: {epochs: 1, optimizer: {type: SGD, lr: 0.1, momentum: 0.9}, tensorboard: false}
run_dir: runs
name: cli
"""
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "c.yaml").write_text(CONFIG)
    out = run_cli("train", "c.yaml", "train.max_steps=3", cwd=folder)
    assert out.returncode == 0, out.stderr
    out = run_cli("train", "c.yaml", "--resume", "runs/cli", cwd=folder)
    assert out.returncode == 0, out.stderr
    assert "resumed" in out.stdout + out.stderr
    return folder


def test_resume_continues_the_same_run(trained):
    state = load_checkpoint(trained / "runs" / "cli" / "last.pt")
    assert state["trainer"]["epoch"] == 1 and state["trainer"]["step"] == 12
    assert not (trained / "runs" / "cli_2").exists()


def test_eval_writes_the_report(trained):
    out = run_cli("eval", "c.yaml", "--checkpoint", "runs/cli/last.pt", "--out", "ev", cwd=trained)
    assert out.returncode == 0, out.stderr
    assert "top1" in out.stdout and "macro avg" in out.stdout
    report = json.loads((trained / "ev" / "eval.json").read_text())
    assert 0.0 <= report["metrics"]["top1"] <= 1.0
    assert (trained / "ev" / "confusion_matrix.png").stat().st_size > 1000


def test_predict_prints_top_k_for_any_image_size(trained):
    image = np.zeros((50, 40, 3), np.uint8)
    cv2.putText(image, "7", (8, 42), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (255, 255, 255), 3)
    cv2.imwrite(str(trained / "seven.png"), image)
    out = run_cli(
        "predict",
        "c.yaml",
        "seven.png",
        "--checkpoint",
        "runs/cli/last.pt",
        "--topk",
        "3",
        "--json",
        cwd=trained,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)[0]
    assert len(result["top"]) == 3
    probs = [t["prob"] for t in result["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    out = run_cli(
        "predict", "c.yaml", "missing.png", "--checkpoint", "runs/cli/last.pt", cwd=trained
    )
    assert out.returncode == 1 and "missing.png" in out.stderr


def test_export_drops_optimizer_state_and_still_predicts(trained):
    out = run_cli("export", "runs/cli/last.pt", "--out", "slim.pt", cwd=trained)
    assert out.returncode == 0, out.stderr
    slim = load_checkpoint(trained / "slim.pt")
    assert set(slim) == {"model", "classes", "cat_ids", "config", "cvkit_version"}
    full_size = (trained / "runs" / "cli" / "last.pt").stat().st_size
    assert (trained / "slim.pt").stat().st_size < full_size
    out = run_cli("eval", "c.yaml", "--checkpoint", "slim.pt", "--out", "ev2", cwd=trained)
    assert out.returncode == 0, out.stderr


def test_truncated_checkpoint_is_one_clear_message(trained):
    data = (trained / "runs" / "cli" / "last.pt").read_bytes()
    (trained / "broken.pt").write_bytes(data[: len(data) // 3])
    out = run_cli("eval", "c.yaml", "--checkpoint", "broken.pt", cwd=trained)
    assert out.returncode == 1
    assert "broken.pt' cannot be read" in out.stderr
    assert "Traceback" not in out.stderr


def test_export_to_onnx_predicts_the_same_top_k_without_the_config(trained):
    out = run_cli("export", "runs/cli/last.pt", "--format", "onnx", "--dynamic-batch", cwd=trained)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("  checked ") == 3 and "probs: " in out.stdout
    for digit, size in (("4", (40, 30)), ("1", (24, 52))):  # sizes other than the traced
        image = np.zeros((*size, 3), np.uint8)
        cv2.putText(image, digit, (4, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        cv2.imwrite(str(trained / f"digit{digit}.png"), image)
    args = ["digit4.png", "digit1.png", "--topk", "3", "--json"]
    want = run_cli("predict", "c.yaml", *args, "--checkpoint", "runs/cli/last.pt", cwd=trained)
    got = run_cli("predict", "runs/cli/last.onnx", *args, cwd=trained)
    assert got.returncode == 0, got.stderr
    for g, w in zip(json.loads(got.stdout), json.loads(want.stdout), strict=True):
        assert [t["class"] for t in g["top"]] == [t["class"] for t in w["top"]]
        assert [t["prob"] for t in g["top"]] == pytest.approx(
            [t["prob"] for t in w["top"]], abs=1e-4
        )
