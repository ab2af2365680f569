"""Seeded, stratified train/val splits and k-fold cross-validation, for every dataset.

Both keep each class's share of samples the same in every part and depend only on the labels
and the seed, so a ``train`` and a ``val`` dataset built with the same arguments never share a
sample, on any machine.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

SPLITS = ("train", "val", "all")


def stratified_split(
    labels: Sequence[Any] | np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into train and val, class by class.

    Each class sends ``round(n * val_fraction)`` of its ``n`` samples to val, but at least
    one and at most ``n - 1`` when ``n >= 2``, so every such class is in both parts; a class
    with a single sample goes to train.

    Args:
        labels: ``[N]`` the class of each sample (any values NumPy can sort).
        val_fraction: share of each class that goes to val, in (0, 1).
        seed: the same seed gives the same split.

    Returns:
        ``(train_idx [N_train], val_idx [N_val])``: sorted int64 indices into ``labels``;
        disjoint, together ``0..N-1``.

    Raises:
        ValueError: ``labels`` is not one-dimensional, ``val_fraction`` is outside (0, 1),
            or ``seed`` is not a non-negative integer.
    """
    labels = _check_labels(labels)
    _check_fraction(val_fraction)
    rng = _rng(seed)
    val = []
    for members in _members_by_class(labels):
        n = len(members)
        n_val = min(max(int(np.floor(n * val_fraction + 0.5)), 1), n - 1)
        val.append(rng.permutation(members)[:n_val])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    return _complement(val_idx, len(labels)), val_idx


def kfold_indices(
    labels: Sequence[Any] | np.ndarray, k: int, fold: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and val indices of fold ``fold`` of a stratified ``k``-fold split.

    Every sample is in the val part of exactly one of the folds ``0..k-1``. Each class's
    samples are dealt out to the folds in turn, continuing from where the previous class
    stopped, so every fold holds ``n // k`` or ``n // k + 1`` samples of a class of ``n``, and
    the folds' sizes differ by at most one.

    Args:
        labels: ``[N]`` the class of each sample.
        k: number of folds, at least 2 and at most ``N``.
        fold: which fold is val, ``0..k-1``.
        seed: the same seed gives the same folds.

    Returns:
        ``(train_idx, val_idx)``: sorted int64 indices, disjoint, together ``0..N-1``.

    Raises:
        ValueError: for a bad ``k``, ``fold``, ``seed`` or ``labels``.
    """
    labels = _check_labels(labels)
    k = _integer(k, "k")
    fold = _integer(fold, "fold")
    if not 2 <= k <= len(labels):
        raise ValueError(f"k-fold needs 2 <= k <= the number of samples ({len(labels)}), got k={k}")
    if not 0 <= fold < k:
        raise ValueError(f"fold={fold} is out of range for k={k} folds: use 0..{k - 1}")
    rng = _rng(seed)
    order = np.concatenate([rng.permutation(m) for m in _members_by_class(labels)])
    val_idx = np.sort(order[fold::k]).astype(np.int64)
    return _complement(val_idx, len(labels)), val_idx


def select_split(
    labels: Sequence[Any] | np.ndarray,
    split: str,
    *,
    val_fraction: float,
    seed: int,
    folds: int | None = None,
    fold: int = 0,
) -> np.ndarray:
    """The indices a dataset keeps for ``split``: what the datasets' split arguments mean.

    Args:
        labels: ``[N]`` the class of each sample.
        split: ``"train"``, ``"val"`` or ``"all"`` (every sample, in order).
        val_fraction: used by ``stratified_split`` when ``folds`` is ``None``.
        seed: seed of the split or the folds.
        folds: ``k`` for ``kfold_indices``, which then replaces the fraction split.
        fold: the val fold when ``folds`` is set.

    Returns:
        ``[M]`` sorted int64 indices into ``labels``.

    Raises:
        ValueError: for an unknown ``split``, a ``fold`` without ``folds``, or any error
            of ``stratified_split`` and ``kfold_indices``.
    """
    _check_split_name(split)
    if folds is None and fold != 0:
        raise ValueError(f"fold={fold} is set but folds is not: set folds (e.g. 5) for k-fold")
    if folds is None:
        train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    else:
        train_idx, val_idx = kfold_indices(labels, folds, fold, seed)
    if split == "all":
        return np.arange(len(train_idx) + len(val_idx), dtype=np.int64)
    return train_idx if split == "train" else val_idx


def check_split(split: str, val_fraction: float, seed: int) -> None:
    """Raise what ``select_split`` would for these arguments, before any labels are read
    (a dataset whose labels come from a large file checks them first)."""
    _check_split_name(split)
    _check_fraction(val_fraction)
    _rng(seed)


def _check_split_name(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")


def _check_fraction(val_fraction: float) -> None:
    ok = isinstance(val_fraction, numbers.Real) and not isinstance(val_fraction, bool)
    if not ok or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")


def _check_labels(labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be one-dimensional [N], got shape {array.shape}")
    if array.size == 0:
        raise ValueError("labels is empty: there are no samples to split")
    return array


def _members_by_class(labels: np.ndarray) -> list[np.ndarray]:
    """Each class's sample indices, classes in sorted order, indices ascending."""
    _, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse))[:-1]
    return np.split(order, bounds)


def _complement(chosen: np.ndarray, n: int) -> np.ndarray:
    keep = np.ones(n, dtype=bool)
    keep[chosen] = False
    return np.flatnonzero(keep).astype(np.int64)


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)  # int and NumPy integers, never a float
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _rng(seed: int) -> np.random.Generator:
    seed = _integer(seed, "seed")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return np.random.default_rng(seed)
