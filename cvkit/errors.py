"""The ConfigError family: every message says where, what, and how to fix it.

Each error carries three parts so that tests (and users) can rely on their shape:

* ``where``: the config path (``model.neck.type``) and, when known, the file and its
  ``_base_`` chain that set it;
* ``what``: the problem in one sentence;
* ``hints``: how to fix it (closest names, the command that lists choices, plugins that
  failed to import and why).

The subclasses also derive from the builtin exception a Python user would expect
(``KeyError`` for unknown names, ``TypeError`` for bad arguments), so ``except KeyError``
keeps working, while ``str(err)`` stays readable (``KeyError`` would quote it).

``CheckpointError`` is the one error here outside that family: a checkpoint file that cannot
be used is bad input, not a bad config, so it is a ``ValueError`` (exit code 1, not 2).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable


class ConfigError(Exception):
    """A config, a registry lookup or a command-line override is wrong.

    Args:
        what: the problem, one sentence.
        where: the config path and file it came from, or ``""`` when there is none.
        hints: lines that say how to fix it.
    """

    def __init__(self, what: str, where: str = "", hints: Iterable[str] = ()) -> None:
        self.what = what
        self.where = where
        self.hints = [h for h in hints if h]
        super().__init__(self.message)

    @property
    def message(self) -> str:
        head = f"{self.where}: {self.what}" if self.where else self.what
        return "\n".join([head, *(f"  {h}" for h in self.hints)])

    def __str__(self) -> str:
        return self.message

    def note_origin(self, origin: str | None) -> ConfigError:
        """Add ``in <file> (_base_ chain ...)`` once: the first caller, nearest the mistake,
        names the file; outer levels of a nested config leave it as it is."""
        if origin and not getattr(self, "file_noted", False):
            self.hints.append(f"in {origin}")
            self.args = (self.message,)
            self.file_noted = True
        return self

    def at(self, where: str) -> ConfigError:
        """Return the same error with ``where`` filled in (kept if already set)."""
        if not self.where:
            self.where = where
            self.args = (self.message,)
        return self


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``; on Python 3.10, which has no notes, the same ``__notes__`` list
    that ``cvkit.failures`` prints under the message."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]


def with_config_file(
    err: ConfigError, path: str, describe: Callable[[str], str | None] | None
) -> ConfigError:
    """``err`` with the file that set its key (``describe``: a config's ``describe``, which
    names the file of a dotted path), once; ``path`` when the error names no key of its own."""
    if getattr(err, "file_noted", False) or describe is None:
        return err
    return err.note_origin(describe(err.where.split(" ")[0] or path))


class UnknownTypeError(ConfigError, KeyError):
    """A ``type:`` names nothing registered (nor an importable ``pkg.mod:Class``)."""


class UnknownArgumentError(ConfigError, TypeError):
    """A config key is not a parameter of the class (or not a setting of the section)."""


class MissingArgumentError(ConfigError, TypeError):
    """A required parameter has no value in the config."""


class ValueTypeError(ConfigError, TypeError):
    """A config value has the wrong type for the parameter's annotation."""


class ValueRangeError(ConfigError, ValueError):
    """A config value has the right type but is out of range (a batch size of 0)."""


class FeatureInfoError(ConfigError, ValueError):
    """A backbone's or neck's ``feature_info`` does not describe what its ``forward`` returns
    (number of maps, channels, strides), or that forward raised or returned no list of maps,
    in the build-time check (one forward of a small zeros image)."""


class OverrideError(ConfigError, KeyError):
    """A command-line override names a path that does not exist, or is malformed."""


class ConfigFileError(ConfigError, FileNotFoundError):
    """A config file or a ``_base_`` file is missing, unreadable or not valid YAML."""


class UnsafeYamlError(ConfigError, ValueError):
    """A YAML tag would construct Python objects; configs never execute code."""


class PluginError(ConfigError, ImportError):
    """A plugin named in a config's ``imports:`` or by ``--plugin`` failed to import."""


class DuplicateNameError(ConfigError, KeyError):
    """A name is registered twice in the same registry."""


class DataError(ValueError):
    """A data file a user gave cannot be used: its message names the file and the entry and
    says what to do. The builder passes it on as it is (exit code 1, bad data) rather than as
    a ``ConfigError`` about the component whose constructor read the file."""


class CheckpointError(DataError):
    """A checkpoint file that cannot serve what was asked of it: unreadable or truncated, of
    another model, or without the training state a resume needs.

    Bad input rather than a bad config, so it is a ``ValueError`` (the command line exits
    with 1, not the 2 of a ``ConfigError``). The message names the file, says which case it
    is, and, on indented lines, what to pass instead.

    Args:
        what: the problem, naming the file.
        hints: lines that say what to do.
    """

    def __init__(self, what: str, hints: Iterable[str] = ()) -> None:
        self.what = what
        self.hints = [h for h in hints if h]
        super().__init__("\n".join([what, *(f"  {h}" for h in self.hints)]))


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint file, or a run folder to resume, that does not exist."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``"did you mean 'x'?"`` for the closest names, or ``""`` if none is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), lowered, n=n)]
    if not close:
        return ""
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"
