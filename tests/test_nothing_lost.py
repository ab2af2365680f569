"""Nothing lost: a run that fails midway (bad data, a NaN loss, a full disk, Ctrl-C) keeps its
last good last.pt loadable, and its error says how to resume from it (an exception note)."""

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from cvkit.config import from_dict
from cvkit.data.builtin import DigitsClassification
from cvkit.engine import curves, run
from cvkit.engine.checkpoint import (
    CheckpointWriteError,
    load_checkpoint,
    remove_unfinished_writes,
    save_checkpoint,
)
from cvkit.engine.trainer import Trainer
from tests.test_engine import tiny


def disk_full(*args) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", *args)


class FullDisk:
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.file.write(data[: self.room])
            self.room = 0
            disk_full()
        self.room -= len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def fill_disk(monkeypatch, after_saves: int = 0, where: str = "write") -> None:
    """Every ``torch.save`` after the first ``after_saves`` meets a full disk: part-way
    through its writes, or (``fsync``) when the file is flushed to the disk."""
    save, calls = torch.save, []

    def full_save(obj, f) -> None:
        calls.append(f)
        if len(calls) <= after_saves:
            return save(obj, f)
        if where == "fsync":
            save(obj, f)
            monkeypatch.setattr(os, "fsync", disk_full)
            return None
        return save(obj, FullDisk(f, room=300))

    monkeypatch.setattr(torch, "save", full_save)


def state(value: float) -> dict:
    return {"model": {"w": torch.full((64,), value)}, "trainer": {"step": int(value)}}


@pytest.mark.parametrize("where", ["write", "fsync"])
@pytest.mark.parametrize("previous", [True, False], ids=["over last.pt", "first write"])
def test_a_full_disk_leaves_the_previous_checkpoint_intact_and_no_temp_file(
    tmp_path, monkeypatch, where, previous
):
    path = tmp_path / "last.pt"
    if previous:
        save_checkpoint(state(2.0), path)
    before = path.read_bytes() if previous else None
    fill_disk(monkeypatch, where=where)
    with pytest.raises(CheckpointWriteError) as err:
        save_checkpoint(state(3.0), path)
    monkeypatch.undo()
    # an OSError with the system's errno, naming the checkpoint (not its temp file)
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    assert err.value.filename == str(path)
    kept = "the previous last.pt is intact" if previous else "there was no last.pt before"
    assert err.value.strerror == f"not written, the disk is full (No space left on device); {kept}"
    assert [p.name for p in tmp_path.iterdir()] == (["last.pt"] if previous else [])
    if previous:
        assert path.read_bytes() == before
        loaded = load_checkpoint(path)  # weights_only
        assert torch.equal(loaded["model"]["w"], state(2.0)["model"]["w"])


def test_the_temp_file_of_a_killed_write_is_found_by_its_name(tmp_path, monkeypatch):
    # A killed process never reaches save_checkpoint's clean-up: here the clean-up is a no-op,
    # so the temp file keeps the name save_checkpoint gave it.
    save_checkpoint(state(1.0), tmp_path / "last.pt")
    fill_disk(monkeypatch, where="fsync")
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: None)
    with pytest.raises(CheckpointWriteError):
        save_checkpoint(state(2.0), tmp_path / "last.pt")
    monkeypatch.undo()
    (left,) = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    (tmp_path / ".metrics.jsonl.tmp").write_text("{}")  # not a checkpoint's
    (removed,) = remove_unfinished_writes(tmp_path)
    assert removed.startswith(f"removed {left} (")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".metrics.jsonl.tmp", "last.pt"]
    assert remove_unfinished_writes(tmp_path) == []


def test_a_checkpoint_is_as_readable_as_the_umask_allows(tmp_path):
    umask = os.umask(0o022)
    try:
        path = save_checkpoint(state(1.0), tmp_path / "last.pt")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # not a temp file's 0o600


@pytest.fixture
def no_curves(monkeypatch):
    """No curves.png: matplotlib would take most of these short runs' time."""
    monkeypatch.setattr(curves, "write_curves", lambda *args: None)


def small(tmp_path, **train):
    """tiny()'s classifier on 40 images, 2 steps an epoch, 3 epochs; last.pt after each."""
    cfg = tiny(tmp_path, epochs=3, **train)
    del cfg["data"]["val"]
    cfg["data"]["train"]["per_class"] = 4
    cfg["data"]["batch_size"] = 20
    return from_dict(cfg)


def fail_at(monkeypatch, step: int, error: BaseException | None = None) -> None:
    """The forward of optimizer step ``step`` raises ``error``; ``None``: its loss is NaN."""
    forward = Trainer._forward

    def failing(self, batch):
        losses = forward(self, batch)
        if self.step + 1 != step:
            return losses
        if error is not None:
            raise error
        return {k: v * float("nan") for k, v in losses.items()}

    monkeypatch.setattr(Trainer, "_forward", failing)


def test_a_nan_loss_keeps_last_pt_which_resumes(tmp_path, monkeypatch, no_curves):
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        fail_at(patch, step=3)
        with pytest.raises(FloatingPointError) as err:
            run.train(small(tmp_path))
    assert str(err.value).startswith("loss is nan at step 3 (epoch 2, batch 1)")
    assert err.value.__notes__ == [
        f"{run_dir}/last.pt (step 2, end of epoch 1/3) is intact, but a resume (`cvkit train "
        f"--resume {run_dir}`) takes the same steps with the same settings: fix the data first, "
        "or start a new run with a lower learning rate or train.clip_grad_norm (neither can "
        "change on resume)"
    ]
    saved = load_checkpoint(run_dir / "last.pt")
    assert saved["trainer"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
    resumed = run.train(None, resume=run_dir)  # the run's own config: steps 3 to 6
    assert resumed.run_dir == run_dir
    assert load_checkpoint(run_dir / "last.pt")["trainer"]["step"] == 6


def broken_image(monkeypatch) -> None:
    """The 41st image read (the first of epoch 2) cannot be decoded."""
    getitem, reads = DigitsClassification.__getitem__, []

    def broken(self, i):
        reads.append(i)
        if len(reads) == 41:
            raise ValueError(f"image {i} cannot be decoded")
        return getitem(self, i)

    monkeypatch.setattr(DigitsClassification, "__getitem__", broken)


def disk_full_at_the_second_checkpoint(monkeypatch) -> None:
    fill_disk(monkeypatch, after_saves=1)

    # the disk is full for curves.png too
    monkeypatch.setattr(curves, "write_curves", lambda *a: disk_full("curves.png"))


FAILURES = {
    "bad data": (broken_image, ValueError, "image"),
    "disk full": (disk_full_at_the_second_checkpoint, CheckpointWriteError, "not written"),
    "ctrl-c": (lambda m: fail_at(m, 3, KeyboardInterrupt()), KeyboardInterrupt, ""),
}


@pytest.mark.parametrize("kind", FAILURES)
def test_a_failure_mid_run_says_how_to_resume(tmp_path, monkeypatch, no_curves, kind):
    arrange, error, text = FAILURES[kind]
    arrange(monkeypatch)
    with pytest.raises(error) as err:
        run.train(small(tmp_path))
    monkeypatch.undo()
    assert text in str(err.value)
    run_dir = tmp_path / "run"
    resume = f"`cvkit train --resume {run_dir}`"
    position = "step 2, end of epoch 1/3"  # Ctrl-C in step 3 keeps the position before it
    assert (
        err.value.__notes__[-1] == f"{run_dir}/last.pt ({position}) is intact: resume with {resume}"
    )
    if kind == "disk full":
        # the write of last.pt at step 4 failed: the one of step 2 is there, and no temp file
        assert str(err.value).startswith("[Errno 28] not written, the disk is full")
        assert err.value.filename == str(run_dir / "last.pt")
        assert err.value.__notes__[0] == (
            "then CurvesHook failed too: OSError: [Errno 28] No space left on device: 'curves.png'"
        )
        assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert load_checkpoint(run_dir / "last.pt")["trainer"]["step"] == 2


def test_a_failure_before_the_first_checkpoint_says_the_run_must_start_again(tmp_path, monkeypatch):
    fail_at(monkeypatch, 1, ValueError("image 3 cannot be decoded"))
    with pytest.raises(ValueError) as err:
        run.train(small(tmp_path))
    run_dir = tmp_path / "run"
    assert err.value.__notes__ == [
        "no checkpoint was written yet (last.pt comes every train.checkpoint_interval epochs), "
        f"so the run must start again: `cvkit train {run_dir}/config.yaml` (its config as it ran)"
    ]
    assert not (run_dir / "last.pt").exists()


def test_a_resume_drops_the_records_logged_after_its_checkpoint(tmp_path):
    """A run killed after logging step 6 but with last.pt at step 4 redoes steps 5 and 6:
    metrics.jsonl gets step 6 once, not twice (and a line cut short by the kill goes)."""
    part = run.train(from_dict(tiny(tmp_path, "part", max_steps=4, log_interval=2)))
    log = part.run_dir / "metrics.jsonl"
    before = log.read_text()
    with log.open("a") as f:
        f.write(json.dumps({"phase": "train", "step": 6, "epoch": 1, "loss": 9.0}) + "\n")
        f.write('{"phase": "train", "st')  # the kill, mid-line
    run.train(from_dict(tiny(tmp_path, "part", max_steps=8, log_interval=2)), resume=part.run_dir)
    text = log.read_text()
    assert text.startswith(before)
    records = [json.loads(line) for line in text.splitlines()]
    steps = [r["step"] for r in records if r["phase"] == "train"]
    assert steps == [2, 4, 6, 8]
    assert 9.0 not in [r.get("loss") for r in records]


def test_the_note_of_a_distributed_run_with_plugins_gives_the_whole_command(
    tmp_path, monkeypatch, no_curves
):
    """Under torchrun the command is the same, on as many processes; --plugin flags stay."""
    from types import SimpleNamespace

    from cvkit import plugins
    from cvkit.engine.distributed import Processes

    fail_at(monkeypatch, 3, ValueError("image 3 cannot be decoded"))
    with pytest.raises(ValueError):
        run.train(small(tmp_path))
    monkeypatch.setattr(plugins, "command_line_plugins", lambda: ["my plugin.py"])
    trainer = SimpleNamespace(
        run_dir=tmp_path / "run",
        processes=Processes(rank=0, world_size=4, local_rank=0, local_world_size=2),
        epochs=3,
        steps_in_epoch=lambda: 2,
    )
    note = run.resume_note(trainer, ValueError("image 3 cannot be decoded"))
    assert note == (
        f"{tmp_path}/run/last.pt (step 2, end of epoch 1/3) is intact: resume with "
        f"`cvkit --plugin 'my plugin.py' train --resume {tmp_path}/run` under torchrun, on 4 "
        "processes as before"
    )
