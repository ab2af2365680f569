"""Box ops against brute-force references written from the definitions, and against torchvision.

The references loop over pairs in plain Python floats. Their conventions for degenerate boxes
are the ones cvkit documents: a ratio whose divisor is zero (the union of two zero-area boxes,
the enclosing box of two identical points) is 0, and a flat box's aspect angle is pi/2.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import itertools
import math
import pkgutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.ops as tvops

import cvkit.ops as B
from cvkit.models.losses import iou_losses
from cvkit.ops import non_max_suppression

PAIRWISE = {
    "iou": B.box_iou,
    "giou": B.generalized_box_iou,
    "diou": B.distance_box_iou,
    "ciou": B.complete_box_iou,
}
ALIGNED = {
    "iou": B.box_iou_aligned,
    "giou": B.generalized_box_iou_aligned,
    "diou": B.distance_box_iou_aligned,
    "ciou": B.complete_box_iou_aligned,
}
LOSSES = {
    "giou": iou_losses.giou_loss,
    "diou": iou_losses.diou_loss,
    "ciou": iou_losses.ciou_loss,
}
TORCHVISION = {
    "iou": tvops.box_iou,
    "giou": tvops.generalized_box_iou,
    "diou": tvops.distance_box_iou,
    "ciou": tvops.complete_box_iou,
}


# -- references ------------------------------------------------------------------------------
def _ratio(num: float, den: float) -> float:
    return 0.0 if den == 0 else num / den


def ref_xiou(a, b, kind: str) -> float:
    """IoU / GIoU / DIoU / CIoU of two xyxy boxes (lists of 4 floats), from the definitions."""
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    area_a, area_b = (ax2 - ax1) * (ay2 - ay1), (bx2 - bx1) * (by2 - by1)
    union = area_a + area_b - inter
    iou = _ratio(inter, union)
    cw, ch = max(ax2, bx2) - min(ax1, bx1), max(ay2, by2) - min(ay1, by1)
    if kind == "iou":
        return iou
    if kind == "giou":
        return iou - _ratio(cw * ch - union, cw * ch)
    centre_dist2 = ((ax1 + ax2) / 2 - (bx1 + bx2) / 2) ** 2 + (
        (ay1 + ay2) / 2 - (by1 + by2) / 2
    ) ** 2
    diou = iou - _ratio(centre_dist2, cw**2 + ch**2)
    if kind == "diou":
        return diou
    angle_a = math.atan2(ax2 - ax1, ay2 - ay1)  # atan(w / h); pi/2 for a flat box
    angle_b = math.atan2(bx2 - bx1, by2 - by1)
    v = 4 / math.pi**2 * (angle_a - angle_b) ** 2
    return diou - _ratio(v, 1 - iou + v) * v


def ref_greedy_nms(boxes, scores, labels, threshold, overlap):
    """Visit boxes by score (ties by index); keep one unless a kept box of its class overlaps it
    by more than ``threshold``."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(labels[k] != labels[i] or overlap(boxes[k], boxes[i]) <= threshold for k in keep):
            keep.append(i)
    return keep


def ref_soft_nms(boxes, scores, labels, threshold, sigma, method, score_threshold):
    scores = list(scores)
    left = set(range(len(scores)))
    keep, new_scores = [], []
    while left:
        best = min(left, key=lambda i: (-scores[i], i))
        if scores[best] < score_threshold:
            break
        keep.append(best)
        new_scores.append(scores[best])
        left.remove(best)
        for j in left:
            if labels[j] != labels[best]:
                continue
            iou = ref_xiou(boxes[best], boxes[j], "iou")
            if method == "gaussian":
                scores[j] *= math.exp(-(iou**2) / sigma)
            elif iou > threshold:
                scores[j] *= 1 - iou
    return keep, new_scores


# -- test data -------------------------------------------------------------------------------
EDGE_BOXES = [
    [0.0, 0.0, 10.0, 10.0],
    [0.0, 0.0, 10.0, 10.0],  # identical
    [2.0, 3.0, 6.0, 7.0],  # nested
    [10.0, 0.0, 20.0, 10.0],  # touching
    [30.0, 30.0, 35.0, 32.0],  # disjoint
    [4.0, 4.0, 4.0, 4.0],  # point inside
    [4.0, 4.0, 4.0, 4.0],  # the same point
    [40.0, 1.0, 40.0, 1.0],  # point outside
    [1.0, 5.0, 9.0, 5.0],  # flat line inside
    [1.0, 5.0, 9.0, 5.0],  # the same line
    [5.0, 1.0, 5.0, 9.0],  # thin line inside
    [50.0, 0.0, 50.0, 20.0],  # thin line outside
]


def random_boxes(n: int, seed: int, degenerate: float = 0.25) -> torch.Tensor:
    """float64 xyxy boxes: sides 1..30 or exactly 0, with duplicates and nested copies."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 40
    wh = 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 29
    wh[torch.rand(n, 2, generator=g) < degenerate] = 0.0
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[1::7] = boxes[0::7][: len(boxes[1::7])]  # duplicates
    nested = boxes[2::7] + torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    ok = (nested[:, 2:] >= nested[:, :2]).all(1)
    boxes[2::7][ok] = nested[ok]
    return boxes


def all_boxes() -> torch.Tensor:
    return torch.cat([torch.tensor(EDGE_BOXES, dtype=torch.float64), random_boxes(24, seed=0)])


def _close(actual: torch.Tensor, expected, atol: float = 1e-6) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    torch.testing.assert_close(actual, expected.reshape(actual.shape), atol=atol, rtol=0)


# -- the package -----------------------------------------------------------------------------
OPS_MODULES = ["boxes", "iou", "non_max_suppression"]
COMPILED = {"non_max_suppression": ["_soft_nms"]}  # a module's own C half (setup.py)


@pytest.mark.parametrize(
    "name", [f"cvkit.ops.{m}" for m in OPS_MODULES] + ["cvkit.models.losses.iou_losses"]
)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_no_ops_module_is_shadowed_by_a_function():
    # `import cvkit.ops.iou` must give the module: no function may share a module's name
    found = sorted(m.name for m in pkgutil.iter_modules(B.__path__) if m.name[0] != "_")
    assert found == OPS_MODULES
    for name in found:
        assert inspect.ismodule(getattr(B, name)), name


@pytest.mark.parametrize("name", OPS_MODULES)
def test_ops_modules_share_only_public_names(name):
    """No module reaches into another's private helpers."""
    tree = ast.parse(Path(importlib.import_module(f"cvkit.ops.{name}").__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cvkit"):
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert private in ([], COMPILED.get(name)), node.module


def test_every_public_name_is_importable_from_ops_and_its_module():
    for name in B.__all__:
        owners = [m for m in OPS_MODULES if name in getattr(B, m).__all__]
        assert len(owners) == 1, (name, owners)
        assert getattr(B, name) is getattr(getattr(B, owners[0]), name)
    every = {n for m in OPS_MODULES for n in getattr(B, m).__all__}
    assert every == set(B.__all__)
    assert not hasattr(B, "giou_loss")  # losses live in models, above ops


# -- conversions, area, clipping -------------------------------------------------------------
@pytest.mark.parametrize("in_fmt, out_fmt", list(itertools.permutations(B.FORMATS, 2)))
def test_box_convert_round_trips(in_fmt, out_fmt):
    boxes = B.box_convert(all_boxes(), "xyxy", in_fmt)
    back = B.box_convert(B.box_convert(boxes, in_fmt, out_fmt), out_fmt, in_fmt)
    torch.testing.assert_close(back, boxes, atol=1e-12, rtol=0)


def test_box_convert_values_and_shapes():
    xyxy = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert B.box_convert(xyxy, "xyxy", "xywh").tolist() == [[10, 20, 20, 40]]
    assert B.box_convert(xyxy, "xyxy", "cxcywh").tolist() == [[20, 40, 20, 40]]
    assert B.box_convert(torch.tensor([[20.0, 40, 20, 40]]), "cxcywh", "xywh").tolist() == [
        [10, 20, 20, 40]
    ]
    same = B.box_convert(xyxy, "xyxy", "xyxy")
    assert torch.equal(same, xyxy) and same.data_ptr() != xyxy.data_ptr()
    assert B.box_convert(torch.zeros(0, 4), "xyxy", "cxcywh").shape == (0, 4)
    assert B.box_convert(torch.zeros(2, 3, 4), "xywh", "xyxy").shape == (2, 3, 4)


def test_box_convert_rejects_unknown_formats_by_name():
    with pytest.raises(ValueError, match=r"in_fmt .*'xyxyr'"):
        B.box_convert(torch.zeros(1, 4), "xyxyr", "xyxy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"out_fmt .*'XYWH'"):
        B.box_convert(torch.zeros(1, 4), "xyxy", "XYWH")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"boxes must have shape \[..., 4\], got \[2, 5\]"):
        B.box_convert(torch.zeros(2, 5), "xyxy", "xywh")


def test_box_area_matches_brute_force():
    boxes = all_boxes()
    expected = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in boxes.tolist()]
    _close(B.box_area(boxes), expected, atol=0)
    assert B.box_area(torch.zeros(0, 4)).shape == (0,)
    assert B.box_area(torch.tensor([[0, 0, 300, 300]], dtype=torch.float16)).item() == 90000
    assert B.box_area(torch.tensor([[0, 0, 3, 2]])).dtype == torch.int64


def test_clip_boxes_matches_torchvision_and_definition():
    boxes = all_boxes() - 10
    clipped = B.clip_boxes(boxes, (25, 30))
    torch.testing.assert_close(clipped, tvops.clip_boxes_to_image(boxes, (25, 30)))
    for (x1, y1, x2, y2), out in zip(boxes.tolist(), clipped.tolist()):
        assert out == [
            min(max(x1, 0), 30),
            min(max(y1, 0), 25),
            min(max(x2, 0), 30),
            min(max(y2, 0), 25),
        ]
    assert B.clip_boxes(torch.zeros(0, 4), (5, 5)).shape == (0, 4)
    for bad in [(5,), (5, -1), (5.0, 4)]:
        with pytest.raises(ValueError, match="size must be"):
            B.clip_boxes(boxes, bad)  # type: ignore[arg-type]


def test_valid_mask_and_remove_small_boxes():
    boxes = torch.cat([all_boxes(), torch.tensor([[5.0, 5.0, 4.0, 6.0], [0, 0, math.nan, 1]])])
    for min_size in [0.0, 0.5, 2.0, 12.0]:
        widths, heights = (boxes[:, 2] - boxes[:, 0]).tolist(), (boxes[:, 3] - boxes[:, 1]).tolist()
        expected = [w >= min_size and h >= min_size for w, h in zip(widths, heights)]
        assert B.valid_boxes_mask(boxes, min_size).tolist() == expected
        kept = B.remove_small_boxes(boxes, min_size)
        assert kept.tolist() == [i for i, ok in enumerate(expected) if ok]
        assert torch.equal(kept, tvops.remove_small_boxes(boxes, min_size))
    assert B.remove_small_boxes(torch.zeros(0, 4), 1.0).shape == (0,)


# -- IoU family ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(PAIRWISE))
def test_pairwise_matches_brute_force_including_degenerate_boxes(kind):
    a, b = all_boxes(), random_boxes(15, seed=1)
    b = torch.cat([b, a[:6]])
    expected = [[ref_xiou(x, y, kind) for y in b.tolist()] for x in a.tolist()]
    result = PAIRWISE[kind](a, b)
    assert result.shape == (len(a), len(b)) and result.dtype == torch.float64
    assert torch.isfinite(result).all()
    _close(result, expected)


@pytest.mark.parametrize("kind", list(PAIRWISE))
def test_pairwise_matches_torchvision_where_torchvision_is_defined(kind):
    a, b = all_boxes(), random_boxes(20, seed=2)
    ours, theirs = PAIRWISE[kind](a, b), TORCHVISION[kind](a, b)
    defined = torch.isfinite(theirs)
    # torchvision's NaNs are all at zero-area boxes (for CIoU, any pair with a point box).
    zero_area = B.box_area(a)[:, None].eq(0) | B.box_area(b)[None, :].eq(0)
    assert (defined | zero_area).all()
    _close(ours[defined], theirs[defined])


@pytest.mark.parametrize("kind", list(ALIGNED))
def test_aligned_matches_brute_force_and_pairwise_diagonal(kind):
    a, b = all_boxes(), torch.cat([all_boxes()[1:], all_boxes()[:1]])
    expected = [ref_xiou(x, y, kind) for x, y in zip(a.tolist(), b.tolist())]
    result = ALIGNED[kind](a, b)
    assert result.shape == (len(a),) and torch.isfinite(result).all()
    _close(result, expected)
    _close(result, PAIRWISE[kind](a, b).diagonal())
    # One box against many broadcasts.
    _close(ALIGNED[kind](a[3], b), PAIRWISE[kind](a[3:4], b)[0])


@pytest.mark.parametrize("kind", list(PAIRWISE))
def test_empty_inputs_give_empty_results(kind):
    some = random_boxes(3, seed=3)
    assert PAIRWISE[kind](torch.zeros(0, 4), some).shape == (0, 3)
    assert PAIRWISE[kind](some, torch.zeros(0, 4)).shape == (3, 0)
    assert PAIRWISE[kind](torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 0)
    assert ALIGNED[kind](torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0,)
    assert PAIRWISE[kind](torch.zeros(2, 0, 4), torch.zeros(2, 5, 4)).shape == (2, 0, 5)


@pytest.mark.parametrize("kind", list(PAIRWISE))
def test_dtype_follows_inputs(kind):
    a = torch.tensor([[0, 0, 300, 300], [10, 10, 200, 250]])
    for dtype, expected in [
        (torch.float16, torch.float16),
        (torch.bfloat16, torch.bfloat16),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
        (torch.int64, torch.get_default_dtype()),
    ]:
        pairwise = PAIRWISE[kind](a.to(dtype), a.to(dtype))
        assert pairwise.dtype == ALIGNED[kind](a.to(dtype), a.to(dtype)).dtype == expected
        assert torch.isfinite(pairwise).all()  # no float16 overflow of 300 x 300 areas
        _close(pairwise.double(), PAIRWISE[kind](a.double(), a.double()), atol=1e-2)
    assert PAIRWISE[kind](a.float(), a.double()).dtype == torch.float64


def test_results_stay_on_the_input_device():
    # The meta device stands in for an accelerator: any hard-coded device would show here.
    a, b = torch.zeros(3, 4, device="meta"), torch.zeros(5, 4, device="meta")
    for kind in PAIRWISE:
        assert PAIRWISE[kind](a, b).device.type == "meta"
        assert ALIGNED[kind](a, a).device.type == "meta"
    for loss in LOSSES.values():
        assert loss(a, a, reduction="mean").device.type == "meta"
    for out in [B.box_convert(a, "xyxy", "cxcywh"), B.clip_boxes(a, (4, 4)), B.box_area(a)]:
        assert out.device.type == "meta"


def test_bad_shapes_are_value_errors_naming_the_argument():
    good = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"boxes2 must have shape \[N, 4\], got \[3, 5\]"):
        B.box_iou(good, torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"boxes1 must have shape \[N, 4\], got \[4\]"):
        B.generalized_box_iou(torch.zeros(4), good)
    with pytest.raises(ValueError, match=r"boxes1 \[2, 4\] and boxes2 \[3, 4\]"):
        B.box_iou_aligned(torch.zeros(2, 4), good)
    with pytest.raises(TypeError, match=r"boxes1 must be a torch\.Tensor"):
        B.box_iou([[0, 0, 1, 1]], good)  # type: ignore[arg-type]


# -- losses ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(LOSSES))
def test_loss_values(kind):
    loss = LOSSES[kind]
    boxes = all_boxes()
    # A box against itself: IoU 1, no distance, same aspect -> 0 (zero-area boxes excepted: 1).
    same = loss(boxes, boxes)
    positive = B.box_area(boxes) > 0
    _close(same[positive], torch.zeros(int(positive.sum())))
    disjoint = loss(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[3.0, 0, 4, 1]]))
    assert disjoint.item() > 1
    expected = torch.tensor(
        [1 - ref_xiou(x, y, kind) for x, y in zip(boxes.tolist(), boxes.flip(0).tolist())],
        dtype=torch.float64,
    )
    _close(loss(boxes, boxes.flip(0)), expected)
    _close(loss(boxes, boxes.flip(0), reduction="sum"), expected.sum())
    _close(loss(boxes, boxes.flip(0), reduction="mean"), expected.mean())


@pytest.mark.parametrize("kind", list(LOSSES))
def test_loss_matches_torchvision_on_regular_boxes(kind):
    tv_loss = {
        "giou": tvops.generalized_box_iou_loss,
        "diou": tvops.distance_box_iou_loss,
        "ciou": tvops.complete_box_iou_loss,
    }[kind]
    a, b = random_boxes(40, seed=4, degenerate=0), random_boxes(40, seed=5, degenerate=0)
    _close(LOSSES[kind](a, b), tv_loss(a, b))


@pytest.mark.parametrize("kind", list(LOSSES))
def test_loss_reductions_on_empty_inputs_and_bad_reduction(kind):
    pred = torch.zeros(0, 4, requires_grad=True)
    assert LOSSES[kind](pred, torch.zeros(0, 4)).shape == (0,)
    for reduction in ["mean", "sum"]:
        value = LOSSES[kind](pred, torch.zeros(0, 4), reduction=reduction)
        assert value.shape == () and value.item() == 0
        value.backward()
    with pytest.raises(ValueError, match=r"reduction must be .* got 'avg'"):
        LOSSES[kind](pred, pred, reduction="avg")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(LOSSES))
def test_loss_gradients_are_finite_for_degenerate_boxes(kind):
    boxes = all_boxes()
    for target in [boxes, boxes.flip(0), boxes.roll(3, 0)]:
        pred = boxes.clone().requires_grad_(True)
        LOSSES[kind](pred, target, reduction="sum").backward()
        assert torch.isfinite(pred.grad).all()


# Points where the losses are differentiable: overlapping, nested, and zero-width or
# zero-height predictions apart from their target. (A zero height sits on the kink of the CIoU
# aspect term, where the height counts as eps.)
GRADCHECK_PRED = [[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 2.0, 2.5], [5.0, 1.0, 5.0, 4.0]]
GRADCHECK_TARGET = [[1.0, 0.5, 3.0, 2.0], [0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 3.0, 1.0]]
FLAT_PRED, FLAT_TARGET = [4.0, 3.0, 7.0, 3.0], [0.0, 0.0, 2.0, 2.0]


@pytest.mark.parametrize("kind", ["giou", "diou"])
def test_loss_gradcheck(kind):
    pred = torch.tensor([*GRADCHECK_PRED, FLAT_PRED], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([*GRADCHECK_TARGET, FLAT_TARGET], dtype=torch.float64)
    target.requires_grad_(True)
    assert torch.autograd.gradcheck(LOSSES[kind], (pred, target))


def test_ciou_loss_gradient_holds_alpha_constant():
    # CIoU's alpha is a weight, not a path for gradients, so a finite difference of the loss
    # itself disagrees; the gradient is that of 1 - DIoU + alpha * v with alpha frozen.
    pred = torch.tensor(GRADCHECK_PRED, dtype=torch.float64, requires_grad=True)
    target = torch.tensor(GRADCHECK_TARGET, dtype=torch.float64, requires_grad=True)

    def aspect_v(p, t):
        w_p, h_p, w_t, h_t = (
            p[:, 2] - p[:, 0],
            p[:, 3] - p[:, 1],
            t[:, 2] - t[:, 0],
            t[:, 3] - t[:, 1],
        )
        return 4 / math.pi**2 * (torch.atan(w_t / h_t) - torch.atan(w_p / h_p)) ** 2

    v = aspect_v(pred, target).detach()
    alpha = v / (1 - B.box_iou_aligned(pred, target).detach() + v)

    def frozen(p, t):
        return iou_losses.diou_loss(p, t) + alpha * aspect_v(p, t)

    assert torch.autograd.gradcheck(frozen, (pred, target))
    _close(iou_losses.ciou_loss(pred, target), frozen(pred, target), atol=1e-12)
    ours = torch.autograd.grad(iou_losses.ciou_loss(pred, target).sum(), (pred, target))
    expected = torch.autograd.grad(frozen(pred, target).sum(), (pred, target))
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


# -- NMS -------------------------------------------------------------------------------------
def nms_case(n: int, seed: int, num_classes: int = 3, tie_every: int = 0):
    """Clustered float64 boxes (many overlaps, some degenerate), scores and labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(max(1, n // 6), 2, generator=g, dtype=torch.float64) * 60
    xy = centres[torch.randint(0, len(centres), (n,), generator=g)]
    xy = xy + torch.randn(n, 2, generator=g, dtype=torch.float64) * 1.5
    wh = 8 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 6
    wh[torch.rand(n, 2, generator=g) < 0.05] = 0.0
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=1)
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    if tie_every:
        scores = (scores * tie_every).floor() / tie_every
    labels = torch.randint(0, num_classes, (n,), generator=g)
    return boxes, scores, labels


def _iou_ref(a, b):
    return ref_xiou(a, b, "iou")


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_and_batched_nms_match_greedy_brute_force(threshold):
    boxes, scores, labels = nms_case(90, seed=int(threshold * 10), tie_every=8)
    b, s, lab = boxes.tolist(), scores.tolist(), labels.tolist()
    assert B.nms(boxes, scores, threshold).tolist() == ref_greedy_nms(
        b, s, [0] * len(s), threshold, _iou_ref
    )
    assert B.batched_nms(boxes, scores, labels, threshold).tolist() == ref_greedy_nms(
        b, s, lab, threshold, _iou_ref
    )
    assert torch.equal(
        B.batched_nms(boxes, scores, labels, threshold).sort().values,
        tvops.batched_nms(boxes, scores, labels, threshold).sort().values,
    )


def test_batched_nms_above_torchvision_loop_size_keeps_index_order_for_ties():
    # torchvision loops over classes above 1000 boxes on CPU and sorts the result unstably.
    boxes, scores, labels = nms_case(1100, seed=7, num_classes=4, tie_every=4)
    iou = B.box_iou(boxes, boxes).tolist()
    expected = ref_greedy_nms(
        list(range(len(boxes))), scores.tolist(), labels.tolist(), 0.5, lambda i, j: iou[i][j]
    )
    assert B.batched_nms(boxes, scores, labels, 0.5).tolist() == expected


def test_batched_nms_never_suppresses_across_classes_with_negative_coordinates():
    boxes = torch.tensor([[-100.0, -100.0, 10.0, 10.0], [-95.0, -95.0, 12.0, 12.0]])
    scores, labels = torch.tensor([0.9, 0.8]), torch.tensor([0, 1])
    # torchvision's own class offset is too small here.
    assert tvops.batched_nms(boxes, scores, labels, 0.5).tolist() == [0]
    assert B.batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 1]


def test_nms_equal_scores_keep_index_order_and_half_precision_works():
    boxes, _, labels = nms_case(40, seed=8)
    scores = torch.full((40,), 0.5, dtype=torch.float64)
    b = boxes.tolist()
    expected = ref_greedy_nms(b, scores.tolist(), [0] * 40, 0.5, _iou_ref)
    assert B.nms(boxes, scores, 0.5).tolist() == expected == sorted(expected)
    assert B.diou_nms(boxes, scores, None, 0.5).tolist() == ref_greedy_nms(
        b, scores.tolist(), [0] * 40, 0.5, lambda x, y: ref_xiou(x, y, "diou")
    )
    for method in ["linear", "gaussian"]:
        keep, _ = B.soft_nms(boxes, scores, method=method)
        ref = ref_soft_nms(b, scores.tolist(), [0] * 40, 0.3, 0.5, method, 0.001)
        assert keep.tolist() == ref[0]
    # Class offsets of 1000 classes overflow float16; the CPU kernel has no float16 at all.
    half = B.batched_nms(boxes.half(), scores.half(), labels * 1000, 0.5)
    assert half.tolist() == B.batched_nms(boxes.half().float(), scores, labels, 0.5).tolist()


@pytest.mark.parametrize("fn", ["nms", "batched_nms", "soft_nms", "diou_nms"])
def test_nms_empty_inputs(fn):
    boxes, scores, labels = torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    if fn == "nms":
        out = B.nms(boxes, scores, 0.5)
    elif fn == "batched_nms":
        out = B.batched_nms(boxes, scores, labels, 0.5)
    elif fn == "diou_nms":
        out = B.diou_nms(boxes, scores, labels, 0.5)
    else:
        out, new_scores = B.soft_nms(boxes, scores, labels)
        assert new_scores.shape == (0,) and new_scores.dtype == torch.float32
    assert out.shape == (0,) and out.dtype == torch.int64


@pytest.fixture(params=["compiled", "numpy"])
def soft_nms_loop(request, monkeypatch):
    """Runs a soft-NMS test with the compiled kernel (``_soft_nms.c``) and with the NumPy loop."""
    if request.param == "numpy":
        monkeypatch.setattr(non_max_suppression, "_soft_nms_kernel", None)
    elif non_max_suppression._soft_nms_kernel is None:
        pytest.skip("the compiled soft-NMS kernel is not built (test_soft_nms_kernel_is_built)")
    return request.param


def test_soft_nms_kernel_is_built():
    # setup.py builds it optionally: an install without a compiler falls back to NumPy, and
    # this suite's install must not do so unnoticed.
    assert non_max_suppression._soft_nms_kernel is not None, "pip install -e . did not build it"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_soft_nms_kernel_gives_the_numpy_loops_bits(dtype):
    # Degenerate boxes, equal scores, classes, both methods and thresholds: same indices, same
    # scores to the last bit (the kernel computes with the same float operations in order).
    if non_max_suppression._soft_nms_kernel is None:
        pytest.skip("the compiled soft-NMS kernel is not built")
    for seed in range(12):
        boxes, scores, labels = nms_case_with_duplicates(150, seed=200 + seed)
        boxes[::17, 2:] = boxes[::17, :2]  # points
        boxes, scores = boxes.to(dtype).numpy(), scores.to(dtype).numpy()
        for method, score_threshold in itertools.product(["linear", "gaussian"], [0.0, 0.05]):
            args = (method, 0.3 + seed / 40, 0.2 + seed / 10, score_threshold)
            for labels_or_none in [None, labels.numpy()]:
                compiled = non_max_suppression._soft_nms_compiled(
                    boxes, scores, labels_or_none, *args
                )
                with np.errstate(all="ignore"):  # as soft_nms runs it
                    loop = non_max_suppression._SoftNMS(boxes, scores, labels_or_none, *args)
                    keep, kept = loop.run()
                assert compiled[0].tolist() == keep
                assert compiled[1].tobytes() == np.asarray(kept, dtype=boxes.dtype).tobytes()


def test_soft_nms_kernel_checks_its_buffers():
    kernel = non_max_suppression._soft_nms_kernel
    if kernel is None:
        pytest.skip("the compiled soft-NMS kernel is not built")
    boxes, scores = np.zeros((3, 4), np.float32), np.ones(3, np.float32)
    keep, kept = np.empty(3, np.int64), np.empty(3, np.float32)
    args = (False, True, 0.3, 0.5, 0.001, 1e-7)
    with pytest.raises(ValueError, match="boxes holds 36 bytes, expected 48"):
        kernel.soft_nms(boxes[:, :3].copy(), scores, None, *args, keep, kept)
    with pytest.raises(ValueError, match="scores holds 13 bytes, expected 12"):
        kernel.soft_nms(boxes, scores.tobytes() + b"\0", None, *args, keep, kept)
    with pytest.raises(ValueError, match="labels holds 12 bytes, expected 24"):
        kernel.soft_nms(boxes, scores, np.zeros(3, np.int32), *args, keep, kept)
    assert kernel.soft_nms(boxes, scores, np.zeros(3, np.int64), *args, keep, kept) == 3


def test_soft_nms_on_inputs_the_kernel_leaves_to_numpy(soft_nms_loop):
    # Inverted boxes and a negative score give IoUs outside [0, 1] and scores that decays can
    # raise: the NumPy loop takes them, one box at a time, with either backend.
    boxes, scores, _ = nms_case(40, seed=14)
    boxes[3] = boxes[3, [2, 3, 0, 1]]
    scores[5] = -0.25
    assert not non_max_suppression._kernel_takes(boxes.numpy(), scores.abs().numpy(), None)
    assert not non_max_suppression._kernel_takes(boxes.sort().values.numpy(), scores.numpy(), None)
    fixed = (boxes.sort().values.numpy(), scores.abs().numpy(), None)
    assert non_max_suppression._kernel_takes(*fixed) == (soft_nms_loop == "compiled")
    keep, new_scores = B.soft_nms(boxes, scores, method="linear", score_threshold=-1.0)
    ref_keep, ref_scores = ref_soft_nms(
        boxes.tolist(), scores.tolist(), [0] * 40, 0.3, 0.5, "linear", -1.0
    )
    assert keep.tolist() == ref_keep and len(keep) == 40
    _close(new_scores, ref_scores, atol=1e-9)


@pytest.mark.parametrize("method", ["linear", "gaussian"])
@pytest.mark.parametrize("class_aware", [False, True])
def test_soft_nms_matches_sequential_brute_force(method, class_aware, soft_nms_loop):
    boxes, scores, labels = nms_case(60, seed=9 + class_aware, tie_every=10)
    labels_or_none = labels if class_aware else None
    ref_labels = labels.tolist() if class_aware else [0] * len(scores)
    for threshold, sigma, score_threshold in [(0.3, 0.5, 0.001), (0.5, 0.2, 0.05)]:
        keep, new_scores = B.soft_nms(
            boxes, scores, labels_or_none, threshold, sigma, method, score_threshold
        )
        ref_keep, ref_scores = ref_soft_nms(
            boxes.tolist(), scores.tolist(), ref_labels, threshold, sigma, method, score_threshold
        )
        assert keep.tolist() == ref_keep
        _close(new_scores, ref_scores, atol=1e-9)
        assert (new_scores >= score_threshold).all() and (new_scores.diff() <= 0).all()


def test_soft_nms_validates_arguments():
    boxes, scores = torch.zeros(2, 4), torch.ones(2)
    with pytest.raises(ValueError, match="method must be 'linear' or 'gaussian', got 'hard'"):
        B.soft_nms(boxes, scores, method="hard")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma must be > 0"):
        B.soft_nms(boxes, scores, sigma=0.0)
    with pytest.raises(ValueError, match=r"scores must have shape \[2\] to match boxes, got \[3\]"):
        B.nms(boxes, torch.ones(3), 0.5)
    with pytest.raises(ValueError, match=r"labels must have shape \[2\]"):
        B.batched_nms(boxes, scores, torch.zeros(2, 1), 0.5)


@pytest.mark.parametrize("threshold", [0.2, 0.5])
def test_diou_nms_matches_greedy_brute_force(threshold):
    boxes, scores, labels = nms_case(80, seed=11, tie_every=16)
    b, s = boxes.tolist(), scores.tolist()

    def diou(x, y):
        return ref_xiou(x, y, "diou")

    assert B.diou_nms(boxes, scores, None, threshold).tolist() == ref_greedy_nms(
        b, s, [0] * len(s), threshold, diou
    )
    assert B.diou_nms(boxes, scores, labels, threshold).tolist() == ref_greedy_nms(
        b, s, labels.tolist(), threshold, diou
    )


def nms_case_with_duplicates(n: int, seed: int):
    """``nms_case`` with scores in steps of 1/8 (ties) and every fifth box a copy of the one
    before it, of its class, and every tenth with its score too."""
    boxes, scores, labels = nms_case(n, seed, tie_every=8)
    boxes[1::5], labels[1::5] = boxes[0::5][: len(boxes[1::5])], labels[0::5][: len(labels[1::5])]
    scores[1::10] = scores[0::10][: len(scores[1::10])]
    return boxes, scores, labels


@pytest.mark.parametrize("n", [0, 1, 2, 50, 300])
@pytest.mark.parametrize("class_aware", [False, True])
def test_soft_and_diou_nms_match_brute_force_with_duplicates_and_ties(
    n, class_aware, soft_nms_loop
):
    # The blocks of rows soft_nms and diou_nms compute at once span several blocks at 300.
    boxes, scores, labels = nms_case_with_duplicates(n, seed=100 + n)
    b, s = boxes.tolist(), scores.tolist()
    ref_labels = labels.tolist() if class_aware else [0] * n
    labels_or_none = labels if class_aware else None
    for threshold in [0.3, 0.5]:
        keep = B.diou_nms(boxes, scores, labels_or_none, threshold)
        expected = ref_greedy_nms(b, s, ref_labels, threshold, lambda x, y: ref_xiou(x, y, "diou"))
        assert keep.tolist() == expected
    for method in ["linear", "gaussian"]:
        keep, new_scores = B.soft_nms(boxes, scores, labels_or_none, 0.3, 0.5, method, 0.001)
        ref_keep, ref_scores = ref_soft_nms(b, s, ref_labels, 0.3, 0.5, method, 0.001)
        assert keep.tolist() == ref_keep
        _close(new_scores, ref_scores, atol=1e-9)


@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_soft_nms_with_more_equal_top_scores_than_a_block_keeps_index_order(method, soft_nms_loop):
    # 60 equal scores: the best box (the lowest index) must be among the rows computed first.
    boxes, _, _ = nms_case(60, seed=12)
    scores = torch.full((60,), 0.5, dtype=torch.float64)
    keep, new_scores = B.soft_nms(boxes, scores, method=method, score_threshold=0.0)
    ref_keep, ref_scores = ref_soft_nms(
        boxes.tolist(), scores.tolist(), [0] * 60, 0.3, 0.5, method, 0.0
    )
    assert keep.tolist() == ref_keep and len(ref_keep) == 60
    _close(new_scores, ref_scores, atol=1e-9)


def test_soft_and_diou_nms_leave_their_inputs_alone(soft_nms_loop):
    # float32 inputs are the working arrays' memory (Tensor.numpy shares it): no writes there.
    boxes, scores, labels = nms_case(30, seed=13)
    boxes, scores = boxes.float(), scores.float()
    before = boxes.clone(), scores.clone()
    keep, new_scores = B.soft_nms(boxes, scores, labels, method="linear")
    B.diou_nms(boxes, scores, labels)
    assert torch.equal(boxes, before[0]) and torch.equal(scores, before[1])
    assert new_scores.dtype == torch.float32 and (new_scores <= scores[keep]).all()
    assert new_scores[0] == scores.max()
