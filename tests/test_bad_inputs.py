"""The bad-input corpus (tests/bad_inputs/cases.py): every case ends in its exit code and one
message with its words, never a traceback. Run in process (a subprocess per case would cost
seconds of imports each); the registries and plugin records are restored after each case."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cvkit import plugins, registry
from cvkit.cli import main
from tests.bad_inputs.cases import CASES, Case
from tests.conftest import TINY_CLASSIFIER
from tests.test_analyze import TINY_DETECTOR

FILES = Path(__file__).parent / "bad_inputs" / "files"

CLASSIFIER = (
    TINY_CLASSIFIER
    + """data:
  train: {type: DigitsClassification, split: train, image_size: 16}
  val: {type: DigitsClassification, split: val, image_size: 16}
  batch_size: 64
  num_workers: 0
train: {epochs: 1, max_steps: 3, optimizer: {type: SGD, lr: 0.1}, tensorboard: false}
eval: {plots: false}
run_dir: runs
name: cli
"""
)

DETECTOR = TINY_DETECTOR.split("data:")[0] + (
    """data:
  train: {type: CocoDetection, ann_file: det/gt.json, image_dir: det/img}
  val: {type: CocoDetection, ann_file: det/gt.json, image_dir: det/img}
  batch_size: 2
  num_workers: 0
train: {epochs: 1, max_steps: 1, optimizer: {type: SGD, lr: 0.01}, tensorboard: false}
eval: {plots: false}
run_dir: runs
name: det
"""
)


def ground_truth() -> dict:
    """Two 64x64 images with one box each, one category."""
    return {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in (1, 2)],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "bbox": [8, 8, 20, 20], "area": 400,
             "iscrowd": 0}
            for i in (1, 2)
        ],
        "categories": [{"id": 1, "name": "box"}],
    }  # fmt: skip


def coco_mistakes() -> dict[str, object]:
    """``coco/NAME.json`` -> its content: the ground truth with one mistake."""

    def changed(path: tuple, value: object) -> dict:
        data = ground_truth()
        *parents, last = path
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
        return data

    duplicate = ground_truth()
    duplicate["images"][1]["id"] = 1
    return {
        "broken": '{"images": [',
        "list": [ground_truth()],
        "escape": changed(("images", 0, "file_name"), "../../outside.png"),
        "image_missing": changed(("images", 0, "file_name"), "missing.png"),
        "nonascii_missing": changed(("images", 0, "file_name"), "фото.png"),
        "unknown_category": changed(("annotations", 0, "category_id"), 7),
        "duplicate_id": duplicate,
        "short_bbox": changed(("annotations", 0, "bbox"), [8, 8, 20]),
        "string_width": changed(("images", 0, "width"), "64"),
        "no_images": {"images": [], "annotations": [], "categories": [{"id": 1, "name": "box"}]},
    }


def _write_images(root: Path) -> None:
    for folder in ("img", "img_broken"):
        (root / "det" / folder).mkdir(parents=True)
        for i in (1, 2):
            image = np.full((64, 64, 3), 60 * i, np.uint8)
            cv2.rectangle(image, (8, 8), (28, 28), (255, 255, 255), -1)
            cv2.imwrite(str(root / "det" / folder / f"{i}.png"), image)
    (root / "det" / "img_broken" / "2.png").write_text("not an image")
    (root / "det" / "img" / "text.png").write_text("not an image")
    jpeg = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    (root / "det" / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "det" / "снимок.png").write_text("not an image")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A folder with everything the cases name (see tests/bad_inputs/cases.py)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    shutil.copytree(FILES, root / "files")
    (root / "c.yaml").write_text(CLASSIFIER)
    (root / "det.yaml").write_text(DETECTOR)
    (root / "конфиг.yaml").write_text(CLASSIFIER.replace("epochs: 1", "epochs: one"))
    (root / "empty_folder").mkdir()
    _write_images(root)
    (root / "det" / "gt.json").write_text(json.dumps(ground_truth()))
    (root / "coco").mkdir()
    for name, content in coco_mistakes().items():
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        (root / "coco" / f"{name}.json").write_text(text, encoding="utf-8")
    with contextlib.chdir(root):
        assert main(["train", "c.yaml"]) == 0
        assert main(["export", "runs/cli/last.pt", "--out", "m.onnx"]) == 0
        assert main(["export", "runs/cli/last.pt", "--out", "w.pt"]) == 0
    state = torch.load(root / "runs" / "cli" / "last.pt", weights_only=True)
    state["config"] = state["config"].replace("type: ImageClassifier", "type: KeypointNet")
    torch.save(state, root / "plugin_model.pt")  # a run of a plugin's model
    checkpoint = (root / "runs" / "cli" / "last.pt").read_bytes()
    (root / "cut.pt").write_bytes(checkpoint[: len(checkpoint) // 2])
    (root / "empty.pt").write_bytes(b"")
    (root / "broken.onnx").write_bytes(b"\x08\x07 not protobuf" * 8)
    return root


@pytest.fixture
def isolated():
    """Registries and plugin records as they were: a case's plugin leaves nothing behind."""
    plugins.load_builtins()  # loaded once, lazily: the snapshot must have them
    plugins.load_entry_points()
    registries = [r for r in vars(registry).values() if isinstance(r, registry.Registry)]
    saved = [(r, dict(r._entries)) for r in registries]
    records = dict(plugins._records)
    yield
    for reg, entries in saved:
        reg._entries.clear()
        reg._entries.update(entries)
    plugins._records.clear()
    plugins._records.update(records)


def test_the_corpus_is_large_and_covers_every_command():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)
    commands = {c.name.split(":")[0] for c in CASES}
    for command in ("train", "eval", "predict", "export", "coco-eval", "config print", "list"):
        assert command in commands
    assert "plugin" in commands


@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_bad_input_ends_in_one_message(bad: Case, world: Path, isolated, capsys):
    with contextlib.chdir(world):
        try:
            code = main(list(bad.argv))
        except SystemExit as stop:  # argparse's usage errors
            code = stop.code
    out = capsys.readouterr()
    text = out.err + out.out
    assert "Traceback" not in text, text
    assert code == bad.code, text
    missing = [w for w in bad.words if w not in out.err]
    assert not missing, f"{missing} not in:\n{out.err}"
