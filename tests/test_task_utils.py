"""Anchors, box coding, matching and sampling: golden values and brute-force references."""

from __future__ import annotations

import doctest
import itertools
import math

import pytest
import torch
from torch import nn

import cvkit
from cvkit.models.task_utils import (
    BACKGROUND,
    IGNORE,
    AnchorGenerator,
    DeltaBoxCoder,
    MaxIoUMatcher,
    RandomSampler,
    anchor_generator,
    box_coder,
    matcher,
    sampler,
)
from cvkit.registry import ANCHOR_GENERATORS, BOX_CODERS, MATCHERS, SAMPLERS

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# -- the package ---------------------------------------------------------------------------
@pytest.mark.parametrize("module", [anchor_generator, box_coder, matcher, sampler])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_registered_plain_classes_without_parameters():
    for registry, cls in [
        (ANCHOR_GENERATORS, AnchorGenerator),
        (BOX_CODERS, DeltaBoxCoder),
        (MATCHERS, MaxIoUMatcher),
        (SAMPLERS, RandomSampler),
    ]:
        assert registry.get(cls.__name__) is cls
        assert not issubclass(cls, nn.Module)


def test_built_from_config_dicts():
    gen = cvkit.build({"type": "AnchorGenerator", "sizes": [[32], [64, 80]], "strides": [8, 16]})
    assert gen.num_anchors_per_location() == [3, 6]
    assert cvkit.build({"type": "MaxIoUMatcher", "bg_iou_threshold": 0.3}).bg_iou_threshold == 0.3
    assert cvkit.build({"type": "RandomSampler", "num_samples": 256}).num_samples == 256


def test_box_coder_weights_from_config():
    coder = cvkit.build({"type": "DeltaBoxCoder", "weights": [10, 10, 5, 5]})
    assert coder.weights == (10.0, 10.0, 5.0, 5.0)


# -- AnchorGenerator -----------------------------------------------------------------------
# Size 16, ratios h/w = (0.5, 1, 2): half-widths 8*sqrt(2), 8, 8/sqrt(2) and the reverse for
# the half-heights. Centres (x, y) = (0, 0), (8, 0), (16, 0), (0, 8), (8, 8), (16, 8).
EXPECTED_2X3 = [
    [-11.3137085, -5.6568542, 11.3137085, 5.6568542],  # (y=0, x=0) ratio 0.5
    [-8.0, -8.0, 8.0, 8.0],  # (y=0, x=0) ratio 1
    [-5.6568542, -11.3137085, 5.6568542, 11.3137085],  # (y=0, x=0) ratio 2
    [-3.3137085, -5.6568542, 19.3137085, 5.6568542],  # (y=0, x=1)
    [0.0, -8.0, 16.0, 8.0],
    [2.3431458, -11.3137085, 13.6568542, 11.3137085],
    [4.6862915, -5.6568542, 27.3137085, 5.6568542],  # (y=0, x=2)
    [8.0, -8.0, 24.0, 8.0],
    [10.3431458, -11.3137085, 21.6568542, 11.3137085],
    [-11.3137085, 2.3431458, 11.3137085, 13.6568542],  # (y=1, x=0)
    [-8.0, 0.0, 8.0, 16.0],
    [-5.6568542, -3.3137085, 5.6568542, 19.3137085],
    [-3.3137085, 2.3431458, 19.3137085, 13.6568542],  # (y=1, x=1)
    [0.0, 0.0, 16.0, 16.0],
    [2.3431458, -3.3137085, 13.6568542, 19.3137085],
    [4.6862915, 2.3431458, 27.3137085, 13.6568542],  # (y=1, x=2)
    [8.0, 0.0, 24.0, 16.0],
    [10.3431458, -3.3137085, 21.6568542, 19.3137085],
]


def test_anchors_golden_2x3_grid():
    gen = AnchorGenerator(sizes=((16,),), aspect_ratios=(0.5, 1.0, 2.0))
    (anchors,) = gen([(2, 3)], [8], "cpu", torch.float64)
    torch.testing.assert_close(anchors, torch.tensor(EXPECTED_2X3, dtype=torch.float64))
    ratio = (anchors[:, 3] - anchors[:, 1]) / (anchors[:, 2] - anchors[:, 0])
    torch.testing.assert_close(ratio[:3], torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64))


def test_offset_moves_centres_by_half_a_stride():
    gen = AnchorGenerator(sizes=((16,),), offset=0.5)
    (anchors,) = gen([(2, 3)], [8], "cpu", torch.float64)
    expected = torch.tensor(EXPECTED_2X3, dtype=torch.float64) + 4.0
    torch.testing.assert_close(anchors, expected)


def test_sizes_then_scales_then_ratios_order():
    gen = AnchorGenerator(sizes=((10, 20),), aspect_ratios=(1.0, 4.0), scales=(1.0, 2.0))
    (anchors,) = gen([(1, 1)], [4], "cpu", torch.float64)
    wh = torch.stack([anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]], dim=1)
    expected = [[10, 10], [5, 20], [20, 20], [10, 40], [20, 20], [10, 40], [40, 40], [20, 80]]
    torch.testing.assert_close(wh, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(anchors[:, :2], -anchors[:, 2:])  # centred on (0, 0)


def test_order_matches_a_brute_force_loop():
    sizes, scales, ratios = ((12, 20), (40,)), (1.0, 2 ** (1 / 3)), (0.5, 1.0, 3.0)
    gen = AnchorGenerator(sizes=sizes, aspect_ratios=ratios, scales=scales, offset=0.5)
    feature_sizes, strides = [(3, 4), (2, 1)], [8, 16]
    got = gen(feature_sizes, strides, "cpu", torch.float64)
    for level, ((h, w), stride) in enumerate(zip(feature_sizes, strides)):
        rows = []
        for y, x, s, c, r in itertools.product(range(h), range(w), sizes[level], scales, ratios):
            cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
            half_w, half_h = s * c / math.sqrt(r) / 2, s * c * math.sqrt(r) / 2
            rows.append([cx - half_w, cy - half_h, cx + half_w, cy + half_h])
        torch.testing.assert_close(got[level], torch.tensor(rows, dtype=torch.float64))


def test_retinanet_counts_per_level():
    gen = AnchorGenerator(
        sizes=((32,), (64,), (128,), (256,), (512,)), scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3))
    )
    assert gen.num_anchors_per_location() == [9] * 5
    feature_sizes = [(64, 48), (32, 24), (16, 12), (8, 6), (4, 3)]
    anchors = gen(feature_sizes, [8, 16, 32, 64, 128], "cpu")
    assert [a.shape for a in anchors] == [(h * w * 9, 4) for h, w in feature_sizes]
    areas = [(a[:9, 2] - a[:9, 0]) * (a[:9, 3] - a[:9, 1]) for a in anchors]
    expected = torch.tensor([(32 * c) ** 2 for c in (1, 2 ** (1 / 3), 2 ** (2 / 3))])
    torch.testing.assert_close(areas[0], expected.repeat_interleave(3))


@pytest.mark.parametrize("device", [*DEVICES, "meta"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_anchors_follow_device_and_dtype(device, dtype):
    gen = AnchorGenerator(sizes=((32,), (64,)))
    anchors = gen([(4, 5), (2, 3)], [8, 16], torch.device(device), dtype)
    for a in anchors:
        assert a.device.type == device and a.dtype == dtype
    if device != "meta":  # and the values do not depend on either
        cpu = gen([(4, 5), (2, 3)], [8, 16], "cpu", torch.float64)
        torch.testing.assert_close(anchors[1].cpu().double(), cpu[1], atol=0.05, rtol=1e-3)


def test_strides_from_the_constructor():
    gen = AnchorGenerator(sizes=((16,), (32,)), strides=(8, 16))
    by_call = AnchorGenerator(sizes=((16,), (32,)))([(2, 2), (1, 1)], [8, 16], "cpu")
    for a, b in zip(gen([(2, 2), (1, 1)], None, "cpu"), by_call):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"strides \[8, 32\] differ from the configured"):
        gen([(2, 2), (1, 1)], [8, 32], "cpu")
    with pytest.raises(ValueError, match="no strides"):
        AnchorGenerator(sizes=((16,),))([(2, 2)], None, "cpu")


def test_level_count_mismatch_names_both_counts():
    gen = AnchorGenerator()  # five levels
    with pytest.raises(ValueError, match="sizes has 5 pyramid levels but feature_sizes has 3"):
        gen([(8, 8), (4, 4), (2, 2)], [8, 16, 32], "cpu")
    with pytest.raises(ValueError, match="sizes has 5 pyramid levels but strides has 4"):
        gen([(8, 8)] * 5, [8, 16, 32, 64], "cpu")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sizes": ((16,), ())}, "every level of sizes needs a size"),
        ({"sizes": ((16,), (-2,))}, "sizes must be non-empty and positive"),
        ({"aspect_ratios": ()}, "aspect_ratios must be non-empty and positive"),
        ({"scales": (1.0, 0.0)}, "scales must be non-empty and positive"),
        ({"strides": (8, 16)}, "sizes has 5 pyramid levels but strides has 2"),
        ({"offset": 1.0}, r"offset must be in \[0, 1\)"),
    ],
)
def test_anchor_generator_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AnchorGenerator(**kwargs)


# -- DeltaBoxCoder -------------------------------------------------------------------------
def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 500
    wh = 1 + torch.rand(n, 2, generator=generator, dtype=torch.float64) * 49
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("weights", [(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)])
def test_encode_decode_round_trip(weights):
    g = torch.Generator().manual_seed(0)
    boxes, anchors = random_boxes(1000, g), random_boxes(1000, g)
    coder = DeltaBoxCoder(weights=weights)
    deltas = coder.encode(boxes, anchors)
    assert deltas.shape == (1000, 4) and deltas.dtype == torch.float64
    torch.testing.assert_close(coder.decode(deltas, anchors), boxes, atol=1e-6, rtol=0)


def test_encode_golden_values():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0]], dtype=torch.float64)  # centre (5, 10)
    boxes = torch.tensor([[2.0, 4.0, 22.0, 24.0]], dtype=torch.float64)  # centre (12, 14)
    plain = DeltaBoxCoder().encode(boxes, anchors)
    torch.testing.assert_close(plain, torch.tensor([[0.7, 0.2, math.log(2), 0.0]]).double())
    rcnn = DeltaBoxCoder(weights=(10, 10, 5, 5)).encode(boxes, anchors)
    torch.testing.assert_close(rcnn, torch.tensor([[7.0, 2.0, 5 * math.log(2), 0.0]]).double())


def test_decode_several_boxes_per_anchor():
    g = torch.Generator().manual_seed(1)
    anchors = random_boxes(50, g)
    deltas = torch.randn(50, 3 * 4, generator=g, dtype=torch.float64)
    coder = DeltaBoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    boxes = coder.decode(deltas, anchors)
    assert boxes.shape == (50, 12)
    for k in range(3):
        single = coder.decode(deltas[:, 4 * k : 4 * k + 4], anchors)
        torch.testing.assert_close(boxes[:, 4 * k : 4 * k + 4], single)


def test_clamp_keeps_huge_deltas_finite():
    coder = DeltaBoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    anchors = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    boxes = coder.decode(torch.tensor([[0.0, 0.0, 1e4, 1e30]]), anchors)
    assert torch.isfinite(boxes).all()
    width, height = boxes[0, 2] - boxes[0, 0], boxes[0, 3] - boxes[0, 1]
    torch.testing.assert_close(width, torch.tensor(1000.0))  # 16 * exp(log(1000 / 16))
    torch.testing.assert_close(height, torch.tensor(1000.0))
    half = coder.decode(torch.tensor([[0.0, 0.0, 30.0, 30.0]], dtype=torch.float16), anchors)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()


def test_empty_inputs():
    coder = DeltaBoxCoder()
    empty = torch.zeros(0, 4)
    assert coder.encode(empty, empty).shape == (0, 4)
    assert coder.decode(empty, empty).shape == (0, 4)
    assert coder.decode(torch.zeros(0, 8), empty).shape == (0, 8)


def test_box_coder_rejects_bad_input():
    coder = DeltaBoxCoder()
    with pytest.raises(ValueError, match="must pair up row by row"):
        coder.encode(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"deltas must be \[N, k\*4\] with N = 2"):
        coder.decode(torch.zeros(2, 6), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"anchors must be \[N, 4\]"):
        coder.decode(torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="weights must be 4 positive numbers"):
        DeltaBoxCoder(weights=(1.0, 1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="clamp must be positive"):
        DeltaBoxCoder(clamp=float("nan"))


# -- MaxIoUMatcher -------------------------------------------------------------------------
def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bands_at_the_thresholds(dtype):
    # >= fg: positive; bg <= iou < fg: ignore; < bg: background.
    iou = torch.tensor([[0.5, 0.49999, 0.4, 0.39999, 0.0]], dtype=dtype)
    m = MaxIoUMatcher(0.5, 0.4, allow_low_quality_matches=False)
    assert m(iou).tolist() == [0, IGNORE, IGNORE, BACKGROUND, BACKGROUND]
    assert m(iou).dtype == torch.int64


def test_equal_thresholds_leave_no_ignore_band():
    m = MaxIoUMatcher(0.5, 0.5, allow_low_quality_matches=False)
    assert m(t([[0.5, 0.49, 0.1]])).tolist() == [0, BACKGROUND, BACKGROUND]


def test_each_anchor_takes_its_best_gt_lowest_index_on_ties():
    m = MaxIoUMatcher(0.5, 0.4, allow_low_quality_matches=False)
    iou = t([[0.6, 0.7, 0.8], [0.9, 0.7, 0.1]])
    assert m(iou).tolist() == [1, 0, 0]


def test_low_quality_matches_include_ties():
    iou = t([[0.9, 0.1, 0.0, 0.0], [0.0, 0.3, 0.2, 0.3]])
    assert MaxIoUMatcher(0.5, 0.4, False)(iou).tolist() == [0, -1, -1, -1]
    assert MaxIoUMatcher(0.5, 0.4, True)(iou).tolist() == [0, 1, -1, 1]


def test_low_quality_anchor_goes_to_the_claimant_it_overlaps_most():
    # Anchor 1 is the best anchor of gt 0 (0.3) and of gt 1 (0.35): it goes to gt 1.
    assert MaxIoUMatcher()(t([[0.0, 0.3], [0.0, 0.35]])).tolist() == [-1, 1]
    # Anchor 1 is positive for gt 0 (0.6) but is gt 1's only best anchor: gt 1 claims it.
    iou = t([[0.9, 0.6, 0.0], [0.0, 0.55, 0.1]])
    assert MaxIoUMatcher(0.5, 0.4, False)(iou).tolist() == [0, 0, -1]
    assert MaxIoUMatcher(0.5, 0.4, True)(iou).tolist() == [0, 1, -1]


def test_gt_overlapping_no_anchor_claims_none():
    iou = t([[0.9, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert MaxIoUMatcher()(iou).tolist() == [0, -1, -1]


def test_no_gts_or_no_anchors():
    m = MaxIoUMatcher()
    matched = m(torch.zeros(0, 7))
    assert matched.tolist() == [BACKGROUND] * 7 and matched.dtype == torch.int64
    assert m(torch.zeros(0, 7), torch.zeros(0, dtype=torch.bool)).tolist() == [-1] * 7
    assert m(torch.zeros(3, 0)).shape == (0,)


def test_crowd_gts_make_ignored_anchors_never_positives():
    crowd = torch.tensor([False, True])
    iou = t(
        [
            [0.0, 0.0, 0.0, 0.6, 0.2],  # gt 0, ordinary
            [0.9, 0.4, 0.39, 0.8, 0.0],  # gt 1, crowd
        ]
    )
    # anchor 0: crowd 0.9 -> ignore; 1: crowd at bg threshold -> ignore; 2: below -> background;
    # 3: positive for gt 0 wins over the crowd; 4: gt 0's low-quality match would be anchor 3.
    assert MaxIoUMatcher()(iou, crowd).tolist() == [IGNORE, IGNORE, BACKGROUND, 0, BACKGROUND]
    only_crowd = MaxIoUMatcher()(iou[1:], torch.tensor([True]))
    assert only_crowd.tolist() == [IGNORE, IGNORE, BACKGROUND, IGNORE, BACKGROUND]


def reference_match(iou, crowd, num_anchors, fg, bg, low_quality):
    """The documented rules, one anchor and one gt at a time, on nested lists."""
    num_gt = len(iou)
    real = [g for g in range(num_gt) if not crowd[g]]
    out = []
    for a in range(num_anchors):
        best, best_gt = -1.0, -1
        for g in real:
            if iou[g][a] > best:
                best, best_gt = iou[g][a], g
        out.append(best_gt if best >= fg else IGNORE if best >= bg else BACKGROUND)
    if low_quality:
        gt_best = [max(row) for row in iou]
        for a in range(num_anchors):
            claimants = [g for g in real if 0 < iou[g][a] == gt_best[g]]
            if claimants:
                out[a] = max(claimants, key=lambda g: (iou[g][a], -g))
    for a in range(num_anchors):
        if out[a] < 0 and any(crowd[g] and iou[g][a] >= bg for g in range(num_gt)):
            out[a] = IGNORE
    return out


def test_matcher_matches_brute_force_reference():
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        num_gt = int(torch.randint(0, 5, (), generator=g))
        num_anchors = int(torch.randint(1, 25, (), generator=g))
        # Multiples of 0.05 hit the thresholds exactly and make ties common; float64 so that
        # 0.4 and 0.5 compare exactly like the Python floats of the reference.
        iou = torch.randint(0, 21, (num_gt, num_anchors), generator=g).double() * 0.05
        iou = iou.round(decimals=2)
        crowd = torch.rand(num_gt, generator=g) < 0.25
        fg, bg = [(0.5, 0.4), (0.5, 0.5), (0.7, 0.3)][trial % 3]
        low_quality = trial % 2 == 0
        got = MaxIoUMatcher(fg, bg, low_quality)(iou, crowd).tolist()
        assert got == reference_match(
            iou.tolist(), crowd.tolist(), num_anchors, fg, bg, low_quality
        ), trial


@pytest.mark.parametrize("device", DEVICES)
def test_matcher_output_on_the_input_device(device):
    iou = t([[0.9, 0.1], [0.2, 0.45]]).to(device)
    matched = MaxIoUMatcher()(iou, torch.tensor([False, True], device=device))
    assert matched.device.type == device and matched.tolist() == [0, IGNORE]


def test_matcher_rejects_bad_input():
    with pytest.raises(ValueError, match="need 0 <= bg_iou_threshold <= fg_iou_threshold"):
        MaxIoUMatcher(fg_iou_threshold=0.4, bg_iou_threshold=0.5)
    with pytest.raises(ValueError, match=r"iou must be a float \[G, A\] matrix"):
        MaxIoUMatcher()(torch.zeros(3))
    with pytest.raises(ValueError, match=r"ignore_mask must be a bool \[G\] with G = 2"):
        MaxIoUMatcher()(torch.zeros(2, 3), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="ignore_mask must be a bool"):
        MaxIoUMatcher()(torch.zeros(2, 3), torch.zeros(2))


# -- RandomSampler -------------------------------------------------------------------------
def make_matched(num_pos: int, num_neg: int, num_ignore: int, seed: int = 0) -> torch.Tensor:
    values = torch.cat(
        [torch.arange(num_pos) % 7, torch.full((num_neg,), -1), torch.full((num_ignore,), -2)]
    )
    return values[torch.randperm(len(values), generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((100, 1000, 50), (16, 48)),  # both plentiful: the fraction holds
        ((5, 1000, 50), (5, 59)),  # few positives: negatives fill up
        ((100, 10, 50), (16, 10)),  # few negatives: the sample is short
        ((0, 0, 50), (0, 0)),  # only ignored anchors
    ],
)
def test_sampler_counts(counts, expected):
    matched = make_matched(*counts)
    pos, neg = RandomSampler(num_samples=64, positive_fraction=0.25)(matched)
    assert (len(pos), len(neg)) == expected
    assert (matched[pos] >= 0).all() and (matched[neg] == -1).all()  # never an ignored one
    assert len(set(pos.tolist())) == len(pos) and len(set(neg.tolist())) == len(neg)
    assert pos.dtype == neg.dtype == torch.int64


def test_sampler_fractions():
    matched = make_matched(300, 300, 10)
    assert [len(i) for i in RandomSampler(100, 0.0)(matched)] == [0, 100]
    assert [len(i) for i in RandomSampler(100, 1.0)(matched)] == [100, 0]
    assert [len(i) for i in RandomSampler(100, 0.29)(matched)] == [29, 71]  # no float floor


def test_sampler_is_deterministic_with_a_generator():
    matched = make_matched(200, 2000, 100)
    s = RandomSampler(num_samples=128)
    first = s(matched, generator=torch.Generator().manual_seed(3))
    again = s(matched, generator=torch.Generator().manual_seed(3))
    other = s(matched, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[1], other[1])
    assert torch.equal(first[1], first[1].sort().values)


@pytest.mark.parametrize("device", DEVICES)
def test_sampler_on_the_input_device(device):
    matched = make_matched(20, 20, 20).to(device)
    pos, neg = RandomSampler(16, 0.5)(matched, torch.Generator(device).manual_seed(0))
    assert pos.device.type == neg.device.type == device
    assert (len(pos), len(neg)) == (8, 8)


def test_sampler_rejects_bad_input():
    with pytest.raises(ValueError, match="num_samples must be positive"):
        RandomSampler(num_samples=0)
    with pytest.raises(ValueError, match=r"positive_fraction must be in \[0, 1\]"):
        RandomSampler(positive_fraction=1.5)
    with pytest.raises(ValueError, match="matched must be an int64"):
        RandomSampler()(torch.zeros(5, dtype=torch.int32))
