# The compiled soft-NMS of _soft_nms.c (optional; see setup.py).
from typing_extensions import Buffer

def soft_nms(
    boxes: Buffer,
    scores: Buffer,
    labels: Buffer | None,
    double: bool,
    gaussian: bool,
    iou_threshold: float,
    sigma: float,
    score_threshold: float,
    eps: float,
    keep: Buffer,
    kept: Buffer,
    /,
) -> int: ...
