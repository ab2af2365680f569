"""Pick a fixed-size, class-balanced random subset of matched anchors or proposals."""

from __future__ import annotations

from typing import Protocol

import torch

from cvkit.registry import SAMPLERS


class Sampler(Protocol):
    """What a two-stage head asks of a sampler (``RandomSampler`` or a plugin's).

    ``sampler(matched)``: a matcher's ``Tensor[A]`` int64 -> ``(pos_idx [P], neg_idx [N])``
    int64 indices into it, positives among ``matched >= 0``, negatives among ``matched == -1``.
    """

    def __call__(self, matched: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


@SAMPLERS.register()
class RandomSampler:
    """Sample positives and negatives for a two-stage head (RPN, RoI head).

    Takes up to ``int(num_samples * positive_fraction)`` positives (``matched >= 0``) at
    random, then fills the rest of ``num_samples`` with random negatives (``matched == -1``).
    Ignored entries (``matched == -2``, or any other negative value) are never picked. When
    there are too few of either kind, fewer than ``num_samples`` come back.

    Args:
        num_samples: how many entries to sample per image.
        positive_fraction: the largest share of positives in the sample.

    Example:
        >>> sampler = RandomSampler(num_samples=4, positive_fraction=0.5)
        >>> matched = torch.tensor([0, -1, 1, -2, 2, -1, -1, 0])
        >>> pos, neg = sampler(matched, generator=torch.Generator().manual_seed(0))
        >>> len(pos), len(neg), bool((matched[pos] >= 0).all()), bool((matched[neg] == -1).all())
        (2, 2, True, True)
    """

    def __init__(self, num_samples: int = 512, positive_fraction: float = 0.25) -> None:
        if num_samples < 1:
            raise ValueError(f"RandomSampler: num_samples must be positive, got {num_samples}")
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(
                f"RandomSampler: positive_fraction must be in [0, 1], got {positive_fraction}"
            )
        self.num_samples = int(num_samples)
        self.positive_fraction = float(positive_fraction)
        # The slack keeps e.g. 100 * 0.29 = 28.999999999999996 from flooring to 28.
        self.max_positives = int(self.num_samples * self.positive_fraction + 1e-9)

    def __call__(
        self, matched: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample indices into ``matched``.

        Args:
            matched: ``Tensor[A]`` int64 from a matcher: gt index, -1 background, -2 ignore.
            generator: a ``torch.Generator`` on ``matched``'s device, for reproducible draws;
                ``None`` uses the global RNG.

        Returns:
            ``(pos_idx, neg_idx)``: ``Tensor[P]`` and ``Tensor[N]`` int64 on ``matched``'s
            device, each in increasing order, with ``P + N <= num_samples``.
        """
        if matched.dim() != 1 or matched.dtype != torch.int64:
            raise ValueError(
                f"RandomSampler: matched must be an int64 [A] tensor, got {matched.dtype} "
                f"{tuple(matched.shape)}"
            )
        positives = torch.nonzero(matched >= 0).squeeze(1)
        negatives = torch.nonzero(matched == -1).squeeze(1)
        num_pos = min(len(positives), self.max_positives)
        num_neg = min(len(negatives), self.num_samples - num_pos)
        return _choose(positives, num_pos, generator), _choose(negatives, num_neg, generator)


def _choose(indices: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """``k`` of ``indices`` at random, sorted (sorting keeps later gathers in memory order)."""
    order = torch.randperm(len(indices), device=indices.device, generator=generator)
    return indices[order[:k]].sort().values
