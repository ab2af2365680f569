"""Anchors: boxes of a few sizes and shapes centred on every cell of every pyramid level.

Anchor order (heads must emit their outputs in the same order). Level ``l`` gives a
``Tensor[H_l * W_l * A_l, 4]`` whose row ``i`` is

    i = (y * W_l + x) * A_l + a        a = (i_size * len(scales) + i_scale) * len(ratios) + i_ratio

that is, location-major in row-major ``(y, x)`` order, then the ``A_l`` anchors of that
location: sizes slowest, then scales, then aspect ratios fastest. A head whose convolution
gives ``Tensor[B, A * 4, H, W]`` (channel ``a * 4 + j`` = coordinate ``j`` of anchor ``a``)
matches this order after ``.view(B, A, 4, H, W).permute(0, 3, 4, 1, 2).reshape(B, -1, 4)``;
class logits ``Tensor[B, A * K, H, W]`` likewise with ``K`` in place of 4. ``flatten_level``
does that reshape; every anchor-based head (RetinaNet's, the RPN) flattens its outputs with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cvkit.registry import ANCHOR_GENERATORS


@ANCHOR_GENERATORS.register()
class AnchorGenerator:
    """Anchors for a feature pyramid, ``xyxy`` in absolute input pixels.

    Anchor ``(size s, scale c, ratio r)`` has area ``(s * c)**2`` and aspect ratio
    ``r = height / width``: width ``s * c / sqrt(r)``, height ``s * c * sqrt(r)``. Base anchors
    are not rounded to whole pixels (torchvision rounds; Detectron2 does not).

    Args:
        sizes: one list of anchor sizes (square-root of the area, in pixels) per pyramid level.
        aspect_ratios: ``height / width`` of the anchors, the same on every level.
        scales: multipliers of every size, e.g. ``(1.0, 2 ** (1 / 3), 2 ** (2 / 3))`` for
            RetinaNet. A level has ``A = len(sizes[l]) * len(scales) * len(aspect_ratios)``
            anchors per location.
        strides: the stride of each level in pixels, when the config fixes them; otherwise
            they are passed on each call (from the backbone's or neck's ``feature_info``).
        offset: where in its cell an anchor is centred, in cells: the centre of cell ``(y, x)``
            is ``((x + offset) * stride, (y + offset) * stride)``. 0.0 like torchvision and
            Detectron2, 0.5 for the true cell centre (an MMDetection option).

    Example:
        >>> gen = AnchorGenerator(sizes=((16,),), aspect_ratios=(1.0,))
        >>> gen.num_anchors_per_location()
        [1]
        >>> gen([(1, 2)], strides=[8], device="cpu")[0]
        tensor([[-8., -8.,  8.,  8.],
                [ 0., -8., 16.,  8.]])
    """

    def __init__(
        self,
        sizes: Sequence[Sequence[float]] = ((32,), (64,), (128,), (256,), (512,)),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        scales: Sequence[float] = (1.0,),
        strides: Sequence[int] | None = None,
        offset: float = 0.0,
    ) -> None:
        _check_positive_list("sizes", [v for level in sizes for v in level], sizes)
        if any(len(level) == 0 for level in sizes):
            raise ValueError(f"AnchorGenerator: every level of sizes needs a size, got {sizes}")
        _check_positive_list("aspect_ratios", aspect_ratios, aspect_ratios)
        _check_positive_list("scales", scales, scales)
        if strides is not None:
            _check_positive_list("strides", strides, strides)
            _check_count("strides", len(strides), "sizes", len(sizes))
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"AnchorGenerator: offset must be in [0, 1) cells, got {offset}")
        self.sizes = [tuple(float(s) for s in level) for level in sizes]
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.scales = tuple(float(c) for c in scales)
        self.strides = None if strides is None else tuple(int(s) for s in strides)
        self.offset = float(offset)
        # Zero-centred anchors per level, computed once in float64; copies per device/dtype.
        self._base = [self._base_anchors(level) for level in self.sizes]
        self._cache: dict[tuple[str, torch.dtype], list[torch.Tensor]] = {}

    @property
    def num_levels(self) -> int:
        return len(self.sizes)

    def num_anchors_per_location(self) -> list[int]:
        """``A_l`` for each level: ``len(sizes[l]) * len(scales) * len(aspect_ratios)``."""
        return [len(level) * len(self.scales) * len(self.aspect_ratios) for level in self.sizes]

    def __call__(
        self,
        feature_sizes: Sequence[tuple[int, int]],
        strides: Sequence[int] | None,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
    ) -> list[torch.Tensor]:
        """Anchors for every level.

        Args:
            feature_sizes: ``(H_l, W_l)`` of each level's feature map.
            strides: each level's stride in pixels; ``None`` uses the strides given at
                construction.
            device: where to make the anchors; pass the features' device.
            dtype: floating dtype of the anchors.

        Returns:
            One ``Tensor[H_l * W_l * A_l, 4]`` per level, ``xyxy``, in the order of the module
            docstring.
        """
        strides = self._resolve_strides(feature_sizes, strides)
        base = self._base_on(torch.device(device), dtype)
        return [
            self._grid_anchors(size, stride, level_base, dtype)
            for size, stride, level_base in zip(feature_sizes, strides, base)
        ]

    def _base_anchors(self, sizes: tuple[float, ...]) -> torch.Tensor:
        """``Tensor[A, 4]`` zero-centred anchors of one level, in the documented order."""
        f64 = torch.float64  # exact here; cast to the caller's dtype once, on use
        side = torch.tensor(sizes, dtype=f64)[:, None] * torch.tensor(self.scales, dtype=f64)
        side = side.reshape(-1, 1)  # (size, scale) pairs, scales fastest
        sqrt_ratio = torch.tensor(self.aspect_ratios, dtype=f64).sqrt()[None, :]
        half_w = (side / sqrt_ratio / 2).reshape(-1)  # ratios fastest
        half_h = (side * sqrt_ratio / 2).reshape(-1)
        return torch.stack([-half_w, -half_h, half_w, half_h], dim=1)

    def _base_on(self, device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
        key = (str(device), dtype)
        if torch.compiler.is_compiling():  # tracing for export: keep no traced tensor
            return [b.to(device=device, dtype=dtype) for b in self._base]
        if key not in self._cache:
            self._cache[key] = [b.to(device=device, dtype=dtype) for b in self._base]
        return self._cache[key]

    def _grid_anchors(
        self, size: tuple[int, int], stride: int, base: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        height, width = size
        # Centres in at least float32: half precision cannot count past 2048 pixels exactly.
        work = torch.promote_types(dtype, torch.float32)
        xs = (torch.arange(width, device=base.device, dtype=work) + self.offset) * stride
        ys = (torch.arange(height, device=base.device, dtype=work) + self.offset) * stride
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")  # row-major: x varies fastest
        centres = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)
        return (centres + base.to(work)[None]).reshape(-1, 4).to(dtype)

    def _resolve_strides(
        self, feature_sizes: Sequence[tuple[int, int]], strides: Sequence[int] | None
    ) -> Sequence[int]:
        _check_count("feature_sizes", len(feature_sizes), "sizes", self.num_levels)
        if strides is None:
            if self.strides is None:
                raise ValueError(
                    "AnchorGenerator: no strides; pass strides=... to the call or to the "
                    "constructor (one stride per level)"
                )
            return self.strides
        _check_count("strides", len(strides), "sizes", self.num_levels)
        if self.strides is not None and tuple(strides) != self.strides:
            raise ValueError(
                f"AnchorGenerator: strides {list(strides)} differ from the configured "
                f"strides {list(self.strides)}"
            )
        return strides


def anchor_strides(
    in_strides: Sequence[int] | None, anchor_generator: object | None = None
) -> list[int]:
    """The stride of each pyramid level the anchors are laid on, read from one place.

    That is ``in_strides`` (a head's, which the builder wires from the neck's
    ``feature_info``) when given; else the strides ``anchor_generator`` (an
    ``AnchorGenerator``) was built with.

    Raises:
        ValueError: neither gives strides.

    Example:
        >>> anchor_strides([8, 16]), anchor_strides(None, AnchorGenerator(((32,),), strides=[8]))
        ([8, 16], [8])
    """
    strides = in_strides
    if not strides and isinstance(anchor_generator, AnchorGenerator):
        strides = anchor_generator.strides
    if not strides:
        raise ValueError(
            "no strides for the anchors: the head has no in_strides and the anchor generator "
            "fixes none; build the model from a config (the builder wires the neck's strides "
            "into the head's in_strides), or give the head in_strides=[...] or the anchor "
            "generator strides=[...]"
        )
    return [int(s) for s in strides]


def flatten_level(x: torch.Tensor, per_anchor: int) -> torch.Tensor:
    """``[B, A*C, H, W]`` -> ``[B, H*W*A, C]``: location-major (y, then x), then anchor.

    This is the anchor generator's order, so row ``i`` of a level's output belongs to
    anchor ``i`` of that level.

    Args:
        x: one level's conv output ``Tensor[B, A * C, H, W]``, channel ``a * C + c`` holding
            value ``c`` of anchor ``a``.
        per_anchor: ``C``, the values per anchor (classes, 4 box deltas, 1 objectness).

    Example:
        >>> x = torch.arange(8.0).view(1, 4, 1, 2)  # A = 2 anchors x C = 2, on 1 x 2 cells
        >>> flatten_level(x, 2)[0]  # rows: (x=0, a=0), (x=0, a=1), (x=1, a=0), (x=1, a=1)
        tensor([[0., 2.],
                [4., 6.],
                [1., 3.],
                [5., 7.]])
    """
    b, _, h, w = x.shape
    return x.view(b, -1, per_anchor, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, per_anchor)


def _check_count(name: str, count: int, ref_name: str, ref_count: int) -> None:
    if count != ref_count:
        raise ValueError(
            f"AnchorGenerator: {ref_name} has {ref_count} pyramid levels but {name} has "
            f"{count}; give one entry per level"
        )


def _check_positive_list(name: str, values: Sequence[float], given: object) -> None:
    if len(values) == 0 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"AnchorGenerator: {name} must be non-empty and positive, got {given}")
