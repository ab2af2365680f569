"""Distributed training on the CPU (gloo, 2 processes) against one process.

The models use group norm (TinyNet(norm="group")): batch norm normalises over each process's
batch, so with it 2 x b is not 1 x 2b in any DDP framework (train.sync_bn is what changes
that, on CUDA). Samplers are set to take every candidate, so no random draw depends on how
the batch is split.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from cvkit.config import from_dict
from cvkit.data.loader import EpochSampler
from cvkit.engine import distributed, evaluate_checkpoint, run
from cvkit.engine.batching import describe as describe_batch
from cvkit.engine.batching import plan_batch
from cvkit.engine.checkpoint import load_checkpoint
from cvkit.errors import CheckpointError, ConfigError
from tests.multiprocess import run_processes
from tests.test_engine import tiny

BACKBONE = {"type": "TinyNet", "width": 8, "out_indices": [1, 2, 3], "norm": "group"}
TAKE_ALL = {"type": "RandomSampler", "num_samples": 100_000, "positive_fraction": 0.5}
SHAPES = {"num_images": 12, "image_size": 64}
MODELS = {
    "classifier": {
        "type": "ImageClassifier",
        "backbone": {"type": "TinyNet", "width": 4, "norm": "group"},
        "neck": {"type": "GlobalPool"},
        "head": {"type": "ClsHead", "num_classes": 10},
    },
    "retinanet": {
        "type": "RetinaNet",
        "backbone": BACKBONE,
        "neck": {"type": "FPN", "out_channels": 16, "extra_levels": 0},
        "head": {"type": "RetinaHead", "num_classes": 3, "num_convs": 1, "feat_channels": 16},
        "anchor_generator": {
            "type": "AnchorGenerator",
            "sizes": [[8], [16], [32]],
            "scales": [1.0, 1.26, 1.587],
        },
        "preprocessor": {"type": "Preprocessor", "size_divisor": 16, "pad_to": 80},
        "score_threshold": 0.0,  # every candidate kept: many detections for the evaluation
    },
    "faster_rcnn": {
        "type": "FasterRCNN",
        "backbone": BACKBONE,
        "neck": {"type": "FPN", "out_channels": 16, "extra_levels": 0},
        "rpn_head": {
            "type": "RPNHead",
            "anchor_generator": {"type": "AnchorGenerator", "sizes": [[8], [16], [32]]},
            "sampler": TAKE_ALL,
        },
        "roi_head": {
            "type": "RoIHead",
            "num_classes": 3,
            "roi_strides": [4, 8, 16],
            "fc_channels": 32,
            "sampler": TAKE_ALL,
        },
        "preprocessor": {"type": "Preprocessor", "size_divisor": 16, "pad_to": 80},
    },
    "fcn": {
        "type": "Segmenter",
        "backbone": BACKBONE,
        "head": {"type": "FCNHead", "num_classes": 4, "variant": "8s", "dropout": 0.0},
        "preprocessor": {"type": "Preprocessor", "size_divisor": 16, "pad_to": 80},
    },
}
DATA = {
    "classifier": ("DigitsClassification", {"image_size": 16}),
    "retinanet": ("ShapesDetection", SHAPES),
    "faster_rcnn": ("ShapesDetection", SHAPES),
    "fcn": ("ShapesSegmentation", SHAPES),
}


def config(task: str, folder: Path, name: str, batch_size: int, val: int | None = None, **train):
    dataset, options = DATA[task]
    data = {
        "train": {"type": dataset, "split": "train", **options},
        "batch_size": batch_size,
        "num_workers": 0,
    }
    if val is not None:  # an evaluation set of `val` images (digits: its own val split)
        extra = {} if dataset == "DigitsClassification" else {"num_images": val}
        data["val"] = {"type": dataset, "split": "val", **options, **extra}
    return {
        "model": copy.deepcopy(MODELS[task]),
        "data": data,
        "train": {
            "epochs": 1,
            "optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9},
            "tensorboard": False,
            "log_interval": 1,
            **train,
        },
        "eval": {"plots": False},
        "run_dir": str(folder),
        "name": name,
    }


def frozen_classifier(folder: Path, batch_size: int) -> dict:
    """The classifier with its backbone frozen for the first of two epochs of 20 images:
    DDP must let the frozen parameters go without a gradient, then sync them."""
    cfg = config("classifier", folder, "frozen", batch_size, freeze_backbone_epochs=1, epochs=2)
    cfg["data"]["train"]["per_class"] = 2
    return cfg


def train_each_task(folder: Path, batch_size: int) -> dict[str, dict[str, str]]:
    """Each task trained for 3 optimizer steps, and the frozen classifier; their run folders.
    The classifier gives its batch per process, the others as data.total_batch_size."""
    configs = {task: config(task, folder, task, batch_size, max_steps=3) for task in MODELS}
    configs["frozen"] = frozen_classifier(folder, batch_size)
    world = distributed.from_environment().world_size
    for name in ("retinanet", "faster_rcnn", "fcn", "frozen"):
        data = configs[name]["data"]
        data["total_batch_size"] = data.pop("batch_size") * world
    runs = {name: run.train(from_dict(cfg)) for name, cfg in configs.items()}
    return {name: {"run_dir": str(result.run_dir)} for name, result in runs.items()}


@pytest.mark.slow
def test_two_processes_of_batch_b_equal_one_process_of_batch_2b(tmp_path, monkeypatch):
    monkeypatch.setenv("CVKIT_CACHE", str(tmp_path / "cache"))
    one = train_each_task(tmp_path / "one", batch_size=4)
    two = run_processes(train_each_task, 2, tmp_path / "two", 2)
    for task in [*MODELS, "frozen"]:
        assert Path(two[0][task]["run_dir"]) == Path(two[1][task]["run_dir"])  # one folder
        a = load_checkpoint(Path(one[task]["run_dir"]) / "last.pt")
        b = load_checkpoint(Path(two[0][task]["run_dir"]) / "last.pt")
        steps = 3 if task in MODELS else 10  # frozen: 2 epochs of 5 steps
        assert (b["trainer"]["step"], b["trainer"]["world_size"]) == (steps, 2)
        assert len(b["rng_ranks"]) == 2
        for key, value in a["model"].items():
            torch.testing.assert_close(b["model"][key], value, msg=f"{task}: {key}")
        # the logged loss is the whole batch's: the mean of the processes' shares
        logged = [_last_train_record(one[task]), _last_train_record(two[0][task])]
        assert logged[1] == pytest.approx(logged[0], rel=1e-5)
        cfg = from_dict(config("classifier" if task == "frozen" else task, tmp_path, "init", 4))
        run.seed_everything(0)  # the runs' seed: their initial weights
        init = run.build_model(run.validate(cfg), cfg).state_dict()
        assert any(not torch.equal(init[k], v) for k, v in a["model"].items())  # it trained


def _last_train_record(result: dict) -> dict:
    lines = (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    last = [r for r in map(json.loads, lines) if r["phase"] == "train"][-1]
    return {k: v for k, v in last.items() if k.startswith("loss") or k == "step"}


def evaluate_each_task(checkpoints: dict[str, str], folder: Path) -> dict[str, dict]:
    """Each task's checkpoint evaluated on an odd number of images, 2 per batch."""
    metrics = {}
    for task, checkpoint in checkpoints.items():
        cfg = config(task, folder, task, batch_size=2, val=5)
        report = evaluate_checkpoint.evaluate(from_dict(cfg), checkpoint, out_dir=folder / task)
        metrics[task] = report["metrics"]
    return metrics


@pytest.mark.slow
def test_distributed_evaluation_equals_one_process_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("CVKIT_CACHE", str(tmp_path / "cache"))
    checkpoints = {}
    for task in ("classifier", "retinanet", "fcn"):
        cfg = config(task, tmp_path, task, batch_size=4, max_steps=6, val=5)
        cfg["train"]["optimizer"] = {"type": "AdamW", "lr": 3e-3}
        checkpoints[task] = str(run.train(from_dict(cfg)).run_dir / "last.pt")
    one = evaluate_each_task(checkpoints, tmp_path / "one")
    two = run_processes(evaluate_each_task, 2, checkpoints, tmp_path / "two")
    for task, metrics in one.items():
        for name in ("top1", "AP", "AP50", "mIoU", "pixel_acc"):
            if name in metrics:
                assert two[0][task][name] == metrics[name], (task, name)  # exactly
                assert two[1][task][name] == metrics[name], (task, name)  # shared
    assert one["classifier"]["top1"] > 0.1 and one["retinanet"]["AP50"] > 0
    assert (tmp_path / "two" / "retinanet" / "eval.json").is_file()  # rank 0's report


def test_the_epoch_shards_cover_every_sample_once_and_pad_evenly():
    for size in (10, 11, 3):
        samplers = [EpochSampler(size, True, seed=1, rank=r, world_size=4) for r in range(4)]
        shards = [s.shard(2) for s in samplers]
        assert {len(s) for s in shards} == {-(-size // 4)}  # as many batches everywhere
        assert {x for shard in shards for x in shard} == set(range(size))
        order = samplers[0].order(2)
        padded = (order * 4)[: 4 * samplers[0].num_samples]
        # batch k of the 4 processes together is batch k of one process with 4x the batch
        assert sorted(x for s in shards for x in s[:2]) == sorted(padded[:8])
        uneven = [EpochSampler(size, False, rank=r, world_size=4, even=False) for r in range(4)]
        assert sorted(x for s in uneven for x in s.shard(0)) == list(range(size))


RESUMABLE = {
    "deterministic": True,
    "accumulate": 2,
    "ema": {"decay": 0.9, "warmup_steps": 3},
    "schedule": {"type": "Cosine", "warmup_steps": 4},
}


def resumable(folder: Path, name: str, **train):
    cfg = tiny(folder, name, **RESUMABLE, **train)
    cfg["data"]["batch_size"] = 64  # per process
    return from_dict(cfg)


def train_stop_and_resume(folder: Path) -> dict:
    """An uninterrupted run, and one stopped in its second epoch then resumed; with dropout,
    augmentation, accumulation and EMA, so every process's RNG and position must resume."""
    full = run.train(resumable(folder, "full"))
    part = run.train(resumable(folder, "part", max_steps=8))
    if distributed.current().is_main:
        shutil.copy(part.run_dir / "last.pt", folder / "stopped.pt")
    resumed = run.train(resumable(folder, "part"), resume=part.run_dir)
    return {"full": full, "part": part, "resumed_metrics": resumed.metrics}


@pytest.mark.slow
def test_a_two_process_run_stopped_mid_epoch_resumes_bit_for_bit(tmp_path):
    ranks = run_processes(train_stop_and_resume, 2, tmp_path)
    result = ranks[0]
    stopped = load_checkpoint(tmp_path / "stopped.pt")
    # 1438 images: 719 per process, 12 batches of 64, 6 optimizer steps per epoch
    assert stopped["trainer"] == {"epoch": 1, "step": 8, "batch_in_epoch": 4, "world_size": 2}
    a = load_checkpoint(result["full"].run_dir / "last.pt")
    b = load_checkpoint(result["part"].run_dir / "last.pt")
    assert a["trainer"] == b["trainer"] and a["trainer"]["step"] == 12
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, value in a["hooks"]["EMAHook"]["module"].items():
        assert torch.equal(value, b["hooks"]["EMAHook"]["module"][key]), key
    assert result["full"].metrics == result["resumed_metrics"] == ranks[1]["resumed_metrics"]
    # the position counts each process's batches: one process cannot continue it
    with pytest.raises(CheckpointError, match="middle of epoch 2 of a run on 2 process"):
        run.train(resumable(tmp_path, "part"), resume=tmp_path / "stopped.pt")


def test_sync_bn_is_refused_on_one_process_and_on_the_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    with pytest.raises(ConfigError, match=r"train\.sync_bn is true but this run is one process"):
        distributed.check_sync_bn(True, distributed.Processes(), cuda)
    two = distributed.Processes(rank=0, world_size=2)
    with pytest.raises(ConfigError, match="this run is on the CPU: torch's SyncBatchNorm runs on"):
        distributed.check_sync_bn(True, two, cpu)
    distributed.check_sync_bn(True, two, cuda)
    distributed.check_sync_bn(False, distributed.Processes(), cpu)


def test_the_nccl_backend_is_refused_on_the_cpu_and_auto_follows_the_device():
    with pytest.raises(ConfigError, match="'nccl', which runs on CUDA devices only"):
        distributed._backend("nccl", torch.device("cpu"))
    assert distributed._backend("auto", torch.device("cpu")) == "gloo"
    assert distributed._backend("auto", torch.device("cuda", 0)) == "nccl"


def test_a_train_config_errors_on_one_process_before_anything_is_built(tmp_path):
    cfg = tiny(tmp_path, "x", sync_bn=True)
    with pytest.raises(ConfigError, match=r"train\.sync_bn"):
        run.train(from_dict(cfg))
    assert not (tmp_path / "x").exists()


def test_auto_scale_lr_scales_every_group_by_the_effective_batch(tmp_path, capsys):
    cfg = tiny(tmp_path, "scaled", max_steps=1, accumulate=2, auto_scale_lr={"base_batch_size": 64})
    cfg["train"]["param_groups"] = {"backbone_lr_mult": 0.5}
    result = run.train(from_dict(cfg))
    out = capsys.readouterr().out
    assert "batch: 128 per process x 2 accumulated = 256 images per optimizer step" in out
    assert "lr: 0.1 x 4 = 0.4 (train.auto_scale_lr: 256 / base_batch_size 64)" in out
    groups = load_checkpoint(result.run_dir / "last.pt")["optimizer"]["param_groups"]
    assert sorted({g["lr"] for g in groups}) == pytest.approx([0.2, 0.4])  # backbone x0.5


def test_a_total_batch_is_split_over_the_processes_and_checked(tmp_path):
    cfg = from_dict(tiny(tmp_path, "t", accumulate=2))
    del cfg.data["data"]["batch_size"]
    cfg.data["data"]["total_batch_size"] = 8
    settings = run.validate(cfg)
    two = distributed.Processes(rank=0, world_size=2)
    plan = plan_batch(settings, cfg, two)
    assert (plan.per_process, plan.total) == (2, 8)
    assert describe_batch(plan, settings) == [
        "batch: 2 per process x 2 processes x 2 accumulated = 8 images per optimizer step "
        "(data.total_batch_size)"
    ]
    three = distributed.Processes(rank=0, world_size=3)
    with pytest.raises(ConfigError, match="total_batch_size=8 does not split over 3 process"):
        plan_batch(settings, cfg, three)
    cfg.data["data"]["batch_size"] = 4
    both = re.escape("sets both data.batch_size (4, per process) and data.total_batch_size (8,")
    with pytest.raises(ConfigError, match=both):
        plan_batch(run.validate(cfg), cfg, two)
