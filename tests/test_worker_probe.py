"""`data.num_workers: auto` measured: the probe's curve and choice, its cache, the line a run
prints, and `cvkit tune-loader`."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cvkit.config import from_dict
from cvkit.data.collate import collate_classification
from cvkit.data.worker_probe import WorkerProbe, choose, probe_workers
from cvkit.engine import distributed, loader_workers, run
from tests.conftest import TINY_CLASSIFIER, run_cli
from tests.test_engine import tiny


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CVKIT_CACHE", str(tmp_path / "cache"))


def test_choose_takes_the_smallest_count_within_the_tolerance():
    assert choose([0, 1, 2, 3], [40.0, 77.0, 80.0, 81.0]) == 1  # 77 >= 0.95 x 81
    assert choose([0, 1, 2], [40.0, 70.0, 80.0]) == 2
    assert choose([0, 1], [50.0, 40.0]) == 0


class SlowImages:
    """Items that take 20 ms each to 'decode' (a sleep: no CPU, so the test holds on a busy
    machine): workers overlap them."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int):
        time.sleep(0.02)
        return np.zeros((8, 8, 3), np.uint8), i % 2


def test_more_workers_load_sleep_bound_items_faster():
    probe = probe_workers(SlowImages(), 4, collate_classification, [0, 2], batches=6)
    assert probe.counts == [0, 2]
    assert probe.rates[1] > 1.4 * probe.rates[0]
    assert probe.chosen == 2


def test_auto_probes_once_then_reads_the_cache(monkeypatch):
    calls = []

    def fake_probe(dataset, batch_size, collate, counts, **kw):
        calls.append(list(counts))
        return WorkerProbe([0, 1], [10.0, 30.0], 1)

    monkeypatch.setattr(loader_workers, "probe_workers", fake_probe)
    cfg = from_dict({"data": {"train": {"type": "DigitsClassification"}}})
    processes = distributed.Processes()
    first = loader_workers.auto_workers(cfg, [], 8, collate_classification, processes)
    second = loader_workers.auto_workers(cfg, [], 8, collate_classification, processes)
    assert first[0] == second[0] == 1 and len(calls) == 1
    assert "measured now: 0: 10 img/s, 1: 30 -> 1" in first[1]
    assert "measured before, cached" in second[1]
    other = loader_workers.auto_workers(cfg, [], 16, collate_classification, processes)
    assert len(calls) == 2 and other[0] == 1  # another batch size is another measurement


def test_a_run_with_auto_says_what_it_measured(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(loader_workers, "candidate_counts", lambda cores: [0, 1])
    cfg = tiny(tmp_path, max_steps=2)
    cfg["data"]["num_workers"] = "auto"
    run.train(from_dict(cfg))
    out = capsys.readouterr().out
    assert "data.num_workers: auto -> " in out and "measured now: 0: " in out


@pytest.mark.slow
def test_tune_loader_prints_the_curve(write, tmp_path):
    config = write(
        "c.yaml",
        TINY_CLASSIFIER
        + "data:\n  train: {type: DigitsClassification, split: train, image_size: 16}\n"
        + "  batch_size: 32\n",
    )
    out = run_cli(
        "tune-loader", str(config), "--max-workers", "1", env={"CVKIT_CACHE": str(tmp_path)}
    )
    assert out.returncode == 0, out.stderr
    assert "workers   images/s" in out.stdout and "<- chosen" in out.stdout
    assert "smallest count within 5% of the best" in out.stdout
