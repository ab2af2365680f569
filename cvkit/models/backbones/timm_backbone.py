"""Any timm model as a cvkit backbone: its feature stages, or its whole trunk, pretrained or not."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from cvkit.models.backbones.base import select_outputs
from cvkit.models.pretrained import (
    LoadReport,
    architecture_shapes,
    load_matching,
    resolve_weights,
    split_classifier,
)
from cvkit.registry import BACKBONES
from cvkit.structures import FeatureSpec

logger = logging.getLogger("cvkit.pretrained")


@BACKBONES.register()
class TimmBackbone(nn.Module):
    """A timm model's feature maps: ``list[Tensor[B, C_i, H/s_i, W/s_i]]``.

    Args:
        name: a timm model name (``timm.list_models()``), e.g. ``"resnet18"``.
        out_indices: which of the model's feature stages to return; negative counts from the
            end. Checked against the model's stages, never silently clipped. With
            ``features_only=False`` it must be ``(-1,)``.
        in_chans: input channels.
        frozen_stages: how many leading stages get no gradient (0: none).
        norm_eval: keep every normalisation layer in eval mode while training (frozen
            statistics, the usual choice for small batches on a pretrained backbone).
        pretrained: ``False``; a ``.pth``/``.pt``/``.safetensors`` path; a package source
            (``cvkit.models.pretrained.PACKAGE_SOURCES``); or ``True``/``"timm"`` for timm's
            hub. Loaded here; the ImageNet classifier, when the weights have one, is kept on
            ``self.pretrained_head`` (``{"weight", "bias"}``, not in the state dict) for the
            classifier's head to take.
        features_only: ``True``: the feature stages (``out_indices`` picks among them).
            ``False``: the whole trunk up to the classifier (``forward_features``, e.g. with
            EfficientNet's ``conv_head``), one map ``Tensor[B, num_features, H/32, W/32]``:
            what an ImageNet classifier was trained on, the usual start for fine-tuning.
        output_stride: ``None``: the model's own (32 for most). ``16`` or ``8``: the last
            stages keep that stride and dilate their convolutions instead (DeepLab's and
            torchvision's segmentation backbones; "D8" in MMSegmentation's config names).
            Same parameters, so pretrained weights still load; ``feature_info`` reports the
            strides the maps really have. Costs compute: the late stages run on larger maps.

    Example:
        >>> bb = TimmBackbone("resnet18", out_indices=(-2, -1))
        >>> [(f.channels, f.stride) for f in bb.feature_info]
        [(256, 16), (512, 32)]
    """

    # timm's model; its num_features, forward_features and feature_info are not typed
    model: Any

    def __init__(
        self,
        name: str,
        out_indices: Sequence[int] = (-1,),
        in_chans: int = 3,
        frozen_stages: int = 0,
        norm_eval: bool = False,
        pretrained: bool | str = False,
        features_only: bool = True,
        output_stride: int | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.in_chans = in_chans
        self.features_only = features_only
        self.model = _create(name, features_only, in_chans, output_stride)
        self.stage_specs = [FeatureSpec(d["num_chs"], d["reduction"]) for d in _stages(self.model)]
        self.out_indices = self._select(tuple(out_indices))
        if features_only:
            self.feature_info = [self.stage_specs[i] for i in self.out_indices]
        else:
            self.feature_info = [FeatureSpec(self.model.num_features, self.stage_specs[-1].stride)]
        self.norm_eval = norm_eval
        # a plain attribute, not a buffer: the classifier's head copies it, the state dict
        # never carries it
        self.pretrained_head: dict[str, torch.Tensor] | None = None
        self.pretrained_report: LoadReport | None = None
        if pretrained is not False:
            self.pretrained_report = self.load_pretrained(pretrained)
        self.freeze(frozen_stages)

    def _select(self, out_indices: tuple[int, ...]) -> tuple[int, ...]:
        owner = f"TimmBackbone({self.name!r})"
        if self.features_only:
            return select_outputs(owner, self.stage_specs, out_indices)
        if out_indices != (-1,):
            raise ValueError(
                f"{owner}: features_only=False returns one map, the whole trunk's output "
                f"({self.model.num_features}ch/stride {self.stage_specs[-1].stride}), so "
                f"out_indices must be (-1,), got {out_indices}; use features_only=True to "
                "choose among the stages"
            )
        return (len(self.stage_specs) - 1,)

    def load_pretrained(self, pretrained: bool | str) -> LoadReport:
        """Load weights into the model and keep their classifier on ``pretrained_head``.

        Args:
            pretrained: as in the constructor (``True``/``"timm"``, a path, a package source).

        Raises:
            FileNotFoundError / ValueError / ConnectionError: naming the file or source and
            the first tensor that does not fit.
        """
        weights = resolve_weights(pretrained, self.name, self.in_chans)
        head, trunk = split_classifier(weights.state, weights.classifier)
        # tensors of the full architecture that this trunk leaves out are no error
        optional = architecture_shapes(self.name, self.in_chans)
        owner = f"TimmBackbone({self.name!r}, features_only={self.features_only})"
        report = load_matching(
            self.model,
            trunk,
            weights.source,
            optional=optional,
            head=weights.classifier,
            owner=owner,
        )
        self.pretrained_head = head
        if head:
            report.skipped.extend(f"{weights.classifier[0]}.{k}" for k in head)
        logger.info("TimmBackbone(%r): %s", self.name, report)
        return report

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Args: x (Tensor[B, C, H, W]). Returns one map per ``out_indices`` entry."""
        if not self.features_only:
            out = self.model.forward_features(x)
            if out.ndim != 4:
                raise ValueError(
                    f"TimmBackbone({self.name!r}): forward_features returns shape "
                    f"{tuple(out.shape)}, not a [B, C, H, W] map; use features_only=True"
                )
            return [out]
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
        """The parameters of each feature stage, in order; each parameter in one group.

        timm records which module ends each stage; in definition order, a parameter belongs
        to the first stage whose end module comes at or after the module that owns it, so
        layers after the last stage (EfficientNet's ``conv_head``) join the last group.
        """
        # "_" read as ".": features_only wrappers rename timm's "stages.0" to "stages_0"
        order = {n.replace("_", "."): i for i, (n, _) in enumerate(self.model.named_modules())}
        ends = []
        for info in _stages(self.model):
            end = _stage_module(order, info["module"].replace("_", "."))
            ends.append(max(i for n, i in order.items() if n == end or n.startswith(end + ".")))
        groups: list[list[nn.Parameter]] = [[] for _ in ends]
        for pname, p in self.model.named_parameters():
            pos = order[pname.rpartition(".")[0].replace("_", ".")]
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


def _create(
    name: str, features_only: bool, in_chans: int, output_stride: int | None = None
) -> nn.Module:
    import timm  # imported here: it is slow to import and only this class needs it

    if not timm.is_model(name):
        from cvkit.errors import did_you_mean

        close = did_you_mean(name, timm.list_models())
        raise ValueError(f"{name!r} is not a timm model. {close} (timm.list_models())")
    kwargs: dict[str, Any] = {"pretrained": False, "in_chans": in_chans}
    if output_stride is not None:
        if output_stride not in (8, 16, 32):
            raise ValueError(
                f"TimmBackbone({name!r}): output_stride must be 8, 16 or 32 (or None for the "
                f"model's own), got {output_stride!r}"
            )
        kwargs["output_stride"] = output_stride
    if features_only:
        kwargs["features_only"] = True
    else:
        kwargs.update(num_classes=0, global_pool="")
    try:
        model: Any = timm.create_model(name, **kwargs)  # its feature_info is not typed
        stages = len(_stages(model)) if features_only else 0
        if features_only and tuple(model.feature_info.out_indices) != tuple(range(stages)):
            # ViTs' feature wrappers return their last three blocks by default: ask for all
            return timm.create_model(name, **kwargs, out_indices=tuple(range(stages)))
        return model
    except TypeError as e:
        if output_stride is None or "output_stride" not in str(e):
            raise
        raise ValueError(
            f"TimmBackbone({name!r}): this timm model cannot change its output stride "
            f"(output_stride={output_stride}); use a convolutional model that supports it, "
            "such as resnet50 or tf_efficientnet_lite0, or leave output_stride unset"
        ) from e


def _stage_module(names: Iterable[str], stage: str) -> str:
    """The module of ``names`` a timm stage record names: itself, or, where a wrapper holds
    the network (``features_only`` on a ViT wraps it as ``model``), the first ending in it."""
    names = list(names)
    if stage in names:
        return stage
    found = next((n for n in names if n.endswith("." + stage)), None)
    if found is None:
        raise ValueError(f"timm's feature_info names a stage {stage!r} that the model lacks")
    return found


def _stages(model: Any) -> list[dict[str, Any]]:
    """timm's stage records (``module``, ``num_chs``, ``reduction``), with or without
    ``features_only`` (a ``FeatureInfo`` there, a list of dicts on a full model)."""
    info = model.feature_info
    return list(info.info) if hasattr(info, "info") else list(info)
