"""An image classifier as a graph: uint8 images -> class probabilities."""

from __future__ import annotations

import torch

from cvkit.models.deploy.base import DeployGraph
from cvkit.structures import ClsBatch


class ClassifierGraph(DeployGraph):
    """``images [B, C, H, W]`` -> ``probs [B, K]`` (softmax; raw: ``logits [B, K]``)."""

    task = "classification"
    output_names = ("probs",)
    raw_names = ("logits",)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        logits = m.head(m.neck(m.backbone(m.preprocessor.graph_forward(images))))
        return logits.float().softmax(dim=1), logits

    def eager_raw(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.model(images),)

    def eager_outputs(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (torch.stack([p.probs for p in self.model.predict(ClsBatch(inputs[0]))]),)
