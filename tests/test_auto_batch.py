"""data.batch_size: auto (the probe, with out-of-memory errors injected on the CPU), and an
evaluation batch that runs out of memory split and retried with the same predictions."""

from __future__ import annotations

import pytest
import torch
import yaml

from cvkit.builder import build
from cvkit.config import from_dict
from cvkit.data.loader import build_loader
from cvkit.data.shapes import ShapesDetection
from cvkit.engine import auto_batch, run
from cvkit.engine.auto_batch import probe_batch_size, split_total
from cvkit.engine.tasks import task_of
from cvkit.errors import ConfigError
from cvkit.registry import MODELS
from tests.test_grouping import _detector

GIB = 1 << 30


def fake_step(base: float, per_image: float, fits: int):
    """A training step whose peak grows linearly and that runs out of memory past ``fits``."""
    tried = []

    def measure(size: int) -> int:
        tried.append(size)
        if size > fits:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return int(base + per_image * size)

    return measure, tried


def test_the_line_through_the_peaks_predicts_the_largest_batch():
    measure, tried = fake_step(1.0 * GIB, 0.3 * GIB, fits=100)
    probe = probe_batch_size(measure, limit=64, capacity=4 * GIB, fraction=0.8)
    # peaks 1.3, 1.6, 2.2 GiB fit 3.2; 8 images (3.4) do not; the line says 7
    assert tried == [1, 2, 4, 8, 7] and probe.chosen == 7
    assert probe.predicted_peak == pytest.approx(int(3.1 * GIB), abs=16)
    assert probe.measured_peak == int(3.1 * GIB)
    assert "7 predicted 3.10, measured 3.10 of 4.00" in probe.describe()


def test_an_out_of_memory_error_caps_the_batch():
    measure, tried = fake_step(0.5 * GIB, 0.1 * GIB, fits=3)
    probe = probe_batch_size(measure, limit=64, capacity=16 * GIB)
    assert tried == [1, 2, 4, 3] and probe.chosen == 3 and probe.out_of_memory_at == 4


def test_a_prediction_that_does_not_fit_falls_back_to_the_largest_measured():
    sizes_seen = []

    def measure(size: int) -> int:  # past 4 images the memory grows faster than the line
        sizes_seen.append(size)
        if size >= 8:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return int(GIB * (1 + 0.3 * size + (0.5 if size > 4 else 0.0)))

    probe = probe_batch_size(measure, limit=64, capacity=4 * GIB, fraction=0.8)
    # the line through 1, 2, 4 says 7 (3.1 GiB); 7 measures 3.6: the choice stays at 4
    assert sizes_seen == [1, 2, 4, 8, 7] and probe.chosen == 4


def test_not_even_one_image_fits():
    measure, _ = fake_step(5.0 * GIB, 1.0 * GIB, fits=100)
    with pytest.raises(torch.OutOfMemoryError, match="one image does not fit"):
        probe_batch_size(measure, limit=8, capacity=4 * GIB)


def test_split_total_takes_the_fewest_accumulated_batches():
    assert split_total(16, 1, 5) == (4, 4)
    assert split_total(16, 2, 3) == (2, 4)
    assert split_total(12, 1, 5) == (4, 3)
    assert split_total(8, 1, 64) == (8, 1)


def test_auto_needs_the_total_batch(tmp_path):
    cfg = _detector(tmp_path, "x")
    cfg["data"]["batch_size"] = "auto"
    with pytest.raises(ConfigError, match=r"has no data\.total_batch_size"):
        run.train(from_dict(cfg))


@pytest.mark.slow
def test_a_run_sizes_its_batch_and_keeps_the_effective_batch(tmp_path, monkeypatch, capsys):
    measure, _ = fake_step(1.0 * GIB, 0.5 * GIB, fits=3)  # the "GPU" holds 3 images
    monkeypatch.setattr(auto_batch, "measures_memory", lambda device: True)
    monkeypatch.setattr(auto_batch, "_trial", lambda *args: measure)
    monkeypatch.setattr(auto_batch, "_capacity", lambda device: 8 * GIB)
    cfg = _detector(tmp_path, "auto", max_steps=2)
    cfg["data"].pop("batch_size")
    cfg["data"].update({"batch_size": "auto", "total_batch_size": 8})
    result = run.train(from_dict(cfg))
    out = capsys.readouterr().out
    assert "data.batch_size: auto -> 2 per process x 4 accumulated" in out
    assert "batch: 2 per process x 4 accumulated = 8 images per optimizer step" in out
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["train"]["accumulate"] == 4 and "batch_size" not in saved["data"]
    assert saved["data"]["total_batch_size"] == 8


def test_on_the_cpu_auto_takes_the_whole_share(tmp_path, capsys):
    cfg = _detector(tmp_path, "cpu", max_steps=1)
    cfg["data"].update({"batch_size": "auto", "total_batch_size": 4})
    result = run.train(from_dict(cfg))
    assert "on the cpu every process takes its share" in capsys.readouterr().out
    assert "batch_size" not in yaml.safe_load((result.run_dir / "config.yaml").read_text())["data"]


def test_an_evaluation_batch_out_of_memory_is_split_with_the_same_predictions(
    tmp_path, monkeypatch, caplog
):
    model = build(_detector(tmp_path, "e")["model"], MODELS).eval()
    dataset = ShapesDetection("val", num_images=8, image_size=64, root=str(tmp_path / "c"))
    task = task_of(model)
    loader = build_loader(dataset, 8, shuffle=False, collate_fn=task.collate(model))
    whole = task.evaluate(model, loader, torch.device("cpu"), dataset)
    real = model.loss_and_predict

    def small_only(batch):
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(batch)

    monkeypatch.setattr(model, "loss_and_predict", small_only)
    split = task.evaluate(model, loader, torch.device("cpu"), dataset)
    # a detection loss is normalised by the batch's positive anchors: the halves' weighted
    # mean is close to the whole batch's, not equal; the predictions, and the metrics, are
    assert split.metrics.pop("val_loss") == pytest.approx(whole.metrics.pop("val_loss"), rel=0.05)
    assert split.metrics == whole.metrics and whole.metrics["AP"] >= 0
    assert "evaluation ran out of memory on a batch of 8" in caplog.text
