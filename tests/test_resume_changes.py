"""`cvkit train --resume RUN [overrides]`: the run's own config, the changes a resume allows
(printed, recorded in resumes.jsonl), config.yaml never rewritten, a schedule that follows a
longer run, and one message for every change it refuses."""

import json
import math

import pytest

from cvkit.config import from_dict, yaml_io
from cvkit.engine import run
from cvkit.engine.checkpoint import load_checkpoint
from cvkit.engine.resume import describe_changes, plan_resume
from cvkit.errors import ConfigError
from tests.conftest import TINY_CLASSIFIER, run_cli

CONFIG = (
    TINY_CLASSIFIER
    + """data:
  train: {type: DigitsClassification, split: train, per_class: 25, image_size: 16}
  val: {type: DigitsClassification, split: val, per_class: 6, image_size: 16}
  batch_size: 64
  num_workers: 0
train:
  epochs: 1
  log_interval: 2
  optimizer: {type: SGD, lr: 0.1, momentum: 0.9}
  schedule: {type: Cosine}
  tensorboard: false
eval: {plots: false}
run_dir: runs
name: ext
"""
)


def _fails(out, code: int) -> str:
    assert out.returncode == code, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ")
    return out.stderr


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch run (4 steps), then extended to 2 epochs with no config given."""
    folder = tmp_path_factory.mktemp("extend")
    (folder / "c.yaml").write_text(CONFIG)
    out = run_cli("train", "c.yaml", cwd=folder)
    assert out.returncode == 0, out.stderr
    run_dir = folder / "runs" / "ext"
    original = (run_dir / "config.yaml").read_text()
    # what a run killed while writing last.pt leaves, and a file of the user's beside it
    (run_dir / ".last.pt.0123abcd.tmp").write_bytes(b"\0" * 2**20)
    (run_dir / ".notes.tmp").write_text("mine")
    extended = run_cli("train", "--resume", "runs/ext", "train.epochs=2", cwd=folder)
    assert extended.returncode == 0, extended.stderr
    return folder, run_dir, original, extended.stdout


def test_extending_a_finished_run_needs_no_config_and_keeps_its_history(finished):
    _, run_dir, original, out = finished
    assert "resumed runs/ext after epoch 1/2, step 4; changed:" in out
    assert "  train.epochs: 1 -> 2 (the command line)" in out
    assert (run_dir / "config.yaml").read_text() == original  # never rewritten
    state = load_checkpoint(run_dir / "last.pt")
    assert (state["trainer"]["epoch"], state["trainer"]["step"]) == (2, 8)
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["epoch"]) for r in records if r["phase"] == "val"] == [
        ("val", 1),
        ("val", 2),
    ]
    assert [r["step"] for r in records if r["phase"] == "train"] == [2, 4, 6, 8]
    (record,) = [json.loads(x) for x in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert record["checkpoint"] == "last.pt" and record["step"] == 4
    assert record["changes"] == {"train.epochs": [1, 2]}


def test_a_resume_removes_the_temp_file_of_a_killed_write_and_says_so(finished):
    _, run_dir, _, out = finished
    assert not (run_dir / ".last.pt.0123abcd.tmp").exists()
    assert (run_dir / ".notes.tmp").read_text() == "mine"
    expected = "removed .last.pt.0123abcd.tmp (1.0 MiB), a checkpoint write that a killed process"
    assert expected in out


def test_the_schedule_stretches_over_the_longer_run(finished):
    """The cosine had reached 0 at step 4 of 4; over 8 steps, step 4 is its middle."""
    _, run_dir, _, out = finished
    assert "the LR schedule follows the new length: lr 0 -> 0.05 at step 4" in out
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in records if r["phase"] == "train"}
    # the LR a record shows is the one after its step: the cosine's value at 6 of 8 steps
    assert lrs[6] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 6 / 8)))
    assert lrs[4] == 0.0  # the first run's last step, on the old 4-step schedule


def test_a_later_resume_keeps_the_recorded_changes(finished):
    folder, run_dir, original, _ = finished
    out = run_cli("train", "--resume", "runs/ext", cwd=folder)
    assert out.returncode == 0, out.stderr
    assert "resumed runs/ext after epoch 2/2, step 8\n" in out.stdout  # nothing changed
    assert load_checkpoint(run_dir / "last.pt")["trainer"]["step"] == 8
    assert (run_dir / "config.yaml").read_text() == original


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (
            ["train.optimizer.lr=0.5"],
            2,
            "cannot resume runs/ext/last.pt with other settings than it was trained with: "
            "train.optimizer.lr: 0.1 -> 0.5 (the command line)",
        ),
        (
            ["train.epochs=1"],
            2,
            "train.epochs=1 is fewer than the 2 epoch(s) runs/ext/last.pt has already trained",
        ),
        (["name=other"], 2, "a resumed run continues in its own folder (runs/ext); name"),
        (["--resume", "runs/nothing"], 1, "cannot resume: 'runs/nothing' does not exist"),
    ],
)
def test_refused_resumes_say_why(finished, args, code, expected):
    folder, run_dir, original, _ = finished
    full = ["train", *args] if args[0] == "--resume" else ["train", "--resume", "runs/ext", *args]
    err = _fails(run_cli(*full, cwd=folder), code)
    assert expected in err
    assert (run_dir / "config.yaml").read_text() == original
    if "lr" in args[0]:
        assert "only these may change: train.epochs, train.max_steps" in err
        assert "start a new run: `cvkit train CFG ...`" in err


def test_train_without_a_config_or_resume_is_a_usage_error(tmp_path):
    err = _fails(run_cli("train", cwd=tmp_path), 2)
    assert "cvkit train needs a config file (or --resume RUN to continue a run)" in err


def test_a_config_given_beside_resume_is_compared_with_the_run(finished, tmp_path):
    folder, _, _, _ = finished
    (folder / "other.yaml").write_text(CONFIG.replace("width: 4", "width: 8"))
    err = _fails(run_cli("train", "other.yaml", "--resume", "runs/ext", cwd=folder), 2)
    assert "model.backbone.width: 4 -> 8 (other.yaml)" in err


def test_plan_resume_of_a_checkpoint_outside_its_folder_uses_the_stored_config(finished, tmp_path):
    _, run_dir, _, _ = finished
    moved = tmp_path / "elsewhere.pt"
    moved.write_bytes((run_dir / "last.pt").read_bytes())
    plan = plan_resume(moved, None, ["train.epochs=3"])
    assert plan.changes == {"train.epochs": (2, 3)}
    assert plan.cfg.get("model.backbone.width") == 4


def test_a_resume_with_changes_only_where_allowed_through_the_library(tmp_path):
    cfg = _tiny_dict(tmp_path)
    part = run.train(from_dict(cfg, ["train.max_steps=2"]))
    with pytest.raises(ConfigError, match=r"model\.head\.dropout: 0\.0 -> 0\.5"):
        run.train(from_dict(cfg, ["model.head.dropout=0.5"]), resume=part.run_dir)
    done = run.train(from_dict(cfg, ["data.num_workers=1"]), resume=part.run_dir)
    assert done.run_dir == part.run_dir


def _tiny_dict(tmp_path):
    data = yaml_io.loads(CONFIG)
    data["run_dir"] = str(tmp_path)
    data["model"]["head"]["dropout"] = 0.0
    return data


def test_a_recorded_change_the_checkpoint_never_saw_is_applied_and_named(finished, tmp_path):
    """A resume that changed train.epochs and stopped before its first checkpoint: the next
    resume applies the recorded change again, and says where it came from."""
    _, run_dir, _, _ = finished
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.yaml", "last.pt", "resumes.jsonl"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    record = {"checkpoint": "last.pt", "step": 8, "epoch": 2, "changes": {"train.epochs": [2, 4]}}
    with (copy / "resumes.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    plan = plan_resume(copy, None)
    assert plan.changes == {"train.epochs": (2, 4)}
    assert describe_changes(plan.changes, plan.cfg) == [
        f"train.epochs: 2 -> 4 ({copy / 'resumes.jsonl'})"
    ]
