"""Plugin discovery: entry points, ``imports:`` in configs, and ``--plugin`` on the CLI.

A plugin is any module that registers components when imported. cvkit's own components come
in the same way: ``load_builtins`` imports the modules named in ``BUILTIN_MODULES`` on the
first registry use, by name, so this foundation module depends on no layer above it. Three
ways bring in the others:

* an installed package that declares ``[project.entry-points."cvkit.plugins"]``; every such
  entry point is imported once, lazily, on the first registry lookup;
* ``imports: [my_module, ./local_plugin.py]`` in a config (a list union across ``_base_``);
* ``cvkit --plugin my_module ...`` on the command line.

Every attempt is recorded (``report()``), so ``cvkit list --plugins`` and not-found errors can
show which plugins loaded and which failed, with the exception. One broken plugin never hides
the others: entry points keep loading after a failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cvkit.errors import PluginError
from cvkit.failures import debug_requested, is_within

ENTRY_POINT_GROUP = "cvkit.plugins"


@dataclass
class PluginRecord:
    """One plugin import attempt: what was imported, from where, and how it went."""

    name: str  # entry-point name, module name or file path as the user wrote it
    target: str  # the module imported
    origin: str  # "entry point (dist)", "config imports" or "--plugin"
    error: str | None = None  # "ExcType (file.py, line 7): message" when the import failed
    detail: str | None = None  # the traceback, for `cvkit list --plugins --verbose`
    path: Path | None = None  # its file, or its package's folder, once found

    @property
    def ok(self) -> bool:
        return self.error is None


_records: dict[str, PluginRecord] = {}
_entry_points_loaded = False
_builtins = "absent"  # -> "loading" -> "loaded"

# The modules whose import registers every built-in component (each package's __init__
# imports its component modules). Imported by name, like an entry point.
BUILTIN_MODULES = (
    "cvkit.data",
    "cvkit.engine",
    "cvkit.engine.optim",
    "cvkit.evaluation.classification",
    "cvkit.evaluation.segmentation",
    "cvkit.models",
)


def load_builtins() -> None:
    """Import every module that registers a built-in component (once; re-entrant).

    A failure propagates (a broken install is not a plugin to skip) and the next call retries.
    """
    global _builtins
    if _builtins != "absent":
        return
    _builtins = "loading"  # the modules look up registries while they import
    try:
        for name in BUILTIN_MODULES:
            importlib.import_module(name)
    except BaseException:
        _builtins = "absent"
        raise
    _builtins = "loaded"


_current_source: list[str] = []


def current_source() -> str | None:
    """The plugin being imported right now, for tagging what it registers."""
    return _current_source[-1] if _current_source else None


@contextlib.contextmanager
def _importing(source: str) -> Iterator[None]:
    _current_source.append(source)
    try:
        yield
    finally:
        _current_source.pop()


def _entry_points() -> list:
    # imported here: importlib.metadata takes ~35 ms, which commands that build nothing from
    # the registries (`cvkit coco-eval`) need not pay
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def source_for_module(module: str) -> str | None:
    """The plugin whose entry point lives in ``module``'s top-level package, if any."""
    top = module.split(".")[0]
    for ep in _entry_points():
        if ep.value.split(":")[0].split(".")[0] == top:
            return _ep_source(ep)
    return None


def _ep_source(ep) -> str:
    dist = ep.dist.name if getattr(ep, "dist", None) is not None else None
    return f"plugin {dist}" if dist else f"plugin {ep.name}"


def load_entry_points() -> None:
    """Import every ``cvkit.plugins`` entry point once; failures are recorded, not raised."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True  # set first: a plugin may look up a registry while importing
    for ep in _entry_points():
        source = _ep_source(ep)
        record = PluginRecord(ep.name, ep.value, f"entry point ({source.split(' ', 1)[1]})")
        with _importing(source):
            try:
                ep.load()
            except Exception as exc:  # a broken plugin must not hide the others
                record.error = _failure(exc)
                record.detail = traceback.format_exc()
        record.path = _module_path(ep.value.split(":")[0])
        _records[f"ep:{ep.name}"] = record


def _import_file(path: Path) -> None:
    # A stable module name per file, so importing the same file twice is a no-op.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    name = f"cvkit_local_plugin_{path.stem}_{digest}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def import_plugins(specs: list[str], origin: str, base_dir: Path | None = None) -> None:
    """Import modules (``pkg.mod``) or files (``./x.py``) that register components.

    Every spec is tried; if any failed, one ``PluginError`` lists them all with their errors.

    Args:
        specs: module names or paths to ``.py`` files.
        origin: what asked for them (``"config imports"``, ``"--plugin"``), for the report.
        base_dir: relative file paths are resolved against it (the config's folder).
    """
    failures = []
    for spec in specs:
        is_file = spec.endswith(".py") or "/" in spec or "\\" in spec
        target = spec
        if is_file:
            path = Path(spec).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            target = str(path.resolve())
        record = PluginRecord(spec, target, origin)
        with _importing(f"{origin} {spec}"):
            try:
                if is_file:
                    if not Path(target).is_file():
                        raise FileNotFoundError(f"no such file: {target}")
                    _import_file(Path(target))
                else:
                    importlib.import_module(spec)
            except Exception as exc:
                record.error = _failure(exc, Path(target) if is_file else _module_path(spec))
                record.detail = traceback.format_exc()
                failures.append(record)
        record.path = Path(target) if is_file else _module_path(spec)
        _records[f"{origin}:{target}"] = record
    if failures:
        raise PluginError(
            f"{len(failures)} of {len(specs)} plugin(s) failed to import",
            where=origin,
            hints=[f"{r.name}: {r.error}" for r in failures]
            + _import_advice(failures)
            + [r.detail or "" for r in failures if debug_requested()],
        )


def _import_advice(failures: list[PluginRecord]) -> list[str]:
    """What to do: find the plugin, or fix the line of its code that raised."""
    not_found = [r for r in failures if r.path is None or not r.path.exists()]
    advice = []
    if not_found:
        advice.append("check the module name (it must be importable) or the path to the .py file")
    if len(not_found) < len(failures):
        advice.append(
            "the plugin's code raised while it was imported: fix it at the line shown "
            "(CVKIT_DEBUG=1 shows the whole traceback)"
        )
    return advice


def _module_path(module: str) -> Path | None:
    """The file of ``module``, or its package's folder; ``None`` when it cannot be found."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return None
    origin = Path(spec.origin).resolve()
    return origin.parent if origin.name == "__init__.py" else origin


def _failure(exc: BaseException, plugin: Path | None = None) -> str:
    """``NameError (bug_plugin.py, line 3): name 'x' is not defined``: the error and the line
    of the plugin that raised it."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError):  # its text already ends "(bug_plugin.py, line 3)"
        return text
    # the plugin's own innermost line: where its code raised, or called what raised
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if plugin is not None and is_within(Path(f.filename), plugin)
    ]
    if not frames:  # not found, or failed before running any of its lines
        return text
    frame = frames[-1]
    return f"{type(exc).__name__} ({frame.filename}, line {frame.lineno}): {exc}"


def command_line_plugins() -> list[str]:
    """The ``--plugin`` arguments of this process that imported, as given: a command that
    continues the run (``--resume``) needs them again."""
    return [r.name for r in _records.values() if r.origin == "--plugin" and r.ok]


def plugin_paths() -> list[Path]:
    """The file (or package folder) of every plugin imported or tried so far."""
    return [r.path for r in _records.values() if r.path is not None]


def report() -> list[PluginRecord]:
    """Every plugin import attempt so far, entry points first (loading them if needed)."""
    load_entry_points()
    return list(_records.values())


def failure_hints() -> list[str]:
    """Lines for error messages: each plugin that failed to import, with its error."""
    return [
        f"plugin {r.name!r} ({r.origin}) failed to import: {r.error}"
        for r in _records.values()
        if not r.ok
    ]
