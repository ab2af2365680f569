"""Every image file of a dataset decoded once: its real size and a hash of its content,
cached by (path, size, modification time).

``cvkit doctor`` reports from these facts, and ``cvkit train`` checks every split with them
before the first step (``precheck``), so a truncated JPEG or an image of another size than
its annotation file says stops a run at the start, not hours in. The first check of a
folder decodes every image (threads: OpenCV and hashlib release the GIL); a later one reads
only the cache, and decodes just the files that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cvkit.data.generated_cache import cache_root
from cvkit.data.image_io import ImageReadError, decode_image

CACHE_VERSION = 1


@dataclass(frozen=True)
class ImageFacts:
    """What one image file is: ``height, width`` as ``read_image`` decodes it (EXIF
    orientation applied, if asked), ``digest`` of its bytes; ``error`` instead when it is
    missing (``"missing"``) or cannot be decoded (the reason)."""

    height: int = 0
    width: int = 0
    digest: str = ""
    error: str | None = None


def inspect_images(
    paths: Sequence[str], exif_orientation: bool = True, workers: int | None = None
) -> list[ImageFacts]:
    """``ImageFacts`` of every path, in order; from the cache where the file is unchanged."""
    if not paths:
        return []
    cache = _Cache(paths, exif_orientation)
    todo = [i for i, p in enumerate(paths) if cache.get(p) is None]
    threads = max(1, min(workers or os.cpu_count() or 1, 8, len(todo) or 1))
    level = cv2.utils.logging.getLogLevel()
    # a broken file is reported once, here; OpenCV would also warn about it on stderr
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        with ThreadPoolExecutor(threads) as pool:
            facts = pool.map(lambda i: _inspect(paths[i], exif_orientation), todo)
            for i, fact in zip(todo, facts):
                cache.put(paths[i], fact)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if todo:
        cache.save()
    return [cache.get(p) or ImageFacts(error="missing") for p in paths]


def _inspect(path: str, exif_orientation: bool) -> ImageFacts:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        return ImageFacts(error="missing")
    except OSError as err:
        return ImageFacts(error=f"cannot be read ({err.strerror})")
    digest = hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()
    try:
        image = decode_image(data, path, exif_orientation=exif_orientation)
    except ImageReadError as err:
        return ImageFacts(digest=digest, error=err.reason)
    return ImageFacts(int(image.shape[0]), int(image.shape[1]), digest)


class _Cache:
    """Facts by path relative to the files' common folder, valid while a file's size and
    modification time are those recorded; one JSON file per folder and orientation setting."""

    def __init__(self, paths: Sequence[str], exif_orientation: bool) -> None:
        self.root = os.path.commonpath([os.path.abspath(p) for p in paths])
        if len(paths) == 1 or os.path.isfile(self.root):
            self.root = os.path.dirname(self.root)
        key = hashlib.blake2b(
            f"{self.root}|{exif_orientation}".encode(), digest_size=10
        ).hexdigest()
        self.file = cache_root() / "image-checks" / f"{key}.json"
        self.entries = self._load()
        self.stats: dict[str, tuple[int, int] | None] = {}

    def _load(self) -> dict[str, list[Any]]:
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return {}
        return data.get("entries") or {}

    def _stat(self, path: str) -> tuple[int, int] | None:
        if path not in self.stats:
            try:
                st = os.stat(path)
                self.stats[path] = (st.st_size, st.st_mtime_ns)
            except OSError:
                self.stats[path] = None
        return self.stats[path]

    def _key(self, path: str) -> str:
        return os.path.relpath(os.path.abspath(path), self.root)

    def get(self, path: str) -> ImageFacts | None:
        stat = self._stat(path)
        if stat is None:
            return ImageFacts(error="missing")
        entry = self.entries.get(self._key(path))
        if entry is None or tuple(entry[:2]) != stat:
            return None
        return ImageFacts(*entry[2:])

    def put(self, path: str, facts: ImageFacts) -> None:
        stat = self._stat(path)
        if stat is not None and facts.error != "missing":
            self.entries[self._key(path)] = [*stat, *vars(facts).values()]

    def save(self) -> None:
        """Write atomically: processes of a distributed run may save the same file at once."""
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            temp = self.file.with_name(f".{self.file.name}.{os.getpid()}.tmp")
            temp.write_text(json.dumps({"version": CACHE_VERSION, "entries": self.entries}))
            os.replace(temp, self.file)
        except OSError:
            pass  # a read-only cache costs only time: the next check decodes again


def precheck(datasets: dict[str, Any], limit: int = 5) -> int:
    """Check that every image file of every dataset decodes, at the size its annotations
    declare (datasets with ``files`` and, optionally, ``sizes`` as ``(height, width)``).

    Returns:
        How many image files were checked.

    Raises:
        ValueError: listing, per split, how many files are missing, undecodable or of another
            size, with the first ``limit`` of them.
    """
    problems: list[str] = []
    checked = 0
    for split, dataset in datasets.items():
        files = list(getattr(dataset, "files", None) or [])
        if not files:
            continue
        spec = getattr(dataset, "spec", None)
        facts = inspect_images(files, bool(getattr(spec, "exif_orientation", True)))
        checked += len(files)
        sizes = getattr(dataset, "sizes", None)
        found = (
            _problem(path, fact, None if sizes is None else tuple(sizes[i]))
            for i, (path, fact) in enumerate(zip(files, facts))
        )
        bad = [b for b in found if b is not None]
        if bad:
            more = f"\n    ... and {len(bad) - limit} more" if len(bad) > limit else ""
            problems.append(
                f"data.{split}: {len(bad)} of {len(files)} image files cannot be used:\n    "
                + "\n    ".join(bad[:limit])
                + more
            )
    if problems:
        raise ValueError(
            "checked every image before training:\n  "
            + "\n  ".join(problems)
            + "\n  `cvkit doctor CONFIG` reports every problem of the data at once "
            "(data.check_images=false skips this check)"
        )
    return checked


def _problem(path: str, facts: ImageFacts, declared: tuple[int, int] | None) -> str | None:
    if facts.error is not None:
        return f"'{path}': {'does not exist' if facts.error == 'missing' else facts.error}"
    if declared is not None and (facts.height, facts.width) != declared:
        return (
            f"'{path}': {facts.width}x{facts.height} pixels, but the annotations say "
            f"{declared[1]}x{declared[0]} (width x height)"
        )
    return None


def cache_file_for(paths: Sequence[str], exif_orientation: bool = True) -> Path:
    """Where ``inspect_images`` caches the facts of ``paths`` (for tests and clean-up)."""
    return _Cache(paths, exif_orientation).file
