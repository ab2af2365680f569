"""``data.num_workers: auto``, measured: the loader's images/s at increasing worker counts,
and the smallest count within a few percent of the best.

The advice users follow for ``num_workers`` is to raise it until throughput stops rising;
``probe_workers`` does that on the real dataset, transforms and collate, a couple of
seconds per count, and ``auto_workers`` caches the choice per data spec, batch size and
machine, so only the first run of a config pays for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cvkit.data.generated_cache import cache_root
from cvkit.data.loader import build_loader

TOLERANCE = 0.05  # a count within 5% of the best rate is as good as the best
MEMORY_PER_WORKER = 1 << 30  # bytes a loader worker may come to hold (its prefetched batches)


@dataclass
class WorkerProbe:
    """The measured curve: ``rates[i]`` images/s with ``counts[i]`` workers; ``chosen``."""

    counts: list[int]
    rates: list[float]
    chosen: int

    def describe(self) -> str:
        """``0: 41 img/s, 1: 77, 2: 80 -> 1``."""
        points = [f"{c}: {r:.0f}" for c, r in zip(self.counts, self.rates)]
        points[0] += " img/s"
        return ", ".join(points) + f" -> {self.chosen}"


def candidate_counts(cores: int) -> list[int]:
    """Worker counts to try: 0 up to the cores this process may use, fewer if memory is short
    (each worker holds its prefetched batches)."""
    available = _available_memory()
    by_memory = available // MEMORY_PER_WORKER if available else cores
    return list(range(0, max(1, min(cores, by_memory, 16)) + 1))


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def probe_workers(
    dataset: Any,
    batch_size: int,
    collate: Callable,
    counts: Sequence[int],
    *,
    batches: int = 12,
    seconds: float = 2.0,
    seed: int = 0,
    tolerance: float = TOLERANCE,
) -> WorkerProbe:
    """Measure the loader at each worker count and choose.

    Each count gets a fresh loader over an epoch's shuffled order; its first batch (the
    workers starting) is not timed, then up to ``batches`` batches or ``seconds`` are. The
    curve stops early once two counts in a row fall short of the best by ``tolerance``.
    """
    rates: list[float] = []
    tried: list[int] = []
    for workers in counts:
        loader = build_loader(
            dataset, batch_size, shuffle=True, num_workers=workers, collate_fn=collate, seed=seed
        )
        rates.append(_rate(loader, batch_size, batches, seconds))
        tried.append(workers)
        del loader  # its workers end here
        best = max(rates)
        if len(rates) >= 3 and all(r < (1 - tolerance) * best for r in rates[-2:]):
            break
    return WorkerProbe(tried, rates, choose(tried, rates, tolerance))


def _rate(loader: Any, batch_size: int, batches: int, seconds: float) -> float:
    iterator = iter(loader)
    if next(iterator, None) is None:
        return 0.0
    images, start = 0, time.perf_counter()
    for _ in range(batches):
        batch = next(iterator, None)
        if batch is None:
            break
        images += batch_size
        if time.perf_counter() - start > seconds:
            break
    return images / max(time.perf_counter() - start, 1e-9)


def choose(counts: Sequence[int], rates: Sequence[float], tolerance: float = TOLERANCE) -> int:
    """The smallest count whose rate is within ``tolerance`` of the best."""
    best = max(rates)
    return next(c for c, r in zip(counts, rates) if r >= (1 - tolerance) * best)


def cache_key(data_spec: Any, batch_size: int, processes_here: int) -> str:
    """What the choice depends on: the dataset spec (transforms included), the batch size,
    this machine (host, cores) and the training processes sharing it."""
    text = json.dumps(
        [data_spec, batch_size, platform.node(), os.cpu_count(), processes_here],
        sort_keys=True,
        default=str,
    )
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def cached_choice(key: str) -> WorkerProbe | None:
    entry = _read_cache().get(key)
    if not isinstance(entry, dict):
        return None
    try:
        return WorkerProbe(list(entry["counts"]), list(entry["rates"]), int(entry["chosen"]))
    except (KeyError, TypeError, ValueError):
        return None


def store_choice(key: str, probe: WorkerProbe) -> None:
    """Add the probe to the cache file (atomically; a read-only cache is not an error)."""
    entries = _read_cache()
    entries[key] = vars(probe)
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(entries))
        os.replace(temp, path)
    except OSError:
        pass


def _cache_file():
    return cache_root() / "loader-workers.json"


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
