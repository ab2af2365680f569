"""bench/coco_eval_speed.py still runs, in both ways of timing, on masks too: a few images.

The figures come from full runs (bench/README.md); this keeps the script working and checks
that what it compares agrees: every backend's stats equal pycocotools'.
"""

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

BENCH = ROOT / "bench" / "coco_eval_speed.py"


def run_bench(tmp_path, *args: str) -> tuple[str, dict]:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", "12", "--repeats", "1", "--data-dir",
         str(tmp_path / "data"), "--out", str(out), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_whole_processes_on_masks_agree_with_pycocotools(tmp_path):
    stdout, result = run_bench(tmp_path, "--whole-process", "--iou-type", "segm")
    processes = result["sizes"]["12"]["processes"]
    names = ["cvkit coco-eval", "cvkit coco-eval --out", "faster-coco-eval", "pycocotools"]
    assert list(processes) == names
    for name, s in processes.items():
        # cvkit exactly; faster-coco-eval is an ulp off pycocotools at times
        assert s["max_abs_diff"] <= (0 if "cvkit" in name else 1e-12), name
        assert s["stats_vs"] == "pycocotools" and s["wall_s"] > 0 and s["cpu_s"] > 0
    assert re.search(
        r"^\| cvkit coco-eval \| [0-9.]+ \| .* \| <= 0\.5x: (yes|NO) \| 0 ", stdout, re.M
    )
    # the masks: polygons and crowd RLE in the ground truth, compressed RLE in the results
    gt = json.loads(next((tmp_path / "data").glob("*_segm_gt.json")).read_text())
    results = json.loads(next((tmp_path / "data").glob("*_segm_results.json")).read_text())
    kinds = {type(a["segmentation"]).__name__ for a in gt["annotations"]}
    assert kinds <= {"list", "dict"} and "list" in kinds
    crowd = [a["segmentation"] for a in gt["annotations"] if a["iscrowd"]]
    assert all(isinstance(s["counts"], list) for s in crowd)
    assert all(isinstance(r["segmentation"]["counts"], str) and "bbox" in r for r in results)


def test_inside_the_process_every_backend_gives_pycocotools_stats(tmp_path):
    stdout, result = run_bench(tmp_path)
    backends = result["sizes"]["12"]["backends"]
    assert set(backends) == {"cvkit", "pycocotools", "faster-coco-eval"}
    assert backends["cvkit"]["max_abs_diff_vs_pycocotools"] == 0
    assert backends["faster-coco-eval"]["max_abs_diff_vs_pycocotools"] <= 1e-12
    assert "goal: stats identical to pycocotools: True" in stdout
