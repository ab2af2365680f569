"""Classification metrics from logits or probabilities."""

from __future__ import annotations

import torch


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Share of rows whose true label is among the ``k`` highest scores.

    Args:
        scores: ``Tensor[N, K]`` logits or probabilities.
        labels: ``Tensor[N]`` int64.
    """
    if scores.shape[0] == 0:
        raise ValueError("topk_accuracy: no samples")
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean().item()
