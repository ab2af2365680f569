"""`cvkit embed`: a classifier's pooled features, their t-SNE map and how well classes separate."""

import json

import numpy as np
import pytest
import torch
import yaml

from cvkit.cli import main
from cvkit.config import from_dict
from cvkit.data.builtin import DigitsClassification
from cvkit.engine.embed import embed, flatten_features, sample_indices
from cvkit.engine.run import train
from cvkit.evaluation.embeddings import knn_accuracy, silhouette
from tests.conftest import ROOT, TINY_CLASSIFIER, run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# 5 validation digits of each class: 50 images, embedded in about a second
FEW_DIGITS = {"type": "DigitsClassification", "split": "val", "image_size": 16, "per_class": 5}


def _tiny(tmp_path, **data):
    """The command-line tests' TinyNet (width 4, 16 px) on ``FEW_DIGITS``, never trained."""
    cfg = yaml.safe_load(TINY_CLASSIFIER)
    cfg["data"] = {"val": dict(FEW_DIGITS), "batch_size": 16, "num_workers": 0, **data}
    cfg["run_dir"] = str(tmp_path / "runs")
    cfg["name"] = "tiny"
    return from_dict(cfg)


def test_embed_writes_features_labels_and_a_tsne_png(tmp_path):
    result = embed(_tiny(tmp_path), None, "val", tmp_path / "out")
    out = tmp_path / "out"
    features = np.load(out / "embeddings.npy")
    labels = np.load(out / "labels.npy")
    indices = np.load(out / "indices.npy")
    assert features.dtype == np.float32 and features.shape == (50, 4 * 8)  # TinyNet width 4
    assert labels.dtype == np.int64 and labels.shape == (50,)
    dataset = DigitsClassification(**{k: v for k, v in FEW_DIGITS.items() if k != "type"})
    assert indices.tolist() == list(range(50))
    assert labels.tolist() == dataset.labels.tolist()  # the split's own labels, in order
    np.testing.assert_array_equal(result.features, features)
    assert (out / "tsne.png").read_bytes()[:8] == PNG_SIGNATURE
    report = json.loads((out / "embed.json").read_text())
    assert report["split"] == "val" and report["checkpoint"] is None and report["count"] == 50
    assert report["classes"] == [str(d) for d in range(10)]
    assert report["class_counts"] == [5] * 10
    assert "no checkpoint" in report["weights"] and "randomly initialised" in report["weights"]
    assert -1.0 <= report["silhouette_cosine"] <= 1.0
    assert 0.0 <= report["knn_accuracy"] <= 1.0


def test_limit_takes_a_seeded_sample_in_the_splits_order(tmp_path):
    first = embed(_tiny(tmp_path), None, "val", tmp_path / "a", limit=20)
    again = embed(_tiny(tmp_path), None, "val", tmp_path / "b", limit=20)
    assert len(first.labels) == 20 and first.indices.tolist() == sorted(set(first.indices))
    np.testing.assert_array_equal(first.indices, again.indices)
    np.testing.assert_array_equal(first.features, again.features)  # the same initial weights
    report = json.loads((tmp_path / "a" / "embed.json").read_text())
    assert report["sampling"] == "a seeded uniform sample of 20 of 50"
    assert sample_indices(10, None).tolist() == list(range(10))


def test_train_split_is_embedded_without_its_augmentations(tmp_path):
    augmented = {**FEW_DIGITS, "split": "train", "transforms": [{"type": "InvertImg", "p": 1.0}]}
    with_augmentation = embed(_tiny(tmp_path, train=augmented), None, "train", tmp_path / "t")
    without = embed(_tiny(tmp_path, train={**augmented, "transforms": []}), None, "train")
    np.testing.assert_array_equal(with_augmentation.features, without.features)
    assert without.out_dir == tmp_path / "runs" / "embed_tiny_train"  # the default folder


def test_scores_and_flattening():
    # two tight clusters far apart: separate; the same points with shuffled labels: mixed
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = np.repeat([0, 1], 20)
    features = centres[labels] + 0.05 * rng.standard_normal((40, 3))
    assert silhouette(features, labels) > 0.8 and knn_accuracy(features, labels) == 1.0
    mixed = rng.permutation(labels)
    assert silhouette(features, mixed) < 0.1
    assert silhouette(features, np.zeros(40, dtype=np.int64)) is None  # one class
    # a neck that does not pool: its maps flattened and joined per image
    maps = [torch.ones(2, 3, 4, 4), torch.ones(2, 5)]
    assert flatten_features(maps).shape == (2, 3 * 16 + 5)
    assert flatten_features(torch.ones(2, 6, 2, 2)).shape == (2, 24)


def test_a_detector_config_is_refused_before_anything_is_built(capsys):
    config = ROOT / "configs" / "detection" / "retinanet_effl0_fpn_8e_shapes.yaml"
    assert main(["embed", str(config)]) == 2
    err = capsys.readouterr().err
    assert "model.type: cvkit embed supports classifiers only" in err
    assert "RetinaNet is a 'detection' model" in err


def test_an_exported_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="exported model gives predictions, not features"):
        embed(_tiny(tmp_path), tmp_path / "model.onnx")


def _trainable(tmp_path):
    cfg = yaml.safe_load(TINY_CLASSIFIER)
    cfg["model"]["backbone"]["width"] = 8
    cfg["data"] = {
        "train": {"type": "DigitsClassification", "split": "train", "image_size": 16},
        "val": {"type": "DigitsClassification", "split": "val", "image_size": 16},
        "batch_size": 32,
        "num_workers": 0,
    }
    cfg["train"] = {
        "epochs": 2,
        "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
        "tensorboard": False,
    }
    cfg["eval"] = {"plots": False}
    cfg["run_dir"] = str(tmp_path)
    cfg["name"] = "digits"
    return from_dict(cfg)


def test_classes_separate_after_training_and_not_before(tmp_path):
    # TinyNet from scratch on the 1,437 training digits for two epochs (a few seconds),
    # scored on the 359 validation digits: random features mix the classes; trained ones
    # (about 90% top-1) pull them into clusters
    before = embed(_trainable(tmp_path), None, "val", tmp_path / "before")
    run = train(_trainable(tmp_path))
    after = embed(_trainable(tmp_path), run.run_dir / "last.pt")
    assert after.out_dir == run.run_dir / "embed_val"
    assert before.silhouette is not None and after.silhouette is not None
    assert before.silhouette < 0.15, before.silhouette
    assert after.silhouette > before.silhouette + 0.3, (before.silhouette, after.silhouette)
    assert after.knn_accuracy is not None and before.knn_accuracy is not None
    assert after.knn_accuracy > before.knn_accuracy + 0.1
    assert "checkpoint" in json.loads((after.out_dir / "embed.json").read_text())["weights"]


def test_cli_embeds_and_prints_the_scores(tmp_path):
    text = TINY_CLASSIFIER + (
        "data:\n"
        "  val: {type: DigitsClassification, split: val, image_size: 16, per_class: 3}\n"
        "  num_workers: 0\n"
    )
    (tmp_path / "c.yaml").write_text(text)
    out = run_cli("embed", "c.yaml", "--out", "emb", "--limit", "20", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "embedded 20 images of data.val with the config's model as built" in out.stdout
    assert "silhouette (cosine):" in out.stdout and "5-NN leave-one-out" in out.stdout
    assert (tmp_path / "emb" / "tsne.png").read_bytes()[:8] == PNG_SIGNATURE
    assert np.load(tmp_path / "emb" / "embeddings.npy").shape[0] == 20
