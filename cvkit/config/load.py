"""YAML configs: ``_base_`` inheritance, ``_replace_``, dotted overrides, provenance.

Rules (README, "Configs"):

* ``_base_: a.yaml`` or ``_base_: [a.yaml, b.yaml]``, paths relative to the file; bases merge
  in order, then the file itself; the later value wins.
* ``cvkit://<path>`` names a config that ships inside the package (the project's ``configs/``
  folder, ``cvkit list configs``), as a ``_base_`` or as the file to load: a config that names
  its bases so works wherever it is copied. Relative ``_base_`` paths inside a packaged config
  stay relative to it.
* Mappings merge key by key. Lists and scalars replace whole. ``_replace_: true`` inside a
  mapping replaces the base's mapping instead of merging. A mapping whose ``type`` differs from
  the base's replaces it too: the old type's arguments mean nothing to the new one.
* ``imports:`` is the exception: a list union across every ``_base_`` file, so a child never
  drops a plugin its base needs.
* Overrides are ``path.to.key=value`` (value parsed as YAML) and fail on a path that does not
  exist, unless the schema or the component defines it (``cvkit.config.schema``);
  ``+path.to.key=value`` adds a key the config does not set yet.

Every leaf remembers the file that set it, so errors can say which file to edit.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from cvkit.config import yaml_io
from cvkit.config.schema import is_known_key, is_section
from cvkit.errors import ConfigError, ConfigFileError, OverrideError, did_you_mean

COMMAND_LINE = "the command line"
PACKAGED = "cvkit://"  # the prefix of a packaged config's name


@dataclass
class Config:
    """A resolved config: plain data plus where each value came from.

    Attributes:
        data: the merged config as plain dicts, lists and scalars.
        file: the file it was loaded from (``None`` for a dict built in code).
        chain: that file and every ``_base_`` file it pulled in, in merge order.
        origins: dotted path -> the file (or ``"the command line"``) that set it.
    """

    data: dict[str, Any]
    file: Path | None = None
    chain: list[Path] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)

    def describe(self, path: str) -> str | None:
        """Which file set ``path`` (or its nearest parent), with the ``_base_`` chain."""
        parts = path.replace("[", ".[").split(".")
        for n in range(len(parts), 0, -1):
            origin = self.origins.get(".".join(parts[:n]).replace(".[", "["))
            if origin is not None:
                break
        else:
            origin = _show(self.file) if self.file else None
        if origin is None:
            return None
        if len(self.chain) > 1:
            return f"{origin} (_base_ chain: {' -> '.join(_show(p) for p in self.chain)})"
        return origin

    def get(self, path: str, default: Any = None) -> Any:
        """The value at a dotted ``path``, or ``default``."""
        node: Any = self.data
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def to_yaml(self) -> str:
        return yaml_io.dumps(self.data)


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config with its ``_base_`` files and apply dotted ``overrides``.

    ``path`` is a file, or the ``cvkit://<path>`` name of a config that ships with cvkit.
    """
    if isinstance(path, str) and path.startswith(PACKAGED):
        file = _packaged_file(path)
    else:
        file = Path(path)
    origins: dict[str, str] = {}
    chain: list[Path] = []
    data = _load_tree(file, origins, chain, stack=())
    cfg = Config(data, file, chain, origins)
    apply_overrides(cfg, overrides)
    return cfg


def from_dict(data: dict[str, Any], overrides: Iterable[str] = ()) -> Config:
    """A ``Config`` from a dict written in code (merge rules applied to ``_replace_``)."""
    origins: dict[str, str] = {}
    cfg = Config(_merge({}, copy.deepcopy(data), origins, "<dict>", ""), None, [], origins)
    apply_overrides(cfg, overrides)
    return cfg


def packaged_root() -> Path:
    """The folder of the configs that ship with cvkit: ``cvkit://a/b.yaml`` is ``a/b.yaml`` in
    it. In the wheel it is ``cvkit/configs``; in the repository, a link to ``configs/``."""
    return Path(str(resources.files("cvkit") / "configs"))


def packaged_configs() -> dict[str, Path]:
    """Every packaged config, ``cvkit://`` name -> file, sorted by name."""
    root = packaged_root().resolve()
    files = [*root.rglob("*.yaml"), *root.rglob("*.yml")]
    return {PACKAGED + p.relative_to(root).as_posix(): p for p in sorted(files)}


def _packaged_file(name: str, where: str = "", included: str = "") -> Path:
    rel = PurePosixPath(name.removeprefix(PACKAGED))
    file = packaged_root().joinpath(*rel.parts)
    if rel.parts and ".." not in rel.parts and not rel.is_absolute() and file.is_file():
        return file
    names = [n.removeprefix(PACKAGED) for n in packaged_configs()]
    raise ConfigFileError(
        f"{name!r} is not a config that ships with cvkit",
        where=where,
        hints=[
            _nearest_packaged(rel.as_posix(), names),
            f"`cvkit list configs` lists the {len(names)} packaged configs (cvkit://<path>)",
            included,
        ],
    )


def _nearest_packaged(rel: str, names: list[str]) -> str:
    # compared without the cvkit:// and .yaml that every name shares: they make any two alike
    stems = {os.path.splitext(n)[0]: n for n in names}
    files = {s.rsplit("/", 1)[-1]: n for s, n in stems.items()}
    stem = os.path.splitext(rel)[0].strip("/")
    close = [stems[s] for s in difflib.get_close_matches(stem, stems, n=3, cutoff=0.6)]
    if not close:  # the right file name in another folder
        close = [files[f] for f in difflib.get_close_matches(stem.rsplit("/", 1)[-1], files)]
    if close and not any(n.startswith(stem + "/") for n in names):
        return "did you mean " + " or ".join(repr(PACKAGED + c) for c in close) + "?"
    folder = stem if any(n.startswith(stem + "/") for n in names) else stem.rpartition("/")[0]
    inside = [PACKAGED + n for n in names if folder and n.startswith(folder + "/")]
    return f"packaged configs in {folder}/: {', '.join(inside)}" if inside else ""


def _load_tree(file: Path, origins: dict, chain: list[Path], stack: tuple[Path, ...]) -> dict:
    resolved = file.resolve()
    if any(resolved == p.resolve() for p in stack):
        cycle = " -> ".join(_show(p) for p in (*stack, file))
        raise ConfigFileError(f"_base_ files include each other in a cycle: {cycle}")
    raw = yaml_io.load_file(file)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigFileError(
            f"a config must be a YAML mapping (key: value), got {type(raw).__name__}",
            where=_show(file),
        )
    bases = raw.pop("_base_", [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigFileError("_base_ must be a file path or a list of paths", where=_show(file))
    chain.append(file)
    merged: dict[str, Any] = {}
    for base in bases:
        included = " <- ".join(_show(p) for p in (*stack, file)[::-1])
        included = f"included from: {included}" if stack else ""
        if base.startswith(PACKAGED):
            base_file = _packaged_file(base, _show(file), included)
        else:
            base_file = file.parent / base
        if not base_file.is_file():
            raise ConfigFileError(
                f"_base_ file {base!r} does not exist",
                where=_show(file),
                hints=[
                    _nearest_file(base_file),
                    f"it resolves to {_show(base_file)}; _base_ paths are relative to the "
                    "file that names them",
                    _packaged_twin(base),
                    included,
                ],
            )
        merged = _merge(
            merged, _load_tree(base_file, origins, chain, (*stack, file)), origins, None, ""
        )
    _resolve_import_paths(raw, file.parent)
    return _merge(merged, raw, origins, _show(file), "")


def _resolve_import_paths(raw: dict, folder: Path) -> None:
    # A file path in `imports:` is relative to the file that names it; fix it now, because
    # the list travels to configs in other folders through _base_.
    imports = raw.get("imports")
    if imports is None:
        return
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        raise ConfigError("imports must be a list of module names or .py paths", where="imports")
    raw["imports"] = [
        str((folder / i).resolve()) if i.endswith(".py") or "/" in i else i for i in imports
    ]


def _merge(base: dict, child: dict, origins: dict, file: str | None, prefix: str) -> dict:
    """Merge ``child`` into a copy of ``base``; ``file=None`` keeps the child's origins."""
    out = dict(base)
    for key, value in child.items():
        path = f"{prefix}.{key}" if prefix else key
        if key == "imports" and not prefix:
            out[key] = list(dict.fromkeys([*base.get(key, []), *value]))
            _note(origins, path, value, file)
            continue
        if isinstance(value, dict):
            replace = value.get("_replace_", False)
            if not isinstance(replace, bool):
                raise ConfigError("_replace_ must be true or false", where=f"{path}._replace_")
            old = out.get(key)
            if (
                isinstance(old, dict)
                and not replace
                and old.get("type") == value.get("type", old.get("type"))
            ):
                out[key] = _merge(old, value, origins, file, path)
                continue
            value = _strip_replace(value, path)
        if file is not None:  # a base being merged recorded its own origins when it loaded
            _forget(origins, path)
        out[key] = value
        _note(origins, path, value, file)
    return out


def _strip_replace(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        return {k: _strip_replace(v, f"{path}.{k}") for k, v in value.items() if k != "_replace_"}
    if isinstance(value, list):
        return [_strip_replace(v, path) for v in value]
    return value


def _note(origins: dict, path: str, value: Any, file: str | None) -> None:
    if file is None:
        return
    origins[path] = file
    if isinstance(value, dict):
        for k, v in value.items():
            _note(origins, f"{path}.{k}", v, file)


def _forget(origins: dict, path: str) -> None:
    for key in [k for k in origins if k == path or k.startswith(path + ".")]:
        del origins[key]


def apply_overrides(cfg: Config, overrides: Iterable[str]) -> None:
    """Apply ``key.path=value`` strings in place; see the module docstring for the rules."""
    for text in overrides:
        keys, value, add = parse_override(text)
        node: Any = cfg.data
        for i, key in enumerate(keys[:-1]):
            if isinstance(node, dict) and key not in node and (add or is_section(keys[: i + 1])):
                node[key] = {}  # '+' adds missing parents; so does a schema section (eval.*)
            if not isinstance(node, dict) or key not in node:
                raise _missing_path(text, keys[: i + 1], node)
            node = node[key]
        leaf = keys[-1]
        if not isinstance(node, dict):
            raise _missing_path(text, keys, node)
        if add and leaf in node:
            raise OverrideError(
                f"'{'.'.join(keys)}' already exists",
                where=f"override {text!r}",
                hints=[f"drop the '+': {text.lstrip('+')}"],
            )
        if not add and leaf not in node and not is_known_key(keys, node):
            raise _missing_path(text, keys, node)
        node[leaf] = value
        _forget(cfg.origins, ".".join(keys))
        _note(cfg.origins, ".".join(keys), value, COMMAND_LINE)


def parse_override(text: str) -> tuple[list[str], Any, bool]:
    """Split ``"+a.b=3"`` into ``(["a", "b"], 3, True)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    add = key.startswith("+")
    key = key.removeprefix("+").strip()
    keys = key.split(".")
    if not sep or not all(k.strip() for k in keys):
        raise OverrideError(
            f"{text!r} is not an override",
            hints=["write path.to.key=value, e.g. train.epochs=3 or model.head.num_classes=10"],
        )
    value = yaml_io.loads(raw, f"override {text!r}") if raw.strip() else ""
    return keys, value, add


def _missing_path(text: str, keys: list[str], node: Any) -> OverrideError:
    path = ".".join(keys)
    if not isinstance(node, dict):
        return OverrideError(
            f"'{'.'.join(keys[:-1])}' is a {type(node).__name__}, not a mapping, "
            f"so '{path}' cannot be set",
            where=f"override {text!r}",
        )
    parent = ".".join(keys[:-1]) or "the top level"
    return OverrideError(
        f"'{path}' does not exist in the config",
        where=f"override {text!r}",
        hints=[
            did_you_mean(keys[-1], node),
            f"keys under {parent}: {', '.join(map(str, node)) or '(none)'}",
            f"to add a key that neither the config nor the schema has, write +{path}=...",
            "`cvkit config print CFG` shows the resolved config",
        ],
    )


def _nearest_file(missing: Path) -> str:
    folder = missing.parent
    if not folder.is_dir():
        return f"the folder {_show(folder)} does not exist either"
    names = [p.name for p in folder.iterdir() if p.suffix in (".yaml", ".yml")]
    return did_you_mean(missing.name, names)


def _packaged_twin(base: str) -> str:
    # A template copied out of cvkit's configs keeps paths like ../_base_/models/x.yaml: say
    # which packaged config they meant.
    tail = "/".join(p for p in PurePosixPath(base).parts if p not in (".", ".."))
    twins = [n for n in packaged_configs() if n == PACKAGED + tail or n.endswith("/" + tail)]
    if not tail or not twins:
        return ""
    return f"cvkit ships {' and '.join(twins)}: `_base_: {twins[0]}` finds it from anywhere"


def _show(path: Path | None) -> str:
    """A path as the user would type it: ``cvkit://...`` for a packaged config, relative to
    the working folder when inside it."""
    if path is None:
        return "<dict>"
    root = os.path.normpath(os.path.abspath(packaged_root()))
    full = os.path.normpath(os.path.abspath(path))
    if full.startswith(root + os.sep):
        return PACKAGED + Path(os.path.relpath(full, root)).as_posix()
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(Path(path).resolve()) if rel.startswith("..") else rel
