"""How a command ends when something fails: one line for a mistake in what the user gave, a
traceback and a request to report it for a bug in cvkit.

Exit codes (README, "When something goes wrong"):

* 0: done;
* 1: bad data or files: a missing or unreadable file, an image or COCO file that cannot be
  used, a checkpoint of another model, a NaN loss, a full disk, a plugin's own code failing;
* 2: a config or command-line mistake (a ``ConfigError``; argparse's usage errors are 2 too);
* 3: a bug in cvkit: the traceback is printed with a line asking to report it;
* 130: interrupted (Ctrl-C).

Which exceptions are the user's: cvkit words every mistake it can see as a ``ConfigError``
(config, registry, overrides) or a ``ValueError`` (bad files and values: ``CocoFormatError``,
``CheckpointError``), and the operating system's refusals are ``OSError``. Anything else (a
``TypeError``, ``KeyError``, ``RuntimeError``...) raised in cvkit's code is a bug, unless the
innermost frame of cvkit or plugin code in its traceback is a plugin's: then the plugin's code
failed, and the message names its file and line. An error a DataLoader worker raised comes
back with the worker's traceback as its text: its own message is shown, and the worker's
frames are what is searched for a plugin's. ``CVKIT_DEBUG=1`` re-raises everything, for the
full traceback of a user's error too.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from cvkit.errors import ConfigError

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_CONFIG = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130

DEBUG_VARIABLE = "CVKIT_DEBUG"

# how torch re-raises in the main process an error a DataLoader worker raised: the message
# "Caught ValueError in DataLoader worker process 0." then this and the worker's traceback
_WORKER_TRACEBACK = "\nOriginal Traceback (most recent call last):\n"

# What to do about the operating system's refusals, by errno.
_OS_ADVICE = {
    errno.ENOSPC: "free some disk space (or write elsewhere: run_dir=..., --out ...) and retry",
    errno.EDQUOT: "free some of your disk quota and retry",
    errno.EACCES: "check the file's permissions, or write elsewhere",
    errno.EPERM: "check the file's permissions, or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EISDIR: "give a file, not a folder",
    errno.EEXIST: "a file is in the way where a folder is needed: choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EMFILE: "too many open files: lower data.num_workers or raise `ulimit -n`",
}


def debug_requested() -> bool:
    """``CVKIT_DEBUG`` is set to anything but ``""`` or ``0``: show every traceback."""
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def exit_code(exc: BaseException, plugin_files: Sequence[Path] = ()) -> int:
    """The exit code for ``exc``; ``EXIT_BUG`` when it is a bug in cvkit.

    Args:
        exc: the exception that ended the command.
        plugin_files: files and folders of the plugins imported (``plugins.plugin_paths()``).
    """
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, (OSError, ValueError, FloatingPointError, MemoryError)):
        return EXIT_BAD_INPUT
    if _out_of_memory(exc) or plugin_frame(exc, plugin_files) is not None:
        return EXIT_BAD_INPUT
    return EXIT_BUG


def describe(exc: BaseException, plugin_files: Sequence[Path] = ()) -> str:
    """The message for a user's error: one line (or a ``ConfigError``'s lines), then the
    exception's notes (``add_note``: how to resume a run, ...), each indented."""
    frame = None if isinstance(exc, ConfigError) else plugin_frame(exc, plugin_files)
    if isinstance(exc, OSError) and exc.errno is not None:
        text = _describe_os_error(exc)
    elif _out_of_memory(exc) or isinstance(exc, MemoryError):
        text = (
            f"out of memory ({_allocation(exc)}): lower data.batch_size (or set "
            "data.batch_size: auto with total_batch_size), use smaller images, or fewer "
            "data.num_workers"
        )
    elif frame is not None:
        text = (
            f"a plugin failed: {frame.filename}, line {frame.lineno}, in {frame.name}: "
            f"{type(exc).__name__}: {_without_worker_traceback(exc)}; fix the plugin (set "
            f"{DEBUG_VARIABLE}=1 for the "
            "whole traceback)"
        )
    else:
        text = _without_worker_traceback(exc)
    notes = getattr(exc, "__notes__", [])
    return "\n".join([text, *(f"  {note}" for note in notes)])


def print_bug(exc: BaseException, version: str, stream: TextIO) -> None:
    """The traceback of a bug in cvkit, then what to do about it."""
    traceback.print_exception(exc, file=stream)
    print(
        f"\nThis is a bug in cvkit {version}, not a mistake of yours. Please report it, with "
        "the command you ran and the output above (the traceback). "
        f"{DEBUG_VARIABLE}=1 shows the full traceback of any error.",
        file=stream,
    )


def plugin_frame(
    exc: BaseException,
    plugin_files: Sequence[Path] = (),
) -> traceback.FrameSummary | None:
    """The innermost frame of ``exc``'s traceback that is in cvkit or a plugin, when it is a
    plugin's: the plugin's code raised (or called a library that did). An error from a
    DataLoader worker has the worker's frames in its text: those are the ones read."""
    if not plugin_files:
        return None
    cvkit_dir = Path(__file__).resolve().parent
    for frame in reversed(_worker_frames(exc) or traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename)
        if any(is_within(path, p) for p in plugin_files):
            return frame
        if is_within(path, cvkit_dir):
            return None
    return None


def is_within(path: Path, where: Path) -> bool:
    """Whether ``path`` is the file ``where`` or lies in the folder ``where`` (both resolved):
    whether a frame's file is a plugin's."""
    path, where = path.resolve(), where.resolve()
    return path == where or where in path.parents


_FRAME_LINE = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<name>.+)$', re.M)


def _worker_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of the worker traceback in ``exc``'s text (see ``_WORKER_TRACEBACK``)."""
    _, found, trace = str(exc).partition(_WORKER_TRACEBACK)
    if not found:
        return []
    return [
        traceback.FrameSummary(m["file"], int(m["line"]), m["name"], lookup_line=False)
        for m in _FRAME_LINE.finditer(trace)
    ]


@contextlib.contextmanager
def plain_warnings(stream: TextIO | None = None) -> Iterator[None]:
    """Show each warning as one line, ``warning: MESSAGE``, without Python's line of source.

    Python's default format prints the file, line number and the line of cvkit's code that
    warned: noise to a user, who needs the message. Third-party warnings say whose they are.
    cvkit's loggers (``cvkit.data``, ``cvkit.pretrained``...) warn the same way: ``warning: ``
    before the message (a report such as the keys a checkpoint dropped keeps its lines).
    """
    original = warnings.showwarning
    handler = logging.StreamHandler(stream)  # stream None: sys.stderr at each record
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_LevelPrefix())
    cvkit_logger = logging.getLogger("cvkit")

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = " ".join(str(message).split())  # one line
        if category is not UserWarning:
            text = f"{text} ({category.__name__})"
        out = file or stream or sys.stderr
        source = _package_of(filename)
        prefix = "warning" if source in ("cvkit", "") else f"warning ({source})"
        with contextlib.suppress(OSError):
            print(f"{prefix}: {text}", file=out)

    warnings.showwarning = show
    cvkit_logger.addHandler(handler)
    try:
        yield
    finally:
        warnings.showwarning = original
        cvkit_logger.removeHandler(handler)


class _LevelPrefix(logging.Formatter):
    """``warning: MESSAGE`` (``error: ...`` at that level), as the command line says them."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _package_of(filename: str) -> str:
    """``torch`` for .../site-packages/torch/nn/x.py, ``cvkit`` for cvkit's files."""
    path = Path(filename).resolve()
    if Path(__file__).resolve().parent in path.parents:
        return "cvkit"
    parts = path.parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            return rest[0].removesuffix(".py") if rest else ""
    return ""


def _without_worker_traceback(exc: BaseException) -> str:
    """The message of ``exc``; for an error a DataLoader worker raised (torch re-raises it in
    the main process with the worker's traceback as its text), the original message and the
    worker: a bad image met mid-run is one line like any other."""
    text = str(exc) or type(exc).__name__
    head, found, trace = text.partition(_WORKER_TRACEBACK)
    # its last line: "ValueError: ..." or, for a class not built in, "pkg.mod.Error: ..."
    last = list(re.finditer(rf"^(?:[\w.]+\.)?{type(exc).__name__}: ", trace, re.M))
    if not found or not last:
        return text
    where = head.removeprefix(f"Caught {type(exc).__name__} ").rstrip(".")
    return f"{trace[last[-1].end() :].strip()} ({where})"


def _describe_os_error(exc: OSError) -> str:
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    where = f"{' -> '.join(names)}: " if names else ""
    what = exc.strerror or str(exc)
    advice = _OS_ADVICE.get(exc.errno or 0)
    return f"{where}{what}" + (f"; {advice}" if advice else "")


def _out_of_memory(exc: BaseException) -> bool:
    # torch.OutOfMemoryError (CUDA, MPS), without importing torch here; on the CPU torch's
    # allocator raises a plain RuntimeError ("DefaultCPUAllocator: can't allocate memory")
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def _allocation(exc: BaseException) -> str:
    """What could not be allocated, without torch's "[enforce fail at alloc_cpu.cpp:127]"."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split("DefaultCPUAllocator: ")[-1]
