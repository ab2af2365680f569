"""Segmentation losses against F.cross_entropy and a brute-force numpy Dice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cvkit
from cvkit.models.losses.segmentation import CEDiceLoss, DiceLoss, SegCrossEntropyLoss

IGNORE = 255


def _case(seed: int = 0, k: int = 4, b: int = 2, h: int = 5, w: int = 6):
    """Logits ``[B, K, H, W]`` (float64, requiring grad) and a target with ignored pixels.

    Class ``K - 1`` never occurs in the target.
    """
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, h, w, generator=g, dtype=torch.float64).requires_grad_()
    target = torch.randint(0, k - 1, (b, h, w), generator=g)
    target[torch.rand(b, h, w, generator=g) < 0.2] = IGNORE
    return logits, target


def _dice_reference(logits: torch.Tensor, target: torch.Tensor, smooth: float) -> float:
    """``1 - mean dice`` over classes present in the counted targets, by pixel loops."""
    probs = torch.softmax(logits.detach(), dim=1).numpy()
    t = target.numpy()
    b, k, h, w = probs.shape
    dices = []
    for c in range(k):
        inter = card = present = 0.0
        for i in range(b):
            for y in range(h):
                for x in range(w):
                    if t[i, y, x] == IGNORE:
                        continue
                    onehot = float(t[i, y, x] == c)
                    inter += probs[i, c, y, x] * onehot
                    card += probs[i, c, y, x] + onehot
                    present += onehot
        if present > 0:
            dices.append((2 * inter + smooth) / (card + smooth))
    return 1.0 - float(np.mean(dices))


@pytest.mark.parametrize("class_weights", [None, [0.5, 2.0, 1.0, 3.0]])
def test_cross_entropy_equals_torch_with_ignore_index(class_weights):
    logits, target = _case()
    loss = SegCrossEntropyLoss(class_weights=class_weights, weight=2.0)(logits, target)
    cw = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float64)
    expected = F.cross_entropy(logits, target, weight=cw, ignore_index=IGNORE)
    torch.testing.assert_close(loss, 2.0 * expected)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad.permute(0, 2, 3, 1)[target == IGNORE] == 0).all()


def test_cross_entropy_all_ignored_gives_zero_not_nan():
    logits, _ = _case()
    loss = SegCrossEntropyLoss()(logits, torch.full((2, 5, 6), IGNORE))
    loss.backward()
    assert loss.item() == 0.0 and (logits.grad == 0).all()


@pytest.mark.parametrize("smooth", [1.0, 0.0])
def test_dice_matches_brute_force_reference(smooth):
    logits, target = _case(seed=1)
    loss = DiceLoss(smooth=smooth)(logits, target)
    assert loss.item() == pytest.approx(_dice_reference(logits, target, smooth), abs=1e-10)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad.permute(0, 2, 3, 1)[target == IGNORE] == 0).all()


def test_dice_perfect_prediction_is_zero_even_with_wrong_ignored_pixels():
    _, target = _case(seed=2)
    logits = 30.0 * F.one_hot(torch.where(target == IGNORE, 0, target), 4).permute(0, 3, 1, 2)
    logits[:, 3][target == IGNORE] = 100.0  # confidently wrong, but only where ignored
    assert DiceLoss()(logits.float(), target).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_all_ignored_gives_zero():
    logits, _ = _case()
    loss = DiceLoss()(logits, torch.full((2, 5, 6), IGNORE))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_ce_dice_sum_equals_its_parts():
    logits, target = _case(seed=3)
    cw = [1.0, 2.0, 0.5, 1.0]
    total = CEDiceLoss(class_weights=cw, ce_weight=0.7, dice_weight=1.5, smooth=0.5)(logits, target)
    ce = SegCrossEntropyLoss(class_weights=cw)(logits, target)
    dice = DiceLoss(smooth=0.5)(logits, target)
    torch.testing.assert_close(total, 0.7 * ce + 1.5 * dice)


def test_class_weights_buffer_follows_the_module_but_not_into_checkpoints():
    loss = SegCrossEntropyLoss(class_weights=[1.0, 2.0])
    assert loss.class_weights.tolist() == [1.0, 2.0]
    assert "class_weights" not in loss.state_dict()


def test_error_class_weights_length():
    logits, target = _case()
    with pytest.raises(ValueError) as info:
        SegCrossEntropyLoss(class_weights=[1.0, 2.0])(logits, target)
    assert str(info.value) == (
        "SegCrossEntropyLoss: 2 class_weights for logits with 4 classes ([2, 4, 5, 6]); "
        "give one weight per class"
    )
    with pytest.raises(ValueError, match="class_weights must be non-negative"):
        SegCrossEntropyLoss(class_weights=[1.0, -1.0])


@pytest.mark.parametrize("loss_cls", [SegCrossEntropyLoss, DiceLoss, CEDiceLoss])
def test_error_target_out_of_range_and_shape(loss_cls):
    logits, target = _case()
    target[0, 0, :2] = 7
    with pytest.raises(ValueError, match=r"target values \[7\] are outside \[0, 4\).*2 of 60"):
        loss_cls()(logits, target)
    with pytest.raises(ValueError, match=r"logits \(2, 4, 5, 6\) and target \(2, 10, 12\)"):
        loss_cls()(logits, torch.zeros(2, 10, 12, dtype=torch.long))


@pytest.mark.parametrize("name", ["SegCrossEntropyLoss", "DiceLoss", "CEDiceLoss"])
def test_built_from_config(name):
    loss = cvkit.build({"type": name}, cvkit.LOSSES)
    logits, target = _case()
    assert torch.isfinite(loss(logits, target))
    weighted = cvkit.build({"type": "CEDiceLoss", "class_weights": [1, 2, 3, 4]}, cvkit.LOSSES)
    assert weighted.ce.class_weights.tolist() == [1.0, 2.0, 3.0, 4.0]
