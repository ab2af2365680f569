"""cvkit export: every task to ONNX (and ExportedProgram), checked against eager at three
other input sizes; the exports' metadata, runtime checks, prediction and evaluation."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from cvkit import __version__
from cvkit.config.yaml_io import dumps
from cvkit.engine.checkpoint import save_checkpoint
from cvkit.engine.deployed import load_deployed
from cvkit.engine.export import export
from cvkit.engine.parity import ParityError, compare_close, compare_detections
from tests.test_export_graphs import CLASSIFIER, FASTER_RCNN, RETINANET, SEGMENTER, perturbed

pytestmark = pytest.mark.slow

SHAPES = ["circle", "square", "triangle"]
DATA = {
    "detection": {
        "train": {"type": "ShapesDetection", "split": "train", "num_images": 4, "image_size": 128},
        "val": {"type": "ShapesDetection", "split": "val", "num_images": 4, "image_size": 128},
    },
    "segmentation": {
        "train": {
            "type": "ShapesSegmentation",
            "split": "train",
            "num_images": 4,
            "image_size": 96,
        },
        "val": {"type": "ShapesSegmentation", "split": "val", "num_images": 4, "image_size": 96},
    },
    "classification": {
        "train": {"type": "DigitsClassification", "split": "train", "image_size": 32},
        "val": {"type": "DigitsClassification", "split": "val", "image_size": 32, "per_class": 3},
    },
}


def checkpoint(tmp_path, spec: dict, task: str, classes: list[str], **model_options):
    """A weights checkpoint (as `cvkit export --format weights` writes) of a perturbed
    tiny model, with a config whose data are the embedded datasets."""
    spec = {**spec, **model_options}
    model = perturbed(spec)
    cfg = {"model": spec, "data": {**DATA[task], "batch_size": 4, "num_workers": 0}}
    state = {
        "model": model.state_dict(),
        "classes": classes,
        "cat_ids": None,
        "config": dumps(cfg),
        "cvkit_version": __version__,
    }
    return save_checkpoint(state, tmp_path / f"{spec['type']}.pt"), cfg


@pytest.mark.parametrize(
    "spec, task, classes",
    [
        (RETINANET, "detection", SHAPES),
        (FASTER_RCNN, "detection", SHAPES),
        (SEGMENTER, "segmentation", ["background", *SHAPES]),
        (CLASSIFIER, "classification", [str(i) for i in range(10)]),
    ],
    ids=["retinanet", "faster_rcnn", "fcn", "classifier"],
)
def test_every_task_exports_to_onnx_checked_at_three_other_sizes(tmp_path, spec, task, classes):
    path, _ = checkpoint(tmp_path, spec, task, classes)
    result = export(path, "onnx", tmp_path / "model.onnx", input_size=(128, 128))
    assert result.path == tmp_path / "model.onnx" and result.path.is_file()
    assert len(result.checks) == 3  # three sizes, none the traced one
    assert not any(line.startswith("128x128") for line in result.checks)
    if task == "detection":
        counts = [int(line.split("detections: ")[1].split()[0]) for line in result.checks]
        assert min(counts) > 0, result.checks  # detections were compared, not nothing
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(result.path)).metadata_props}
    assert meta["task"] == task and meta["classes"] == classes
    assert meta["cvkit_version"] == __version__ and 8 <= meta["min_size"] <= 33
    assert [o.name for o in onnx.load(str(result.path)).graph.output] == meta["output_names"]


def test_a_detector_exports_with_a_dynamic_batch_and_the_metric_checked(tmp_path):
    path, _ = checkpoint(tmp_path, RETINANET, "detection", SHAPES)
    result = export(path, "onnx", None, dynamic_batch=True, check_metric=True)
    assert result.path == path.with_suffix(".onnx")
    assert result.checks[-1].startswith("AP on data.val: eager")
    model = load_deployed(result.path)
    images = np.zeros((3, 3, 100, 120), np.uint8)
    out = model(images=images, orig_sizes=np.array([[100, 120]] * 3))
    assert out["boxes"].shape == (3, 100, 4) and out["num_detections"].shape == (3,)


def test_exported_program_is_written_with_metadata_and_runs(tmp_path):
    path, _ = checkpoint(tmp_path, SEGMENTER, "segmentation", ["background", *SHAPES])
    result = export(path, None, tmp_path / "seg.pt2", input_size=(96, 96))
    model = load_deployed(result.path)
    assert model.task == "segmentation" and model.metadata["format"] == "exported-program"
    out = model(images=np.full((1, 3, 64, 80), 128, np.uint8), out_size=np.array([32, 40]))
    assert out["mask"].shape == (1, 32, 40)


def test_a_tf_same_padding_backbone_exports_at_symbolic_sizes(tmp_path):
    # timm's Conv2dSame computes its padding from the size on every call; traced at symbolic
    # sizes that nested into guards torch.export could not prove (and minutes of solving)
    spec = {
        **SEGMENTER,
        "backbone": {
            "type": "TimmBackbone",
            "name": "tf_mobilenetv3_small_minimal_100",
            "out_indices": [2, 3, 4],
        },
        "preprocessor": {"type": "Preprocessor", "size_divisor": 32},
    }
    path, _ = checkpoint(tmp_path, spec, "segmentation", ["background", *SHAPES])
    result = export(path, "exported-program", tmp_path / "seg.pt2", input_size=(96, 96))
    assert len(result.checks) == 3 and all("100.0000% of pixels agree" in c for c in result.checks)
    out = load_deployed(result.path)(
        images=np.full((1, 3, 70, 150), 99, np.uint8), out_size=np.array([70, 150])
    )
    assert out["mask"].shape == (1, 70, 150)


def test_weights_format_keeps_the_slim_checkpoint(tmp_path):
    path, _ = checkpoint(tmp_path, CLASSIFIER, "classification", [str(i) for i in range(10)])
    result = export(path, None, tmp_path / "slim.pt")
    state = torch.load(result.path, weights_only=True)
    assert set(state) == {"model", "classes", "cat_ids", "config", "cvkit_version"}


def test_a_mismatch_names_the_output_the_size_and_the_largest_difference():
    eager = np.zeros((1, 5, 3))
    exported = eager.copy()
    exported[0, 4, 2] = 0.01
    with pytest.raises(ParityError) as err:
        compare_close("cls_logits", eager, exported, "96x128 (batch of 1)")
    text = str(err.value)
    assert "cls_logits at 96x128" in text and "by 0.01 at index [0, 4, 2]" in text


def test_detections_must_match_one_to_one():
    boxes = np.array([[[0, 0, 10, 10], [20, 20, 30, 30]]], np.float32)
    eager = [boxes, np.array([[0.9, 0.8]]), np.array([[0, 1]]), np.array([2])]
    swapped = [boxes[:, ::-1], np.array([[0.8, 0.9]]), np.array([[1, 0]]), np.array([2])]
    assert "2 matched" in compare_detections(eager, swapped, "here")
    moved = [boxes + 0.01, *eager[1:]]
    with pytest.raises(
        ParityError, match=r"eager detection 0 .* no exported match within 0.001 px"
    ):
        compare_detections(eager, moved, "here")
    with pytest.raises(ParityError, match=r"eager detection 1 \(class 1, score 0.8000"):
        compare_detections(eager, [*eager[:3], np.array([1])], "here")


def test_detections_may_differ_only_where_a_near_tie_decides_what_is_kept():
    boxes = np.array([[[0, 0, 10, 10], [20, 20, 30, 30]]], np.float32)
    eager = [boxes, np.array([[0.9, 0.5]]), np.array([[0, 1]]), np.array([2])]
    # the list is full (2 rows): its last place went to another box scoring the same
    other = [np.array([[[0, 0, 10, 10], [40, 40, 50, 50]]]), np.array([[0.9, 0.5000001]])]
    line = compare_detections(eager, [*other, eager[2], eager[3]], "here")
    assert "1 matched one to one (2 at the score or top-k cut, unmatched)" in line
    # a box just above the score threshold that the export does not keep
    near = [boxes, np.array([[0.9, 0.3000001]]), eager[2], np.array([2])]
    dropped = [*near[:3], np.array([1])]
    assert "1 matched" in compare_detections(near, dropped, "here", score_threshold=0.3)
    with pytest.raises(ParityError, match="eager detection 1"):
        compare_detections(near, dropped, "here", score_threshold=0.2)


def test_input_errors_of_a_deployed_model_say_what_it_takes(tmp_path):
    path, _ = checkpoint(tmp_path, CLASSIFIER, "classification", [str(i) for i in range(10)])
    model = load_deployed(export(path, "onnx", tmp_path / "c.onnx").path)
    with pytest.raises(ValueError, match="one image at a time; got a batch of 2"):
        model(images=np.zeros((2, 3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"takes images \[B, 3, H, W\]"):
        model(images=np.zeros((1, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="of 8 to any pixels a side; got 4x32"):
        model(images=np.zeros((1, 3, 4, 32), np.uint8))


def test_files_that_are_not_exports_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no exported model at"):
        load_deployed(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"'.*bad.onnx' is not a readable ONNX model"):
        load_deployed(bad)
    other = tmp_path / "model.txt"
    other.write_text("weights")
    with pytest.raises(ValueError, match=r"not an exported model: cvkit reads \.onnx and \.pt2"):
        load_deployed(other)


def test_an_input_size_beyond_pad_to_is_refused(tmp_path):
    path, _ = checkpoint(
        tmp_path,
        {**RETINANET, "preprocessor": {"type": "Preprocessor", "size_divisor": 16, "pad_to": 128}},
        "detection",
        SHAPES,
    )
    with pytest.raises(ValueError, match="outside what the model takes: 8 to 128 pixels"):
        export(path, "onnx", tmp_path / "m.onnx", input_size=(160, 160))
