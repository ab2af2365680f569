"""Any timm model as a cvkit backbone, through ``timm.create_model(features_only=True)``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvkit.models.backbones.base import select_outputs
from cvkit.registry import BACKBONES
from cvkit.structures import FeatureSpec


@BACKBONES.register()
class TimmBackbone(nn.Module):
    """A timm model's feature maps: ``list[Tensor[B, C_i, H/s_i, W/s_i]]``.

    Args:
        name: a timm model name (``timm.list_models()``), e.g. ``"resnet18"``.
        out_indices: which of the model's feature stages to return; negative counts from the
            end. Checked against the model's stages, never silently clipped.
        in_chans: input channels.
        frozen_stages: how many leading stages get no gradient (0: none).
        norm_eval: keep every normalisation layer in eval mode while training (frozen
            statistics, the usual choice for small batches on a pretrained backbone).

    Example:
        >>> bb = TimmBackbone("resnet18", out_indices=(-2, -1))
        >>> [(f.channels, f.stride) for f in bb.feature_info]
        [(256, 16), (512, 32)]
    """

    def __init__(
        self,
        name: str,
        out_indices: Sequence[int] = (-1,),
        in_chans: int = 3,
        frozen_stages: int = 0,
        norm_eval: bool = False,
    ) -> None:
        super().__init__()
        import timm  # imported here: it is slow to import and only this class needs it

        if not timm.is_model(name):
            from cvkit.errors import did_you_mean

            close = did_you_mean(name, timm.list_models())
            raise ValueError(f"{name!r} is not a timm model. {close} (timm.list_models())")
        self.name = name
        self.model = timm.create_model(
            name, features_only=True, pretrained=False, in_chans=in_chans
        )
        info = self.model.feature_info
        specs = [FeatureSpec(c, s) for c, s in zip(info.channels(), info.reduction())]
        self.out_indices = select_outputs(f"TimmBackbone({name!r})", specs, tuple(out_indices))
        self.stage_specs = specs
        self.feature_info = [specs[i] for i in self.out_indices]
        self.norm_eval = norm_eval
        self.freeze(frozen_stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Args: x (Tensor[B, C, H, W]). Returns one map per ``out_indices`` entry."""
        feats = self.model(x)
        return [feats[i] for i in self.out_indices]

    def freeze(self, num_stages: int) -> None:
        """No gradient for the parameters of the first ``num_stages`` feature stages."""
        n = len(self.stage_specs)
        if not 0 <= num_stages <= n:
            raise ValueError(
                f"TimmBackbone({self.name!r}): cannot freeze {num_stages} of {n} stages"
            )
        for stage, params in enumerate(self.stage_parameter_groups()):
            for p in params:
                p.requires_grad_(stage >= num_stages)

    def stage_parameter_groups(self) -> list[list[nn.Parameter]]:
        """The parameters of each feature stage, in order.

        timm records which module ends each stage; in definition order, a parameter belongs
        to the first stage whose end module comes at or after the module that owns it.
        """
        order = {name: i for i, (name, _) in enumerate(self.model.named_modules())}
        ends = []
        for info in self.model.feature_info.info:
            end = info["module"]
            inside = [i for n, i in order.items() if n == end or n.startswith(end + ".")]
            ends.append(max(inside))
        groups: list[list[nn.Parameter]] = [[] for _ in ends]
        for pname, p in self.model.named_parameters():
            pos = order[pname.rpartition(".")[0]]
            stage = next((k for k, e in enumerate(ends) if pos <= e), len(ends) - 1)
            groups[stage].append(p)
        return groups

    def train(self, mode: bool = True) -> TimmBackbone:
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.GroupNorm | nn.LayerNorm):
                    m.eval()
        return self
