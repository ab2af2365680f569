"""The benchmarks still run: every step-time pair at a tiny input size for one step, and the
RetinaNet parity bench for one epoch on 16 images.

The figures themselves come from full runs (bench/README.md); this only keeps the scripts
from rotting as the models they build change.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def run_bench(script: str, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def ratios(stdout: str) -> dict[str, float]:
    found = re.findall(r"^(\w+): cvkit / torchvision = ([0-9.]+)", stdout, flags=re.M)
    return {name: float(value) for name, value in found}


TINY = ("--steps", "1", "--rounds", "1", "--threads", "1")


def test_detector_step_time_runs_both_pairs():
    out = ratios(run_bench("detector_step_time.py", "--model", "all", "--size", "64", *TINY))
    assert set(out) == {"retinanet", "faster_rcnn"}
    assert all(r > 0 for r in out.values())


def test_segmenter_step_time_runs_both_pairs():
    out = ratios(run_bench("segmenter_step_time.py", "--size", "48", *TINY))
    assert set(out) == {"fcn_r50_d8", "fcn_r50_8s"}
    assert all(r > 0 for r in out.values())


@pytest.fixture(scope="module")
def shapes_cache(tmp_path_factory) -> dict[str, str]:
    """One generated-data cache for the benches that use the embedded shapes."""
    return {"CVKIT_CACHE": str(tmp_path_factory.mktemp("cache"))}


def test_detection_eval_time_runs_both_ways_with_equal_metrics(shapes_cache):
    args = ("--rounds", "1", "--images", "4", "--threads", "1")
    stdout = run_bench("detection_eval_time.py", *args, env=shapes_cache)
    assert "4 images" in stdout and "both ways" in stdout
    assert re.search(r"^detection_eval: one forward / two forwards = [0-9.]+", stdout, re.M)


def test_retinanet_parity_trains_and_scores_both_models(tmp_path, shapes_cache):
    out = tmp_path / "parity.json"
    args = ("--seeds", "0", "--epochs", "1", "--train-images", "16", "--val-images", "8")
    stdout = run_bench(
        "retinanet_parity.py", *args, "--threads", "1", "--out", str(out),
        env=shapes_cache,
    )  # fmt: skip
    assert "| cvkit | 0 |" in stdout and "| torchvision | 0 |" in stdout
    report = json.loads(out.read_text())
    assert report["complete"] and set(report["runs"]["0"]) == {"cvkit", "torchvision"}
    for side in report["runs"]["0"].values():
        assert len(side["epoch_loss"]) == 1 and 0 <= side["AP"] <= 100


def test_small_data_detection_runs_towers_and_templates(tmp_path, shapes_cache):
    out = tmp_path / "small.json"
    args = ("towers", "templates", "--smoke", "--work-dir", str(tmp_path / "runs"))
    stdout = run_bench("small_data_detection.py", *args, "--out", str(out), env=shapes_cache)
    assert "| towers | P2-P5 + GIoU, 4 convs, GN + He init, head LR 2x |" in stdout
    assert "| templates | Faster R-CNN template |" in stdout
    report = json.loads(out.read_text())
    assert set(report["towers"]) == {
        "P3-P5, 2 convs (the demo)",
        "P2-P5 + GIoU, 4 convs, GN + He init, head LR 2x",
    }
    assert set(report["templates"]) == {"RetinaNet template", "Faster R-CNN template"}
    for runs in report.values():
        for r in runs.values():
            assert 0.0 <= r["AP"] <= 1.0 and r["seconds"] > 0


def test_ddp_scaling_times_one_and_two_processes(shapes_cache, tmp_path):
    out = run_bench(
        "ddp_scaling.py",
        *("--steps", "3", "--warmup", "1", "--rounds", "1", "--batch", "2"),
        *("--out", str(tmp_path / "ddp_scaling.json")),
        env=shapes_cache,
    )
    rows = re.findall(r"^(\dx\d)\s+([0-9.]+)\s+([0-9.]+)$", out, flags=re.M)
    assert [layout for layout, _, _ in rows] == ["1x2", "2x1"]
    assert all(float(rate) > 0 for _, rate, _ in rows)
    assert json.loads((tmp_path / "ddp_scaling.json").read_text())["rows"][1]["layout"] == "2x1"


def test_export_speed_times_eager_and_onnxruntime(shapes_cache):
    args = ("--runs", "1", "--rounds", "1", "--threads", "1", "--models", "classifier", "detector")
    stdout = run_bench("export_speed.py", *args, env=shapes_cache)
    for name in ("classifier", "detector"):
        found = re.search(rf"^{name}: \d+x\d+ image, eager [0-9.]+ ms, onnxruntime [0-9.]+ ms; "
                          r"eager / onnxruntime = ([0-9.]+)$", stdout, re.M)  # fmt: skip
        assert found and float(found.group(1)) > 0, stdout


def test_nms_speed_times_every_nms_and_matches_the_references():
    stdout = run_bench("nms_speed.py", "--boxes", "60", "--repeats", "2", "--threads", "1")
    rows = re.findall(r"^\| ([\w ]+) \| \d+ \| [0-9.]+ \| [0-9.]+x \| (\w+) \|$", stdout, re.M)
    names = ["torchvision nms", "cvkit nms", "soft_nms linear", "soft_nms gaussian"]
    names += ["soft_nms linear numpy", "soft_nms gaussian numpy", "diou_nms"]
    assert rows == [(name, "yes") for name in names], stdout
    assert re.search(r"^goal: soft-NMS and DIoU-NMS <= 10x torchvision's nms: ", stdout, re.M)


def test_predict_speed_times_torchvision_and_cvkit_both_ways():
    stdout = run_bench("predict_speed.py", "--images", "4", "--size", "64", "--threads", "1")
    assert ratios(stdout)["predict"] > 0, stdout
    assert "cvkit batched and batch 1 give the same records: yes" in stdout
