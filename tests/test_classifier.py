"""Tiny end-to-end classifier runs on CPU: the loss falls, the run folder is complete."""

import json

import pytest
import torch

from cvkit.config import from_dict, load_config
from cvkit.engine.checkpoint import load_checkpoint, save_checkpoint
from cvkit.engine.run import train
from tests.conftest import ROOT, run_cli


def _tiny_cfg(tmp_path, **train_overrides):
    cfg = {
        "model": {
            "type": "ImageClassifier",
            "backbone": {"type": "TinyNet", "width": 8},
            "neck": {"type": "GlobalPool"},
            "head": {"type": "ClsHead", "num_classes": 10},
        },
        "data": {
            "train": {"type": "DigitsClassification", "split": "train", "image_size": 16},
            "val": {"type": "DigitsClassification", "split": "val", "image_size": 16},
            "batch_size": 32,
        },
        "train": {
            "epochs": 2,
            "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
            "log_interval": 5,
            **train_overrides,
        },
        "run_dir": str(tmp_path),
        "name": "tiny",
    }
    return from_dict(cfg)


def test_tiny_run_learns_and_writes_the_run_folder(tmp_path):
    result = train(_tiny_cfg(tmp_path))
    run = tmp_path / "tiny"
    assert result.run_dir == run
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "metrics.jsonl", "last.pt"}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["phase"] == "train"]
    assert losses[-1] < 0.5 * losses[0]  # it learns
    assert result.metrics["top1"] > 0.8  # 10 classes: chance is 0.1
    assert 0.0 <= result.metrics["top1"] <= result.metrics["top5"] <= 1.0
    state = load_checkpoint(run / "last.pt")
    assert state["classes"] == [str(d) for d in range(10)]
    assert "TinyNet" in state["config"]
    resolved = load_config(run / "config.yaml")
    assert resolved.get("model.backbone.width") == 8


def test_max_steps_stops_early(tmp_path):
    train(_tiny_cfg(tmp_path, max_steps=3))
    records = (tmp_path / "tiny" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(r)["step"] for r in records]
    assert max(steps) == 3


def test_checkpoint_is_atomic_and_loads_weights_only(tmp_path):
    path = save_checkpoint({"model": {"w": torch.ones(2)}, "classes": ["a"]}, tmp_path / "c.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind
    assert load_checkpoint(path)["classes"] == ["a"]
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match=r"c\.pt' cannot be read"):
        load_checkpoint(path)


def test_checkpoint_with_code_is_refused(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'hacked'}",))

    torch.save({"model": {}, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="cannot be read"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "hacked").exists()


@pytest.mark.slow
def test_cli_train_shipped_config_smoke(tmp_path):
    cfg = ROOT / "configs" / "classification" / "tinynet_3e_digits.yaml"
    out = run_cli(
        "train",
        str(cfg),
        "train.epochs=1",
        "train.max_steps=4",
        f"run_dir={tmp_path}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "top1:" in out.stdout
    assert (tmp_path / "tinynet_3e_digits" / "last.pt").is_file()


@pytest.mark.slow
def test_cli_demo_smoke(tmp_path):
    out = run_cli(
        "demo",
        "train.epochs=1",
        "train.max_steps=2",
        "data.train.num_images=16",
        "data.val.num_images=8",
        "data.num_workers=0",
        f"run_dir={tmp_path}",
        cwd=tmp_path,
        env={"CVKIT_CACHE": str(tmp_path / "cache")},
    )
    assert out.returncode == 0, out.stderr
    assert "cvkit demo" in out.stdout and "run folder:" in out.stdout
    assert "AP50" in out.stdout
    run = tmp_path / "demo_shapes"
    assert (run / "predictions.png").stat().st_size > 1000
    assert (run / "results.json").is_file() and (run / "eval.json").is_file()


@pytest.mark.slow
def test_finetune_config_loads_imagenet_weights_and_logs_the_dropped_head(tmp_path):
    cfg = ROOT / "configs" / "classification" / "efficientnet_lite0_finetune_3e_digits.yaml"
    out = run_cli(
        "train",
        str(cfg),
        "train.max_steps=2",
        "data.batch_size=8",
        "data.train.image_size=32",
        "data.val.image_size=32",
        "model.preprocessor.input_size=32",
        f"run_dir={tmp_path}",
        "eval.plots=false",
        "data.num_workers=0",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "head.fc.weight: checkpoint (1000, 1280) -> model (10, 1280), dropped" in out.stderr
    assert "head.fc.bias: checkpoint (1000,) -> model (10,), dropped" in out.stderr
