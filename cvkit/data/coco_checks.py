"""Reading and checking a COCO detection file, with one precise message per problem.

Everything here runs at dataset construction, before any training, so a broken annotation file
stops a run at once with the file, the image or annotation id and the problem, instead of
failing (or silently learning from wrong boxes) hours later. pycocotools itself checks almost
nothing: an unknown ``image_id`` or a three-number ``bbox`` only surfaces deep inside it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from cvkit.errors import did_you_mean

SECTIONS = ("images", "annotations", "categories")


class CocoFormatError(ValueError):
    """A COCO file is malformed; the message names the file, the id and the problem."""


def load_coco_json(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a COCO file and check its structure and cross-references.

    Args:
        path: the ``.json`` file.

    Returns:
        the parsed object, with ``images``, ``annotations`` and ``categories`` lists whose
        entries have been checked by ``check_coco``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CocoFormatError: the file is not JSON (with line and column), or not COCO.
    """
    path = Path(path)
    if not path.is_file():
        where = f"'{path}'" if path.is_absolute() else f"'{path}' (relative to '{Path.cwd()}')"
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"COCO annotation file {where} {what}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise CocoFormatError(
            f"COCO file '{path}' is not valid JSON: {err.msg} at line {err.lineno}, "
            f"column {err.colno}"
        ) from None
    except UnicodeDecodeError as err:
        raise CocoFormatError(
            f"COCO file '{path}' is not UTF-8 text (byte {err.start}); save it as UTF-8 JSON"
        ) from None
    check_coco(data, path)
    return data


def check_coco(data: Any, path: str | os.PathLike) -> None:
    """Check a parsed COCO object; raise ``CocoFormatError`` at the first problem.

    Checked: the three sections exist and are lists; every image has a unique integer id, a
    ``file_name`` inside the image folder and a positive integer ``width`` and ``height``;
    every category a unique integer id and a name; every annotation a unique integer id, an
    ``image_id`` and ``category_id`` that exist, a ``bbox`` of 4 finite numbers and an
    ``iscrowd`` (when present) of 0 or 1.
    """
    fail = _Fail(path)
    if not isinstance(data, dict):
        raise fail(
            f"holds a JSON {_json_type(data)}, not an object with 'images', 'annotations' and "
            "'categories' lists"
        )
    for key in SECTIONS:
        if key not in data:
            hint = did_you_mean(key, [str(k) for k in data])
            raise fail(
                f"has no '{key}' list; a COCO detection file is an object with 'images', "
                f"'annotations' and 'categories' lists (this one has: "
                f"{', '.join(map(repr, data)) or 'nothing'})" + (f"; {hint}" if hint else "")
            )
        if not isinstance(data[key], list):
            raise fail(f"'{key}' is a JSON {_json_type(data[key])}, not a list")
    image_ids = _check_images(data["images"], fail)
    cat_ids = _check_categories(data["categories"], fail)
    _check_annotations(data["annotations"], image_ids, cat_ids, fail)


def image_paths(images: list[dict], image_dir: str | os.PathLike, ann_file: str) -> list[str]:
    """The path of every image under ``image_dir``, each checked to exist (``os.path`` only).

    Raises:
        FileNotFoundError: ``image_dir`` or any image file is missing; the message counts the
            missing files and names the first one with its image id.
    """
    folder = os.fspath(image_dir)
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise FileNotFoundError(f"image_dir '{folder}' (for COCO file '{ann_file}') {what}")
    paths = [os.path.join(folder, image["file_name"]) for image in images]
    missing = [i for i, p in enumerate(paths) if not os.path.isfile(p)]
    if missing:
        first = images[missing[0]]
        raise FileNotFoundError(
            f"COCO file '{ann_file}': {len(missing)} of {len(images)} image files are missing "
            f"from image_dir '{folder}', e.g. image id {first['id']}: "
            f"'{first['file_name']}' (looked for '{paths[missing[0]]}')"
        )
    return paths


class _Fail:
    """``raise fail(problem)``: a ``CocoFormatError("COCO file '<path>' <problem>")``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = path

    def __call__(self, problem: str) -> CocoFormatError:
        return CocoFormatError(f"COCO file '{self.path}' {problem}")


def _check_images(images: list, fail: _Fail) -> set[int]:
    seen: dict[int, int] = {}
    for index, image in enumerate(images):
        image_id = _entry_id(image, "images", index, fail)
        if image_id in seen:
            raise fail(_repeated("image", "images", image_id, seen[image_id], index))
        seen[image_id] = index
        name = image.get("file_name")
        if not isinstance(name, str) or not name:
            raise fail(f"image id {image_id} has no 'file_name' (got {name!r})")
        problem = _outside_folder(name)
        if problem:
            raise fail(
                f"image id {image_id} has file_name '{name}', {problem}; file names must be "
                "relative paths inside image_dir"
            )
        for key in ("width", "height"):
            value = image.get(key)
            if not _is_int(value) or value < 1:
                raise fail(
                    f"image id {image_id} has {key} {value!r}; 'width' and 'height' must be "
                    "the image's size in pixels (positive integers)"
                )
    return set(seen)


def _outside_folder(name: str) -> str | None:
    """Why ``name`` would point outside the image folder, or ``None`` if it does not."""
    if os.path.isabs(name) or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    parts = os.path.normpath(name.replace("\\", "/")).split(os.sep)
    if parts[0] == "..":
        return "which points outside image_dir"
    return None


def _check_categories(categories: list, fail: _Fail) -> set[int]:
    if not categories:
        raise fail("has an empty 'categories' list; a detector needs at least one class")
    seen: dict[int, int] = {}
    for index, category in enumerate(categories):
        cat_id = _entry_id(category, "categories", index, fail)
        if cat_id in seen:
            raise fail(_repeated("category", "categories", cat_id, seen[cat_id], index))
        seen[cat_id] = index
        if not isinstance(category.get("name"), str):
            raise fail(f"category id {cat_id} has no 'name' (got {category.get('name')!r})")
    return set(seen)


def _check_annotations(annotations: list, image_ids: set, cat_ids: set, fail: _Fail) -> None:
    seen: dict[int, int] = {}
    for index, ann in enumerate(annotations):
        ann_id = _entry_id(ann, "annotations", index, fail)
        if ann_id in seen:
            raise fail(_repeated("annotation", "annotations", ann_id, seen[ann_id], index))
        seen[ann_id] = index
        image_id, cat_id = ann.get("image_id"), ann.get("category_id")
        if not _is_int(image_id) or image_id not in image_ids:
            raise fail(
                f"annotation id {ann_id} names image_id {image_id!r}, which is not in 'images'"
            )
        if not _is_int(cat_id) or cat_id not in cat_ids:
            raise fail(
                f"annotation id {ann_id} names category_id {cat_id!r}, which "
                f"is not in 'categories' (ids: {_some(sorted(cat_ids))})"
            )
        box = ann.get("bbox")
        if not isinstance(box, list) or len(box) != 4 or not all(map(_is_finite, box)):
            raise fail(
                f"annotation id {ann_id} has bbox {box!r}; a COCO bbox is 4 finite numbers "
                "[x, y, width, height] in pixels"
            )
        if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
            raise fail(f"annotation id {ann_id} has iscrowd {ann['iscrowd']!r}; it must be 0 or 1")
        if "area" in ann and not _is_finite(ann["area"]):
            raise fail(f"annotation id {ann_id} has area {ann['area']!r}; it must be a number")


def _entry_id(entry: Any, section: str, index: int, fail: _Fail) -> int:
    if not isinstance(entry, dict):
        raise fail(f"{section}[{index}] is a JSON {_json_type(entry)}, not an object")
    value = entry.get("id")
    if not _is_int(value):
        raise fail(f"{section}[{index}] has no integer 'id' (got {value!r})")
    return value


def _repeated(kind: str, section: str, entry_id: int, first: int, second: int) -> str:
    return f"repeats {kind} id {entry_id} ({section}[{first}] and {section}[{second}])"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _some(values: list, limit: int = 10) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown if len(values) <= limit else f"{shown}, ... ({len(values)} in all)"
