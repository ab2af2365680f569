"""Does an exported graph compute what the eager model does? The checks of ``cvkit export``.

Tolerances are torchvision's ONNX tests' (rtol 1e-3, atol 1e-5) for the network's outputs
before post-processing; final detections are matched one to one (same class, boxes within
1e-3 px); masks may differ only on pixels whose two best classes are within the tolerance.
A mismatch raises ``ParityError`` naming the output, the input size, the largest difference
and where it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RTOL, ATOL = 1e-3, 1e-5
BOX_ATOL = 1e-3  # pixels
MASK_AGREEMENT = 0.999  # share of pixels with the same class


class ParityError(ValueError):
    """The exported model's outputs differ from the eager model's beyond the tolerance."""


def compare_close(name: str, eager: np.ndarray, exported: np.ndarray, where: str) -> str:
    """One line saying how close two arrays are; raises ``ParityError`` beyond tolerance."""
    eager, exported = np.asarray(eager, np.float64), np.asarray(exported, np.float64)
    if eager.shape != exported.shape:
        raise ParityError(
            f"{name} at {where}: the export gives shape {list(exported.shape)}, eager "
            f"{list(eager.shape)}"
        )
    diff = np.abs(eager - exported)
    excess = diff - (ATOL + RTOL * np.abs(eager))
    if diff.size and excess.max() > 0:
        at = np.unravel_index(int(excess.argmax()), diff.shape)
        raise ParityError(
            f"{name} at {where} differs from eager by {diff[at]:.3g} at index "
            f"{list(map(int, at))} (eager {eager[at]:.6g}, exported {exported[at]:.6g}); "
            f"allowed: {ATOL:g} + {RTOL:g} x |eager|"
        )
    return f"{name}: max |diff| {diff.max() if diff.size else 0.0:.2e}"


def compare_detections(eager: Sequence[np.ndarray], exported: Sequence[np.ndarray], where: str):
    """Match ``(boxes [B, M, 4], scores [B, M], labels [B, M], num_detections [B])`` one to
    one: per image the same count, and each eager detection an exported one of its class
    with boxes within ``BOX_ATOL`` px and a close score (order may differ among ties)."""
    worst, total = 0.0, 0
    for i in range(len(eager[3])):
        n, m = int(eager[3][i]), int(exported[3][i])
        if n != m:
            raise ParityError(
                f"detections at {where}: image {i} has {m} detections exported, {n} eager"
            )
        rows = ([a[i, :n] for a in eager[:3]], [a[i, :n] for a in exported[:3]])
        worst, total = max(worst, _match_image(*rows, where)), total + n
    return f"detections: {total} matched one to one, max box |diff| {worst:.2e} px"


def _match_image(eager: list[np.ndarray], exported: list[np.ndarray], where: str) -> float:
    (e_boxes, e_scores, e_labels), (x_boxes, x_scores, x_labels) = eager, exported
    free = np.ones(len(x_boxes), dtype=bool)
    worst = 0.0
    for j in range(len(e_boxes)):
        gap = np.abs(x_boxes - e_boxes[j]).max(axis=1)
        score_ok = np.abs(x_scores - e_scores[j]) <= ATOL + RTOL * abs(e_scores[j])
        candidates = np.flatnonzero(free & (x_labels == e_labels[j]) & score_ok)
        best = candidates[gap[candidates].argmin()] if len(candidates) else None
        if best is None or gap[best] > BOX_ATOL:
            near = f"; the nearest is {gap[best]:.3g} px away" if best is not None else ""
            raise ParityError(
                f"detections at {where}: eager detection {j} (class {int(e_labels[j])}, score "
                f"{e_scores[j]:.4f}, box {np.round(e_boxes[j], 2).tolist()}) has no exported "
                f"match within {BOX_ATOL} px{near}"
            )
        free[best] = False
        worst = max(worst, float(gap[best]))
    return worst


def compare_masks(eager: np.ndarray, exported: np.ndarray, where: str) -> str:
    """Class masks ``[B, h, w]``: at least ``MASK_AGREEMENT`` of the pixels agree."""
    if eager.shape != exported.shape:
        raise ParityError(
            f"mask at {where}: the export gives shape {list(exported.shape)}, eager "
            f"{list(eager.shape)}"
        )
    differ = eager != exported
    share = 1.0 - float(differ.mean()) if differ.size else 1.0
    if share < MASK_AGREEMENT:
        first = list(map(int, np.argwhere(differ)[0]))
        raise ParityError(
            f"mask at {where}: {share:.4%} of pixels agree with eager (at least "
            f"{MASK_AGREEMENT:.1%} needed); the first that differs is {first}"
        )
    return f"mask: {share:.4%} of pixels agree"


def compare_metric(name: str, eager: float, exported: float, tolerance: float) -> str:
    """An evaluation metric of both models, within ``tolerance``."""
    gap = abs(eager - exported)
    line = f"{name}: eager {eager:.4f}, exported {exported:.4f} (|diff| {gap:.4f})"
    if gap > tolerance:
        raise ParityError(f"{line}, more than the {tolerance} allowed")
    return line
