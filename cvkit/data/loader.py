"""Batching and DataLoader construction, resumable mid-epoch and reproducible.

Two things make a run's data exactly repeatable, whatever the worker count and across a
resume:

* ``EpochSampler`` draws each epoch's order from ``(seed, epoch)`` alone and can start at
  any position, so a resumed run skips the batches already seen without loading them;
* ``SeededSamples`` reseeds the dataset's albumentations pipeline (its ``transforms``
  attribute) for every sample from ``(seed, epoch, index)``, so an image gets the same
  augmentation in the same epoch of every run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cvkit.data.collate import collate_classification
from cvkit.data.grouping import grouped_order


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` pairs: a seeded order per epoch, from a start position, of
    one process's shard.

    The epoch's order depends on ``(seed, epoch)`` alone, so every process of a distributed
    run draws the same one and takes every ``world_size``-th sample of it from ``rank`` on
    (``order[rank::world_size]``). Batch ``k`` of all processes together then holds the same
    samples as batch ``k`` of one process with a ``world_size`` times larger batch.

    Args:
        size: dataset length.
        shuffle: draw a permutation per epoch (from ``seed`` and the epoch) or keep order.
        seed: the run's seed.
        rank: this process's place in the run, ``0 <= rank < world_size``.
        world_size: processes that share the epoch.
        even: pad the order to a multiple of ``world_size`` with its first samples (as
            ``torch.utils.data.DistributedSampler`` does), so every process takes the same
            number of batches, as the gradient all-reduce needs; ``False`` (evaluation)
            gives each sample to exactly one process and the shards differ by at most one.
        groups: each sample's aspect-ratio group (``grouping.aspect_groups``); every
            ``chunk`` consecutive samples of an epoch's order then share a group.
        chunk: samples of one step over all processes (batch size x ``world_size``).
    """

    def __init__(
        self,
        size: int,
        shuffle: bool,
        seed: int = 0,
        *,
        rank: int = 0,
        world_size: int = 1,
        even: bool = True,
        groups: Sequence[int] | None = None,
        chunk: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"EpochSampler: rank {rank} is outside world size {world_size}")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.even = rank, world_size, even
        if groups is not None and len(groups) != size:
            raise ValueError(f"EpochSampler: {len(groups)} groups for {size} samples")
        self.groups, self.chunk = groups, chunk
        self.epoch = 0
        self.start = 0

    @property
    def num_samples(self) -> int:
        """Samples in this process's shard of a whole epoch."""
        if self.even:
            return -(-self.size // self.world_size)
        return len(range(self.rank, self.size, self.world_size))

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use ``epoch``'s order from sample ``start`` of this shard on (a resumed run's
        position)."""
        self.epoch, self.start = epoch, start

    def order(self, epoch: int) -> list[int]:
        """The whole epoch's order, the same in every process (grouped by aspect ratio when
        ``groups`` are given)."""
        if not self.shuffle:
            order = list(range(self.size))
        else:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        if self.groups is None:
            return order
        return grouped_order(order, self.groups, self.chunk)

    def shard(self, epoch: int) -> list[int]:
        """This process's part of ``order(epoch)``."""
        order = self.order(epoch)
        if self.world_size == 1:
            return order
        if self.even and order:
            padding = self.num_samples * self.world_size - len(order)
            order = order + (order * -(-padding // len(order)))[:padding]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.shard(self.epoch)[self.start :]:
            yield self.epoch, index

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


class SeededSamples(Dataset):
    """Wraps a dataset; ``[(epoch, i)]`` reseeds its transforms, then returns ``dataset[i]``."""

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        pipeline = getattr(self.dataset, "transforms", None)
        if pipeline is not None and hasattr(pipeline, "set_random_seed"):
            # one integer from (seed, epoch, index), the same in every run and every worker
            pipeline.set_random_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
        return self.dataset[index]


def resolve_workers(num_workers: int | str, processes: int = 1) -> int:
    """``"auto"`` -> min(4, this process's CPU cores - 1): decoding runs beside training,
    one core spare. ``processes``: training processes on this machine, which share its
    cores (``LOCAL_WORLD_SIZE`` under torchrun)."""
    if num_workers == "auto":
        return max(0, min(4, (os.cpu_count() or 1) // max(1, processes) - 1))
    return int(num_workers)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int | str = 0,
    seed: int = 0,
    drop_last: bool = False,
    prefetch_factor: int = 2,
    pin_memory: bool = False,
    collate_fn=collate_classification,
    rank: int = 0,
    world_size: int = 1,
    even: bool = True,
    groups: Sequence[int] | None = None,
) -> DataLoader:
    """A DataLoader over ``(epoch, index)`` keys; ``loader.sampler.set_epoch`` picks the epoch.

    Args:
        rank, world_size, even: this process's shard of each epoch (see ``EpochSampler``);
            ``batch_size`` is per process.
        groups: each sample's aspect-ratio group: every batch, of every process, is then of
            one group (but the epoch's last few).

    Returns:
        a DataLoader whose ``sampler`` is an ``EpochSampler``.
    """
    workers = resolve_workers(num_workers)
    sampler = EpochSampler(
        len(dataset),  # type: ignore[arg-type]
        shuffle,
        seed,
        rank=rank,
        world_size=world_size,
        even=even,
        groups=groups,
        chunk=batch_size * world_size,
    )
    return DataLoader(
        SeededSamples(dataset, seed),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        drop_last=drop_last,
        persistent_workers=workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        pin_memory=pin_memory,
        # Each new iterator draws a worker base seed; from its own generator, not the global
        # RNG, so starting an epoch (or resuming mid-epoch) leaves dropout's RNG untouched.
        generator=torch.Generator().manual_seed(seed),
    )
