"""`cvkit coco-eval GT RESULTS`: tables, the report folder, and clean errors."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from cvkit.coco_file import CocoFormatError, load_coco_json
from cvkit.data.synthetic_coco import coco_like
from cvkit.evaluation.coco_map import STAT_NAMES, evaluate_coco
from cvkit.visualize.detection_plots import (
    plot_detection_confusion,
    plot_pr_curve,
    plot_pr_grid,
    plot_pr_per_class,
    pr_curve_data,
)
from tests.conftest import ROOT, run_cli

STAT_LINE = re.compile(r"^ Average (Precision|Recall) .* = (-?\d+\.\d{3})$")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coco_eval")
    gt, results = coco_like(30, 5)
    (folder / "gt.json").write_text(json.dumps(gt))
    (folder / "results.json").write_text(json.dumps(results))
    return folder, gt, results


@pytest.fixture(scope="module")
def report(files):
    folder, _, _ = files
    out = run_cli("coco-eval", "gt.json", "results.json", "--out", "report", cwd=folder)
    assert out.returncode == 0, out.stderr
    return folder, out.stdout


def _printed_stats(stdout: str) -> list[float]:
    return [float(m.group(2)) for line in stdout.splitlines() if (m := STAT_LINE.match(line))]


def test_prints_the_12_lines_with_pycocotools_numbers_and_the_class_table(files, report):
    folder, stdout = report
    reference = evaluate_coco(folder / "gt.json", folder / "results.json", backend="pycocotools")
    printed = _printed_stats(stdout)
    assert len(printed) == 12
    assert printed == [round(reference.stats[name], 3) for name in STAT_NAMES]
    assert "AP50" in stdout and "AR100" in stdout
    assert re.search(r"^class_5 +n/a +n/a +n/a +n/a +0$", stdout, re.M)  # no ground truth
    assert re.search(r"evaluated with cvkit in \d+\.\d\d s", stdout)
    assert "right class" in stdout and "wrote report" in stdout


def test_writes_every_number_and_the_confusion_counts(files, report):
    folder, _ = report
    _, gt, _ = files
    data = json.loads((folder / "report" / "coco_eval.json").read_text())
    reference = evaluate_coco(gt, json.loads((folder / "results.json").read_text()))
    assert data["stats"] == reference.stats  # the same floats, written exactly
    assert data["ground_truth"] == "gt.json" and data["iou_type"] == "bbox"
    assert np.array_equal(data["precision"], reference.precision)
    assert np.array_equal(data["scores"], reference.scores)
    assert np.array(data["precision"]).shape == (10, 101, 5, 4, 3)
    confusion = data["confusion"]
    assert confusion["labels"][-1] == "background" and confusion["score_threshold"] == 0.3
    counts = np.array(confusion["counts"])
    assert counts.shape == (6, 6)
    # every non-crowd gt is counted once in its class's row: matched or missed
    num_gt = [data["per_class"][name]["num_gt"] for name in data["class_names"]]
    assert counts[:-1].sum(axis=1).tolist() == num_gt


def test_the_json_carries_each_class_precision_recall_curves(files, report):
    """What the per-class plots draw is in coco_eval.json, to draw them again later."""
    folder, _ = report
    data = json.loads((folder / "report" / "coco_eval.json").read_text())
    curves = data["pr_curves"]
    assert curves["area"] == "all" and curves["max_dets"] == 100
    assert curves["recall"] == np.linspace(0, 1, 101).tolist()
    assert curves["curves"] == ["IoU=.50", "IoU=.75", "IoU=.50:.95"]
    assert [c["id"] for c in curves["classes"]] == data["cat_ids"] == [1, 2, 3, 4, 5]
    assert [c["name"] for c in curves["classes"]] == data["class_names"]
    p = np.array(data["precision"])[:, :, :, 0, 2]  # area all, maxDets 100
    for k, entry in enumerate(curves["classes"][:4]):
        assert entry["precision"]["IoU=.50"] == p[0, :, k].tolist()
        assert entry["precision"]["IoU=.75"] == p[5, :, k].tolist()
        assert entry["precision"]["IoU=.50:.95"] == pytest.approx(p[:, :, k].mean(axis=0))
        # the AP the per-class table prints is the mean of the .50:.95 curve
        assert np.mean(entry["precision"]["IoU=.50:.95"]) == pytest.approx(
            data["per_class"][entry["name"]]["AP"]
        )
    assert curves["classes"][4]["precision"] is None  # class_5 has no ground truth


def test_draws_the_precision_recall_curves_and_the_confusion_matrix(report):
    folder, stdout = report
    out = folder / "report"
    for path in [out / "pr_curve.png", out / "pr_curves_grid.png", out / "confusion_matrix.png"]:
        assert path.stat().st_size > 20_000, path
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300, path
        assert image[..., :3].std() > 0.05, path  # not a blank picture
    # one PNG per class only when asked for: --per-class-plots
    assert not (out / "pr_curves").exists() and "pr_curves/" not in stdout


def test_per_class_plots_write_one_png_per_class_with_ground_truth(files):
    folder, _, _ = files
    out = run_cli("coco-eval", "gt.json", "results.json", "--out", "per_class", "--per-class-plots",
                  cwd=folder)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "pr_curves/ (4 PNGs)" in out.stdout
    per_class = sorted((folder / "per_class" / "pr_curves").glob("*.png"))
    assert [p.name for p in per_class] == [f"{k}_class_{k}.png" for k in (1, 2, 3, 4)]
    image = imread(per_class[0])
    assert image.shape[:2] == (456, 576) and per_class[0].stat().st_size > 10_000
    assert image[..., :3].std() > 0.05


def test_per_class_plots_need_an_out_folder(files):
    folder, _, _ = files
    out = run_cli("coco-eval", "gt.json", "results.json", "--per-class-plots", cwd=folder)
    assert out.returncode == 1
    assert "error: --per-class-plots writes into the --out folder" in out.stderr


def test_pycocotools_backend_without_out_prints_and_writes_nothing(files):
    folder, _, _ = files
    before = sorted(p.name for p in folder.iterdir())
    out = run_cli("coco-eval", "gt.json", "results.json", "--backend", "pycocotools", cwd=folder)
    assert out.returncode == 0, out.stderr
    reference = evaluate_coco(folder / "gt.json", folder / "results.json", backend="pycocotools")
    assert _printed_stats(out.stdout) == [round(reference.stats[n], 3) for n in STAT_NAMES]
    assert "evaluated with pycocotools" in out.stdout and "wrote" not in out.stdout
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_missing_file_is_named(files):
    folder, _, _ = files
    out = run_cli("coco-eval", "nope.json", "results.json", cwd=folder)
    assert out.returncode == 1
    assert f"error: COCO file 'nope.json' (relative to '{folder}') does not exist" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_json_is_named(files):
    folder, _, _ = files
    (folder / "broken.json").write_text('[{"image_id": 1,')
    out = run_cli("coco-eval", "gt.json", "broken.json", "--out", "x", cwd=folder)
    assert out.returncode == 1
    assert "COCO file 'broken.json' is not valid JSON: Expecting" in out.stderr
    assert not (folder / "x").exists()


def test_a_broken_ground_truth_gets_the_training_datasets_message(files):
    folder, gt, _ = files
    broken = {**gt, "annotations": [dict(a) for a in gt["annotations"]]}
    broken["annotations"][4]["bbox"] = [1, 2, 3]
    (folder / "broken_gt.json").write_text(json.dumps(broken))
    with pytest.raises(CocoFormatError) as training:  # what CocoDetection reads it with
        load_coco_json(folder / "broken_gt.json")
    out = run_cli("coco-eval", str(folder / "broken_gt.json"), "results.json", cwd=folder)
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: {training.value}"


def test_results_for_other_images_are_refused(files):
    folder, _, results = files
    (folder / "other.json").write_text(json.dumps([{**results[0], "image_id": 99999}]))
    out = run_cli("coco-eval", "gt.json", "other.json", cwd=folder)
    assert out.returncode == 1
    assert "other.json" in out.stderr and "gt.json" in out.stderr
    assert "99999" in out.stderr and "Traceback" not in out.stderr


def test_the_parser_offers_every_backend_without_importing_numpy():
    from cvkit.cli import _parser
    from cvkit.evaluation.coco_map import BACKENDS

    for backend in BACKENDS:  # the parser spells the list out
        args = _parser().parse_args(["coco-eval", "gt.json", "res.json", "--backend", backend])
        assert args.backend == backend
    code = "import sys; from cvkit.cli import _parser; _parser(); print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def test_an_unknown_backend_is_refused_by_the_parser(files):
    folder, _, _ = files
    out = run_cli("coco-eval", "gt.json", "results.json", "--backend", "detectron", cwd=folder)
    assert out.returncode == 2
    assert "invalid choice: 'detectron'" in out.stderr and "pycocotools" in out.stderr


# The report's plots, in process: the edges the CLI run does not reach.


def test_plots_when_no_class_has_ground_truth(tmp_path):
    precision = -np.ones((10, 101, 3, 4, 3))
    names = ["a", "b", "c"]
    assert plot_pr_curve(precision, tmp_path / "pr.png").stat().st_size > 5_000
    assert plot_pr_per_class(precision, names, tmp_path / "per_class") == []
    assert plot_pr_grid(precision, names, tmp_path / "grid.png").is_file()
    counts = np.zeros((4, 4), int)
    assert plot_detection_confusion(counts, names, tmp_path / "cm.png").is_file()


def test_plots_many_classes_a_grid_of_every_class_and_one_png_each(tmp_path):
    rng = np.random.default_rng(0)
    precision = np.sort(rng.random((10, 101, 40, 4, 3)), axis=1)[:, ::-1]
    precision[:, :, 7] = -1  # a class without ground truth: an empty panel, no PNG
    names = [f"a rather long class name {k}" for k in range(40)]
    written = plot_pr_per_class(precision, names, tmp_path / "pc", cat_ids=range(1, 41))
    assert len(written) == 39 and written[0].name == "01_a_rather_long_class_name_0.png"
    grid = imread(plot_pr_grid(precision, names, tmp_path / "grid.png"))
    assert grid.shape[1] > grid.shape[0] > 800  # 8 columns, 5 rows: every class
    assert grid[..., :3].std() > 0.05
    counts = rng.integers(0, 50, (41, 41))
    image = imread(plot_detection_confusion(counts, names, tmp_path / "cm.png"))
    assert min(image.shape[:2]) > 1500


def test_the_grid_shows_the_first_100_classes(tmp_path):
    precision = np.tile(np.linspace(1, 0, 101)[None, :, None, None, None], (10, 1, 120, 4, 3))
    names = [f"c{k}" for k in range(120)]
    wide = imread(plot_pr_grid(precision, names, tmp_path / "grid.png"))
    few = imread(plot_pr_grid(precision, names, tmp_path / "few.png", max_classes=12))
    assert wide.shape[0] > 2 * few.shape[0] and wide.shape[1] > 2 * few.shape[1]
    data = pr_curve_data(precision, names)
    assert len(data["classes"]) == 120 and data["classes"][119]["id"] == 120


def test_plots_refuse_shapes_that_do_not_fit(tmp_path):
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        plot_pr_grid(np.zeros((10, 101, 3, 4, 3)), ["a", "b"], tmp_path / "g.png")
    with pytest.raises(ValueError, match=r"precision \[T, R, K, A, M\]"):
        plot_pr_curve(np.zeros((10, 101, 3)), tmp_path / "p.png")
    with pytest.raises(ValueError, match="expected 3 x 3 counts"):
        plot_detection_confusion(np.zeros((2, 2)), ["a", "b"], tmp_path / "c.png")
