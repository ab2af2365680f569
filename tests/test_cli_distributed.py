"""`torchrun -m cvkit train` and tools/dist_train.sh, on the CPU: one writer, one folder,
several machines, and a failing process that stops the run and is named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY_CLASSIFIER
from tests.multiprocess import free_port

pytestmark = pytest.mark.slow

CONFIG = (
    TINY_CLASSIFIER
    + """
data:
  train: {type: DigitsClassification, split: train, image_size: 16}
  val: {type: DigitsClassification, split: val, image_size: 16}
  batch_size: 16
  num_workers: 0
train: {epochs: 1, max_steps: 6, log_interval: 2, tensorboard: false}
eval: {plots: false}
run_dir: runs
"""
)
FAIL_HOOK = """
from cvkit.engine.trainer import Hook
from cvkit.registry import HOOKS


@HOOKS.register()
class FailOnRank(Hook):
    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def after_step(self, trainer, losses):
        if trainer.processes.rank == self.rank and trainer.step == self.step:
            raise ValueError(f"injected failure at step {trainer.step}")
"""


def launch(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    full_env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    return subprocess.Popen(
        ["bash", str(ROOT / "tools" / "dist_train.sh"), *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def test_dist_train_sh_trains_over_two_processes_and_rank_0_alone_writes(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    code, out, err = finish(launch("c.yaml", "2", "name=two", cwd=tmp_path))
    assert code == 0, err
    assert out.count("run folder: runs/two") == 2  # rank 0's first line and its last
    assert "batch: 16 per process x 2 processes = 32 images per optimizer step" in out
    assert out.count("top1") == 2  # the evaluation line and the final summary, once each
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["two"]
    lines = (tmp_path / "runs/two/metrics.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert [r["step"] for r in records if r["phase"] == "train"] == [2, 4, 6]  # one writer


def test_two_machines_of_one_process_each(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    env = {"NNODES": "2", "MASTER_ADDR": "127.0.0.1", "PORT": str(free_port())}
    nodes = [
        launch("c.yaml", "1", "name=nodes", cwd=tmp_path, env={**env, "NODE_RANK": str(rank)})
        for rank in (0, 1)
    ]
    (code0, out0, err0), (code1, out1, err1) = [finish(p) for p in nodes]
    assert code0 == 0 and code1 == 0, err0 + err1
    assert "batch: 16 per process x 2 processes = 32" in out0
    assert out1.strip() == ""  # the second machine's process is rank 1: silent
    assert (tmp_path / "runs/nodes/last.pt").is_file()


def test_a_failing_process_stops_every_process_and_is_named(tmp_path):
    (tmp_path / "fail_hook.py").write_text(FAIL_HOOK)
    failing = "max_steps: 50, hooks: [{type: FailOnRank, rank: 1, step: 2}]"
    (tmp_path / "c.yaml").write_text(
        CONFIG.replace("max_steps: 6", failing) + "imports: [./fail_hook.py]\n"
    )
    start = time.perf_counter()
    code, out, err = finish(launch("c.yaml", "2", "name=fail", cwd=tmp_path))
    assert code != 0
    # the hook is a plugin's code (config imports): its file and line are named
    assert "error (rank 1 of 2): a plugin failed: " in err
    assert "fail_hook.py, line 13, in after_step: ValueError: injected failure at step 2" in err
    assert "injected failure" not in out
    assert time.perf_counter() - start < 120  # rank 0 did not wait for rank 1 forever
