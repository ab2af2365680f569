"""The training engine: exact resume, schedules, parameter groups, hooks, bad input."""

import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from cvkit.config import from_dict
from cvkit.engine import evaluate_checkpoint, hooks, run
from cvkit.engine.checkpoint import load_checkpoint
from cvkit.engine.hooks import Hook
from cvkit.engine.optim import param_groups
from cvkit.engine.predict import predict
from cvkit.engine.schedules import Cosine, MultiStep, Poly, Step
from cvkit.engine.trainer import Trainer
from cvkit.errors import CheckpointError, ConfigError
from cvkit.registry import HOOKS


def tiny(tmp_path, name="run", **train):
    return {
        "model": {
            "type": "ImageClassifier",
            "backbone": {"type": "TinyNet", "width": 4},
            "neck": {"type": "GlobalPool"},
            "head": {"type": "ClsHead", "num_classes": 10, "dropout": 0.3},
        },
        "data": {
            "train": {
                "type": "DigitsClassification",
                "split": "train",
                "image_size": 16,
                "transforms": [
                    {"type": "HorizontalFlip", "p": 0.5},
                    {"type": "GaussNoise", "p": 0.5},
                ],
            },
            "val": {"type": "DigitsClassification", "split": "val", "image_size": 16},
            "batch_size": 128,
            "num_workers": 0,
        },
        "train": {
            "epochs": 2,
            "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 1.0e-4},
            "tensorboard": False,
            "log_interval": 5,
            **train,
        },
        "eval": {"plots": False},
        "run_dir": str(tmp_path),
        "name": name,
    }


def test_resume_mid_epoch_ends_with_the_same_weights_bit_for_bit(tmp_path):
    common = {
        "deterministic": True,
        "accumulate": 2,
        "ema": {"decay": 0.9, "warmup_steps": 3},
        "schedule": {"type": "Cosine", "warmup_steps": 4},
    }
    full = run.train(from_dict(tiny(tmp_path, "full", **common)))
    part = run.train(from_dict(tiny(tmp_path, "part", max_steps=4, **common)))
    stopped = load_checkpoint(part.run_dir / "last.pt")
    assert stopped["trainer"] == {"epoch": 0, "step": 4, "batch_in_epoch": 8, "world_size": 1}
    resumed_cfg = tiny(tmp_path, "part", **common)
    resumed_cfg["data"]["num_workers"] = 1  # the data order and augmentation do not depend on it
    resumed = run.train(from_dict(resumed_cfg), resume=part.run_dir)
    assert resumed.run_dir == part.run_dir
    a, b = load_checkpoint(full.run_dir / "last.pt"), load_checkpoint(part.run_dir / "last.pt")
    assert a["trainer"] == b["trainer"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, value in a["hooks"]["EMAHook"]["module"].items():
        assert torch.equal(value, b["hooks"]["EMAHook"]["module"][key]), key
    assert full.metrics == resumed.metrics


def test_run_folder_contents_and_logs(tmp_path):
    cfg = tiny(tmp_path, epochs=1, log_interval=2)
    cfg["train"]["tensorboard"] = True
    result = run.train(from_dict(cfg))
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "last.pt", "best.pt", "tensorboard"} <= files
    assert (result.run_dir / "curves.png").stat().st_size > 1000
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["phase"] == "train"]
    assert train_steps == [2, 4, 6, 8, 10, 12]  # every 2 steps and the epoch's last
    assert {"lr", "loss", "loss_cls"} <= set(records[0])
    assert any(p.name.startswith("events.out") for p in (result.run_dir / "tensorboard").iterdir())
    again = run.train(from_dict(cfg))  # never overwrites: a new folder
    assert again.run_dir.name == "run_2"


def test_schedules_against_hand_computed_values():
    assert [Step(100, 10, step_epochs=2, gamma=0.5)(s) for s in (0, 19, 20, 40)] == [
        1,
        1,
        0.5,
        0.25,
    ]
    ms = MultiStep(120, 10, milestones=[8, 11], gamma=0.1)
    assert [ms(s) for s in (79, 80, 109, 110)] == pytest.approx([1, 0.1, 0.1, 0.01])
    cos = Cosine(100, 10, warmup_steps=10, warmup_factor=0.0)
    assert [cos(0), cos(5), cos(10), cos(55), cos(100)] == pytest.approx([0, 0.5, 1, 0.5, 0])
    poly = Poly(100, 10, power=2.0)
    assert [poly(0), poly(50), poly(100)] == pytest.approx([1, 0.25, 0])
    with pytest.raises(ValueError, match="warmup_steps or warmup_epochs, not both"):
        Cosine(10, 1, warmup_steps=1, warmup_epochs=1)


def test_param_groups_no_decay_backbone_multiplier_and_layer_decay():
    model = run.build(tiny_model_cfg(), run.MODELS)
    groups = param_groups(model, lr=1.0, weight_decay=0.1, backbone_lr_mult=0.5, layer_decay=0.5)
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["head.fc.bias"]["weight_decay"] == 0.0
    assert by_name["head.fc.weight"]["weight_decay"] == 0.1
    assert by_name["backbone.stages.0.0.1.weight"]["weight_decay"] == 0.0  # a BN weight
    assert by_name["head.fc.weight"]["lr"] == 1.0
    # 4 stages: stage i gets 0.5 (backbone) * 0.5 ** (4 - i)
    for i in range(4):
        assert by_name[f"backbone.stages.{i}.0.0.weight"]["lr"] == 0.5 * 0.5 ** (4 - i)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def tiny_model_cfg():
    return {
        "type": "ImageClassifier",
        "backbone": {"type": "TinyNet", "width": 4},
        "neck": {"type": "GlobalPool"},
        "head": {"type": "ClsHead", "num_classes": 3},
    }


def test_frozen_backbone_does_not_move(tmp_path):
    cfg = tiny(tmp_path, freeze_backbone_epochs=1, epochs=1)
    torch.manual_seed(0)
    run.seed_everything(0)
    before = run.build(cfg["model"], run.MODELS).backbone.state_dict()
    result = run.train(from_dict(cfg))
    after = load_checkpoint(result.run_dir / "last.pt")["model"]
    for key, value in before.items():
        assert torch.equal(value, after[f"backbone.{key}"]), key  # weights and BN statistics
    assert not torch.equal(
        run.build(cfg["model"], run.MODELS).head.fc.weight, after["head.fc.weight"]
    )


def test_early_stopping_and_best_checkpoint(tmp_path):
    # nothing can change: the backbone is frozen (its norms too) and the LR is 0
    cfg = tiny(tmp_path, epochs=6, optimizer={"type": "SGD", "lr": 0.0}, freeze_backbone_epochs=6)
    cfg["eval"].update({"patience": 2, "metric": "top1"})
    result = run.train(from_dict(cfg))
    state = load_checkpoint(result.run_dir / "last.pt")
    assert state["trainer"]["epoch"] == 3  # one to set the best, two without improvement
    best = load_checkpoint(result.run_dir / "best.pt")
    assert best["trainer"]["epoch"] == 1


def test_gradient_clipping_bounds_the_update():
    class Quadratic(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.full((10,), 100.0))

        def loss(self, batch):
            return {"loss": (self.w**2).sum()}

    model = Quadratic()
    before = model.w.detach().clone()
    loader = fake_loader(1)
    trainer = Trainer(
        model, torch.optim.SGD(model.parameters(), lr=1.0), loader, "unused", clip_grad_norm=0.5
    )
    trainer.run_step(FakeBatch())
    # clip_grad_norm_ divides by (norm + 1e-6), so the step is a hair under 0.5
    assert torch.linalg.vector_norm(model.w.detach() - before).item() == pytest.approx(0.5, 1e-4)


class FakeBatch:
    def to(self, device):
        return self


def fake_loader(n):
    from cvkit.data.loader import build_loader

    return build_loader(list(range(n)), 1, shuffle=False, collate_fn=lambda _: FakeBatch())


def test_amp_bf16_on_cpu_trains(tmp_path):
    result = run.train(from_dict(tiny(tmp_path, max_steps=3, amp=True, epochs=1)))
    assert 0.0 <= result.metrics["top1"] <= 1.0


@HOOKS.register("PoisonWeights")
class PoisonWeights(Hook):
    """Sets every weight to NaN when epoch 2 starts."""

    def before_epoch(self, trainer):
        if trainer.epoch == 1:
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.fill_(float("nan"))


def test_nan_loss_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny(tmp_path, hooks=[{"type": "PoisonWeights"}])
    with pytest.raises(FloatingPointError) as err:
        run.train(from_dict(cfg))
    assert "loss is nan at step 13 (epoch 2, batch 1)" in str(err.value)
    assert any("last.pt" in note for note in err.value.__notes__)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["trainer"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_checkpoint_from_another_model_is_a_clear_error(tmp_path):
    result = run.train(from_dict(tiny(tmp_path, max_steps=1, epochs=1)))
    cfg = tiny(tmp_path)
    cfg["model"]["backbone"]["width"] = 16
    with pytest.raises(ValueError) as err:
        evaluate_checkpoint.evaluate(from_dict(cfg), result.run_dir / "last.pt")
    text = str(err.value)
    assert "does not fit this model" in text
    assert (
        "shape: backbone.stages.0.0.0.weight: checkpoint (4, 3, 3, 3) vs model (16, 3, 3, 3)"
        in text
    )


def test_resume_from_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        run.train(from_dict(tiny(tmp_path)), resume=tmp_path / "nothing")


def test_resume_with_other_param_groups_is_a_clear_error(tmp_path):
    result = run.train(from_dict(tiny(tmp_path, max_steps=1, epochs=1)))
    # the default written out is no change
    same = tiny(tmp_path, max_steps=1, epochs=1, param_groups={"no_decay_norm_bias": True})
    run.train(from_dict(same), resume=result.run_dir)
    cfg = tiny(tmp_path, param_groups={"no_decay_norm_bias": False})  # 1 group, not 2
    with pytest.raises(ConfigError) as err:
        run.train(from_dict(cfg), resume=result.run_dir)
    text = str(err.value)
    assert "train.param_groups.no_decay_norm_bias: true -> false (<dict>)" in text
    # a checkpoint loaded into a trainer whose optimizer does not fit it, past the config check
    trainer = Trainer(
        run.build(tiny(tmp_path)["model"], run.MODELS),
        torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1),
        run.build_loader(range(4), 2, shuffle=True),
        tmp_path,
    )
    with pytest.raises(CheckpointError) as err:
        trainer.load_state_dict(load_checkpoint(result.run_dir / "last.pt"), "last.pt")
    assert "checkpoint 'last.pt': its optimizer state does not fit" in str(err.value)
    assert "other train.optimizer or train.param_groups settings" in str(err.value)


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_elsewhere(tmp_path, capsys, monkeypatch):
    run.train(from_dict(tiny(tmp_path, name="file", max_steps=2, epochs=1, log_interval=1)))
    out = capsys.readouterr()
    assert "\r" not in out.out + out.err
    assert [line.split(" batch")[0] for line in out.out.splitlines() if " batch " in line] == [
        "epoch 1/1 step 1",
        "epoch 1/1 step 2",
    ]
    monkeypatch.setattr(hooks, "_is_terminal", lambda stream: True)
    run.train(from_dict(tiny(tmp_path, name="tty", max_steps=2, epochs=1, log_interval=1)))
    out = capsys.readouterr()
    assert "\r" in out.err and " batch " not in out.out  # the bar, redrawn in place


def test_normalize_in_the_transforms_is_a_clear_error(tmp_path):
    cfg = tiny(tmp_path, max_steps=1)
    cfg["data"]["train"]["transforms"] = [{"type": "Normalize"}]
    with pytest.raises(ValueError, match="remove Normalize"):
        run.train(from_dict(cfg))


def test_reset_head_gives_a_fresh_head_for_a_new_class_count():
    model = run.build(tiny_model_cfg(), run.MODELS)
    model.reset_head(7)
    assert model.num_classes == 7
    assert model(torch.zeros(2, 3, 16, 16, dtype=torch.uint8)).shape == (2, 7)
    assert torch.equal(model.head.fc.bias, torch.zeros(7))


def test_epochs_are_numbered_from_one_alike_in_logs_records_and_resume(tmp_path, capsys):
    part = run.train(from_dict(tiny(tmp_path, "part", max_steps=4, log_interval=2)))
    records = [json.loads(x) for x in (part.run_dir / "metrics.jsonl").read_text().splitlines()]
    # stopped in the first epoch: its train records and its evaluation both say epoch 1
    assert {r["epoch"] for r in records} == {1}
    assert [r["phase"] for r in records] == ["train", "train", "val"]
    out = capsys.readouterr().out
    assert "epoch 1/2 step 2 batch 2/12" in out and "epoch 1/2 step 4  top1" in out
    run.train(from_dict(tiny(tmp_path, "part", log_interval=12)), resume=part.run_dir)
    out = capsys.readouterr().out
    assert f"resumed {part.run_dir} in epoch 1/2 (batch 4/12), step 4" in out
    assert "epoch 1/2 step 12  top1" in out and "epoch 2/2 step 24  top1" in out
    records = [json.loads(x) for x in (part.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["epoch"]) for r in records[3:]] == [
        ("train", 1),
        ("val", 1),
        ("train", 2),
        ("val", 2),
    ]
    run.train(from_dict(tiny(tmp_path, "part", epochs=3, log_interval=12)), resume=part.run_dir)
    assert f"resumed {part.run_dir} after epoch 2/3, step 24" in capsys.readouterr().out


def test_a_checkpoint_replaces_pretrained_weights_without_reading_them(tmp_path, caplog):
    """predict and eval build the model without its pretrained weights: the file may be gone."""
    import timm

    weights = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), weights)
    cfg = tiny(tmp_path, max_steps=1, epochs=1)
    cfg["model"]["backbone"] = {
        "type": "TimmBackbone",
        "name": "resnet18",
        "pretrained": str(weights),
    }
    result = run.train(from_dict(cfg))
    weights.unlink()
    image = tmp_path / "digit.png"
    cv2.imwrite(str(image), np.full((16, 16, 3), 128, np.uint8))
    caplog.clear()
    with caplog.at_level("INFO", logger="cvkit.pretrained"):
        [record] = predict(from_dict(cfg), result.run_dir / "last.pt", [str(image)], topk=3)
        report = evaluate_checkpoint.evaluate(
            from_dict(cfg), result.run_dir / "last.pt", out_dir=tmp_path / "ev"
        )
    assert len(record["top"]) == 3
    assert "top1" in report["metrics"]
    assert not caplog.records  # nothing loaded, nothing dropped


def test_the_final_report_reuses_the_last_evaluation_and_a_resumed_finished_run_evaluates(
    tmp_path, monkeypatch
):
    from cvkit.engine.tasks import Task

    passes = []
    original = Task.evaluate

    def counted(self, *args, **kwargs):
        passes.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Task, "evaluate", counted)
    cfg = tiny(tmp_path, epochs=1, max_steps=2)
    cfg["eval"] = {"plots": True}
    result = run.train(from_dict(cfg))
    assert len(passes) == 1  # the evaluation of the final weights feeds the report too
    assert (result.run_dir / "eval.json").is_file()
    report = json.loads((result.run_dir / "eval.json").read_text())
    assert report["metrics"] == result.metrics

    passes.clear()
    (result.run_dir / "eval.json").unlink()
    run.train(from_dict(cfg), resume=result.run_dir)  # nothing left to train: not evaluated
    assert len(passes) == 1 and (result.run_dir / "eval.json").is_file()


def test_a_run_that_fails_a_check_leaves_no_folder(tmp_path):
    """The schedule is built after the data and the model: its error still comes before the
    run folder is made, so the next run is not pushed to a `_2` suffix."""
    cfg = tiny(tmp_path, "nofolder", schedule={"type": "Cosine", "warmup_steps": 5})
    cfg["train"]["schedule"]["warmup_epochs"] = 1.0
    with pytest.raises(ConfigError, match="give warmup_steps or warmup_epochs, not both"):
        run.train(from_dict(cfg))
    assert not (tmp_path / "nofolder").exists()
    with pytest.raises(ConfigError, match="no GPU is visible"):
        run.train(from_dict(tiny(tmp_path, "nofolder", device="cuda")))
    assert not (tmp_path / "nofolder").exists()
