"""The pooled features of a classifier's data, scored and drawn: ``cvkit embed``.

Every image of ``data.<split>`` (or a seeded sample of ``limit`` of them) goes through the
classifier in eval mode; the features are what its neck returns, the vector its head sees
(``GlobalPool``: ``Tensor[N, C]``). They are written as NumPy arrays with their labels, drawn
as a 2-D t-SNE map coloured by class, and summarised by two numbers of how well the classes
separate: the cosine silhouette of the features and their k-NN leave-one-out accuracy.
Without a checkpoint the model is the config's as built (its pretrained weights, if it names
any): the picture before training. The scores and the map are computed by
``cvkit.evaluation.embeddings`` and drawn by ``cvkit.visualize.embedding_plot``; this module
builds the model and the data, takes the features and writes the files.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from cvkit.builder import build
from cvkit.config import Config
from cvkit.config.class_count import fill_from_classes
from cvkit.config.settings import RunSettings
from cvkit.data.loader import build_loader, resolve_workers
from cvkit.engine.batching import eval_batch_size
from cvkit.engine.checkpoint import load_checkpoint
from cvkit.engine.deployed import is_deployed
from cvkit.engine.run import build_model, check_classes, pick_device, seed_everything, validate
from cvkit.engine.tasks import task_of
from cvkit.engine.weights import inference_weights, load_model_weights
from cvkit.errors import ConfigError
from cvkit.evaluation.embeddings import KNN_K, TSNE_SEED, knn_accuracy, silhouette, tsne_map
from cvkit.registry import DATASETS, MODELS, resolve
from cvkit.visualize.embedding_plot import plot_tsne

DEFAULT_LIMIT = 2000  # t-SNE's time and memory grow as N^2
MIN_IMAGES = 5
SPLITS = ("train", "val", "test")


@dataclass
class EmbedResult:
    """What ``embed`` computed and wrote.

    Attributes:
        out_dir: the folder of the files.
        features: ``float32 [N, D]``, the neck's output per image.
        labels: ``int64 [N]``, each image's class index.
        indices: ``int64 [N]``, each image's index in ``data.<split>``.
        split: the split embedded (``train``, ``val``, ``test``).
        classes: the class names, by label.
        weights: where the model's weights came from, in words.
        silhouette: the mean silhouette of the features by class, cosine distance (-1 to 1;
            ``None`` with fewer than two classes present).
        knn_accuracy: the share of images whose ``knn_k`` nearest others (cosine) mostly
            share their class (``None`` when there are too few images).
        files: name -> path of every file written.
    """

    out_dir: Path
    features: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    split: str
    classes: list[str]
    weights: str
    silhouette: float | None
    knn_accuracy: float | None
    knn_k: int = KNN_K
    files: dict[str, Path] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """What ``cvkit embed`` prints: the model, the two scores and the files."""
        n, d = self.features.shape
        return [
            f"embedded {n} images of data.{self.split} with {self.weights}",
            f"  features: {n} x {d}",
            f"  silhouette (cosine): {_shown(self.silhouette)}  (-1 to 1; higher: classes "
            "further apart)",
            f"  {self.knn_k}-NN leave-one-out accuracy (cosine): {_shown(self.knn_accuracy)}",
            *(f"wrote {path}" for path in self.files.values()),
        ]


def embed(
    cfg: Config,
    checkpoint: str | os.PathLike | None = None,
    split: str = "val",
    out: str | os.PathLike | None = None,
    *,
    limit: int | None = DEFAULT_LIMIT,
) -> EmbedResult:
    """Embed ``data.<split>`` with the config's classifier and write the results.

    Writes into ``out`` (default: ``<checkpoint folder>/embed_<split>``, or without a
    checkpoint ``<run_dir>/embed_<name>_<split>``): ``embeddings.npy`` (float32 ``[N, D]``),
    ``labels.npy`` (int64 ``[N]``), ``indices.npy`` (int64 ``[N]``: the images' indices in
    the split), ``embed.json`` (split, checkpoint, weights, counts, class names, scores) and
    ``tsne.png``.

    Args:
        cfg: a classifier's config (``model.task`` ``"classification"`` with a ``neck``).
        checkpoint: a ``.pt`` file from a run; ``None``: the model as the config builds it,
            with its pretrained weights if it names any (the picture before training).
        split: ``train``, ``val`` or ``test``. ``train`` is run with ``data.val``'s
            transforms in place of its augmentations.
        limit: at most this many images, a seeded uniform sample (``train.seed``) kept in
            the split's order; ``None``: all.

    Raises:
        ConfigError: the model is not a classifier, or the config has no ``data.<split>``.
        ValueError: a bad ``split`` or ``limit``, an exported model, too few images.
    """
    _check_arguments(split, limit, checkpoint)
    state = load_checkpoint(checkpoint) if checkpoint is not None else None
    if state is not None:
        fill_from_classes(cfg, list(state.get("classes") or []), f"checkpoint {checkpoint!s}")
    settings = validate(cfg)
    check_classifier_type(settings)
    spec = _split_spec(settings, split)
    dataset = build(spec, DATASETS, path=f"data.{split}", describe=cfg.describe)
    if state is None and fill_from_classes(
        cfg, list(getattr(dataset, "classes", None) or []), f"data.{split}"
    ):
        settings = validate(cfg)
    model, weights = _model(settings, cfg, checkpoint, state)
    classes = check_classes(model, {split: dataset}, cfg)
    indices = sample_indices(len(dataset), limit, settings.train.seed)
    if len(indices) < MIN_IMAGES:
        raise ValueError(
            f"data.{split} has {len(indices)} images; embedding needs at least {MIN_IMAGES}"
        )
    features, labels = _embed_images(model, _SampleOf(dataset, indices.tolist()), settings)
    k = min(KNN_K, len(labels) - 1)
    result = EmbedResult(
        out_dir=Path(out) if out else _default_out(settings, checkpoint, split),
        features=features,
        labels=labels,
        indices=indices,
        split=split,
        classes=classes,
        weights=weights,
        silhouette=silhouette(features, labels),
        knn_accuracy=knn_accuracy(features, labels, k),
        knn_k=k,
    )
    _write(result, cfg, checkpoint, split, len(dataset))
    return result


def _check_arguments(split: str, limit: int | None, checkpoint: str | os.PathLike | None) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if limit is not None and limit < MIN_IMAGES:
        raise ValueError(f"limit must be at least {MIN_IMAGES}, got {limit}")
    if checkpoint is not None and is_deployed(checkpoint):
        raise ValueError(
            f"{checkpoint}: an exported model gives predictions, not features; embed the "
            "run's checkpoint (best.pt or last.pt) instead"
        )


class _SampleOf(Subset):
    """The images to embed; shows the dataset's ``transforms``, so the loader reseeds them
    per sample (``SeededSamples``) and a random eval transform repeats from call to call."""

    @property
    def transforms(self) -> Any:
        return getattr(self.dataset, "transforms", None)


def _embed_images(
    model: nn.Module, images: Subset, settings: RunSettings
) -> tuple[np.ndarray, np.ndarray]:
    """``extract_features`` over ``images``, batched by the task's collate."""
    loader = build_loader(
        images,
        eval_batch_size(settings),
        shuffle=False,
        num_workers=resolve_workers(settings.data.num_workers),
        seed=settings.train.seed,
        collate_fn=task_of(model).collate(model),
    )
    device = pick_device(settings.train.device)
    return extract_features(model.to(device), loader, device)


def check_classifier_type(settings: RunSettings) -> None:
    """Raise ``ConfigError`` unless ``model.type`` is a classifier (by its class's ``task``),
    before anything is built."""
    name = settings.model.get("type")
    cls = resolve(name, MODELS) if isinstance(name, str) else name
    task = getattr(cls, "task", "classification")
    if isinstance(task, str) and task != "classification":
        raise ConfigError(
            f"cvkit embed supports classifiers only (backbone -> neck -> head, task "
            f"'classification'); {name} is a {task!r} model",
            where="model.type",
            hints=[
                "a classifier's config, e.g. cvkit://classification/tinynet_3e_digits.yaml "
                "(`cvkit list configs 'classification/*'`)"
            ],
        )


def _split_spec(settings: RunSettings, split: str) -> dict[str, Any]:
    """``data.<split>``; for ``train``, with ``data.val``'s transforms (none if it has none)
    in place of its own: the images as evaluation sees them, not augmented."""
    spec = getattr(settings.data, split)
    if spec is None:
        raise ConfigError(f"the config has no data.{split} to embed", where=f"data.{split}")
    if split == "train":
        spec = {k: v for k, v in spec.items() if k != "transforms"}
        val_transforms = (settings.data.val or {}).get("transforms")
        if val_transforms:
            spec["transforms"] = val_transforms
    return spec


def _model(
    settings: RunSettings,
    cfg: Config,
    checkpoint: str | os.PathLike | None,
    state: dict[str, Any] | None,
) -> tuple[nn.Module, str]:
    """The model in eval mode, and where its weights came from, in words."""
    seed_everything(settings.train.seed)  # the same initial weights on every call
    model = build_model(settings, cfg, pretrained=state is None)
    if state is not None and checkpoint is not None:
        load_model_weights(model, inference_weights(state), Path(checkpoint))
    task = getattr(model, "task", "classification")
    if task != "classification" or not isinstance(getattr(model, "neck", None), nn.Module):
        raise ConfigError(
            f"cvkit embed takes the features a classifier's neck gives its head; "
            f"{type(model).__name__} (task {task!r}) is not a classifier with a neck module",
            where="model.type",
            hints=["a classifier composed as backbone -> neck -> head, e.g. ImageClassifier"],
        )
    return model.eval(), _weights_of(settings, checkpoint, state)


def _weights_of(
    settings: RunSettings, checkpoint: str | os.PathLike | None, state: dict[str, Any] | None
) -> str:
    """``checkpoint runs/x/best.pt (step 135, 3 epochs done)``, or the model as built."""
    if state is not None:
        trainer = state.get("trainer") or {}
        done = (
            f" (step {trainer['step']}, {trainer['epoch']} epochs done)"
            if {"step", "epoch"} <= set(trainer)
            else ""
        )
        return f"checkpoint {checkpoint}{done}"
    seed = settings.train.seed
    sources = pretrained_sources(settings.model)
    if not sources:
        return f"the config's model as built, no checkpoint: randomly initialised (seed {seed})"
    named = ", ".join(f"{key} ({value})" for key, value in sources.items())
    return (
        f"the config's model as built, no checkpoint: pretrained weights from {named}, the "
        f"rest randomly initialised (seed {seed})"
    )


def pretrained_sources(spec: Any, path: str = "model") -> dict[str, Any]:
    """``{"model.backbone.pretrained": value}`` for every set ``pretrained`` key in a spec."""
    found: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        for key, value in spec.items():
            if key == "pretrained" and value not in (None, False):
                found[f"{path}.{key}"] = value
            else:
                found.update(pretrained_sources(value, f"{path}.{key}"))
    elif isinstance(spec, list | tuple):
        for i, value in enumerate(spec):
            found.update(pretrained_sources(value, f"{path}[{i}]"))
    return found


def sample_indices(size: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """``int64`` indices of the images to embed: all of them, or a uniform sample of
    ``limit`` drawn from ``seed`` (the same every time), in the split's order."""
    if limit is None or size <= limit:
        return np.arange(size, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(size, size=limit, replace=False)).astype(np.int64)


@torch.no_grad()
def extract_features(
    model: nn.Module, loader: Any, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """The neck's output for every batch of ``loader``, flattened per image.

    A forward hook on ``model.neck`` takes what the head receives while the model predicts,
    so any classifier of the task protocol works, whatever its ``forward`` does around it.

    Returns:
        ``(features float32 [N, D], labels int64 [N])``.
    """
    captured: list[torch.Tensor] = []
    handle = model.neck.register_forward_hook(  # type: ignore[union-attr]
        lambda _module, _inputs, output: captured.append(flatten_features(output))
    )
    features, labels = [], []
    try:
        for batch in loader:
            captured.clear()
            model.predict(batch.to(device))  # type: ignore[operator]
            if not captured or captured[0].shape[0] != len(batch):
                raise ValueError(
                    f"{type(model).__name__}.predict did not run its neck on the batch of "
                    f"{len(batch)} images once; its features cannot be taken"
                )
            features.append(captured[0].float().cpu())
            labels.append(batch.labels.cpu())
    finally:
        handle.remove()
    return (
        torch.cat(features).numpy().astype(np.float32),
        torch.cat(labels).numpy().astype(np.int64),
    )


def flatten_features(output: Any) -> torch.Tensor:
    """A neck's output as ``Tensor[B, D]``: a tensor flattened after the batch dimension, or
    a list / tuple of them flattened and concatenated (a neck that does not pool)."""
    if isinstance(output, torch.Tensor):
        return output.detach().flatten(1)
    if isinstance(output, list | tuple) and all(isinstance(t, torch.Tensor) for t in output):
        return torch.cat([t.detach().flatten(1) for t in output], dim=1)
    raise ValueError(
        f"the neck returned {type(output).__name__}; embed needs a tensor or a list of tensors"
    )


def _write(
    result: EmbedResult,
    cfg: Config,
    checkpoint: str | os.PathLike | None,
    split: str,
    split_size: int,
) -> None:
    out = result.out_dir
    out.mkdir(parents=True, exist_ok=True)
    files = result.files
    for name, array in (
        ("embeddings", result.features),
        ("labels", result.labels),
        ("indices", result.indices),
    ):
        files[name] = out / f"{name}.npy"
        np.save(files[name], array)
    points, perplexity = tsne_map(result.features)
    files["tsne"] = plot_tsne(
        points, result.labels, result.classes, out / "tsne.png", _title(result)
    )
    counts = np.bincount(result.labels, minlength=len(result.classes))
    n = len(result.labels)
    report = {
        "split": split,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "model_type": cfg.get("model.type"),
        "weights": result.weights,
        "count": n,
        "split_size": split_size,
        "sampling": "all" if n == split_size else f"a seeded uniform sample of {n} of {split_size}",
        "dim": int(result.features.shape[1]),
        "classes": result.classes,
        "class_counts": counts.tolist(),
        "silhouette_cosine": result.silhouette,
        "knn_accuracy": result.knn_accuracy,
        "knn_k": result.knn_k,
        "tsne": {"perplexity": perplexity, "metric": "cosine", "random_state": TSNE_SEED},
    }
    files["report"] = out / "embed.json"
    files["report"].write_text(json.dumps(report, indent=2) + "\n")


def _title(result: EmbedResult) -> str:
    """What was embedded (wrapped), then the two scores."""
    head = f"t-SNE of {len(result.labels)} images of data.{result.split}, {result.weights}"
    return (
        textwrap.fill(head, 100)
        + f"\nsilhouette (cosine) {_shown(result.silhouette)}, {result.knn_k}-NN leave-one-out "
        f"accuracy {_shown(result.knn_accuracy)}"
    )


def _default_out(settings: RunSettings, checkpoint: str | os.PathLike | None, split: str) -> Path:
    """Beside the checkpoint, as ``cvkit eval``'s report; without one, in ``run_dir``."""
    if checkpoint is not None:
        return Path(checkpoint).parent / f"embed_{split}"
    return Path(settings.run_dir) / f"embed_{settings.name}_{split}"


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
