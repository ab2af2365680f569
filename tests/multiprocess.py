"""Run a function in several processes that form one gloo process group, as torchrun does.

Each process gets the environment torchrun would give it (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) and one thread, so
cvkit joins the group itself, as under ``torchrun``. PyTorch's own ``MultiProcessTestCase``
is the model; this is the small part of it these tests need.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from cvkit.engine.distributed import teardown


def run_processes(fn: Callable[..., Any], world_size: int, *args: Any) -> list[Any]:
    """``fn(*args)`` in ``world_size`` spawned processes; their return values, by rank.

    ``fn`` must be a module-level function (spawn pickles it by name) and return something
    ``torch.save`` can write. An exception in any process fails the call with its traceback.
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(
            _entry,
            args=(world_size, port, fn, args, tmp),
            nprocs=world_size,
            join=True,
            start_method="spawn",
        )
        return [
            torch.load(Path(tmp) / f"rank{r}.pt", weights_only=False) for r in range(world_size)
        ]


def _entry(
    rank: int, world_size: int, port: int, fn: Callable[..., Any], args: tuple, out: str
) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    try:
        torch.save(fn(*args), Path(out) / f"rank{rank}.pt")
    finally:
        teardown()  # cvkit joined the group; leave it as the command line does at exit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
