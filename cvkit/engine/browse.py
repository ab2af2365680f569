"""Browse a config's dataset: samples drawn with their ground truth after the config's
augmentations (``tools/browse_dataset.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from cvkit.config import Config
from cvkit.data.loader import EpochSampler, SeededSamples
from cvkit.engine.run import build_datasets, validate
from cvkit.errors import ConfigError
from cvkit.visualize.samples import save_sample_grids


def browse_dataset(
    cfg: Config,
    split: str = "train",
    count: int = 16,
    out_dir: str | os.PathLike | None = None,
) -> list[Path]:
    """Draw the first ``count`` samples of ``data.<split>`` as training would see them.

    The config is validated whole first. The samples are the start of epoch 1's order
    (shuffled by ``train.seed`` for ``train``, in file order otherwise), each augmented as the
    training loader would augment it (``SeededSamples``: seeded by seed, epoch and index), so
    a picture shows exactly what the model is given.

    Args:
        cfg: the config (overrides applied).
        split: ``"train"``, ``"val"`` or ``"test"``.
        count: samples to draw (fewer if the dataset is smaller).
        out_dir: where the PNGs go; default ``browse_<config file stem>`` in the working
            folder. Files are ``<split>.png`` or ``<split>_1.png``, ... (16 samples each).

    Returns:
        The PNG paths written.

    Raises:
        ConfigError: the config is invalid or has no ``data.<split>``.
        FileNotFoundError, ValueError: the dataset's files are missing or bad; ``count`` is
            below 1.
    """
    if count < 1:
        raise ValueError(f"the sample count must be at least 1, got {count}")
    settings = validate(cfg)
    datasets = build_datasets(settings, cfg, (split,))
    if split not in datasets:
        raise ConfigError(f"the config has no data.{split} to browse", where=f"data.{split}")
    dataset = datasets[split]
    seed = settings.train.seed
    order = EpochSampler(len(dataset), shuffle=split == "train", seed=seed).order(0)[:count]
    samples = SeededSamples(dataset, seed)
    items = [samples[(0, index)] for index in order]
    classes = [str(c) for c in getattr(dataset, "classes", None) or []]
    stem = cfg.file.stem if cfg.file is not None else "config"
    out = Path(out_dir) if out_dir is not None else Path(f"browse_{stem}")
    return save_sample_grids(items, classes, out, split, titles=[f"#{i}" for i in order])
