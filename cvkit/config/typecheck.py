"""Check config values against type annotations, converting where YAML cannot say the type.

YAML has lists but no tuples and writes ``3`` for a float that happens to be whole, so
``check_value`` turns lists into tuples and ints into floats where the annotation asks; any
other mismatch is a ``ValueTypeError`` naming the config path, the expected and the given type.
``parameters`` reads what a class accepts from a config: its keyword arguments and their
annotations.
"""

from __future__ import annotations

import collections.abc as cabc
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from cvkit.errors import ValueTypeError

_SEQUENCES = (list, cabc.Sequence, cabc.MutableSequence, typing.Sequence, cabc.Iterable)
_MAPPINGS = (dict, cabc.Mapping, cabc.MutableMapping)


class Deferred:
    """A value that becomes an object later (a planned component); checked by its class."""

    cls: Any


def parameters(cls: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """The arguments a config may give ``cls``: ``(params, annotations, takes **kwargs)``.

    ``params`` are the keyword-passable parameters by name; ``annotations`` their resolved
    annotations (``inspect.Parameter.empty`` where there is none). A callable without a
    readable signature accepts anything.
    """
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return {}, {}, True
    params = {
        n: p
        for n, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    target = cls.__init__ if inspect.isclass(cls) else cls
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable forward references in third-party code
        hints = {}
    return params, {n: hints.get(n, p.annotation) for n, p in params.items()}, var_kw


def type_name(ann: Any) -> str:
    """A short readable name for an annotation: ``int``, ``list[int]``, ``int | None``."""
    if ann is inspect.Parameter.empty:
        return "any"
    if ann is type(None) or ann is None:
        return "None"
    origin, args = get_origin(ann), get_args(ann)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if isinstance(ann, type) and not args:
        return ann.__name__
    if origin is not None and args:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return str(ann).replace("typing.", "")


def _given(value: Any) -> str:
    if isinstance(value, Deferred):
        return f"a {getattr(value.cls, '__name__', value.cls)} component"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 60 else text[:57] + '...'}"


def check_value(value: Any, ann: Any, where: str) -> Any:
    """Return ``value`` converted to fit ``ann``; raise ``ValueTypeError`` if it cannot.

    Args:
        value: a value from a config (plain data, or a ``Deferred`` component).
        ann: the parameter's type annotation.
        where: the config path, for the message.
    """
    try:
        return _check(value, ann)
    except _Mismatch:
        raise ValueTypeError(
            f"expected {type_name(ann)}, got {_given(value)}",
            where=where,
            hints=[_hint_for(ann)],
        ) from None


class _Mismatch(Exception):
    pass


def _hint_for(ann: Any) -> str:
    origin = get_origin(ann)
    if origin is Literal:
        return "allowed values: " + ", ".join(repr(a) for a in get_args(ann))
    if ann is float:
        return "write a number, e.g. 0.1 or 1.0e-3"
    if origin in (list, tuple) or origin in _SEQUENCES:
        return "write a YAML list, e.g. [1, 2, 3]"
    return ""


def _check(value: Any, ann: Any) -> Any:
    if ann is inspect.Parameter.empty or ann is Any or ann is object:
        return value
    origin, args = get_origin(ann), get_args(ann)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _check(value, option)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if value in args:
            return value
        raise _Mismatch
    if isinstance(value, Deferred):
        return _check_deferred(value, ann, origin)
    if ann is bool:
        return _require(value, isinstance(value, bool))
    if ann is int:
        return _require(value, isinstance(value, int) and not isinstance(value, bool))
    if ann is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(_require(value, ok))
    if ann is str:
        return _require(value, isinstance(value, str))
    if ann is Path:
        return Path(_require(value, isinstance(value, (str, Path))))
    if ann is type(None):
        return _require(value, value is None)
    if origin is tuple or ann is tuple:
        return _check_tuple(value, args)
    if origin in _SEQUENCES or ann in (list, cabc.Sequence):
        items = _require(value, isinstance(value, (list, tuple)))
        item_ann = args[0] if args else Any
        return [_check(v, item_ann) for v in items]
    if origin in _MAPPINGS or ann in (dict, cabc.Mapping):
        _require(value, isinstance(value, dict))
        if len(args) == 2:
            return {_check(k, args[0]): _check(v, args[1]) for k, v in value.items()}
        return value
    if origin is not None and origin in (cabc.Callable,):
        return _require(value, callable(value))
    if isinstance(ann, type):
        return _require(value, isinstance(value, ann))
    return value  # forward references and exotic typing forms: the class checks itself


def _check_deferred(value: Deferred, ann: Any, origin: Any) -> Any:
    cls = value.cls
    if isinstance(ann, type) and origin is None:
        if isinstance(cls, type) and not issubclass(cls, ann):
            raise _Mismatch
        return value
    if origin in (cabc.Callable,) or ann in (cabc.Callable,):
        return value
    raise _Mismatch


def _check_tuple(value: Any, args: tuple) -> tuple:
    items = _require(value, isinstance(value, (list, tuple)))
    if not args:
        return tuple(items)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_check(v, args[0]) for v in items)
    if len(args) != len(items):
        raise _Mismatch
    return tuple(_check(v, a) for v, a in zip(items, args))


def _require(value: Any, ok: bool) -> Any:
    if not ok:
        raise _Mismatch
    return value
