"""Detection through the command line: train, eval, predict, on a tiny shapes dataset."""

import json
import re

import pytest

from tests.conftest import run_cli

CONFIG = """
model:
  type: RetinaNet
  backbone: {type: TinyNet, width: 8, out_indices: [1, 2, 3]}
  neck: {type: FPN, out_channels: 16, extra_levels: 0}
  head: {type: RetinaHead, num_classes: auto, num_convs: 1, feat_channels: 16}
  anchor_generator: {type: AnchorGenerator, sizes: [[12], [24], [48]], scales: [1.0, 1.26, 1.587]}
  preprocessor: {type: Preprocessor, size_divisor: 16, pad_to: 160}
data:
  train: {type: ShapesDetection, split: train, num_images: 16, image_size: 128}
  val: {type: ShapesDetection, split: val, num_images: 8, image_size: 128}
  batch_size: 4
  num_workers: 0
train: {epochs: 1, max_steps: 3, optimizer: {type: AdamW, lr: 1.0e-3}, tensorboard: false}
run_dir: runs
name: det
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("det")
    (folder / "c.yaml").write_text(CONFIG)
    env = {"CVKIT_CACHE": str(folder / "cache")}
    out = run_cli("train", "c.yaml", cwd=folder, env=env)
    assert out.returncode == 0, out.stderr
    assert "AP50" in out.stdout
    # num_classes: auto, from the annotation file's categories, shown with their ids
    assert "3 classes: 0: circle (id 1), 1: square (id 2), 2: triangle (id 3)" in out.stdout
    assert "model.head.num_classes: 3 (auto, from data.train's classes)" in out.stdout
    assert "num_classes: 3" in (folder / "runs" / "det" / "config.yaml").read_text()
    return folder, env


def test_train_writes_coco_results_and_a_picture(trained):
    folder, _ = trained
    run = folder / "runs" / "det"
    report = json.loads((run / "eval.json").read_text())
    assert set(report["per_class"]) == {"circle", "square", "triangle"}
    assert 0.0 <= report["metrics"]["AP"] <= 1.0
    results = json.loads((run / "results.json").read_text())
    assert all(r["category_id"] in (1, 2, 3) and len(r["bbox"]) == 4 for r in results)
    assert (run / "predictions.png").stat().st_size > 1000
    assert (run / "pr_curve.png").stat().st_size > 1000


def test_eval_and_predict_with_the_checkpoint(trained):
    folder, env = trained
    out = run_cli(
        "eval", "c.yaml", "--checkpoint", "runs/det/last.pt", "--out", "ev", cwd=folder, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "AP" in out.stdout and (folder / "ev" / "results.json").is_file()
    image = next((folder / "cache").rglob("*.png"))
    out = run_cli(
        "predict",
        "c.yaml",
        str(image),
        "--checkpoint",
        "runs/det/last.pt",
        "--out",
        "pred",
        "--json",
        cwd=folder,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)[0]
    assert result["image_id"] == 1 and isinstance(result["detections"], list)
    assert (folder / "pred" / f"{image.stem}.png").is_file()
    coco = json.loads((folder / "pred" / "results.json").read_text())
    assert len(coco) == len(result["detections"])


def test_a_class_count_that_disagrees_with_the_file_gives_both_numbers(trained):
    folder, env = trained
    out = run_cli("train", "c.yaml", "model.head.num_classes=5", cwd=folder, env=env)
    assert out.returncode == 2
    assert "num_classes=5 but data.train has 3 classes" in out.stderr


FASTER_RCNN = """
model:
  type: FasterRCNN
  backbone: {type: TinyNet, width: 8, out_indices: [0, 1, 2, 3]}
  neck: {type: FPN, out_channels: 16, extra_levels: 1, extra_type: maxpool}
  rpn_head:
    type: RPNHead
    anchor_generator: {type: AnchorGenerator, sizes: [[8], [16], [32], [64], [128]]}
  # num_classes left out: filled from the data
  roi_head: {type: RoIHead, roi_strides: [2, 4, 8, 16], fc_channels: 32}
  preprocessor: {type: Preprocessor, size_divisor: 32, pad_to: 160}
data:
  train: {type: ShapesDetection, split: train, num_images: 8, image_size: 128}
  val: {type: ShapesDetection, split: val, num_images: 4, image_size: 128}
  batch_size: 4
  num_workers: 0
train: {epochs: 1, max_steps: 2, optimizer: {type: AdamW, lr: 1.0e-3}, tensorboard: false}
run_dir: runs
name: frcnn
"""


def test_faster_rcnn_trains_evaluates_and_names_its_class_count_key(tmp_path):
    (tmp_path / "c.yaml").write_text(FASTER_RCNN)
    env = {"CVKIT_CACHE": str(tmp_path / "cache")}
    out = run_cli("train", "c.yaml", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "AP50" in out.stdout
    assert "model.roi_head.num_classes: 3 (auto, from data.train's classes)" in out.stdout
    assert json.loads((tmp_path / "runs" / "frcnn" / "eval.json").read_text())["per_class"]
    out = run_cli("eval", "c.yaml", "--checkpoint", "runs/frcnn/last.pt", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    out = run_cli("train", "c.yaml", "model.roi_head.num_classes=5", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert "model.roi_head.num_classes: the model has num_classes=5 but data.train" in out.stderr
    assert "set model.roi_head.num_classes=3" in out.stderr


def _predict(folder, env, image, out, *options):
    """`cvkit predict` with the trained checkpoint and a model score threshold of 0.001: three
    steps of training leave every score near the 0.01 prior, below the default 0.05."""
    low = folder / "low.yaml"
    if not low.is_file():
        low.write_text(CONFIG.replace("model:\n", "model:\n  score_threshold: 0.001\n", 1))
    return run_cli(
        "predict",
        "low.yaml",
        str(image),
        "--checkpoint",
        "runs/det/last.pt",
        "--out",
        out,
        *options,
        cwd=folder,
        env=env,
    )


def _table_scores(stdout: str) -> list[float]:
    """The score column of the detections table (rows are indented under the image line)."""
    return [float(line.split()[0]) for line in stdout.splitlines() if line.startswith("  ")]


@pytest.mark.parametrize("option", ["--score-threshold", "--topk"])
def test_predict_filters_agree_in_table_json_and_results_file(trained, option):
    folder, env = trained
    image = next((folder / "cache").rglob("*.png"))
    everything = json.loads(_predict(folder, env, image, "all", "--json").stdout)[0]["detections"]
    assert len(everything) > 3
    if option == "--score-threshold":
        # results.json has 5 decimals, the JSON 4 (all 0.0101 here): a threshold halfway
        # between two of the former cuts the raw scores as it cuts those printed there
        printed = [c["score"] for c in json.loads((folder / "all" / "results.json").read_text())]
        distinct = sorted(set(printed))
        assert len(distinct) > 1
        k = len(distinct) // 2
        threshold = (distinct[k - 1] + distinct[k]) / 2
        options = [option, str(threshold)]
        want = everything[: sum(score >= threshold for score in printed)]
    else:
        options, want = [option, "3"], everything[:3]
    assert 0 < len(want) < len(everything)
    out = _predict(folder, env, image, "json", "--json", *options)
    assert out.returncode == 0, out.stderr
    detections = json.loads(out.stdout)[0]["detections"]
    scores = [d["score"] for d in detections]
    assert detections == want and scores == sorted(scores, reverse=True)
    coco = json.loads((folder / "json" / "results.json").read_text())
    assert len(coco) == len(detections)
    assert sorted(round(c["score"], 4) for c in coco) == sorted(scores)
    if option == "--score-threshold":
        assert all(c["score"] >= threshold for c in coco)
        assert all(s >= round(threshold, 4) - 1e-4 for s in scores)  # 4 decimals
    table = _predict(folder, env, image, "table", *options)
    assert table.returncode == 0, table.stderr
    assert f": {len(detections)} detections" in table.stdout
    assert _table_scores(table.stdout) == [round(s, 2) for s in scores]


def test_predict_without_filters_keeps_every_detection_in_table_and_results(trained):
    folder, env = trained
    image = next((folder / "cache").rglob("*.png"))
    detections = json.loads(_predict(folder, env, image, "plain", "--json").stdout)[0]
    coco = json.loads((folder / "plain" / "results.json").read_text())
    assert len(coco) == len(detections["detections"])
    table = _predict(folder, env, image, "plain_table")
    assert len(_table_scores(table.stdout)) == len(detections["detections"])


def test_predict_help_says_what_the_filters_do():
    out = run_cli("predict", "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "keep only detections scoring at least S, in the table, the JSON, results.json" in text
    assert "keep only the K highest-scoring detections of each image" in text
    assert (
        run_cli("predict", "c.yaml", "x.png", "--checkpoint", "a.pt", "--topk", "0").returncode == 2
    )


def _checked_metric(stdout: str) -> tuple[float, float]:
    """The eager and exported metric of `cvkit export --check`'s last line."""
    line = next(line for line in stdout.splitlines() if "on data.val: eager" in line)
    eager, exported = (float(v) for v in re.findall(r"(?:eager|exported) ([0-9.]+)", line))
    return eager, exported


def _same_detection(a: dict, b: dict) -> bool:
    boxes = zip(a["bbox_xyxy"], b["bbox_xyxy"], strict=True)
    return (
        a["class"] == b["class"]
        and abs(a["score"] - b["score"]) <= 2e-4
        and all(abs(p - q) <= 0.02 for p, q in boxes)
    )


def test_export_to_onnx_then_predict_and_eval_from_it_as_from_the_checkpoint(trained):
    folder, env = trained
    export = run_cli(
        "export", "runs/det/last.pt", "model.score_threshold=0.001", "--out", "det.onnx",
        "--check", cwd=folder, env=env,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    checked = [line for line in export.stdout.splitlines() if line.startswith("  checked ")]
    assert len(checked) == 4 and "detections:" in checked[0]  # 3 sizes and the metric
    assert export.stdout.strip().endswith("wrote det.onnx")
    eager_ap, exported_ap = _checked_metric(export.stdout)
    assert abs(eager_ap - exported_ap) <= 0.001

    image = next((folder / "cache").rglob("*.png"))
    want = json.loads(_predict(folder, env, image, "ckpt", "--json").stdout)[0]["detections"]
    out = run_cli("predict", "det.onnx", str(image), "--out", "onnx", "--json", cwd=folder)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)[0]["detections"]
    assert len(got) == len(want) > 3
    for w in want:  # one to one; the order of near-tied scores may differ
        same = [g for g in got if _same_detection(g, w)]
        assert same, f"no exported detection matches {w}"
        got.remove(same[0])
    coco = json.loads((folder / "onnx" / "results.json").read_text())
    assert len(coco) == len(want) and {c["category_id"] for c in coco} <= {1, 2, 3}
    assert (folder / "onnx" / f"{image.stem}.png").is_file()

    ap = {}
    for name in ("runs/det/last.pt", "det.onnx"):
        out = run_cli("eval", "low.yaml", "--checkpoint", name, "--out", "ev_" + name[-4:],
                      cwd=folder, env=env)  # fmt: skip
        assert out.returncode == 0, out.stderr
        ap[name] = float(re.search(r"^\s+AP: ([0-9.]+)$", out.stdout, re.M).group(1))
    assert abs(ap["runs/det/last.pt"] - ap["det.onnx"]) <= 0.001


def test_export_names_an_override_it_cannot_apply(trained):
    folder, env = trained
    out = run_cli("export", "runs/det/last.pt", "model.nonsense=1", cwd=folder, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "model.nonsense" in out.stderr
    assert not (folder / "runs" / "det" / "last.onnx").exists()


def test_predict_with_a_config_and_no_checkpoint_says_what_to_give(trained):
    folder, _ = trained
    out = run_cli("predict", "c.yaml", "x.png", cwd=folder)
    assert out.returncode == 2
    assert "cvkit predict needs --checkpoint with a config" in out.stderr
    assert "or give a model from `cvkit export` (.onnx, .pt2)" in out.stderr
