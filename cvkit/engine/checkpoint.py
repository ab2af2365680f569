"""Checkpoints: written atomically, loaded without executing code, checked before use.

Two kinds of file hold a model: a run's ``last.pt``/``best.pt`` (``Trainer.state_dict``:
the weights and everything a resume continues from) and the slim file ``cvkit export``
writes (the weights, class names and config only). Loading either that fails, or resuming
from a file without training state, is a ``CheckpointError`` that names the file, says
which case it is and what to pass instead: never a bare ``KeyError`` or a ``torch`` error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import re
import secrets
from pathlib import Path
from typing import Any

import torch

from cvkit.errors import CheckpointError, CheckpointNotFoundError, did_you_mean

# the entries of a `cvkit export` file (engine.predict.export_weights)
EXPORT_KEYS = frozenset({"model", "classes", "cat_ids", "config", "cvkit_version"})
# what a resume continues from besides the weights (Trainer.state_dict)
TRAINING_KEYS = ("optimizer", "scaler", "trainer", "rng")


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written: a full disk, an exceeded quota, no permission.

    An ``OSError`` with the operating system's ``errno``; its ``filename`` is the checkpoint
    (never the temporary file it was being written to) and its ``strerror`` says that the
    file was not written and whether a previous one is there, intact.
    """


# what the operating system's refusal means, in the words a user needs
_WRITE_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
}


_TEMP_TOKEN_BYTES = 4
_TEMP_NAME = re.compile(rf"\..+\.[0-9a-f]{{{2 * _TEMP_TOKEN_BYTES}}}\.tmp")  # its temp files' names


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a temp file in the same folder, flushed to the
    disk (``fsync``), then renamed over ``path``.

    A crash or a full disk mid-write leaves the previous file intact, never a truncated one,
    and no temp file behind. The file's permissions follow the umask, as for any other file
    a run writes.

    Raises:
        CheckpointWriteError: the operating system refused the write (``ENOSPC``...); the
            previous ``path``, if any, is unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(_TEMP_TOKEN_BYTES)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(tmp, flags, 0o666)
    except OSError as exc:
        raise _not_written(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        # torch.save reports a failed write as a RuntimeError raised while handling it
        cause = _os_error_in(exc) if isinstance(exc, Exception) else None
        if cause is not None:
            raise _not_written(path, cause) from exc
        raise
    _sync_folder(path.parent)  # the rename itself survives a power cut
    return path


def remove_unfinished_writes(folder: str | os.PathLike) -> list[str]:
    """Delete the temp files of checkpoint writes that never finished in ``folder``.

    ``save_checkpoint`` removes its temp file when a write fails, but a process killed mid-write
    (``SIGKILL``, the out-of-memory killer, a power cut) cannot: the file, as large as a
    checkpoint, would stay in the run folder for good. Call it where no write can be under
    way, as when a run resumes.

    Returns:
        One line per file removed, naming it and its size.
    """
    removed = []
    for tmp in sorted(Path(folder).glob(".*.tmp")):
        if _TEMP_NAME.fullmatch(tmp.name) and tmp.is_file():
            size = tmp.stat().st_size
            tmp.unlink(missing_ok=True)
            removed.append(
                f"removed {tmp.name} ({size / 2**20:.1f} MiB), a checkpoint write that a "
                "killed process left unfinished"
            )
    return removed


def _not_written(path: Path, exc: OSError) -> CheckpointWriteError:
    reason = _WRITE_REASONS.get(exc.errno or 0)
    os_text = exc.strerror or str(exc)
    why = f"{reason} ({os_text})" if reason else os_text
    kept = (
        f"the previous {path.name} is intact"
        if path.is_file()
        else f"there was no {path.name} before"
    )
    return CheckpointWriteError(exc.errno, f"not written, {why}; {kept}", str(path))


def _os_error_in(exc: BaseException) -> OSError | None:
    """``exc``, or the first exception in its chain (cause, context), that is an ``OSError``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename) to the disk; POSIX only, and best effort: some file
    systems refuse to sync a folder, and the file itself is already on the disk."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_checkpoint(
    path: str | os.PathLike, map_location: str = "cpu", *, mmap: bool = False
) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain data, never code.

    ``mmap=True`` maps the tensors from the file instead of reading them: quick however big
    the file, for a look at its other entries (the run's position).

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
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
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


# what `cvkit export` writes besides weights files, by suffix
_EXPORTED = {".onnx": "an ONNX model", ".pt2": "a torch.export program (ExportedProgram)"}


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    """The error for a file ``torch.load`` fails on, by cause; never torch's own advice to
    load with ``weights_only=False``, which would run whatever code the file holds."""
    name = str(path)
    exported = _EXPORTED.get(path.suffix.lower())
    if exported is not None:
        return CheckpointError(
            f"{name!r} is {exported} written by `cvkit export`, not a checkpoint",
            hints=[
                f"it runs as it is: `cvkit predict {name} IMAGES`, `cvkit eval CFG "
                f"--checkpoint {name}`",
                "train --resume and export read a run's checkpoint: its folder, last.pt or best.pt",
            ],
        )
    with path.open("rb") as file:
        head = file.read(4)
    if head and not head.startswith((b"PK", b"\x80")):  # a zip archive, or a legacy pickle
        return CheckpointError(
            f"{name!r} is not a checkpoint: torch.save writes a zip archive, and this file "
            f"starts with {head!r}",
            hints=["give a run's last.pt or best.pt, or a .pt file from `cvkit export`"],
        )
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
