"""Checkpoints: written atomically, loaded without executing code, checked before use.

Two kinds of file hold a model: a run's ``last.pt``/``best.pt`` (``Trainer.state_dict``:
the weights and everything a resume continues from) and the slim file ``cvkit export``
writes (the weights, class names and config only). Loading either that fails, or resuming
from a file without training state, is a ``CheckpointError`` that names the file, says
which case it is and what to pass instead: never a bare ``KeyError`` or a ``torch`` error.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from cvkit.errors import CheckpointError, CheckpointNotFoundError, did_you_mean

# the entries of a `cvkit export` file (engine.predict.export_weights)
EXPORT_KEYS = frozenset({"model", "classes", "cat_ids", "config", "cvkit_version"})
# what a resume continues from besides the weights (Trainer.state_dict)
TRAINING_KEYS = ("optimizer", "scaler", "trainer", "rng")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a temp file in the same folder, then rename.

    A crash mid-write leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain data, never code.

    Raises:
        CheckpointNotFoundError: the file does not exist (a ``FileNotFoundError``).
        CheckpointError: it cannot be read (truncated, not written by ``torch.save``, or
            holding objects that weights-only loading refuses), or has no ``model`` entry
            (a ``ValueError``).
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointNotFoundError(f"checkpoint {str(path)!r} {what}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has no 'model' entry: it is not a cvkit checkpoint",
            hints=[
                "cvkit reads a run's last.pt or best.pt, or a file from `cvkit export`; a "
                "backbone's own state dict goes in model.backbone.pretrained instead"
            ],
        )
    return state


def resolve_resume(resume: str | os.PathLike) -> Path:
    """The checkpoint to resume from: ``resume`` itself, or a run folder's ``last.pt``.

    Raises:
        CheckpointNotFoundError: naming the path, and the run folders nearby with a similar
            name (a typo in ``--resume runs/NAME`` is the usual cause).
    """
    path = Path(resume)
    usage = "pass a run folder that holds last.pt (--resume runs/NAME) or a checkpoint file"
    if path.is_dir():
        if (path / "last.pt").is_file():
            return path / "last.pt"
        raise CheckpointNotFoundError(
            f"cannot resume: the folder {str(path)!r} holds no last.pt",
            hints=[
                "a run writes last.pt every train.checkpoint_interval epochs, at "
                "train.max_steps and at the end; this one stopped before its first",
                usage,
            ],
        )
    if path.is_file():
        return path
    nearby = []
    if path.parent.is_dir():
        names = [p.name for p in path.parent.iterdir() if not p.name.startswith(".")]
        nearby = [did_you_mean(path.name, names)]
    raise CheckpointNotFoundError(
        f"cannot resume: {str(path)!r} does not exist", hints=[*nearby, usage]
    )


def check_training_state(state: dict[str, Any], path: str | os.PathLike | None = None) -> None:
    """Check that ``state`` can be resumed from: it holds the optimizer, schedule and position.

    Raises:
        CheckpointError: for a ``cvkit export`` file (weights only), saying so and what to
            do instead; for any other file without training state, the entries it lacks.
    """
    missing = [key for key in TRAINING_KEYS if key not in state]
    if not missing:
        return
    name = "the checkpoint" if path is None else repr(str(path))
    if set(state) <= EXPORT_KEYS:
        raise CheckpointError(
            f"cannot resume from {name}: it is a weights-only file written by `cvkit "
            "export` (the weights, class names and config, without the optimizer, schedule "
            "and data position a run continues from)",
            hints=[
                "to continue a run, pass its folder or its last.pt: "
                "`cvkit train CFG --resume runs/NAME`",
                "cvkit has no setting that starts a new run from a whole model's weights; "
                "model.backbone.pretrained: FILE starts a TimmBackbone from a timm state dict",
                "to predict or evaluate with it: `cvkit predict|eval CFG --checkpoint FILE`",
            ],
        )
    raise CheckpointError(
        f"cannot resume from {name}: it has no training state (missing: {', '.join(missing)})",
        hints=["resume needs a run's last.pt: `cvkit train CFG --resume runs/NAME`"],
    )


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """``load_checkpoint`` then ``check_training_state``: a checkpoint a run can resume from."""
    state = load_checkpoint(path)
    check_training_state(state, path)
    return state


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    """The error for a file ``torch.load`` fails on, by cause; never torch's own advice to
    load with ``weights_only=False``, which would run whatever code the file holds."""
    name = str(path)
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
        return CheckpointError(
            f"checkpoint {name!r} cannot be read: it holds Python objects other than tensors "
            "and plain data, which cvkit refuses to load (a checkpoint never runs code)",
            hints=[
                "cvkit's own checkpoints hold only tensors and plain data; this file was "
                "written by something else"
            ],
        )
    size = path.stat().st_size
    reason = "the file is empty" if size == 0 else f"{type(exc).__name__}: {_first_line(exc)}"
    return CheckpointError(
        f"checkpoint {name!r} cannot be read: it is not a complete checkpoint ({reason})",
        hints=[
            "it was cut short (an interrupted copy or download, a full disk) or is not a file "
            "torch.save wrote; cvkit writes last.pt and best.pt atomically, so a run "
            "folder's own files are complete: copy it again, or use the run's own file"
        ],
    )


def _first_line(exc: Exception) -> str:
    """The first sentence of an error, at most 120 characters (torch's run on for lines)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    text = text.split(". ")[0]
    return text if len(text) <= 120 else text[:117] + "..."
