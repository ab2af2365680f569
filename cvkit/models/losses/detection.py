"""Detection losses: sigmoid focal loss, smooth-L1 on box deltas, IoU-family box losses.

A detector tells loss kinds apart by their base class (``isinstance``), never by their
attributes:

- a box loss that subclasses ``DecodedBoxLoss`` gets decoded ``xyxy`` boxes and the gt boxes;
  any other box loss (``DeltaBoxLoss`` or a plain ``nn.Module``, the default) gets predicted
  deltas and the gts encoded by the box coder;
- a classification loss that subclasses ``ClassIndexLoss`` gets class indices and row weights
  through ``forward_labels``; any other (the default) gets one-hot targets through
  ``forward``.

A plugin loss declares its kind the same way: subclass one of these bases.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from cvkit.registry import LOSSES


class ClassIndexLoss(nn.Module):
    """Base of classification losses that take class indices as well as one-hot targets.

    A detector gives such a loss ``forward_labels(logits, labels, weights)``: no ``[N, K]``
    one-hot tensor is built and no rows are copied out of the logits. Subclasses implement
    ``forward(logits, targets)`` (one-hot, ``Tensor[N, K]``) and ``forward_labels``; both
    return the same summed loss.
    """

    def forward_labels(
        self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The summed loss of ``logits`` ``Tensor[N, K]`` against ``labels`` ``Tensor[N]``
        (int64, the row's positive class or ``-1``: all negative), each row scaled by
        ``weights`` ``Tensor[N]`` (``0`` drops it; ``None``: all 1). A scalar."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_labels")


class DeltaBoxLoss(nn.Module):
    """Base of box losses on encoded deltas: ``forward(pred, target)``, both ``Tensor[P, 4]``
    ``(dx, dy, dw, dh)`` from the box coder, summed to a scalar. This is also what a box loss
    that subclasses neither base gets."""

    uses_boxes = False  # kept for code that reads it; detectors check the base class


class DecodedBoxLoss(nn.Module):
    """Base of box losses on boxes: ``forward(pred, target)``, both ``Tensor[P, 4]`` ``xyxy``
    in input pixels (the prediction decoded by the box coder), summed to a scalar."""

    uses_boxes = True  # kept for code that reads it; detectors check the base class


@LOSSES.register()
class FocalLoss(ClassIndexLoss):
    """Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", 2017), summed.

    The caller normalises (by positives). Two ways to give the targets:

    - ``forward(logits, targets)``: one-hot (or soft) targets, through
      ``torchvision.ops.sigmoid_focal_loss``;
    - ``forward_labels(logits, labels, weights)``: a class index per row and a weight per
      row, through ``sigmoid_focal_loss_labels``, which needs no ``[N, K]`` target tensor and
      computes the gradient with the loss (a detector's ``[B * A, K]`` logits, several times
      faster).

    Args:
        alpha: weight of the positive class (``1 - alpha`` for the negatives); negative: no
            weighting.
        gamma: focusing exponent.
        weight: loss weight of this term.

    Shapes: logits ``Tensor[N, K]``, targets ``Tensor[N, K]`` in {0, 1} -> scalar.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, weight: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.gamma, self.weight = alpha, gamma, weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from torchvision.ops import sigmoid_focal_loss  # slow to import: see cvkit.ops.iou

        loss = sigmoid_focal_loss(logits, targets, self.alpha, self.gamma, reduction="sum")
        return self.weight * loss

    def forward_labels(
        self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The same loss with class-index targets.

        Args:
            logits: ``Tensor[N, K]``.
            labels: ``Tensor[N]`` int64, the row's positive class, or ``-1``: all negative.
            weights: ``Tensor[N]``, each row's weight (``0`` drops it); ``None``: all 1.

        Returns:
            The weighted sum over all ``N * K`` elements, a scalar.
        """
        loss = sigmoid_focal_loss_labels(logits, labels, weights, self.alpha, self.gamma)
        return self.weight * loss


def sigmoid_focal_loss_labels(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> torch.Tensor:
    """``torchvision.ops.sigmoid_focal_loss(logits, one_hot(labels), reduction="sum")`` with
    each row scaled by its weight, without building the one-hot targets.

    Args:
        logits: ``Tensor[N, K]``.
        labels: ``Tensor[N]`` int64 in ``[-1, K)``; ``-1``: the row has no positive class.
        weights: ``Tensor[N]`` per-row weights; ``None``: all 1.
        alpha: weight of the positives (``1 - alpha`` for the negatives); negative: none.
        gamma: focusing exponent, ``>= 0``.

    Returns:
        A scalar in the logits' dtype. Its backward is one multiply (the gradient is
        computed in the forward pass); it is not twice differentiable.

    Example:
        >>> from torchvision.ops import sigmoid_focal_loss
        >>> logits = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
        >>> labels = torch.tensor([0, -1])
        >>> one_hot = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        >>> ref = sigmoid_focal_loss(logits, one_hot, reduction="sum")
        >>> bool(torch.isclose(sigmoid_focal_loss_labels(logits, labels), ref))
        True
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"sigmoid_focal_loss_labels: logits must be [N, K] and labels [N], got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if weights is None:
        weights = logits.new_ones(logits.shape[0])
    if torch.is_grad_enabled() and logits.requires_grad:
        return _SigmoidFocalLossSum.apply(logits, labels, weights, float(alpha), float(gamma))
    # no gradient wanted (e.g. a validation loss under no_grad): skip computing it
    return _focal_loss_and_grad(logits, labels, weights, alpha, gamma, need_grad=False)[0]


class _SigmoidFocalLossSum(torch.autograd.Function):
    """The summed focal loss of ``sigmoid_focal_loss_labels``, with its gradient computed in
    the forward pass and kept for the backward, which is one multiply.

    Written op by op, autograd would keep about ten ``[N, K]`` intermediates and replay as
    many passes backward.
    """

    @staticmethod
    def forward(ctx, logits, labels, weights, alpha: float, gamma: float):
        loss, grad = _focal_loss_and_grad(logits, labels, weights, alpha, gamma, need_grad=True)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None, None, None


def _focal_loss_and_grad(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    alpha: float,
    gamma: float,
    need_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The summed loss (a scalar) and, if ``need_grad``, its gradient ``Tensor[N, K]``, both
    in the logits' dtype.

    With a binary target the loss of one element depends on one signed logit ``z`` (``x`` for
    a negative, ``-x`` for a positive): ``a * sigmoid(z)**gamma * softplus(z)``, with ``a``
    the alpha factor times the row weight. Every element is computed as a negative (the vast
    majority), then the few positives are redone apart.
    """
    neg_alpha, pos_alpha = (1.0 - alpha, alpha) if alpha >= 0 else (1.0, 1.0)
    # half-precision logits (autocast) are upcast: the loss needs at least float32
    with torch.autocast(logits.device.type, enabled=False):
        x = logits.to(torch.promote_types(logits.dtype, torch.float32))
        x = x.contiguous()  # row-major: pos_flat indexes x.view(-1)
        pos_rows = torch.nonzero(labels >= 0).squeeze(1)
        pos_flat = pos_rows * x.shape[1] + labels.index_select(0, pos_rows)
        row_weight = weights.to(x.dtype)
        loss, grad = _focal_terms(x, (row_weight * neg_alpha)[:, None], gamma, need_grad)
        pos_loss, pos_grad = _focal_terms(
            -x.view(-1).index_select(0, pos_flat),
            row_weight.index_select(0, pos_rows) * pos_alpha,
            gamma,
            need_grad,
        )
        # the positives' elements were counted as negatives above: replace them
        total = loss.view(-1).index_fill_(0, pos_flat, 0.0).sum() + pos_loss.sum()
        if grad is not None and pos_grad is not None:  # need_grad
            grad.view(-1).index_copy_(0, pos_flat, pos_grad.neg_())  # dz/dx = -1
            grad = grad.to(logits.dtype)
    return total.to(logits.dtype), grad


def _focal_terms(
    z: torch.Tensor, weight: torch.Tensor, gamma: float, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Elementwise ``f = weight * sigmoid(z)**gamma * softplus(z)`` and ``df/dz``.

    ``softplus(z)`` is the cross-entropy of target 0 at logit ``z``, ``sigmoid(z)`` its
    probability of being wrong. ``weight`` broadcasts against ``z``. With ``s = sigmoid(z)``:
    ``df/dz = weight * s**gamma * (s + gamma * (1 - s) * softplus(z))`` (``s`` is softplus'
    derivative, ``s * (1 - s)`` sigmoid's). In-place ops keep the passes over ``z`` few.
    """
    s = torch.sigmoid(z)
    factor = s.pow(gamma).mul_(weight)  # weight * s**gamma
    loss = factor * F.softplus(z)
    if not need_grad:
        return loss, None
    grad = factor.mul_(s).addcmul_(1.0 - s, loss, value=gamma)
    return loss, grad


@LOSSES.register()
class SmoothL1Loss(DeltaBoxLoss):
    """Smooth-L1 between predicted and target box deltas, summed; ``beta=0`` is plain L1.

    Shapes: ``Tensor[N, 4]`` and ``Tensor[N, 4]`` -> scalar.
    """

    def __init__(self, beta: float = 0.0, weight: float = 1.0) -> None:
        super().__init__()
        if beta < 0:
            raise ValueError(f"SmoothL1Loss: beta must be >= 0, got {beta}")
        self.beta, self.weight = beta, weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.beta == 0:
            return self.weight * F.l1_loss(pred, target, reduction="sum")
        return self.weight * F.smooth_l1_loss(pred, target, beta=self.beta, reduction="sum")


@LOSSES.register()
class IoULoss(DecodedBoxLoss):
    """``1 - xIoU`` between decoded predicted boxes and ground-truth boxes, summed.

    Args:
        kind: ``"giou"`` (Rezatofighi et al. 2019), ``"diou"`` or ``"ciou"`` (Zheng et al.
            2020).
        weight: loss weight of this term.

    Shapes: boxes ``Tensor[N, 4]`` xyxy and ``Tensor[N, 4]`` -> scalar.
    """

    def __init__(self, kind: Literal["giou", "diou", "ciou"] = "giou", weight: float = 1.0) -> None:
        super().__init__()
        self.kind, self.weight = kind, weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from cvkit.models.losses import iou_losses as B

        fn = {"giou": B.giou_loss, "diou": B.diou_loss, "ciou": B.ciou_loss}[self.kind]
        return self.weight * fn(pred, target, reduction="sum")
