"""Every problem of a COCO detection file at once: structure, ids, references, boxes,
duplicates and unused categories.

The training reader (``cvkit.coco_file.check_coco``) stops at the first problem; these checks
record each one in ``Findings`` and go on, in the same words (``field_problem``), and keep
what is sound (``CocoContents``) for the image checks and the statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cvkit.coco_file import (
    CocoFormatError,
    check_sections,
    entry_name,
    field_problem,
    outside_folder,
    read_json,
    unknown_reference,
)
from cvkit.data.doctor.findings import Findings

# a box may reach this far past its image (rounding in annotation tools) before it is noted
OUTSIDE_TOLERANCE = 0.5


@dataclass
class CocoContents:
    """The sound part of a file: images with unique ids and valid fields, categories by id,
    and annotations that name one of those images and categories with 4 finite numbers."""

    images: dict[int, dict[str, Any]] = field(default_factory=dict)
    categories: dict[int, str] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)


def check_coco_file(path: str, where: str, findings: Findings) -> CocoContents | None:
    """Check ``path`` whole; ``None`` when it is not a COCO object at all.

    Args:
        where: how examples name the dataset (``data.val``).
    """
    try:
        data = check_sections(read_json(path), path)
    except CocoFormatError as err:
        findings.add("not-coco", f"{where}: {err}")
        return None
    contents = CocoContents()
    contents.categories = _categories(data["categories"], where, findings)
    contents.images = _images(data["images"], where, findings)
    contents.annotations = _annotations(data["annotations"], contents, where, findings)
    used = {a["category_id"] for a in contents.annotations}
    for cat_id, name in contents.categories.items():
        if cat_id not in used:
            findings.add("unused-category", f"{where}: category id {cat_id} '{name}'")
    return contents


def _problem(section: str, index: int, entry: Any, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        problem = field_problem(section, index, entry, key)
        if problem is not None:
            return problem
    return None


def _categories(rows: list[Any], where: str, findings: Findings) -> dict[int, str]:
    if not rows:
        findings.add("no-categories", f"{where}: 'categories' is []")
    found: dict[int, str] = {}
    for index, row in enumerate(rows):
        problem = _problem("categories", index, row, ("id", "name"))
        if problem is not None:
            findings.add("bad-field", f"{where}: {problem}")
        elif row["id"] in found:
            findings.add("duplicate-category-id", f"{where}: category id {row['id']} "
                         f"('{found[row['id']]}' and '{row['name']}')")  # fmt: skip
        else:
            found[row["id"]] = row["name"]
    return found


def _images(rows: list[Any], where: str, findings: Findings) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for index, row in enumerate(rows):
        problem = _problem("images", index, row, ("id", "file_name", "width", "height"))
        if problem is not None:
            findings.add("bad-field", f"{where}: {problem}")
            continue
        name = f"image id {row['id']} '{row['file_name']}'"
        if row["id"] in found:
            first = found[row["id"]]["file_name"]
            findings.add("duplicate-image-id", f"{where}: {name} and '{first}'")
            continue
        outside = outside_folder(row["file_name"])
        if outside:
            findings.add("file-outside-folder", f"{where}: {name}: {outside}")
            continue
        found[row["id"]] = row
    return found


def _annotations(
    rows: list[Any], contents: CocoContents, where: str, findings: Findings
) -> list[dict[str, Any]]:
    seen_ids: set[int] = set()
    seen_boxes: dict[tuple, int] = {}
    kept = []
    for index, row in enumerate(rows):
        problem = _problem("annotations", index, row, ("id", "image_id", "category_id"))
        if problem is not None:
            findings.add("bad-field", f"{where}: {problem}")
            continue
        name = entry_name("annotations", index, row)
        if row["id"] in seen_ids:
            findings.add("duplicate-annotation-id", f"{where}: {name} (annotations[{index}])")
            continue
        seen_ids.add(row["id"])
        if not _known_references(row, name, contents, where, findings):
            continue
        if not _sound_box(row, index, name, where, findings):
            continue
        image = contents.images[row["image_id"]]
        _check_geometry(row["bbox"], image, f"{where}: {name} (image id {image['id']})", findings)
        key = (row["image_id"], row["category_id"], tuple(row["bbox"]))
        if key in seen_boxes:
            first = seen_boxes[key]
            findings.add(
                "duplicate-box",
                f"{where}: {name} repeats annotation id {first} on image id "
                f"{row['image_id']}: bbox {row['bbox']}",
            )
        else:
            seen_boxes[key] = row["id"]
        kept.append(row)
    return kept


def _known_references(
    row: dict, name: str, contents: CocoContents, where: str, findings: Findings
) -> bool:
    for key, known, kind in (
        ("image_id", contents.images, "unknown-image-id"),
        ("category_id", contents.categories, "unknown-category-id"),
    ):
        if row[key] not in known:
            findings.add(kind, f"{where}: " + unknown_reference(name, key, row[key], known))
            return False
    return True


def _sound_box(row: dict, index: int, name: str, where: str, findings: Findings) -> bool:
    box = row.get("bbox")
    numbers = (
        isinstance(box, list)
        and len(box) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
    )
    if numbers and not all(math.isfinite(v) for v in box or ()):
        findings.add("box-not-finite", f"{where}: {name} has bbox {box}")
        return False
    problem = _problem("annotations", index, row, ("bbox",))
    problem = problem or _problem(
        "annotations", index, row, tuple(k for k in ("iscrowd", "area") if k in row)
    )
    if problem is not None:
        findings.add("bad-field", f"{where}: {problem}")
        return False
    return True


def _check_geometry(box: list[float], image: dict, name: str, findings: Findings) -> None:
    x, y, w, h = box
    if w <= 0 or h <= 0:
        findings.add("box-empty", f"{name}: bbox {box}")
        return
    width, height = image["width"], image["height"]
    t = OUTSIDE_TOLERANCE
    if x < -t or y < -t or x + w > width + t or y + h > height + t:
        entirely = x >= width or y >= height or x + w <= 0 or y + h <= 0
        findings.add(
            "box-outside",
            f"{name}: bbox {box} on a {width}x{height} image"
            + (" (entirely outside)" if entirely else ""),
        )
