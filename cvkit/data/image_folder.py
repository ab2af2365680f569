"""ClassificationFolder: your own images, one folder per class, for classification."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from cvkit.data.image_io import read_image
from cvkit.data.splits import select_split
from cvkit.data.transforms import compose
from cvkit.errors import did_you_mean
from cvkit.registry import DATASETS

logger = logging.getLogger("cvkit.data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@DATASETS.register()
class ClassificationFolder:
    """Images laid out as ``root/<class_name>/<image files>``; the folder is the label.

    Classes are the sorted folder names (or ``classes``, in that order); label ``i`` is
    ``classes[i]``. Files are indexed once, sorted, at construction and decoded with
    ``image_io.read_image`` when an item is read. Files in subfolders of a class folder belong
    to that class. Names starting with ``.`` (``.DS_Store``, ``.ipynb_checkpoints``) are
    skipped; any other file whose extension is not in ``extensions`` is skipped and counted in
    one warning on the ``cvkit.data`` logger.

    For separate train and val folders, point two datasets with ``split="all"`` at them.

    Args:
        root: the folder that holds one folder per class.
        split: ``"train"``, ``"val"`` or ``"all"`` (every image).
        val_fraction: share of each class that goes to ``val`` (when ``folds`` is not set).
        seed: seed of the split or the folds; use the same one for ``train`` and ``val``.
        folds: stratified k-fold with this many folds instead of the ``val_fraction`` split.
        fold: which fold is ``val`` (``0..folds-1``); ``train`` is the other folds.
        classes: the class folders to use, in label order; default every folder, sorted.
        extensions: file endings that are images (case-insensitive).
        transforms: albumentations transforms, applied in order (``image=`` HWC uint8).
        image_size: if set, every image is resized to ``image_size`` squared after the
            transforms (aspect ratio not kept) so that a batch stacks. Leave it unset when
            the transforms already give one size (``Resize``, ``RandomResizedCrop``).

    Items: ``(image ndarray[H, W, 3] uint8, label int)``.

    Attributes:
        classes: ``[K]`` class names; ``files``: ``[N]`` image paths; ``labels``: ``[N]`` int64.

    Raises:
        ValueError: the root, a class folder or an argument is wrong; the message names it.
    """

    def __init__(
        self,
        root: str,
        split: Literal["train", "val", "all"] = "all",
        val_fraction: float = 0.2,
        seed: int = 0,
        folds: int | None = None,
        fold: int = 0,
        classes: list[str] | None = None,
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
        transforms: list | None = None,
        image_size: int | None = None,
    ) -> None:
        if image_size is not None and (isinstance(image_size, bool) or image_size < 1):
            raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")
        self.root = Path(root)
        _check_root(self.root)
        suffixes = _normalise_extensions(extensions)
        self.classes = _choose_classes(self.root, classes)
        files, labels = _index_images(self.root, self.classes, suffixes)
        keep = select_split(
            labels, split, val_fraction=val_fraction, seed=seed, folds=folds, fold=fold
        )
        if keep.size == 0:
            raise ValueError(
                f"split {split!r} of '{self.root}' has no images: a class with a single image "
                "always goes to train; add images, or use split: all"
            )
        self.split = split
        self.files = [files[i] for i in keep]
        self.labels = labels[keep]
        self.transforms = compose(transforms)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        image = read_image(self.files[i])
        if self.transforms is not None:
            image = self.transforms(image=image)["image"]
        if self.image_size is not None:
            image = _resize_square(image, self.image_size)
        return image, int(self.labels[i])

    def __repr__(self) -> str:
        return (
            f"ClassificationFolder('{self.root}', split={self.split!r}: "
            f"{len(self)} images, {len(self.classes)} classes)"
        )


def _check_root(root: Path) -> None:
    if root.is_dir():
        return
    where = f"'{root}'" if root.is_absolute() else f"'{root}' (relative to '{Path.cwd()}')"
    what = "is a file, not a folder" if root.exists() else "does not exist"
    raise ValueError(
        f"dataset root {where} {what}; set root to a folder laid out as "
        "<root>/<class_name>/<image files>"
    )


def _normalise_extensions(extensions: Sequence[str]) -> tuple[str, ...]:
    if isinstance(extensions, str) or not extensions:
        raise ValueError(
            f"extensions must be a non-empty list like ['.jpg', '.png'], got {extensions!r}"
        )
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _choose_classes(root: Path, classes: list[str] | None) -> list[str]:
    folders = sorted(p.name for p in root.iterdir() if _visible(p.name) and p.is_dir())
    if not folders:
        loose = sorted(p.name for p in root.iterdir() if _visible(p.name) and p.is_file())
        found = f"; it holds {len(loose)} files directly, e.g. '{loose[0]}'" if loose else ""
        raise ValueError(
            f"dataset root '{root}' has no class folders{found}; put the images of each class "
            f"in a folder of its own: {root}/<class_name>/<image files>"
        )
    if classes is None:
        return folders
    if not classes:
        raise ValueError("classes is empty: list the class folders to use, or leave it unset")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise ValueError(f"classes lists {', '.join(map(repr, repeated))} more than once")
    missing = [c for c in classes if c not in folders]
    if missing:
        hint = " ".join(filter(None, (did_you_mean(c, folders) for c in missing)))
        raise ValueError(
            f"classes names {', '.join(map(repr, missing))} but '{root}' has no such folder; "
            f"its class folders are: {_some(folders)}. {hint}".rstrip()
        )
    return list(classes)


def _some(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"


def _index_images(
    root: Path, classes: list[str], suffixes: tuple[str, ...]
) -> tuple[list[str], np.ndarray]:
    """Every image of every class, sorted: ``(files [N], labels [N] int64)``."""
    files: list[str] = []
    labels: list[int] = []
    ignored: list[str] = []
    empty: list[str] = []
    for label, name in enumerate(classes):
        found = 0
        for path in _walk(root / name):
            if path.lower().endswith(suffixes):
                files.append(path)
                labels.append(label)
                found += 1
            else:
                ignored.append(path)
        if found == 0:
            empty.append(name)
    if ignored:
        logger.warning(
            "ClassificationFolder: ignored %d file(s) under '%s' whose extension is not one of "
            "%s (e.g. '%s'); add the extension to `extensions` to use them",
            len(ignored),
            root,
            ", ".join(suffixes),
            ignored[0],
        )
    if empty:
        raise ValueError(
            f"class folder(s) {', '.join(repr(str(root / n)) for n in empty)} hold no image "
            f"files ({', '.join(suffixes)}); an empty class would shift the label of every "
            "class after it: add images, delete the folder, or list the classes to use in "
            "`classes`"
        )
    return files, np.asarray(labels, dtype=np.int64)


def _walk(folder: Path) -> list[str]:
    """Paths of the visible files under ``folder``, sorted folder by folder."""
    paths = []
    for parent, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if _visible(d))  # os.walk descends in this order
        paths += [os.path.join(parent, n) for n in sorted(names) if _visible(n)]
    return paths


def _resize_square(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    if height == width == size:
        return image
    # Area averaging when shrinking avoids aliasing; bilinear when enlarging.
    shrink = height > size and width > size
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


# The name before datasets were named <Source><Task> (or <Task>Folder): configs and code
# written with it keep working.
ImageFolderDataset = ClassificationFolder
DATASETS.add(
    ClassificationFolder, "ImageFolderDataset", source="cvkit (old name of ClassificationFolder)"
)
