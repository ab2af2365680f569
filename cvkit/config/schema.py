"""The schema of a run config: which sections and keys exist, with their types and defaults.

A new run setting is a new field here and a row in the README's settings table.
``cvkit.config.settings`` checks a loaded config against these dataclasses; ``is_section`` and
``is_known_key`` tell the override parser (``cvkit.config.load``) which keys an override may
set although the file does not: a schema key (``train.max_steps``) or an argument of the
component whose dict holds it (``model.backbone.frozen_stages``, read from the class the
registry names).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from cvkit.config.typecheck import parameters
from cvkit.errors import ConfigError
from cvkit.registry import registry_for_arg, resolve

# The smallest value each numeric setting may take (an int's or a float's); None and "auto"
# are not numbers and pass. A float bound is exclusive ("> 0"), an int bound inclusive.
MINIMUM: dict[str, int | float] = {
    "data.batch_size": 1,
    "data.total_batch_size": 1,
    "data.val_batch_size": 1,
    "data.num_workers": 0,
    "data.prefetch_factor": 1,
    "data.pad_multiple": 1,
    "train.epochs": 1,
    "train.max_steps": 1,
    "train.accumulate": 1,
    "train.clip_grad_norm": 0.0,
    "train.freeze_backbone_epochs": 0,
    "train.log_interval": 1,
    "train.checkpoint_interval": 1,
    "train.ema.decay": 0.0,
    "train.ema.warmup_steps": 0,
    "train.dist.timeout_minutes": 0.0,
    "train.param_groups.backbone_lr_mult": 0,
    "train.auto_scale_lr.base_batch_size": 1,
    "eval.interval": 1,
    "eval.patience": 1,
}
# The largest, by the same rule (a float bound exclusive: "< 1").
MAXIMUM: dict[str, int | float] = {"train.ema.decay": 1.0}


@dataclass
class DataSettings:
    """``data:``: the datasets (each a ``{type: ...}`` dict) and how they are loaded."""

    train: dict[str, Any] | None = None
    val: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    # per process: a run on N processes takes N x this per step; auto (CUDA, with
    # total_batch_size): the largest batch the GPU holds, the rest of the step accumulated
    batch_size: int | Literal["auto"] = 32
    total_batch_size: int | None = None  # or: per optimizer step over all processes
    val_batch_size: int | None = None  # defaults to batch_size
    num_workers: int | Literal["auto"] = "auto"  # auto: min(4, CPU cores - 1)
    prefetch_factor: int = 2  # batches each worker prepares ahead
    pin_memory: bool = True  # only used with CUDA
    # `cvkit train` decodes every image file once before the first step (cached by path, size
    # and modification time), so a broken file stops the run at the start, not mid-epoch
    check_images: bool = True
    # batches of one aspect-ratio group (portrait with portrait), padded to a multiple of
    # pad_multiple: less padding and few distinct batch shapes, whose kernels are reused
    group_by_aspect: bool = False
    pad_multiple: int = 1


@dataclass
class ParamGroupSettings:
    """``train.param_groups:``: how the learning rate and weight decay vary by parameter."""

    no_decay_norm_bias: bool = True  # no weight decay on biases and normalisation weights
    backbone_lr_mult: float = 1.0  # the backbone's LR is the base LR times this
    layer_decay: float | None = None  # stage i of n gets backbone LR * layer_decay**(n - i)


@dataclass
class EMASettings:
    """``train.ema:``: an exponential moving average of the weights, used for evaluation."""

    decay: float = 0.9998
    warmup_steps: int = 2000  # decay ramps up as (1 + t) / (10 + t) until then


@dataclass
class DistSettings:
    """``train.dist:``: how the processes of a distributed run (``torchrun``) talk."""

    backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: NCCL on CUDA, gloo on the CPU
    timeout_minutes: float = 30.0  # how long a process waits for the others at a collective


@dataclass
class AutoScaleLRSettings:
    """``train.auto_scale_lr:``: the linear scaling rule. Every group's LR is multiplied by
    (effective batch) / ``base_batch_size``, the effective batch being ``data.batch_size`` x
    processes x ``train.accumulate``."""

    base_batch_size: int  # the effective batch the config's learning rates were set for


@dataclass
class TrainSettings:
    """``train:``: the optimisation loop."""

    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps (resumable)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    deterministic: bool = False  # deterministic kernels; exact resume on CPU
    amp: bool | Literal["fp16", "bf16"] = False  # True: fp16 on CUDA, bf16 on CPU
    channels_last: bool = False  # weights in NHWC: faster convolutions on GPUs (tensor cores)
    compile: bool | dict[str, Any] = False  # torch.compile the model's forward (or its kwargs)
    accumulate: int = 1  # batches per optimizer step
    clip_grad_norm: float | None = None
    optimizer: dict[str, Any] = field(
        default_factory=lambda: {"type": "SGD", "lr": 0.01, "momentum": 0.9}
    )
    param_groups: ParamGroupSettings = field(default_factory=ParamGroupSettings)
    schedule: dict[str, Any] = field(default_factory=lambda: {"type": "Constant"})
    ema: EMASettings | None = None
    hooks: list[dict[str, Any]] = field(default_factory=list)  # extra hooks, {type: ...}
    freeze_backbone_epochs: int = 0  # backbone frozen (and its norms in eval) this long
    log_interval: int = 20
    checkpoint_interval: int = 1  # epochs between last.pt writes (and at the end)
    tensorboard: bool = True
    dist: DistSettings = field(default_factory=DistSettings)
    sync_bn: bool = False  # batch norm over all processes' batches (several CUDA processes)
    auto_scale_lr: AutoScaleLRSettings | None = None  # LR x effective batch / base


@dataclass
class EvalSettings:
    """``eval:``: evaluation during training."""

    interval: int = 1  # evaluate every N epochs (and after the last)
    metric: str | None = None  # what best.pt and early stopping follow; None: top1 or AP
    mode: Literal["max", "min"] = "max"
    patience: int | None = None  # stop after this many evaluations without improvement
    plots: bool = True  # confusion matrix PNG after the final evaluation


@dataclass
class RunSettings:
    """A whole run config, parsed and checked."""

    model: dict[str, Any]
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    imports: list[str] = field(default_factory=list)
    run_dir: str = "runs"  # runs go into <run_dir>/<name>
    name: str = ""  # defaults to the config file's stem


def dataclass_in(ann: Any) -> type | None:
    """The dataclass an annotation names (``X`` or ``X | None``), else None."""
    if isinstance(ann, type) and dataclasses.is_dataclass(ann):
        return ann
    if get_origin(ann) is not None:
        found = [a for a in get_args(ann) if isinstance(a, type) and dataclasses.is_dataclass(a)]
        return found[0] if found else None
    return None


def is_known_key(keys: list[str], parent: dict[str, Any]) -> bool:
    """Whether an override may add ``keys`` although the config does not set it yet.

    True for a run setting the schema defines (``train.max_steps``, ``train.ema.decay``) and
    for an argument of the component whose dict holds it (``model.backbone.frozen_stages``);
    a typo stays an error.
    """
    cls: Any = RunSettings
    for key in keys[:-1]:
        hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
        cls = dataclass_in(hints.get(key))
        if cls is None:
            break
    else:
        return keys[-1] in {f.name for f in dataclasses.fields(cls)}
    if isinstance(parent.get("type"), str) and len(keys) >= 2:
        return _takes_argument(parent, keys[-2], keys[-1])
    return False


def _takes_argument(component: dict[str, Any], key: str, arg: str) -> bool:
    """Whether the class ``component["type"]`` names (under argument ``key``) takes ``arg``."""
    cls = _component_class(component, key)
    if cls is None:
        return False
    params, _, var_kw = parameters(cls)
    return arg in params or var_kw


def _component_class(component: dict[str, Any], key: str) -> Any:
    """The class ``component["type"]`` names under argument ``key``; None if none does."""
    try:
        return resolve(component["type"], registry_for_arg(key))
    except ConfigError:
        return None


def is_section(keys: list[str]) -> bool:
    """Whether ``keys`` names a section of the schema (``eval``, ``train.ema``)."""
    cls: Any = RunSettings
    for key in keys:
        hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
        cls = dataclass_in(hints.get(key))
        if cls is None:
            return False
    return True


NO_DEFAULT = object()  # what ``default_of`` returns for a key without a default


def default_of(keys: list[str], data: dict[str, Any]) -> Any:
    """The value a config leaves ``keys`` at when it does not set it: a schema default
    (``train.clip_grad_norm``), or the default of an argument of the component whose dict
    holds it (``model.head.dropout``, read from the class the registry names); else
    ``NO_DEFAULT``. ``data`` is the config the key is missing from."""
    cls: Any = RunSettings
    for i, key in enumerate(keys):
        if not dataclasses.is_dataclass(cls):
            break
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if key not in fields:
            return NO_DEFAULT
        if i == len(keys) - 1:
            f = fields[key]
            if f.default is not dataclasses.MISSING:
                return f.default
            factory = f.default_factory
            return NO_DEFAULT if factory is dataclasses.MISSING else factory()
        cls = dataclass_in(typing.get_type_hints(cls).get(key))
    node: Any = data
    for key in keys[:-2]:
        node = node.get(key) if isinstance(node, dict) else None
    parent = node.get(keys[-2]) if isinstance(node, dict) and len(keys) >= 2 else None
    if not (isinstance(parent, dict) and isinstance(parent.get("type"), str)):
        return NO_DEFAULT
    component = _component_class(parent, keys[-2])
    if component is None:
        return NO_DEFAULT
    param = parameters(component)[0].get(keys[-1])
    if param is None or param.default is param.empty:
        return NO_DEFAULT
    return param.default
