"""Several processes, one run: torch.distributed under ``torchrun``.

``torchrun`` starts one process per device and tells each its place in the environment
(``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``PORT``).
``setup`` reads it, joins the process group (NCCL on CUDA, gloo on the CPU, or
``train.dist.backend``) and picks this process's device; without those variables it does
nothing and the run is one process, with no change to any config. The rest of the engine asks
``current()`` where it stands and uses the helpers here to agree: rank 0 alone writes, the
others receive what it decided (``broadcast``), and evaluations are ``gather``-ed to it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cvkit.errors import ConfigError


@dataclass(frozen=True)
class Processes:
    """Where this process stands in the run.

    Attributes:
        rank: its place among all processes (0 writes the run's files).
        world_size: processes in the run, on every machine.
        local_rank: its place on this machine (its GPU's index).
        local_world_size: processes on this machine (they share its CPU cores).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        """``rank 1 of 2``: how a message names this process."""
        return f"rank {self.rank} of {self.world_size}"


def from_environment() -> Processes:
    """The place ``torchrun`` gave this process; one process of one when it gave none."""
    env = os.environ

    def number(key: str, default: int) -> int:
        try:
            return int(env.get(key, default))
        except ValueError:
            raise ConfigError(
                f"the environment variable {key}={env[key]!r} is not a number",
                hints=["launch several processes with torchrun, which sets it"],
            ) from None

    world = number("WORLD_SIZE", 1)
    return Processes(
        rank=number("RANK", 0),
        world_size=world,
        local_rank=number("LOCAL_RANK", 0),
        local_world_size=number("LOCAL_WORLD_SIZE", world),
    )


def current() -> Processes:
    """Where this process stands: from the process group once it is joined."""
    if dist.is_available() and dist.is_initialized():
        env = from_environment()
        return Processes(
            dist.get_rank(), dist.get_world_size(), env.local_rank, env.local_world_size
        )
    return Processes()


def setup(
    backend: str, device: torch.device, timeout_minutes: float
) -> tuple[Processes, torch.device]:
    """Join the run's process group when ``torchrun`` started several processes.

    The group stays joined for the life of the process (a later ``train`` or ``evaluate``
    in it uses the same group; a store cannot be set up twice on one port), until
    ``teardown``, which the command line calls at exit. A group the caller made is used
    as it is.

    Args:
        backend: ``auto`` (NCCL on CUDA, gloo on the CPU), ``nccl`` or ``gloo``.
        device: the device the config asks for; on CUDA each process takes the GPU of its
            ``LOCAL_RANK``.
        timeout_minutes: how long a collective waits for the other processes.

    Returns:
        ``(processes, device)``.
    """
    if not (dist.is_available() and dist.is_initialized()):
        env = from_environment()
        if not env.distributed:
            return env, device
        name = _backend(backend, device)
        if device.type == "cuda":
            device = torch.device("cuda", env.local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group(name, timeout=datetime.timedelta(minutes=timeout_minutes))
    elif device.type == "cuda":
        device = torch.device("cuda", current().local_rank)
        torch.cuda.set_device(device)
    processes = current()
    if not processes.is_main:
        # every process runs the same code on the same config: rank 0 shows the warnings
        warnings.filterwarnings("ignore")
    return processes, device


def teardown() -> None:
    """Leave the process group, if this process is in one (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _backend(backend: str, device: torch.device) -> str:
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError(
            "train.dist.backend is 'nccl', which runs on CUDA devices only, but this run is on "
            f"the {device.type.upper()}",
            where="train.dist.backend",
            hints=["set train.dist.backend=gloo (or auto) to train on the CPU"],
        )
    return backend


def check_sync_bn(sync_bn: bool, processes: Processes, device: torch.device) -> None:
    """``train.sync_bn`` needs several processes on CUDA: refuse it anywhere else."""
    if not sync_bn:
        return
    if not processes.distributed:
        raise ConfigError(
            "train.sync_bn is true but this run is one process: there is no other process "
            "to share batch statistics with, and batch norm already sees the whole batch",
            where="train.sync_bn",
            hints=[
                "set train.sync_bn=false, or launch several processes: "
                "torchrun --nproc_per_node N -m cvkit train CFG"
            ],
        )
    if device.type != "cuda":
        raise ConfigError(
            f"train.sync_bn is true but this run is on the {device.type.upper()}: torch's "
            "SyncBatchNorm runs on CUDA devices only",
            where="train.sync_bn",
            hints=["set train.sync_bn=false to train on the CPU"],
        )


class LossForward(nn.Module):
    """A task model whose ``forward(batch)`` is its ``loss(batch)``.

    DDP synchronises gradients of what runs through its ``forward``; a task trains through
    ``loss``, so DDP wraps this module, not the task. It holds no weights of its own:
    checkpoints, EMA and evaluation use the task model itself.
    """

    def __init__(self, task: nn.Module) -> None:
        super().__init__()
        self.task = task

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        return self.task.loss(batch)  # type: ignore[operator]


def wrap(
    model: nn.Module, device: torch.device, find_unused_parameters: bool
) -> DistributedDataParallel:
    """DDP around ``LossForward(model)``; ``find_unused_parameters`` when a stage is frozen for
    a while (its parameters take no gradient then)."""
    return DistributedDataParallel(
        LossForward(model),
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )


@contextlib.contextmanager
def no_sync(module: nn.Module | None, skip: bool) -> Iterator[None]:
    """``module.no_sync()`` when ``skip`` (a micro-batch of an accumulated step) and it is a
    DDP module; else nothing."""
    if skip and isinstance(module, DistributedDataParallel):
        with module.no_sync():
            yield
    else:
        yield


def lost_a_peer(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another process is gone (it
    failed or was stopped): torch's distributed errors, and gloo's, which are plain
    ``RuntimeError``s that name gloo."""
    if isinstance(exc, dist.DistError):
        return True
    return isinstance(exc, RuntimeError) and "gloo" in str(exc)


def barrier(processes: Processes) -> None:
    """Wait until every process is here (nothing on one process)."""
    if processes.distributed:
        dist.barrier()


def mean_over_processes(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over all processes (an all-reduce; every process must call)."""
    values = values.clone()
    dist.all_reduce(values)
    return values / dist.get_world_size()


def broadcast(value: Any, processes: Processes) -> Any:
    """Rank 0's ``value`` on every process (any picklable value)."""
    if not processes.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any, processes: Processes) -> list[Any] | None:
    """Every process's ``value``, in rank order, on rank 0; ``None`` on the others."""
    if not processes.distributed:
        return [value]
    out: list[Any] | None = [None] * processes.world_size if processes.is_main else None
    dist.gather_object(value, out, dst=0)
    return out


def all_gather(value: Any, processes: Processes) -> list[Any]:
    """Every process's ``value``, in rank order, on every process."""
    if not processes.distributed:
        return [value]
    out: list[Any] = [None] * processes.world_size
    dist.all_gather_object(out, value)
    return out
