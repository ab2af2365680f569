"""A small, flat registry: one instance per kind of component.

Example:
    >>> from cvkit.registry import Registry
    >>> TOYS = Registry("toy")
    >>> @TOYS.register()
    ... class Ball:
    ...     def __init__(self, size: int = 3):
    ...         self.size = size
    >>> TOYS.get("Ball")(size=5).size
    5
    >>> TOYS.names("B*")
    ['Ball']

``type`` may also be a dotted import path, ``"package.module:Class"``. Registering a name twice
raises. The built-in components and the installed plugins (entry points) are imported on the
first lookup (``cvkit.plugins``), so their components are found without any import by the user.

A registry only maps names to classes; ``cvkit.build(cfg, REGISTRY)`` (``cvkit.builder``, the
layer above) turns a config dict into objects. ``registry_for_arg`` and ``resolve`` say which
registry a config argument's ``{type: ...}`` belongs to and what class a name means, for the
builder and for the config's override checks alike.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from cvkit import plugins
from cvkit.errors import DuplicateNameError, UnknownTypeError, did_you_mean

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """A registered object and where it came from (``cvkit``, a plugin, a module)."""

    name: str
    obj: Any
    source: str


class Registry:
    """Maps names to classes (or functions) of one kind of component.

    Args:
        kind: singular noun for messages, e.g. ``"backbone"``.
        plural: the name used by ``cvkit list``; defaults to ``kind + "s"``.
    """

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or kind + "s"
        self._entries: dict[str, Entry] = {}
        self._providers: list[tuple[str, Callable[[], dict[str, Any]]]] = []
        self._provided: dict[str, Entry] | None = None

    # -- registering ---------------------------------------------------------------------
    def register(self, name: str | Callable | None = None) -> Callable[[T], T]:
        """Decorator: ``@REG.register()``, ``@REG.register("alias")`` or ``@REG.register``."""
        if callable(name) and not isinstance(name, str):  # used bare: @REG.register
            self.add(name)
            return name

        def decorator(obj: T) -> T:
            self.add(obj, name)
            return obj

        return decorator

    def add(self, obj: Any, name: str | None = None, source: str | None = None) -> None:
        """Register ``obj`` under ``name`` (default: its ``__name__``). A duplicate raises."""
        if not _is_cvkit(obj):
            # so a plugin's clash with a built-in name is reported here, not later; a built-in
            # registering itself must not import the others: it may be half-imported by one
            plugins.load_builtins()
        name = name or obj.__name__
        if name in self._entries:
            old = self._entries[name]
            raise DuplicateNameError(
                f"{name!r} is already registered as a {self.kind} "
                f"(by {old.source}: {_qualname(old.obj)})",
                hints=[
                    f"register {getattr(obj, '__qualname__', name)} under another name: "
                    f"@{self.plural.upper()}.register('MyName')"
                ],
            )
        self._entries[name] = Entry(name, obj, source or _source_of(obj))

    def add_provider(self, source: str, load: Callable[[], dict[str, Any]]) -> None:
        """Add names that another library supplies, loaded on first use (e.g. albumentations).

        Registered names win over provided ones.
        """
        self._providers.append((source, load))
        self._provided = None

    # -- looking up ----------------------------------------------------------------------
    def get(self, name: str) -> Any:
        """Return the object registered as ``name`` or at dotted path ``"pkg.mod:Class"``.

        Raises:
            UnknownTypeError: with the closest names, ``cvkit list`` and failed plugins.
        """
        if ":" in name:
            return _import_dotted(name, self.kind)
        entry = self._lookup(name)
        if entry is None:
            raise self._not_found(name)
        return entry.obj

    def entry(self, name: str) -> Entry:
        """The registered ``Entry`` (object and source) for ``name``."""
        entry = self._lookup(name)
        if entry is None:
            raise self._not_found(name)
        return entry

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching an fnmatch ``pattern`` (``"Res*"``)."""
        plugins.load_builtins()
        plugins.load_entry_points()
        every = set(self._entries) | set(self._provided_entries())
        return sorted(n for n in every if fnmatch.fnmatchcase(n, pattern))

    def entries(self) -> list[Entry]:
        return [self.entry(n) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._lookup(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __bool__(self) -> bool:  # an empty registry is still a registry
        return True

    def __repr__(self) -> str:
        rows = [f"Registry({self.kind!r}, {len(self)} names)"]
        rows += [f"  {e.name:<28} {e.source}" for e in self.entries()]
        return "\n".join(rows)

    # -- internals -----------------------------------------------------------------------
    def _lookup(self, name: str) -> Entry | None:
        plugins.load_builtins()
        if name not in self._entries:
            plugins.load_entry_points()
        return self._entries.get(name) or self._provided_entries().get(name)

    def _provided_entries(self) -> dict[str, Entry]:
        if self._provided is None:
            self._provided = {}
            for source, load in self._providers:
                for name, obj in load().items():
                    self._provided.setdefault(name, Entry(name, obj, source))
        return self._provided

    def _not_found(self, name: str) -> UnknownTypeError:
        known = self.names()
        hints = [
            did_you_mean(name, known),
            f"`cvkit list {self.plural}` shows the {len(known)} registered {self.plural}",
            "a class from your own code can be named as 'package.module:ClassName', "
            "or registered by a plugin (see README, 'Writing a plugin')",
            *plugins.failure_hints(),
        ]
        return UnknownTypeError(f"{name!r} is not a registered {self.kind}", hints=hints)


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _is_cvkit(obj: Any) -> bool:
    module = getattr(obj, "__module__", "") or ""
    return module == "cvkit" or module.startswith("cvkit.")


def _source_of(obj: Any) -> str:
    module = getattr(obj, "__module__", "") or ""
    if _is_cvkit(obj):
        return "cvkit"
    return plugins.current_source() or plugins.source_for_module(module) or module


def _import_dotted(path: str, kind: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise UnknownTypeError(
            f"cannot import module {module_name!r} for {kind} {path!r}: "
            f"{type(exc).__name__}: {exc}",
            hints=["a dotted type is 'package.module:ClassName' and the module must import"],
        ) from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UnknownTypeError(
                f"module {module_name!r} has no attribute {attr!r}",
                hints=[did_you_mean(part, [n for n in dir(obj) if not n.startswith("_")])],
            )
        obj = getattr(obj, part)
    return obj


BACKBONES = Registry("backbone")
NECKS = Registry("neck")
HEADS = Registry("head")
MODELS = Registry("model")  # tasks: classifiers, detectors, segmenters
LOSSES = Registry("loss", "losses")
ANCHOR_GENERATORS = Registry("anchor generator", "anchor_generators")
BOX_CODERS = Registry("box coder", "box_coders")
MATCHERS = Registry("matcher")
SAMPLERS = Registry("sampler")
TRANSFORMS = Registry("transform")
DATASETS = Registry("dataset")
METRICS = Registry("metric")
HOOKS = Registry("hook")
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")
PREPROCESSORS = Registry("preprocessor")
TASKS = Registry("task")  # what the engine does per task: collate, evaluate, report, predict

REGISTRIES: dict[str, Registry] = {
    r.plural: r
    for r in (
        BACKBONES,
        NECKS,
        HEADS,
        MODELS,
        LOSSES,
        ANCHOR_GENERATORS,
        BOX_CODERS,
        MATCHERS,
        SAMPLERS,
        TRANSFORMS,
        DATASETS,
        METRICS,
        HOOKS,
        OPTIMIZERS,
        SCHEDULERS,
        PREPROCESSORS,
        TASKS,
    )
}

# Which registry builds a nested ``{type: ...}`` dict, by the name of the argument holding it.
_BY_ARG_NAME: dict[str, Registry] = {
    "backbone": BACKBONES,
    "neck": NECKS,
    "head": HEADS,
    "model": MODELS,
    "loss": LOSSES,
    "losses": LOSSES,
    "anchor_generator": ANCHOR_GENERATORS,
    "box_coder": BOX_CODERS,
    "matcher": MATCHERS,
    "sampler": SAMPLERS,
    "transforms": TRANSFORMS,
    "transform": TRANSFORMS,
    "dataset": DATASETS,
    "metrics": METRICS,
    "metric": METRICS,
    "hooks": HOOKS,
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
    "preprocessor": PREPROCESSORS,
}
_BY_ARG_SUFFIX: dict[str, Registry] = {
    "_backbone": BACKBONES,
    "_neck": NECKS,
    "_head": HEADS,
    "_loss": LOSSES,
    "_transforms": TRANSFORMS,
    "_matcher": MATCHERS,
    "_sampler": SAMPLERS,
    "_coder": BOX_CODERS,
    "_generator": ANCHOR_GENERATORS,
}


def registry_for_arg(name: str) -> Registry | None:
    """The registry that builds ``{type: ...}`` values of an argument called ``name``.

    ``backbone`` -> BACKBONES, ``cls_loss`` -> LOSSES; ``None`` for any other name (its type
    is then looked up in every registry).
    """
    if name in _BY_ARG_NAME:
        return _BY_ARG_NAME[name]
    for suffix, reg in _BY_ARG_SUFFIX.items():
        if name.endswith(suffix):
            return reg
    return None


def resolve(name: str, registry: Registry | None = None) -> Any:
    """The object a config's ``type`` names: in ``registry``, or with ``None`` in the one
    registry that has it; a dotted ``"pkg.mod:Class"`` is imported.

    Raises:
        UnknownTypeError: no registry (or more than one) has ``name``.
    """
    if registry is not None:
        return registry.get(name)
    if ":" in name:
        return _import_dotted(name, "component")
    found = [reg for reg in REGISTRIES.values() if name in reg]
    if len(found) == 1:
        return found[0].get(name)
    if len(found) > 1:
        kinds = ", ".join(r.kind for r in found)
        raise UnknownTypeError(
            f"{name!r} is registered as more than one kind of component ({kinds})",
            hints=["give it under an argument named after its kind (backbone, neck, head...)"],
        )
    every = [n for reg in REGISTRIES.values() for n in reg.names()]
    raise UnknownTypeError(
        f"{name!r} is not registered in any registry",
        hints=[did_you_mean(name, every), "`cvkit list` shows every registered name"],
    )
