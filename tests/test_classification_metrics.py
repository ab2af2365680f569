"""Classification metrics against brute force and scikit-learn, and the batch evaluator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

import cvkit
from cvkit.evaluation.classification import (
    ClassificationEvaluator,
    confusion_matrix,
    per_class_metrics,
    topk_accuracy,
)
from cvkit.registry import METRICS


def _random_case(seed: int = 0, n: int = 400) -> tuple[torch.Tensor, torch.Tensor, int]:
    """7 classes: 4 predicted but never true, 5 true but never predicted, 6 in neither."""
    g = torch.Generator().manual_seed(seed)
    true_classes = torch.tensor([0, 1, 2, 3, 5])
    pred_classes = torch.tensor([0, 1, 2, 3, 4])
    labels = true_classes[torch.randint(0, 5, (n,), generator=g)]
    preds = pred_classes[torch.randint(0, 5, (n,), generator=g)]
    correct = torch.rand(n, generator=g) < 0.5  # make the diagonal heavier than chance
    preds = torch.where(correct & (labels != 5), labels, preds)
    return preds, labels, 7


def _sklearn_prf(preds: torch.Tensor, labels: torch.Tensor, k: int, average: str | None):
    return precision_recall_fscore_support(
        labels.numpy(), preds.numpy(), labels=list(range(k)), average=average, zero_division=0
    )


def test_confusion_matrix_matches_brute_force_and_sklearn():
    preds, labels, k = _random_case()
    cm = confusion_matrix(preds, labels, k)
    brute = torch.zeros(k, k, dtype=torch.int64)
    for p, t in zip(preds.tolist(), labels.tolist()):
        brute[t, p] += 1
    assert cm.dtype == torch.int64
    assert torch.equal(cm, brute)
    sk = sk_confusion_matrix(labels.numpy(), preds.numpy(), labels=list(range(k)))
    np.testing.assert_array_equal(cm.numpy(), sk)
    assert cm[4].sum() == 0 and cm[:, 5].sum() == 0 and cm[6].sum() == cm[:, 6].sum() == 0


def test_per_class_metrics_match_sklearn_zero_division_0():
    preds, labels, k = _random_case(seed=1)
    stats = per_class_metrics(confusion_matrix(preds, labels, k))
    precision, recall, f1, support = _sklearn_prf(preds, labels, k, None)
    np.testing.assert_allclose(stats["precision"].numpy(), precision, atol=1e-12)
    np.testing.assert_allclose(stats["recall"].numpy(), recall, atol=1e-12)
    np.testing.assert_allclose(stats["f1"].numpy(), f1, atol=1e-12)
    np.testing.assert_array_equal(stats["support"].numpy(), support)
    for average in ("macro", "weighted"):
        expected = _sklearn_prf(preds, labels, k, average)[:3]
        got = [stats[average][name] for name in ("precision", "recall", "f1")]
        np.testing.assert_allclose(got, expected, atol=1e-12)
    # The conventions, spelled out: never predicted -> precision 0; never true -> recall 0.
    assert stats["precision"][5] == 0 and stats["recall"][4] == 0 and stats["f1"][6] == 0


@pytest.mark.parametrize("k", [1, 2])
def test_tiny_class_counts_match_sklearn(k):
    g = torch.Generator().manual_seed(k)
    labels = torch.randint(0, k, (50,), generator=g)
    preds = torch.randint(0, k, (50,), generator=g)
    cm = confusion_matrix(preds, labels, k)
    assert cm.shape == (k, k) and cm.sum() == 50
    stats = per_class_metrics(cm)
    precision, recall, f1, _ = _sklearn_prf(preds, labels, k, None)
    np.testing.assert_allclose(stats["f1"].numpy(), f1, atol=1e-12)
    np.testing.assert_allclose(stats["precision"].numpy(), precision, atol=1e-12)
    np.testing.assert_allclose(stats["recall"].numpy(), recall, atol=1e-12)
    if k == 1:
        assert stats["macro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_empty_confusion_is_all_zero():
    stats = per_class_metrics(torch.zeros(3, 3, dtype=torch.int64))
    assert stats["macro"] == stats["weighted"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


@pytest.mark.parametrize(
    ("preds", "labels", "message"),
    [
        ([0, 1, 2], [0, 7, 1], "label 7 is outside [0, 3)"),
        ([0, 1, 2], [0, -1, 1], "label -1 is outside [0, 3)"),
        ([0, 3, 2], [0, 1, 1], "prediction 3 is outside [0, 3)"),
        ([0, 1], [0, 1, 2], "same length"),
    ],
)
def test_confusion_matrix_rejects_bad_input_by_value(preds, labels, message):
    with pytest.raises(ValueError) as err:
        confusion_matrix(torch.tensor(preds), torch.tensor(labels), 3)
    assert message in str(err.value)


def test_confusion_matrix_rejects_float_labels():
    with pytest.raises(TypeError, match="integer class indices"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0.0, 1.0]), 2)


def _logits_case(seed: int, n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g)
    logits[torch.arange(n), labels] += 1.5
    return logits, labels


def test_evaluator_accumulates_batches_like_one_shot():
    logits, labels = _logits_case(seed=2, n=300, k=10)
    batched = ClassificationEvaluator(num_classes=10)
    for chunk_logits, chunk_labels in zip(logits.split(37), labels.split(37)):
        batched.update(chunk_logits, chunk_labels)
    batched.update(logits[:0], labels[:0])  # an empty batch changes nothing
    single = ClassificationEvaluator(num_classes=10)
    single.update(logits.softmax(dim=1), labels)  # probabilities rank like logits

    assert torch.equal(batched.confusion, single.confusion)
    assert batched.compute() == pytest.approx(single.compute())
    metrics = batched.compute()
    assert metrics["top1"] == pytest.approx(topk_accuracy(logits, labels, 1))
    assert metrics["top5"] == pytest.approx(topk_accuracy(logits, labels, 5))
    macro = _sklearn_prf(logits.argmax(1), labels, 10, "macro")
    expected = dict(zip(("macro_precision", "macro_recall", "macro_f1"), macro[:3]))
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)
    assert batched.num_samples == 300


def test_evaluator_reset_and_empty_compute():
    evaluator = ClassificationEvaluator(num_classes=3)
    with pytest.raises(ValueError, match="no samples"):
        evaluator.compute()
    evaluator.update(torch.eye(3), torch.tensor([0, 1, 2]))
    assert evaluator.compute()["top1"] == 1.0
    evaluator.reset()
    assert evaluator.num_samples == 0 and evaluator.confusion.sum() == 0


def test_top5_with_fewer_than_5_classes_is_clipped():
    logits, labels = _logits_case(seed=3, n=40, k=3)
    evaluator = ClassificationEvaluator(num_classes=3)
    evaluator.update(logits, labels)
    metrics = evaluator.compute()
    assert metrics["top5"] == 1.0
    assert metrics["top1"] == pytest.approx(topk_accuracy(logits, labels, 1))


def test_evaluator_rejects_bad_batches_without_changing_state():
    evaluator = ClassificationEvaluator(num_classes=4)
    evaluator.update(torch.eye(4), torch.arange(4))
    with pytest.raises(ValueError) as err:
        evaluator.update(torch.eye(4), torch.tensor([0, 1, 9, 3]))
    assert "label 9 is outside [0, 4)" in str(err.value)
    with pytest.raises(ValueError, match=r"scores must be \[B, 4\], got \(2, 5\)"):
        evaluator.update(torch.zeros(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must be \[2\], got \(3,\)"):
        evaluator.update(torch.zeros(2, 4), torch.tensor([0, 1, 2]))
    assert evaluator.num_samples == 4 and evaluator.compute()["top1"] == 1.0


def test_summary_table_and_json_dict():
    preds, labels, k = _random_case(seed=4, n=120)
    names = ["cat", "dog", "bird", "fish", "horse", "sheep", "platypus"]
    evaluator = ClassificationEvaluator(num_classes=k)
    evaluator.update(torch.nn.functional.one_hot(preds, k).float(), labels)

    table = evaluator.summary_table(names)
    lines = table.splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "F1", "support"]
    class_rows = lines[2 : 2 + k]
    assert [row.split()[0] for row in class_rows] == names
    assert len({len(row) for row in [lines[0], *class_rows]}) == 1  # columns line up
    assert any(line.startswith("macro avg") for line in lines)
    assert "no samples (recall counted as 0): horse, platypus" in table
    assert "never predicted (precision counted as 0): sheep, platypus" in table
    assert "(120 samples)" in table

    data = json.loads(json.dumps(evaluator.to_json_dict(names)))
    stats = per_class_metrics(evaluator.confusion)
    assert list(data["per_class"]) == names
    assert data["per_class"]["dog"]["f1"] == pytest.approx(stats["f1"][1].item())
    assert data["per_class"]["sheep"]["support"] == int(stats["support"][5])
    assert data["metrics"] == pytest.approx(evaluator.compute())
    assert data["confusion"] == evaluator.confusion.tolist()
    with pytest.raises(ValueError, match="2 class names for 7 classes"):
        evaluator.summary_table(["a", "b"])


def test_evaluator_is_registered_and_buildable():
    assert METRICS.get("ClassificationEvaluator") is ClassificationEvaluator
    built = cvkit.build({"type": "ClassificationEvaluator", "num_classes": 5, "topk": [1, 3]})
    assert isinstance(built, ClassificationEvaluator) and built.topk == (1, 3)
