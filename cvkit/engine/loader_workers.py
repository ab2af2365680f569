"""``data.num_workers: auto`` in a run: the worker count measured by ``data.worker_probe``
(cached per data spec, batch size and machine); ``cvkit tune-loader`` prints the whole curve
(``engine.tune_loader``)."""

from __future__ import annotations

import os
from typing import Any

from cvkit.config import Config
from cvkit.data.worker_probe import (
    cache_key,
    cached_choice,
    candidate_counts,
    probe_workers,
    store_choice,
)
from cvkit.engine import distributed


def cores_per_process(processes: distributed.Processes) -> int:
    """This machine's cores shared by its training processes."""
    return max(1, (os.cpu_count() or 1) // max(1, processes.local_world_size))


def auto_workers(
    cfg: Config,
    dataset: Any,
    batch_size: int,
    collate: Any,
    processes: distributed.Processes,
) -> tuple[int, str]:
    """The measured worker count for ``data.train`` and a line saying where it came from.

    The first process of each machine probes (or finds the cache) and the others read its
    result after a barrier, so a machine probes once."""
    key = cache_key(cfg.get("data.train"), batch_size, processes.local_world_size)
    probe, fresh = cached_choice(key), False
    if probe is None and processes.local_rank == 0:
        probe = probe_workers(
            dataset, batch_size, collate, candidate_counts(cores_per_process(processes))
        )
        store_choice(key, probe)
        fresh = True
    distributed.barrier(processes)
    probe = probe or cached_choice(key)
    if probe is None:  # a cache this process cannot read: the rule of thumb
        workers = max(0, min(4, cores_per_process(processes) - 1))
        return workers, f"data.num_workers: auto -> {workers} (cores - 1; no measurement here)"
    how = "measured now" if fresh else "measured before, cached"
    return probe.chosen, (
        f"data.num_workers: auto -> {probe.chosen} (loader rate by workers, {how}: "
        f"{probe.describe()}; `cvkit tune-loader CFG` re-measures)"
    )
