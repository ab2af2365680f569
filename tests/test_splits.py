"""Stratified train/val splits and k-fold, checked by brute force over many label sets."""

import numpy as np
import pytest

from cvkit.data.builtin import DigitsClassification
from cvkit.data.splits import kfold_indices, select_split, stratified_split


def _label_sets():
    """Label arrays with classes of 1, 2, 3 and many samples, in shuffled order."""
    rng = np.random.default_rng(123)
    for sizes in ([1, 2, 3], [2, 2], [5, 1, 40, 7], [10, 10, 10], [3, 17, 2, 1, 9, 64]):
        labels = np.repeat(np.arange(len(sizes)), sizes)
        yield rng.permutation(labels)


def _check_partition(train_idx, val_idx, n):
    assert train_idx.dtype == val_idx.dtype == np.int64
    assert np.all(np.diff(train_idx) > 0) and np.all(np.diff(val_idx) > 0)  # sorted, unique
    assert not set(train_idx) & set(val_idx)
    assert sorted([*train_idx, *val_idx]) == list(range(n))


@pytest.mark.parametrize("val_fraction", [0.1, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_stratified_split_partitions_and_keeps_class_proportions(val_fraction, seed):
    for labels in _label_sets():
        train_idx, val_idx = stratified_split(labels, val_fraction, seed)
        _check_partition(train_idx, val_idx, len(labels))
        for c in np.unique(labels):
            n = int((labels == c).sum())
            n_val = int((labels[val_idx] == c).sum())
            assert abs(n_val - n * val_fraction) <= 1
            if n >= 2:
                assert 1 <= n_val <= n - 1  # in both parts
            else:
                assert n_val == 0  # a single sample trains


def test_stratified_split_is_deterministic_per_seed_and_differs_across_seeds():
    labels = np.repeat(np.arange(4), 25)
    first = stratified_split(labels, 0.2, seed=3)
    again = stratified_split(list(labels), 0.2, seed=3)
    other = stratified_split(labels, 0.2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[1], other[1])


def test_stratified_split_accepts_string_labels():
    labels = ["cat", "dog", "cat", "dog", "cat", "dog"]
    train_idx, val_idx = stratified_split(labels, 0.34, seed=0)
    assert sorted(labels[i] for i in val_idx) == ["cat", "dog"]
    _check_partition(train_idx, val_idx, 6)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kfold_every_index_is_val_in_exactly_one_fold(k):
    for labels in _label_sets():
        if len(labels) < k:
            continue
        seen = np.zeros(len(labels), dtype=int)
        sizes = []
        for fold in range(k):
            train_idx, val_idx = kfold_indices(labels, k, fold, seed=11)
            _check_partition(train_idx, val_idx, len(labels))
            seen[val_idx] += 1
            sizes.append(len(val_idx))
            for c in np.unique(labels):
                n = int((labels == c).sum())
                assert int((labels[val_idx] == c).sum()) in (n // k, -(-n // k))  # floor, ceil
        assert np.all(seen == 1)
        assert max(sizes) - min(sizes) <= 1


def test_kfold_is_deterministic_per_seed_and_differs_across_seeds():
    labels = np.repeat(np.arange(3), 20)
    a = kfold_indices(labels, 4, 1, seed=5)[1]
    assert np.array_equal(a, kfold_indices(labels, 4, 1, seed=5)[1])
    assert not np.array_equal(a, kfold_indices(labels, 4, 1, seed=6)[1])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: kfold_indices([0, 1] * 5, 5, 5, 0), r"fold=5 is out of range for k=5 .*0\.\.4"),
        (lambda: kfold_indices([0, 1] * 5, 5, -1, 0), r"fold=-1 is out of range for k=5"),
        (lambda: kfold_indices([0, 1] * 5, 1, 0, 0), r"2 <= k <= the number of samples \(10\)"),
        (lambda: kfold_indices([0, 1], 3, 0, 0), r"got k=3"),
        (lambda: kfold_indices([0, 1] * 5, 2.0, 0, 0), r"k must be an integer, got 2\.0"),
        (lambda: stratified_split([0, 1] * 5, 0.0, 0), r"val_fraction must be .* \(0, 1\)"),
        (lambda: stratified_split([0, 1] * 5, 1.0, 0), r"val_fraction .* got 1\.0"),
        (lambda: stratified_split([0, 1] * 5, "0.2", 0), r"val_fraction .* got '0\.2'"),
        (lambda: stratified_split([0, 1] * 5, 0.2, -1), r"seed must be a non-negative integer"),
        (lambda: stratified_split([0, 1] * 5, 0.2, 1.5), r"seed must be an integer, got 1\.5"),
        (lambda: stratified_split([[0, 1]], 0.2, 0), r"one-dimensional \[N\], got shape \(1, 2\)"),
        (lambda: stratified_split([], 0.2, 0), r"labels is empty"),
        (lambda: select_split([0, 1], "test", val_fraction=0.2, seed=0), r"got 'test'"),
        (
            lambda: select_split([0, 1], "val", val_fraction=0.2, seed=0, fold=2),
            r"fold=2 is set but folds is not",
        ),
    ],
)
def test_bad_arguments_are_value_errors_that_say_what_to_use(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_select_split_train_val_all():
    labels = np.repeat(np.arange(3), 10)
    train_idx = select_split(labels, "train", val_fraction=0.3, seed=2)
    val_idx = select_split(labels, "val", val_fraction=0.3, seed=2)
    _check_partition(train_idx, val_idx, 30)
    assert np.array_equal(select_split(labels, "all", val_fraction=0.3, seed=2), np.arange(30))
    fold_val = select_split(labels, "val", val_fraction=0.3, seed=2, folds=3, fold=1)
    assert np.array_equal(fold_val, kfold_indices(labels, 3, 1, seed=2)[1])


def test_digits_train_and_val_partition_the_digits():
    train = DigitsClassification("train", image_size=8, seed=1)
    val = DigitsClassification("val", image_size=8, seed=1)
    assert len(train) + len(val) == 1797
    assert abs(len(val) - 0.2 * 1797) <= 10  # within 1 per class
    assert set(np.unique(val.labels)) == set(range(10))


def test_digits_kfold_val_folds_cover_every_image_once():
    val_sizes = [len(DigitsClassification("val", image_size=8, folds=3, fold=f)) for f in range(3)]
    train = DigitsClassification("train", image_size=8, folds=3, fold=0)
    assert sum(val_sizes) == 1797
    assert len(train) + val_sizes[0] == 1797
    with pytest.raises(ValueError, match="fold=3 is out of range for k=3"):
        DigitsClassification("val", folds=3, fold=3)


def test_digits_per_class_and_its_rest_partition_the_split():
    from cvkit.data.builtin import DigitsClassification

    few = DigitsClassification(split="all", image_size=8, per_class=10, seed=3)
    rest = DigitsClassification(
        split="all", image_size=8, per_class=10, per_class_rest=True, seed=3
    )
    assert np.bincount(few.labels).tolist() == [10] * 10
    assert len(few) + len(rest) == 1797
    pairs = {(img.tobytes(), lbl) for img, lbl in zip(few.images, few.labels)}
    assert not pairs & {(img.tobytes(), lbl) for img, lbl in zip(rest.images, rest.labels)}
    with pytest.raises(ValueError, match="per_class_rest needs per_class"):
        DigitsClassification(per_class_rest=True)
