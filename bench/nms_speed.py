"""NMS speed on CPU: cvkit's soft-NMS, DIoU-NMS and NMS against torchvision's hard NMS.

Times, on ``--boxes`` seeded COCO-like boxes (float32 xyxy in a 640x480 image, gathered round
``--clusters`` objects as a detector proposes them before NMS, so that suppression happens;
scores uniform in [0, 1)),

- ``torchvision.ops.nms`` (IoU 0.5), the yardstick;
- ``cvkit.ops.nms`` (IoU 0.5), which calls it and orders ties by index;
- ``cvkit.ops.soft_nms``, linear and gaussian, at its defaults (IoU 0.3, sigma 0.5, score
  threshold 0.001): its compiled loop, and its NumPy loop (what runs where the install found
  no C compiler);
- ``cvkit.ops.diou_nms`` (DIoU 0.5);

each ``--repeats`` times in a row after two warm-up calls, on ``--threads`` torch threads, and
prints the median of each and its ratio to torchvision's. Every output is checked first:
cvkit's ``nms`` keeps torchvision's boxes, and soft- and DIoU-NMS equal references written from
the papers over the full pairwise matrix of cvkit's IoU (or DIoU), in the same float32; a
mismatch exits with status 1.

    python bench/nms_speed.py [--boxes 1000] [--repeats 50] [--clusters 5] [--threads 2]
        [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torchvision
import torchvision.ops as tvops
from torch import Tensor

import cvkit.ops as ops
from cvkit.ops import non_max_suppression

GOAL = 10.0  # soft-NMS and DIoU-NMS at most this many times torchvision's hard NMS


def coco_like_boxes(n: int, clusters: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` float32 xyxy boxes and scores: each box belongs to one of ``clusters`` objects
    (sides 40-200 px) and is its box jittered by 15% of its size in position and +-30% in
    size, clipped to a 640x480 image."""
    g = torch.Generator().manual_seed(seed)
    image = torch.tensor([640.0, 480.0])
    centres = image * (0.1 + 0.8 * torch.rand(clusters, 2, generator=g))
    sides = 40 + 160 * torch.rand(clusters, 2, generator=g)
    which = torch.randint(0, clusters, (n,), generator=g)
    wh = sides[which] * (0.7 + 0.6 * torch.rand(n, 2, generator=g))
    xy = centres[which] + 0.15 * sides[which] * torch.randn(n, 2, generator=g)
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=1)
    boxes = torch.minimum(boxes.clamp(min=0), image.repeat(2))
    return boxes, torch.rand(n, generator=g)


# -- references: the papers' loops over the full pairwise matrix ---------------------------


def reference_soft_nms(boxes: Tensor, scores: Tensor, method: str) -> tuple[list[int], Tensor]:
    """Bodla et al. 2017, Algorithm 1, at soft_nms's defaults: select the best score, decay
    every other score by the selected box's IoU, stop below the score threshold."""
    iou = ops.box_iou_aligned(boxes[:, None], boxes[None])  # [N, N], cvkit's IoU formula
    if method == "linear":
        decay = torch.where(iou > 0.3, 1 - iou, 1.0)
    else:
        decay = torch.exp(-(iou**2) / 0.5)
    current, left = scores.clone(), torch.ones(len(scores), dtype=torch.bool)
    keep: list[int] = []
    kept: list[float] = []
    while left.any():
        best = int(current.masked_fill(~left, -math.inf).argmax())  # the first of equal scores
        if current[best] < 0.001:
            break
        keep.append(best)
        kept.append(float(current[best]))
        left[best] = False
        current = current * decay[best]
    return keep, torch.tensor(kept)


def reference_diou_nms(boxes: Tensor, scores: Tensor) -> list[int]:
    """Zheng et al. 2020: visit the boxes by score (ties by index) and keep one unless the
    DIoU of a kept box with it is above 0.5."""
    diou = ops.distance_box_iou(boxes, boxes).tolist()  # [kept box][candidate]
    keep: list[int] = []
    for i in scores.argsort(descending=True, stable=True).tolist():
        if all(diou[k][i] <= 0.5 for k in keep):
            keep.append(i)
    return keep


def check(boxes: Tensor, scores: Tensor) -> dict[str, bool]:
    """Whether each function's output is the reference's."""
    tv = tvops.nms(boxes, scores, 0.5)
    ok = {"nms": torch.equal(ops.nms(boxes, scores, 0.5).sort().values, tv.sort().values)}
    for method in ("linear", "gaussian"):
        keep, new_scores = ops.soft_nms(boxes, scores, method=method)
        ref_keep, ref_scores = reference_soft_nms(boxes, scores, method)
        same = keep.tolist() == ref_keep
        # the gaussian's exp may differ in the last bit between NumPy and torch
        ok[method] = same and torch.allclose(new_scores, ref_scores, rtol=1e-6, atol=0)
    ok["diou"] = ops.diou_nms(boxes, scores).tolist() == reference_diou_nms(boxes, scores)
    return ok


# -- timing --------------------------------------------------------------------------------


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in ms over ``repeats`` calls in a row, after two warm-ups."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--boxes", type=int, default=1000, help="boxes per call")
    p.add_argument("--repeats", type=int, default=50, help="timed calls per function (median)")
    p.add_argument("--clusters", type=int, default=5, help="objects the boxes gather round")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    boxes, scores = coco_like_boxes(args.boxes, args.clusters, args.seed)
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, numpy "
        f"{np.__version__}; torch threads: {args.threads}; {args.boxes} boxes round "
        f"{args.clusters} objects (seed {args.seed}), median of {args.repeats} calls; load "
        f"average before {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    kernel = non_max_suppression._soft_nms_kernel
    if kernel is None:
        sys.exit(
            "cvkit's compiled soft-NMS is not built: reinstall (pip install -e .) with a C compiler"
        )
    ok = check(boxes, scores)
    non_max_suppression._soft_nms_kernel = None
    ok.update({f"{name} numpy": same for name, same in check(boxes, scores).items()})
    non_max_suppression._soft_nms_kernel = kernel

    def numpy_loop(method: str) -> Callable[[], object]:
        def call() -> object:
            non_max_suppression._soft_nms_kernel = None
            try:
                return ops.soft_nms(boxes, scores, method=method)
            finally:
                non_max_suppression._soft_nms_kernel = kernel

        return call

    rows = [  # name, call, whether its output is the reference's
        ("torchvision nms", lambda: tvops.nms(boxes, scores, 0.5), True),
        ("cvkit nms", lambda: ops.nms(boxes, scores, 0.5), ok["nms"]),
        ("soft_nms linear", lambda: ops.soft_nms(boxes, scores, method="linear"), ok["linear"]),
        ("soft_nms gaussian", lambda: ops.soft_nms(boxes, scores), ok["gaussian"]),
        ("soft_nms linear numpy", numpy_loop("linear"), ok["linear numpy"]),
        ("soft_nms gaussian numpy", numpy_loop("gaussian"), ok["gaussian numpy"]),
        ("diou_nms", lambda: ops.diou_nms(boxes, scores), ok["diou"]),
    ]
    print("\n| function | kept | median ms | x torchvision nms | matches reference |")
    print("| --- | --- | --- | --- | --- |")
    ms: dict[str, float] = {}
    for name, fn, same in rows:
        out = fn()
        kept = len(out[0] if isinstance(out, tuple) else out)
        ms[name] = median_ms(fn, args.repeats)
        ratio = ms[name] / ms["torchvision nms"]
        print(f"| {name} | {kept} | {ms[name]:.3f} | {ratio:.1f}x | {'yes' if same else 'NO'} |")
    worst = max(ms[n] for n in ("soft_nms linear", "soft_nms gaussian", "diou_nms"))
    worst /= ms["torchvision nms"]
    print(
        f"\ngoal: soft-NMS and DIoU-NMS <= {GOAL:.0f}x torchvision's nms: "
        f"{'met' if worst <= GOAL else 'not met'} (worst {worst:.1f}x); load average after "
        f"{os.getloadavg()[0]:.2f}"
    )
    if not all(ok.values()):
        sys.exit(f"outputs differ from the references: {[k for k, v in ok.items() if not v]}")


if __name__ == "__main__":
    main()
