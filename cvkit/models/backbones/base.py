"""The backbone contract: a list of stages, some of whose outputs are returned.

Every backbone returns ``list[Tensor]`` (one map per ``out_indices`` entry) and says what each
map is in ``feature_info: list[FeatureSpec]``; the builder reads that to wire a neck's
``in_channels``. ``StagedBackbone`` implements the contract for networks written as a
sequence of stages, validates ``out_indices`` (never silently), and freezes leading stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvkit.structures import FeatureSpec


def select_outputs(
    owner: str, specs: Sequence[FeatureSpec], out_indices: Sequence[int]
) -> tuple[int, ...]:
    """Validate ``out_indices`` against the stages; negative indices count from the end.

    Returns:
        The indices made non-negative, in the order given.

    Raises:
        ValueError: naming the backbone, the bad index and the stages available.
    """
    n = len(specs)
    available = ", ".join(f"{i}: {s.channels}ch/stride {s.stride}" for i, s in enumerate(specs))
    if not out_indices:
        raise ValueError(f"{owner}: out_indices is empty; choose from stages {available}")
    resolved = []
    for i in out_indices:
        if not isinstance(i, int) or isinstance(i, bool) or not -n <= i < n:
            raise ValueError(
                f"{owner}: out_indices has {i!r}, but there are {n} stages "
                f"(0..{n - 1}, or -{n}..-1): {available}"
            )
        resolved.append(i % n)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"{owner}: out_indices {tuple(out_indices)} names a stage twice")
    if resolved != sorted(resolved):
        raise ValueError(f"{owner}: out_indices {tuple(out_indices)} must be in increasing order")
    return tuple(resolved)


class StagedBackbone(nn.Module):
    """Base class for a backbone made of ``self.stages`` run one after another.

    Subclasses build ``self.stages`` (an ``nn.ModuleList``) and call
    ``self.set_outputs(specs, out_indices)`` with one ``FeatureSpec`` per stage.
    """

    stages: nn.ModuleList
    feature_info: list[FeatureSpec]
    out_indices: tuple[int, ...]

    def set_outputs(self, specs: Sequence[FeatureSpec], out_indices: Sequence[int]) -> None:
        if len(specs) != len(self.stages):
            raise RuntimeError(
                f"{type(self).__name__}: {len(specs)} specs for {len(self.stages)} stages"
            )
        self.stage_specs = list(specs)
        self.out_indices = select_outputs(type(self).__name__, specs, out_indices)
        self.feature_info = [specs[i] for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Args: x (Tensor[B, C, H, W]). Returns: one ``Tensor[B, C_i, H/s_i, W/s_i]`` per
        ``out_indices`` entry; stages after the last one needed are not run."""
        outs = []
        last = self.out_indices[-1]
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
            if i == last:
                break
        return outs

    def stage_parameter_groups(self) -> list[list[nn.Parameter]]:
        """The parameters of each stage, first stage first (for layer-wise LR decay)."""
        return [list(stage.parameters()) for stage in self.stages]

    def freeze(self, num_stages: int) -> None:
        """Stop gradients in the first ``num_stages`` stages (0 unfreezes every stage)."""
        if not 0 <= num_stages <= len(self.stages):
            raise ValueError(
                f"{type(self).__name__}: cannot freeze {num_stages} stages; it has "
                f"{len(self.stages)}"
            )
        for i, stage in enumerate(self.stages):
            for p in stage.parameters():
                p.requires_grad_(i >= num_stages)
