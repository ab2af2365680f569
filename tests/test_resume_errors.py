"""`cvkit train --resume` with a wrong file, the build order, and the log lines of a run whose
output is not a terminal: each error is one message and an exit code, never a traceback."""

import re

import pytest

from tests.conftest import ROOT, TINY_CLASSIFIER, run_cli

CONFIG = (
    TINY_CLASSIFIER
    + """data:
  train: {type: DigitsClassification, split: train, image_size: 16}
  val: {type: DigitsClassification, split: val, image_size: 16}
  batch_size: 128
  num_workers: 0
train:
  epochs: 1
  max_steps: 4
  log_interval: 2
  optimizer: {type: SGD, lr: 0.1, momentum: 0.9}
  tensorboard: false
eval: {plots: false}
run_dir: runs
name: cli
"""
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder with last.pt, and the output of the run that wrote it (through pipes)."""
    folder = tmp_path_factory.mktemp("resume")
    (folder / "c.yaml").write_text(CONFIG)
    out = run_cli("train", "c.yaml", cwd=folder)
    assert out.returncode == 0, out.stderr
    return folder, out


def _fails(out, code: int = 1) -> str:
    """The one error message of a failed command: its exit code, no traceback."""
    assert out.returncode == code, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ")
    return out.stderr


def test_log_file_gets_one_plain_line_per_interval(trained):
    _, out = trained
    assert "\r" not in out.stdout + out.stderr  # no progress bar redrawn in a log file
    lines = [line for line in out.stdout.splitlines() if line.startswith("epoch 1/1 step ")]
    pattern = r"epoch 1/1 step (\d+) batch \d+/12  loss \d+\.\d{4}  lr \d\.\d\de[-+]\d+  .* step/s"
    steps = [int(m.group(1)) for line in lines if (m := re.match(pattern, line))]
    assert steps == [2, 4], out.stdout  # log_interval 2, max_steps 4


# A path that does not exist, a cut-short checkpoint and an exported weights file are cases of
# the bad-input corpus (tests/bad_inputs/cases.py), run in process.


def test_resume_with_the_config_of_another_model_is_refused_before_building(trained):
    folder, _ = trained
    config = (folder / "runs" / "cli" / "config.yaml").read_text()
    out = run_cli("train", "c.yaml", "model.backbone.width=8", "--resume", "runs/cli", cwd=folder)
    # refused before the model is built: the config differs from the checkpoint's own
    text = _fails(out, 2)
    assert "cannot resume runs/cli/last.pt with other settings than it was trained with: " in text
    assert "model.backbone.width: 4 -> 8 (the command line)" in text
    assert "RuntimeError" not in text
    # the failed resume left the run's config, the one the message points to, as it was
    assert (folder / "runs" / "cli" / "config.yaml").read_text() == config


def test_broken_annotation_file_is_reported_before_the_model_is_built(tmp_path):
    (tmp_path / "broken.json").write_text('{"images": [')
    config = ROOT / "configs" / "detection" / "retinanet_r50_fpn_1x_my_dataset.yaml"
    out = run_cli(
        "train",
        str(config),
        "model.backbone.pretrained=missing_weights.pth",  # building the model would fail
        "data.train.ann_file=broken.json",
        "data.train.image_dir=.",
        "data.val.ann_file=broken.json",
        "data.val.image_dir=.",
        cwd=tmp_path,
    )
    text = _fails(out, code=1)  # bad data: the file's own message, and who read it
    assert "read by data.train (CocoDetection)" in text
    assert "COCO file 'broken.json' is not valid JSON" in text
    assert "missing_weights.pth" not in text
    assert not (tmp_path / "runs").exists()
