"""What ``cvkit doctor`` found: every problem of a dataset, grouped by kind, with examples.

A check records each problem it meets with ``Findings.add(kind, example)``; nothing stops at
the first one. Each kind has one severity and one sentence that says what is wrong and what
to do (``KINDS``), so a report is a short list however many files are broken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR, WARNING = "error", "warning"

# kind -> (severity, what it means and what to do). Errors stop or corrupt a run; warnings
# are data that trains but probably not as meant.
KINDS: dict[str, tuple[str, str]] = {
    "not-coco": (
        ERROR,
        "the file is not a COCO object with 'images', 'annotations' and "
        "'categories' lists; nothing else in it could be checked",
    ),
    "bad-field": (ERROR, "entries with a missing or wrong field; fix each as the example says"),
    "duplicate-image-id": (ERROR, "image ids given to more than one image; give each its own"),
    "duplicate-annotation-id": (ERROR, "annotation ids used twice; give each its own"),
    "duplicate-category-id": (ERROR, "category ids used twice; give each its own"),
    "no-categories": (ERROR, "the 'categories' list is empty; a detector needs a class"),
    "unknown-image-id": (ERROR, "annotations of an image id that 'images' does not have"),
    "unknown-category-id": (ERROR, "annotations of a category id that 'categories' does not have"),
    "file-outside-folder": (
        ERROR,
        "file names that are absolute or leave image_dir; make them relative to image_dir",
    ),
    "image-missing": (ERROR, "image files that do not exist; restore them or drop their entries"),
    "image-undecodable": (
        ERROR,
        "image files that cannot be decoded (empty, truncated or corrupt); replace or delete them",
    ),
    "image-size-mismatch": (
        ERROR,
        "images whose pixels (EXIF orientation applied) are not "
        "the width and height the file declares, so their boxes would not "
        "fit; fix the entry or the image",
    ),
    "box-not-finite": (ERROR, "boxes with NaN or infinite coordinates; fix or delete them"),
    "box-empty": (WARNING, "boxes with no width or height; training drops them"),
    "box-outside": (
        WARNING,
        "boxes reaching outside their image; training clips them (drops those entirely outside)",
    ),
    "duplicate-box": (
        WARNING,
        "identical boxes of one class on one image, annotated twice; keep one",
    ),
    "duplicate-file": (WARNING, "different images whose files have the same content; keep one"),
    "unused-category": (
        WARNING,
        "categories no annotation uses; the model would learn a class it never sees",
    ),
    "split-overlap": (
        WARNING,
        "the same image (same content) in two splits; validation "
        "would score images the model trained on",
    ),
    "mask-unreadable": (ERROR, "mask files that cannot be read; replace them"),
    "mask-size-mismatch": (ERROR, "masks whose size is not their image's"),
    "mask-values": (
        ERROR,
        "masks with values that are neither a class nor ignore_index; name "
        "every class (classes or num_classes) or map the values to ignore_index",
    ),
    "dataset-error": (ERROR, "datasets that could not be read at all"),
}


@dataclass
class Finding:
    """One kind of problem: how often it was met and the first ``Findings.limit`` examples."""

    kind: str
    severity: str
    advice: str
    count: int = 0
    examples: list[str] = field(default_factory=list)


class Findings:
    """Problems by kind, in the order first met; ``add`` keeps every count and a few
    examples of each."""

    def __init__(self, limit: int = 5) -> None:
        self.limit = limit
        self.by_kind: dict[str, Finding] = {}

    def add(self, kind: str, example: str) -> None:
        """Record one problem of ``kind``; ``example`` names the file, image and annotation."""
        severity, advice = KINDS[kind]
        finding = self.by_kind.setdefault(kind, Finding(kind, severity, advice))
        finding.count += 1
        if len(finding.examples) < self.limit:
            finding.examples.append(example)

    def of(self, severity: str) -> list[Finding]:
        return [f for f in self.by_kind.values() if f.severity == severity]

    def to_json(self) -> list[dict[str, Any]]:
        return [vars(f) for f in self.by_kind.values()]
