"""Datasets generated once into a cache folder: where the cache is, and writing a folder so
that readers only ever see it complete."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger("cvkit.data")


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$CVKIT_CACHE``, else ``~/.cache/cvkit``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("CVKIT_CACHE") or Path.home() / ".cache" / "cvkit")


def ensure_generated(
    folder: Path, marker: str, owner: str, write: Callable[[Path], None], what: str
) -> Path:
    """``folder``, written by ``write(scratch)`` first if its ``marker`` file is missing.

    ``write`` fills a temporary folder beside the final one and must create ``marker`` last;
    the folder is then renamed into place, so a crash leaves no half-written cache, and two
    processes generating at once both end with the same complete folder (the files are
    identical; the later rename gives way).

    Args:
        folder: the final folder; every argument that changes the files is in its name.
        marker: the file whose presence marks a complete folder (e.g. ``"train.json"``).
        owner: the dataset's name, for the log and the error.
        write: draws the files into the folder it is given.
        what: what is generated, for the log (e.g. ``"400 train images"``).

    Raises:
        ValueError: ``folder`` exists without ``marker`` (not written by cvkit).
    """
    if (folder / marker).is_file():
        return folder
    if folder.exists():
        raise ValueError(
            f"{owner} cache folder '{folder}' exists but has no {marker}; it was not written "
            "by cvkit: delete it and it will be generated again"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        start = time.perf_counter()
        write(scratch)
        try:
            os.rename(scratch, folder)
        except OSError:
            if not (folder / marker).is_file():
                raise
        elapsed = time.perf_counter() - start
        logger.info("%s: generated %s in %.1f s into '%s'", owner, what, elapsed, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # gone already after a successful rename
    return folder
