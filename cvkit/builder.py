"""Config dicts -> objects, bottom-up, checked against signatures before anything is built.

``build`` works in two passes, and checks what it built:

1. **plan**: walk the whole config; resolve every ``type``; check every key against the
   class signature and every value against its annotation; find missing required arguments.
   Nothing is constructed, so a typo deep in ``model.head`` fails before the backbone loads
   pretrained weights.
2. **instantiate**: construct children first, in signature order, and pass them to their
   parent. Wiring the user should not repeat is filled in here: a component's ``in_channels``
   (and ``in_strides``) left out of its config come from the ``feature_info`` of the sibling
   built just before it (backbone -> neck -> head).

3. **check**: a backbone that declares ``feature_info`` (and each neck after it, fed its
   maps) runs once on a small zeros image, in eval mode without gradients, and what its
   ``forward`` returns is compared with ``feature_info`` (number of maps, channels, and
   strides as input size / map size). A mismatch, a forward that raises, or one that returns
   no list of maps is a ``FeatureInfoError`` naming the component, its ``type:`` and where
   it came from (built-in or which plugin), instead of a shape error deep in a head later.

Which registry builds a nested ``{type: ...}`` dict is decided by the argument's name
(``backbone`` -> BACKBONES, ``cls_loss`` -> LOSSES, ``transforms`` -> TRANSFORMS, ...:
``cvkit.registry.registry_for_arg``); an argument with another name looks the type up in
every registry. This is the one way to build from a config: ``build(cfg, BACKBONES)``; a
registry itself only maps names to classes.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

from cvkit import registry as R
from cvkit.config.typecheck import Deferred, check_value, parameters, type_name
from cvkit.errors import (
    ConfigError,
    DataError,
    MissingArgumentError,
    UnknownArgumentError,
    UnknownTypeError,
    add_note,
    did_you_mean,
    with_config_file,
)
from cvkit.feature_check import check_feature_info
from cvkit.registry import registry_for_arg

# The arguments whose value the builder fills from the upstream sibling's feature_info.
WIRED_ARGS = ("in_channels", "in_strides")

Describe = Callable[[str], "str | None"]


@dataclass
class Node(Deferred):
    """A planned component: its class, checked kwargs (values may be Nodes) and wiring."""

    cls: Any
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    wire: dict[str, tuple[Any, bool]] = field(
        default_factory=dict
    )  # name -> (annotation, required)
    type_name: Any = None  # the config's ``type:`` as written (a name, "pkg.mod:Class", a class)
    registry: R.Registry | None = None  # where ``type_name`` was looked up (None: every one)


def build(
    cfg: dict[str, Any] | Any,
    registry: R.Registry | None = None,
    *,
    path: str = "",
    describe: Describe | None = None,
    **defaults: Any,
) -> Any:
    """Build the object ``cfg`` describes, with every nested component.

    Args:
        cfg: a dict with ``type`` (a registered name, ``"pkg.mod:Class"`` or a class) and
            the keyword arguments; nested ``{type: ...}`` dicts are built first.
        registry: where ``type`` is looked up; ``None`` searches every registry.
        path: the config path of ``cfg`` (``"model"``), for error messages.
        describe: maps a config path to the file (and ``_base_`` chain) it came from.
        **defaults: arguments used when ``cfg`` does not set them.

    Raises:
        ConfigError: before anything is constructed, for any unknown type, unknown or
            missing argument, or value of the wrong type.
        FeatureInfoError: (a ``ConfigError``) after construction, when a backbone's or
            neck's ``feature_info`` disagrees with what its ``forward`` returns.
    """
    if not isinstance(cfg, dict):
        return cfg  # already an object
    cfg = {**{k: v for k, v in defaults.items() if k not in cfg}, **cfg}
    node = plan(cfg, registry, path=path, describe=describe)
    built = instantiate(node, describe=describe)
    check_feature_info([(node, built)], describe)  # a backbone built on its own
    return built


def plan(
    cfg: dict[str, Any],
    registry: R.Registry | None,
    *,
    path: str = "",
    describe: Describe | None = None,
    nested: bool = False,
    wired: Sequence[str] = (),
) -> Node:
    """Check ``cfg`` against its class and return the plan; constructs nothing.

    Args:
        nested: ``cfg`` sits inside a parent, so ``in_channels``/``in_strides`` may be wired.
        wired: further arguments the caller will supply (e.g. an optimizer's ``params``).
    """
    where = path or "<config>"
    try:
        cls = _resolve_type(cfg, registry, where)
        params, hints, var_kw = parameters(cls)
        node = Node(cls, path, type_name=cfg["type"], registry=registry)
        for key, value in cfg.items():
            if key == "type":
                continue
            sub = f"{path}.{key}" if path else key
            if key not in params and not var_kw:
                raise _unknown_argument(cls, key, params, sub)
            node.kwargs[key] = _plan_value(value, key, hints.get(key), sub, describe)
        for name, p in params.items():
            if name in cfg:
                continue
            required = p.default is inspect.Parameter.empty
            if name in wired:
                continue
            if nested and name in WIRED_ARGS:
                node.wire[name] = (hints.get(name, inspect.Parameter.empty), required)
                continue
            if not required:
                continue
            raise MissingArgumentError(
                f"{_name(cls)} is missing the required argument {name!r}",
                where=where,
                hints=[f"add `{name}: ...` ({type_name(hints.get(name, p.annotation))})"],
            )
        node.kwargs = {k: node.kwargs[k] for k in [*params, *node.kwargs] if k in node.kwargs}
        return node
    except ConfigError as err:
        raise with_config_file(err.at(where), path, describe) from err.__cause__


def _plan_value(value: Any, key: str, ann: Any, path: str, describe: Describe | None) -> Any:
    if isinstance(value, dict) and "type" in value:
        value = plan(value, registry_for_arg(key), path=path, describe=describe, nested=True)
    elif isinstance(value, list) and any(isinstance(v, dict) and "type" in v for v in value):
        reg = registry_for_arg(key)
        value = [
            plan(v, reg, path=f"{path}[{i}]", describe=describe, nested=True)
            if isinstance(v, dict) and "type" in v
            else v
            for i, v in enumerate(value)
        ]
    if ann is None:
        return value
    return check_value(value, ann, path)


def instantiate(node: Node, upstream: Sequence[Any] | None = None, describe=None) -> Any:
    """Construct a planned ``node``: children first, then the node with them as kwargs.

    Args:
        node: from ``plan``.
        upstream: ``feature_info`` of the sibling built just before, for wired arguments.
    """
    kwargs: dict[str, Any] = {}
    previous: Sequence[Any] | None = None
    for key, value in node.kwargs.items():
        kwargs[key] = _instantiate_value(value, previous, describe)
        previous = getattr(kwargs[key], "feature_info", None) or previous
    for key, (ann, required) in node.wire.items():
        if upstream or required:
            kwargs[key] = _wired_value(node, key, ann, upstream, describe)
    # the children's feature_info against their forward, before the parent takes them
    check_feature_info(
        [(v, kwargs[k]) for k, v in node.kwargs.items() if isinstance(v, Node)], describe
    )
    try:
        return node.cls(**kwargs)
    except ConfigError as err:
        noted = with_config_file(err.at(node.path or "<config>"), node.path, describe)
        raise noted from err.__cause__
    except DataError as exc:  # a file it read is bad: the file's message, with where it was named
        add_note(exc, f"read by {node.path or '<config>'} ({_name(node.cls)})")
        origin = describe(node.path) if describe is not None and node.path else None
        if origin:
            add_note(exc, f"in {origin}")
        raise
    except (ValueError, TypeError, KeyError, OSError) as exc:  # OSError: a missing file, no network
        error = ConfigError(
            f"{_name(node.cls)} could not be built: {type(exc).__name__}: {exc}",
            where=node.path or "<config>",
        )
        raise with_config_file(error, node.path, describe) from exc
    except Exception as exc:  # out of memory, or a bug: say which component it was
        add_note(exc, f"while building {node.path or '<config>'} ({_name(node.cls)})")
        raise


def _instantiate_value(value: Any, upstream: Sequence[Any] | None, describe) -> Any:
    if isinstance(value, Node):
        return instantiate(value, upstream, describe)
    if isinstance(value, list):
        return [_instantiate_value(v, upstream, describe) for v in value]
    return value


def _wired_value(node: Node, key: str, ann: Any, upstream, describe) -> Any:
    if not upstream:
        err = MissingArgumentError(
            f"{_name(node.cls)} needs {key!r} and no component before it says its "
            "feature_info to fill it from",
            where=node.path,
            hints=[f"set `{key}` in the config, or give the component before it `feature_info`"],
        )
        raise with_config_file(err, node.path, describe)
    values = [f.channels if key == "in_channels" else f.stride for f in upstream]
    return values[-1] if _wants_single_int(ann) else list(values)


def _wants_single_int(ann: Any) -> bool:
    if ann is int:
        return True
    if get_origin(ann) not in (typing.Union, types.UnionType):
        return False  # Sequence[int], list[int], ...
    args = [a for a in get_args(ann) if a is not type(None)]
    return bool(args) and all(a is int for a in args)


def _resolve_type(cfg: dict[str, Any], registry: R.Registry | None, where: str) -> Any:
    if "type" not in cfg:
        kind = registry.kind if registry else "component"
        raise MissingArgumentError(
            f"this {kind} has no 'type'",
            where=where,
            hints=[f"add `type: <name>`; `cvkit list {registry.plural if registry else ''}`"],
        )
    type_ = cfg["type"]
    if not isinstance(type_, str):
        if callable(type_):
            return type_
        raise UnknownTypeError(f"'type' must be a name, got {type_!r}", where=f"{where}.type")
    try:
        return R.resolve(type_, registry)
    except UnknownTypeError as err:
        raise err.at(f"{where}.type") from None


def _unknown_argument(cls: Any, key: str, params: dict, where: str) -> UnknownArgumentError:
    accepted = ", ".join(
        n if p.default is inspect.Parameter.empty else f"{n}={p.default!r}"
        for n, p in params.items()
    )
    return UnknownArgumentError(
        f"{_name(cls)} got an unknown argument {key!r}",
        where=where,
        hints=[did_you_mean(key, params), f"{_name(cls)} accepts: {accepted or 'no arguments'}"],
    )


def _name(cls: Any) -> str:
    return getattr(cls, "__name__", repr(cls))


def is_component(value: Any) -> bool:
    """True for a config value that describes a component (a dict with ``type``)."""
    return isinstance(value, dict) and "type" in value


__all__ = [
    "WIRED_ARGS",
    "Node",
    "build",
    "instantiate",
    "is_component",
    "plan",
    "registry_for_arg",
]
