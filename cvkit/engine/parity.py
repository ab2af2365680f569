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


def compare_detections(
    eager: Sequence[np.ndarray],
    exported: Sequence[np.ndarray],
    where: str,
    score_threshold: float = 0.0,
) -> str:
    """Match ``(boxes [B, M, 4], scores [B, M], labels [B, M], num_detections [B])`` one to
    one: each eager detection an exported one of its class with boxes within ``BOX_ATOL`` px
    and a close score (order may differ among ties), and no exported detection left over.

    A detection may go unmatched only at a cut, where a score difference within tolerance
    decides whether it is kept: its score near ``score_threshold``, or no higher than the
    last of the other list when that is full (``M`` rows: a near-tie decided which of two
    detections took the last place)."""
    worst, total, at_cut = 0.0, 0, 0
    m = eager[0].shape[1]
    for i in range(len(eager[3])):
        e = [a[i, : int(eager[3][i])] for a in eager[:3]]
        x = [a[i, : int(exported[3][i])] for a in exported[:3]]
        gap, missing, extra = _match_image(e, x)
        _only_at_cuts("eager", missing, e, x, where, score_threshold, m)
        _only_at_cuts("exported", extra, x, e, where, score_threshold, m)
        worst, total = max(worst, gap), total + len(e[0]) - len(missing)
        at_cut += len(missing) + len(extra)
    cut = f" ({at_cut} at the score or top-k cut, unmatched)" if at_cut else ""
    return f"detections: {total} matched one to one{cut}, max box |diff| {worst:.2e} px"


def _only_at_cuts(
    side: str,
    unmatched: list[int],
    rows: list[np.ndarray],
    other: list[np.ndarray],
    where: str,
    threshold: float,
    max_detections: int,
) -> None:
    """Detections of ``rows`` that ``other`` lacks are allowed only near the score threshold,
    or when ``other`` is full and they score no higher than its last (a near-tie for it)."""
    other_last = float(other[1].min()) if len(other[1]) == max_detections else None
    for j in unmatched:
        score = float(rows[1][j])
        close = ATOL + RTOL * abs(score)
        displaced = other_last is not None and score <= other_last + close
        if abs(score - threshold) > close and not displaced:
            raise ParityError(_unmatched(side, j, rows, where, other))


def _match_image(
    eager: list[np.ndarray], exported: list[np.ndarray]
) -> tuple[float, list[int], list[int]]:
    """Greedy one-to-one matching in eager's order (best score first); returns the largest
    box gap of the matches, the unmatched eager indices and the unmatched exported ones."""
    (e_boxes, e_scores, e_labels), (x_boxes, x_scores, x_labels) = eager, exported
    free = np.ones(len(x_boxes), dtype=bool)
    worst, missing = 0.0, []
    for j in range(len(e_boxes)):
        gap = np.abs(x_boxes - e_boxes[j]).max(axis=1)
        score_ok = np.abs(x_scores - e_scores[j]) <= ATOL + RTOL * abs(e_scores[j])
        ok = free & (x_labels == e_labels[j]) & score_ok & (gap <= BOX_ATOL)
        if not ok.any():
            missing.append(j)
            continue
        best = int(np.flatnonzero(ok)[gap[ok].argmin()])
        free[best] = False
        worst = max(worst, float(gap[best]))
    return worst, missing, np.flatnonzero(free).tolist()


def _unmatched(
    side: str, j: int, rows: list[np.ndarray], where: str, other: list[np.ndarray]
) -> str:
    boxes, scores, labels = rows
    text = (
        f"detections at {where}: {side} detection {j} (class {int(labels[j])}, score "
        f"{scores[j]:.4f}, box {np.round(boxes[j], 2).tolist()}) has no "
        f"{'exported' if side == 'eager' else 'eager'} match within {BOX_ATOL} px"
    )
    same_class = other[2] == labels[j]
    if same_class.any():
        gap = np.abs(other[0][same_class] - boxes[j]).max(axis=1)
        text += f"; the nearest of its class is {gap.min():.3g} px away"
    return text


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
