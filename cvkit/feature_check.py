"""The build-time check of ``feature_info``: a backbone (and each neck after it) runs once on a
small zeros image, and what its ``forward`` returns is compared with what its ``feature_info``
says (number of maps, channels, strides as input size / map size).

The builder wires a neck's ``in_channels`` and ``in_strides`` from that ``feature_info``; when
it lies, the model fails much later, in a head, with a shape error that names neither the
component nor its plugin. Here a mismatch, a forward that raises, or one that returns no list
of maps is a ``FeatureInfoError`` naming the config path, the ``type:``, where the component
came from (built into cvkit or which plugin) and the class's file.

The planned components are the builder's ``Node`` objects, read by attribute (``cls``,
``path``, ``kwargs``, ``type_name``, ``registry``): the builder imports this module, not the
other way round.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import operator
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from cvkit import registry as R
from cvkit.errors import FeatureInfoError, with_config_file

if TYPE_CHECKING:
    from torch import nn

__all__ = ["CHECK_MIN_SIZE", "check_feature_info"]

Describe = Callable[[str], "str | None"]


class Node(Protocol):
    """What the check reads of a planned component (``cvkit.builder.Node``)."""

    cls: Any
    path: str
    kwargs: dict[str, Any]
    type_name: Any
    registry: R.Registry | None


# The check image is at least this many pixels and twice the backbone's largest stride,
# rounded up to a multiple of each of its strides: every backbone map is exactly input /
# stride and the coarsest is 2x2, so a stride off by 2x either way shows. A neck's maps
# coarser than that (FPN's P6, P7) are checked as ceil(input / stride), what a padded stride-2
# layer gives: their channels are checked, their strides cannot be told at 1x1. Sizing the
# image for those too (256 px instead of 64 for RetinaNet's P7) made the check 3x dearer.
CHECK_MIN_SIZE = 32


def check_feature_info(built: Sequence[tuple[Node, Any]], describe: Describe | None = None) -> None:
    """Run each backbone -> neck chain among ``built`` once and compare it with ``feature_info``.

    ``built`` are siblings in config order (a model's ``backbone``, ``neck``, ``head``...),
    each with its plan. A chain starts at a backbone (its type is looked up in BACKBONES) that
    declares ``feature_info`` and has a ``forward``; each neck right after it joins the chain
    and is fed the maps of the one before, as the model will. Heads, components without
    ``feature_info`` or ``forward``, and modules with lazily initialised parameters are not
    run.

    The chain runs once on ``zeros(1, in_chans, S, S)`` (``S``: see ``CHECK_MIN_SIZE``) on the
    backbone's device and dtype, each component in eval mode under ``torch.no_grad`` on one
    CPU thread; afterwards the training flags, the buffers (batch-norm statistics), torch's
    random state and thread count are what they were.

    Raises:
        FeatureInfoError: naming the first component whose forward returns maps its
            feature_info does not describe, raises, or returns no list of maps.
    """
    chains: list[list[tuple[Node, Any, str]]] = []
    current: list[tuple[Node, Any, str]] | None = None
    for node, obj in built:
        if getattr(obj, "feature_info", None) is None:
            continue  # a head, a loss, a preprocessor: not part of the chain
        kind = _checked_kind(node, obj)
        if kind == "backbone":
            current = [(node, obj, kind)]
            chains.append(current)
        elif kind == "neck" and current is not None:
            current.append((node, obj, kind))
        else:
            current = None  # what comes after it is not fed a checked backbone's maps
    for chain in chains:
        _run_chain(chain, describe)


def _checked_kind(node: Node, obj: Any) -> str | None:
    reg = node.registry or _registry_holding(node.type_name)
    if reg is not R.BACKBONES and reg is not R.NECKS:
        return None
    if not isinstance(obj.feature_info, list | tuple) or not obj.feature_info:
        return None
    import torch

    if not isinstance(obj, torch.nn.Module) or type(obj).forward is torch.nn.Module.forward:
        return None
    for t in itertools.chain(obj.parameters(), obj.buffers()):
        if torch.nn.parameter.is_lazy(t) or t.device.type == "meta":
            return None  # running it would initialise it (random numbers) or cannot run
    return reg.kind


def _registry_holding(type_name: Any) -> R.Registry | None:
    if not isinstance(type_name, str) or ":" in type_name:
        return None
    found = [reg for reg in R.REGISTRIES.values() if type_name in reg]
    return found[0] if len(found) == 1 else None


def _run_chain(chain: list[tuple[Node, Any, str]], describe: Describe | None) -> None:
    import torch

    specs = [_specs(node, obj, kind, describe) for node, obj, kind in chain]
    size = _check_size([s for _, s in specs[0] if s > 0])
    first_node, first, _ = chain[0]
    device, dtype = _device_and_dtype(first)
    x: Any = torch.zeros(1, _in_chans(first_node, first), size, size, device=device, dtype=dtype)
    given = f"a zeros image {_shape(x)}"
    for (node, obj, kind), spec in zip(chain, specs):
        with _quiet(obj, device):
            try:
                out = obj(x)
            except Exception as exc:
                err = _raised(node, kind, given, exc)
                raise with_config_file(err, node.path, describe) from exc
        problem = _compare(spec, out, size)
        if problem is not None:
            what, rows = problem
            error = FeatureInfoError(
                f"{_component(node, kind)}: {what}, for {given} (build-time check of feature_info)",
                where=node.path or "<config>",
                hints=[*rows, _fix(node)],
            )
            raise with_config_file(error, node.path, describe)
        x = out
        maps = out if isinstance(out, list | tuple) else [out]
        given = f"the {kind}'s maps " + ", ".join(_shape(m) for m in maps)


def _specs(node: Node, obj: Any, kind: str, describe: Describe | None) -> list[tuple[int, int]]:
    specs = []
    for i, f in enumerate(obj.feature_info):
        try:
            channels, stride = f.channels, f.stride
            if isinstance(channels, bool) or isinstance(stride, bool):
                raise TypeError
            channels, stride = operator.index(channels), operator.index(stride)
            if channels < 1 or stride < 0:
                raise ValueError
        except (AttributeError, TypeError, ValueError):
            error = FeatureInfoError(
                f"{_component(node, kind)}: feature_info[{i}] is {f!r}, not a "
                "FeatureSpec(channels, stride) with channels >= 1 and stride >= 0",
                where=node.path or "<config>",
                hints=[_fix(node)],
            )
            raise with_config_file(error, node.path, describe) from None
        specs.append((channels, stride))
    return specs


def _check_size(strides: list[int]) -> int:
    if not strides:
        return CHECK_MIN_SIZE
    top = max(strides)
    step = math.lcm(*strides)
    if step > 4 * top:  # unusual strides (12 and 32...): some maps are then input / stride rounded
        step = top
    return step * math.ceil(max(CHECK_MIN_SIZE, 2 * top) / step)


def _device_and_dtype(module: nn.Module) -> tuple[Any, Any]:
    import torch

    for t in itertools.chain(module.parameters(), module.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def _in_chans(node: Node, module: nn.Module) -> int:
    """The backbone's input channels: its ``in_chans`` (or ``in_channels``) attribute, else
    the ``in_chans`` its config or signature gave it, else its first Conv2d's, else 3."""
    import torch

    for name in ("in_chans", "in_channels"):
        value = getattr(module, name, None)
        if _positive_int(value):
            return value
    value = node.kwargs.get("in_chans")
    if not _positive_int(value):
        with contextlib.suppress(TypeError, ValueError):  # no signature
            param = inspect.signature(node.cls).parameters.get("in_chans")
            value = param.default if param is not None else None
    if _positive_int(value):
        return value
    conv = next((m for m in module.modules() if isinstance(m, torch.nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def _positive_int(value: Any) -> typing.TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@contextlib.contextmanager
def _quiet(module: nn.Module, device: Any) -> Iterator[None]:
    """Eval mode, no gradients, one CPU thread; afterwards every submodule's training flag,
    every buffer, torch's random state (CPU, and the module's GPU) and its thread count are as
    they were."""
    import torch

    flags = [(m, m.training) for m in module.modules()]
    buffers = [
        (m, name, b, b._version, b.clone())
        for m in module.modules()
        for name, b in m._buffers.items()
        if b is not None
    ]
    gpus = []
    if device.type == "cuda":
        gpus = [device.index if device.index is not None else torch.cuda.current_device()]
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=gpus), torch.no_grad():
        try:
            module.eval()
            # milliseconds of work: split over threads that other processes also want (the
            # test suite's workers on 2 cores), a tiny RetinaNet's check took 65 ms, not 5
            torch.set_num_threads(1)
            yield
        finally:
            torch.set_num_threads(threads)
            for m, flag in flags:
                m.training = flag
            for m, name, b, version, saved in buffers:
                m._buffers[name] = b
                if b._version != version:
                    b.copy_(saved)


def _compare(specs: list[tuple[int, int]], out: Any, size: int) -> tuple[str, list[str]] | None:
    """``None`` when ``out`` is what ``specs`` say, else (the problem, one line per map)."""
    import torch

    wanted = [
        f"FeatureSpec(channels={c}, stride={s}) -> {_shape_text(_expected(c, s, size))}"
        for c, s in specs
    ]
    if isinstance(out, torch.Tensor) and all(s == 0 for _, s in specs) and len(specs) == 1:
        maps = [out]  # a pooling neck returns the vector itself
    elif isinstance(out, list | tuple):
        maps = list(out)
    else:
        what = f"forward returned {_value_text(out)}, not a list or tuple of [B, C, H, W] tensors"
        return what, [f"feature_info says {len(specs)} map(s): " + "; ".join(wanted)]
    rows = []
    wrong = len(maps) != len(specs)
    for i in range(max(len(specs), len(maps))):
        said = f"feature_info[{i}] {wanted[i]}" if i < len(specs) else f"feature_info[{i}]: none"
        got = _value_text(maps[i]) if i < len(maps) else "nothing"
        issues = _issues(specs[i] if i < len(specs) else None, maps, i, size)
        wrong = wrong or bool(issues)
        rows.append(f"map {i}: {said}; forward returned {got}: {'; '.join(issues) or 'ok'}")
    if not wrong:
        return None
    what = "feature_info does not match what forward returned"
    if len(maps) != len(specs):
        what += f" (feature_info lists {len(specs)} maps, forward returned {len(maps)})"
    return what, rows


def _issues(spec: tuple[int, int] | None, maps: list[Any], i: int, size: int) -> list[str]:
    import torch

    if spec is None:
        return ["not in feature_info"]
    if i >= len(maps):
        return ["missing"]
    got = maps[i]
    if not isinstance(got, torch.Tensor):
        return ["not a tensor"]
    channels, stride = spec
    if stride > 0 and got.ndim != 4:
        return [f"{got.ndim}-D, not a [B, C, H, W] map"]
    if stride == 0 and got.ndim not in (2, 4):
        return [f"{got.ndim}-D, not a pooled [B, C] vector (stride 0)"]
    issues = []
    if got.shape[0] != 1:
        issues.append(f"batch {got.shape[0]}, not the input's 1")
    if got.shape[1] != channels:
        issues.append(f"{got.shape[1]} channels, not {channels}")
    if got.ndim == 4:
        h, w = int(got.shape[-2]), int(got.shape[-1])
        if stride == 0:
            if (h, w) != (1, 1):
                issues.append(f"{h}x{w} maps, not pooled (stride 0 means a [B, C] vector)")
        elif not {h, w} <= {-(-size // stride), size // stride or 1}:
            issues.append(
                f"{h}x{w} is stride {_implied_stride(size, h, w)} for a {size}x{size} input, "
                f"not {stride}"
            )
    return issues


def _expected(channels: int, stride: int, size: int) -> tuple[int, ...]:
    if stride == 0:
        return (1, channels)
    return (1, channels, -(-size // stride), -(-size // stride))


def _implied_stride(size: int, h: int, w: int) -> str:
    strides = {f"{size / n:.3g}" if n else "inf" for n in (h, w)}
    return "/".join(sorted(strides))


def _shape(t: Any) -> str:
    return _shape_text(tuple(t.shape)) if hasattr(t, "shape") else _value_text(t)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(int(n)) for n in shape) + "]"


def _value_text(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "ndim"):
        return _shape_text(tuple(value.shape))
    return f"a {type(value).__name__}"


def _component(node: Node, kind: str) -> str:
    """``backbone `type: X` (from plugin p)``."""
    type_name = node.type_name
    shown = type_name if isinstance(type_name, str) else _name(node.cls)
    return f"{kind} `type: {shown}` ({_origin(node)})"


def _origin(node: Node) -> str:
    """Where the component came from: built into cvkit, which plugin, which module."""
    type_name = node.type_name
    if not isinstance(type_name, str):
        return "given as a class"
    if ":" in type_name:
        return f"imported as {type_name!r}"
    reg = node.registry or _registry_holding(type_name)
    source = reg.entry(type_name).source if reg is not None and type_name in reg else ""
    if source == "cvkit":
        return "built into cvkit"
    if source == getattr(node.cls, "__module__", None):
        return f"registered by module {source}"
    return f"from {source}" if source else "registered"  # "plugin dist", "config imports x.py"


def _defined_at(cls: Any) -> str:
    """``file.py:12``, where ``cls`` is defined (its module and name when there is no file)."""
    with contextlib.suppress(OSError, TypeError):
        return f"{inspect.getsourcefile(cls)}:{inspect.getsourcelines(cls)[1]}"
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', _name(cls))}"


def _raised(node: Node, kind: str, given: str, exc: Exception) -> FeatureInfoError:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    try:
        own = inspect.getsourcefile(node.cls)
    except (OSError, TypeError):
        own = None
    mine = [f for f in frames if own and f.filename == own]
    hints = []
    if frames:
        f = (mine or frames)[-1]
        hints.append(f"raised at {f.filename}:{f.lineno}, in {f.name}: {f.line}")
    either = ""
    if kind == "neck" and ("in_channels" in node.kwargs or "in_strides" in node.kwargs):
        either = "or "
        hints.append(
            "its in_channels/in_strides are set in the config: they must match the backbone's "
            "maps (leave them out and the builder fills them from its feature_info)"
        )
    takes = (
        "Tensor[B, in_chans, H, W] for H and W multiples of its largest stride"
        if kind == "backbone"
        else "the list of maps of the component before it"
    )
    hints.append(
        f"{either}fix {_name(node.cls)}.forward ({_defined_at(node.cls)}): the model calls it "
        f"the same way ({takes}), and it must return one [B, C, H/stride, W/stride] map per "
        "feature_info entry"
    )
    return FeatureInfoError(
        f"{_component(node, kind)}: forward raised {type(exc).__name__}: {exc}, for {given} "
        "(build-time check of feature_info)",
        where=node.path or "<config>",
        hints=hints,
    )


def _fix(node: Node) -> str:
    return (
        f"fix {_name(node.cls)} ({_defined_at(node.cls)}): feature_info must list one "
        "FeatureSpec(channels, stride) per map its forward returns, in the same order (stride "
        "= input size / map size; 0 for a pooled [B, C] vector), or forward must return what "
        "it lists; the builder wires the next component's in_channels and in_strides from it"
    )


def _name(cls: Any) -> str:
    return getattr(cls, "__name__", repr(cls))
