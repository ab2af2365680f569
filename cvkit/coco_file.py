"""COCO annotation and results files: the one reader, and one message per problem.

Training data (``CocoDetection``, ``CocoSegmentation``) and ``cvkit coco-eval``
(:mod:`cvkit.evaluation.coco.load`) read files with :func:`read_json` and word every problem
with the functions here, so one broken file gets one message whichever path reads it. What
each path checks differs on purpose:

- training checks every entry (:func:`check_coco`): ids unique, references resolve, boxes
  finite, before hours of training;
- evaluation follows pycocotools (annotations of unlisted images or categories are ignored)
  and stays vectorised: it converts whole columns at once and, only when a conversion fails,
  asks :func:`field_error` for the first bad entry.

Messages start with the source, ``COCO file 'path'`` (or the label of data passed in memory,
such as ``<results>``); a problem of one entry names it after a colon, by its id where it has
one (``annotation id 12``) and else by its place (``annotations[3]``, ``results[5]``).

This module imports neither torch nor NumPy: ``cvkit coco-eval`` runs without them loaded, and
it sits below ``cvkit.data`` and ``cvkit.evaluation`` so both can import it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import numbers
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cvkit.errors import DataError, did_you_mean

try:  # about 5x faster than json on a results file of 200k detections
    import orjson

    _fast_loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is a dependency
    _fast_loads = json.loads

SECTIONS = ("images", "annotations", "categories")
GROUND_TRUTH = "an object with 'images', 'annotations' and 'categories' lists"
RESULTS = (
    "a list of results (objects with 'image_id', 'category_id', 'bbox' or 'segmentation', "
    "and 'score')"
)
# what a result that is not a finite number most often means; said wherever one is found
DIVERGED = "a NaN or infinite output usually means the model diverged: check its training loss"

__all__ = [
    "FIELD_RULES",
    "SECTIONS",
    "CocoFileNotFoundError",
    "CocoFormatError",
    "check_coco",
    "check_results_list",
    "check_sections",
    "entry_name",
    "field_error",
    "field_problem",
    "gc_paused",
    "image_paths",
    "load_coco_json",
    "outside_folder",
    "read_json",
    "subject",
    "unknown_reference",
]


class CocoFormatError(DataError):
    """A COCO file that cannot be used; the message names the file, the entry and the problem."""


class CocoFileNotFoundError(CocoFormatError, FileNotFoundError):
    """A COCO file that does not exist; both a ``CocoFormatError`` and a ``FileNotFoundError``."""


def subject(source: str | os.PathLike) -> str:
    """How messages name a source: ``COCO file 'gt.json'``, or a label such as ``<results>``.

    Data passed in memory rather than as a file is named by a label in angle brackets.
    """
    text = os.fspath(source)
    return text if text.startswith("<") else f"COCO file '{text}'"


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector inside the block.

    Parsing a results file makes ~10^6 containers, none of them cyclic; the collector would
    otherwise walk every live object many times over (seconds, not milliseconds).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file (orjson, collector paused), with one message per way it can fail.

    Whatever Python's ``json`` (which pycocotools uses) accepts is accepted: the rare file that
    orjson refuses but ``json`` reads (``NaN``, integers beyond 64 bits) is read by ``json``.

    Args:
        path: the ``.json`` file.

    Returns:
        The parsed value, of any JSON type.

    Raises:
        CocoFileNotFoundError: ``path`` does not exist or is a folder.
        CocoFormatError: the file cannot be read, is empty, is not UTF-8, or is not JSON (with
            the line and column of the first error, and the entry when it is a ``nan`` or
            ``inf`` that JSON cannot hold).
    """
    path = Path(path)
    if not path.is_file():
        where = f"'{path}'" if path.is_absolute() else f"'{path}' (relative to '{Path.cwd()}')"
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CocoFileNotFoundError(f"COCO file {where} {what}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CocoFormatError(f"{subject(path)} cannot be read ({err.strerror})") from None
    try:
        with gc_paused():
            return _fast_loads(data)
    except ValueError:
        pass  # the slow parser below gives the message, or reads what orjson refuses
    if not data.strip():  # else json would say "Expecting value at line 1, column 1"
        size = "0 bytes" if not data else f"only whitespace, {len(data)} bytes"
        raise CocoFormatError(
            f"{subject(path)} is empty ({size}); a COCO file is JSON text: check that "
            "whatever wrote it finished (or write it again)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CocoFormatError(
            f"{subject(path)} is not UTF-8 text (byte {err.start}); save it as UTF-8 JSON"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        problem = _not_finite_token(text, err) or (
            f"{err.msg} at line {err.lineno}, column {err.colno}"
        )
        raise CocoFormatError(f"{subject(path)} is not valid JSON: {problem}") from None


# ``nan``, ``-nan``, ``inf``, ``-Infinity``...: what writers that format floats themselves
# (f-strings, C's printf) put where a number goes. Python's json reads only ``NaN``,
# ``Infinity`` and ``-Infinity``; the rest would be a bare "Expecting value".
_NOT_FINITE = re.compile(r"-?(?:nan|inf(?:inity)?)(?![\w.])", re.IGNORECASE)
# the key whose value starts at the end of the text: `"score": ` or `"bbox": [1.5, `
_KEY_BEFORE = re.compile(r'"([^"\\]{1,60})"\s*:\s*(\[[^\[\]{}"]*)?$')
_SPACE = re.compile(r"[ \t\n\r]*")


def _not_finite_token(text: str, err: json.JSONDecodeError) -> str | None:
    """What a parse error at a NaN or infinity means, naming the entry; ``None`` for others.

    ``"results[1] has score nan (line 1, column 153), and JSON has no NaN or infinity; ..."``.
    """
    token = _NOT_FINITE.match(text, err.pos)
    if token is None:
        return None
    at = f"line {err.lineno}, column {err.colno}"
    index = _list_index(text, err.pos)
    key = _KEY_BEFORE.search(text, max(0, err.pos - 200), err.pos)
    if key is None:
        what = f"{at} has {token.group()}"
        rule = "numbers in a COCO file are finite"
    else:
        field, in_list = key.group(1), key.group(2) is not None
        whose = "a" if index is None else "its"
        value = f"{token.group()} in {whose} {field}" if in_list else f"{field} {token.group()}"
        what = f"{at} has {value}" if index is None else f"results[{index}] has {value} ({at})"
        rule = _finite_rule(field)
    outputs = index is not None and key is not None and key.group(1) in _OUTPUTS
    hint = f"; {DIVERGED}" if outputs else ""
    return f"{what}, and JSON has no NaN or infinity; {rule}{hint}"


def _list_index(text: str, pos: int) -> int | None:
    """The place of the entry holding ``pos`` when ``text`` is a JSON list, else ``None``.

    Decodes the entries before it one by one: the error path of a results file only.
    """
    decoder = json.JSONDecoder()
    at = _skip_space(text, 0)
    if not text.startswith("[", at):
        return None
    index, at = 0, _skip_space(text, at + 1)
    while at < pos:
        try:
            _, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            return index  # this entry holds the first error, at pos
        at = _skip_space(text, end)
        if not text.startswith(",", at) or end > pos:
            return None
        index, at = index + 1, _skip_space(text, at + 1)
    return index


def _skip_space(text: str, at: int) -> int:
    """The first position from ``at`` that is not JSON whitespace."""
    space = _SPACE.match(text, at)
    return space.end() if space else at


def load_coco_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a COCO detection file for training and check every entry (:func:`check_coco`).

    Args:
        path: the ``.json`` file.

    Returns:
        The parsed object, with checked ``images``, ``annotations`` and ``categories`` lists.

    Raises:
        CocoFileNotFoundError: (a ``FileNotFoundError``) ``path`` does not exist.
        CocoFormatError: the file is not JSON (with line and column), or not valid COCO.
    """
    data = read_json(path)
    check_coco(data, os.fspath(path))
    return data


# -- the file as a whole -----------------------------------------------------------------------


def check_sections(data: Any, source: str) -> dict[str, Any]:
    """Check that ``data`` is a JSON object with the three COCO lists; return it.

    Raises:
        CocoFormatError: not an object, or a section missing (with a did-you-mean) or not a list.
    """
    if not isinstance(data, dict):
        hint = ""
        if isinstance(data, list) and data and _is_result(data[0]):
            # most often `cvkit coco-eval RESULTS GT`: the two files swapped
            hint = (
                "; it looks like a results file (a list of detections), not ground truth (in "
                "cvkit coco-eval GT RESULTS, the ground truth comes first)"
            )
        raise CocoFormatError(
            f"{subject(source)} holds a JSON {_json_type(data)}, not {GROUND_TRUTH}{hint}"
        )
    for key in SECTIONS:
        if key not in data:
            hint = did_you_mean(key, [str(k) for k in data])
            raise CocoFormatError(
                f"{subject(source)} has no '{key}' list; a COCO detection file is "
                f"{GROUND_TRUTH} (this one has: {', '.join(map(repr, data)) or 'nothing'})"
                + (f"; {hint}" if hint else "")
            )
        if not isinstance(data[key], list):
            raise CocoFormatError(
                f"{subject(source)} has a JSON {_json_type(data[key])} as '{key}', not a list"
            )
    return data


def check_results_list(data: Any, source: str) -> list[Any]:
    """Check that ``data`` is a JSON list, as a COCO results file is; return it.

    Raises:
        CocoFormatError: not a list; for an object, saying what it looks like: a ground-truth
            file given in the results' place, or an object around the list of results.
    """
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        wrapper = _results_key(data)
        if wrapper is not None:
            raise CocoFormatError(
                f"{subject(source)} holds a JSON object with the results in its '{wrapper}' "
                f"list; a results file is that list itself, not an object around it: save "
                f"the value of '{wrapper}' on its own"
            )
        sections = [key for key in SECTIONS if key in data]
        if sections:
            raise CocoFormatError(
                f"{subject(source)} is a COCO ground-truth file (it has "
                f"{', '.join(map(repr, sections))}) given where results are expected; a "
                f"results file is {RESULTS}, the detections a model made (`cvkit eval` of a "
                "detector writes one: results.json); the ground truth comes first, then the "
                "results (cvkit coco-eval GT RESULTS)"
            )
    raise CocoFormatError(f"{subject(source)} holds a JSON {_json_type(data)}, not {RESULTS}")


# keys a tool may wrap its list of results in, even while that list is empty
_RESULTS_KEYS = ("results", "detections", "predictions", "dets")


def _results_key(data: dict) -> str | None:
    """The key of ``data`` holding a list of results (or named like one), or ``None``."""
    lists = {key: value for key, value in data.items() if isinstance(value, list)}
    for key, value in lists.items():
        if value and _is_result(value[0]):
            return str(key)
    return next((key for key in _RESULTS_KEYS if key in lists), None)


def _is_result(entry: Any) -> bool:
    """Whether ``entry`` looks like one result: an object with an image id and a score.

    A ground-truth annotation has no score, so it does not look like one.
    """
    return isinstance(entry, dict) and "image_id" in entry and "score" in entry


def check_coco(data: Any, source: str) -> None:
    """Check a parsed COCO detection file entry by entry; raise at the first problem.

    Checked: the three sections exist and are lists; every image has a unique integer id, a
    ``file_name`` inside the image folder and a positive integer ``width`` and ``height``;
    every category a unique integer id and a name, and there is at least one; every
    annotation a unique integer id, an ``image_id`` and ``category_id`` that exist, a ``bbox``
    of 4 finite numbers, and an ``iscrowd`` (when present) of 0 or 1 and a finite ``area``
    (when present).

    Raises:
        CocoFormatError: the first problem, worded as for every other reader.
    """
    check_sections(data, source)
    image_ids = _check_images(data["images"], source)
    cat_ids = _check_categories(data["categories"], source)
    _check_annotations(data["annotations"], image_ids, cat_ids, source)


# -- one entry ------------------------------------------------------------------------------------


def entry_name(section: str, index: int, entry: Any) -> str:
    """``annotation id 12`` when the entry has an integer id, else ``annotations[3]``.

    Results carry no id of their own, so a result is always ``results[5]``.
    """
    kind = _KIND.get(section)
    if kind is not None and isinstance(entry, dict) and _is_int(entry.get("id")):
        return f"{kind} id {entry['id']}"
    return f"{section}[{index}]"


def field_problem(section: str, index: int, entry: Any, key: str) -> str | None:
    """What is wrong with ``entry[key]`` by the rule of :data:`FIELD_RULES`, or ``None``.

    Args:
        section: ``"images"``, ``"annotations"``, ``"categories"`` or ``"results"``.
        index: the entry's place in its list.
        entry: the entry itself (any JSON value).
        key: the field to check.

    Returns:
        ``"annotation id 10 has bbox [1, 2, 3]; a 'bbox' is 4 finite numbers ..."``, or
        ``"results[2] is a JSON string, not an object"``, or ``None`` when the field is fine.
        A NaN or infinite score or box of a result adds what it usually means (:data:`DIVERGED`).
    """
    if not isinstance(entry, dict):
        return f"{section}[{index}] is a JSON {_json_type(entry)}, not an object"
    ok, rule = FIELD_RULES[key]
    name = entry_name(section, index, entry)
    if key not in entry:
        return f"{name} has no '{key}'; {rule}"
    value = entry[key]
    if ok(value):
        return None
    values = value if isinstance(value, list) else [value]
    not_finite = any(_is_number(v) and not _is_finite(v) for v in values)
    hint = f"; {DIVERGED}" if not_finite and section == "results" and key in _OUTPUTS else ""
    if not_finite and ok is _is_finite:  # a NaN score: say it in words, and the rule plainly
        what = f"a NaN {key}" if math.isnan(value) else f"an infinite {key} ({value})"
        return f"{name} has {what}; {_finite_rule(key)}{hint}"
    return f"{name} has {key} {value!r:.80}; {rule}{hint}"


def field_error(
    rows: Sequence[Any],
    keys: str | Sequence[str],
    section: str,
    source: str,
    indices: Iterable[int] | None = None,
    optional: Sequence[str] = (),
) -> CocoFormatError | None:
    """The error for the first entry with a field of ``keys`` that breaks its rule, or ``None``.

    For readers that convert a whole column at once: when the conversion fails, this finds
    and words the entry to blame (a Python loop, on the error path only).

    Args:
        rows: the whole section, so that places (``annotations[3]``) are the file's.
        keys: the field(s) whose conversion failed.
        section: the section's name (``"annotations"``, ``"results"``...).
        source: the file (or the label of data in memory).
        indices: only these entries (those the reader kept); all of them when ``None``.
        optional: keys an entry may lack (the reader fills a default); checked when present.
    """
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    for i in range(len(rows)) if indices is None else indices:
        entry = rows[i]
        for key in keys:
            if key in optional and isinstance(entry, dict) and key not in entry:
                continue
            problem = field_problem(section, i, entry, key)
            if problem is not None:
                return CocoFormatError(f"{subject(source)}: {problem}")
    return None


def unknown_reference(
    entry: str, key: str, value: Any, known: Iterable[int], of: str | None = None
) -> str:
    """``"annotation id 11 names image_id 99, which is not in 'images' (ids: 1, 2, 3)"``.

    Args:
        entry: the entry's name (:func:`entry_name`).
        key: ``"image_id"`` or ``"category_id"``.
        value: the id it names.
        known: the ids the section has.
        of: the source of that section when it is another file (results -> ground truth).
    """
    section = _REFERENCED[key]
    where = f" of {subject(of)}" if of is not None else ""
    return (
        f"{entry} names {key} {value!r}, which is not in '{section}'{where} "
        f"(ids: {_some(sorted(known))})"
    )


# -- images on disk ----------------------------------------------------------------------------


def image_paths(images: list[dict], image_dir: str | os.PathLike, ann_file: str) -> list[str]:
    """The path of every image under ``image_dir``, each checked to exist (``os.path`` only).

    Raises:
        CocoFileNotFoundError: (a ``FileNotFoundError``) ``image_dir`` or any image file
            is missing; the message counts the missing files and names the first one with
            its image id.
    """
    folder = os.fspath(image_dir)
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise CocoFileNotFoundError(f"image_dir '{folder}' (for {subject(ann_file)}) {what}")
    paths = [os.path.join(folder, image["file_name"]) for image in images]
    missing = [i for i, p in enumerate(paths) if not os.path.isfile(p)]
    if missing:
        first = images[missing[0]]
        raise CocoFileNotFoundError(
            f"{subject(ann_file)}: {len(missing)} of {len(images)} image files are missing "
            f"from image_dir '{folder}', e.g. image id {first['id']}: "
            f"'{first['file_name']}' (looked for '{paths[missing[0]]}')"
        )
    return paths


# -- the rules -----------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    # numbers.Integral takes NumPy's integers too (results built in memory); JSON's are ints
    return type(value) is int or (
        isinstance(value, numbers.Integral) and not isinstance(value, bool)
    )


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) or (
        isinstance(value, numbers.Real) and not isinstance(value, bool)
    )


def _is_finite(value: Any) -> bool:
    kind = type(value)  # JSON's two number types first: training checks 5 numbers an entry
    if kind is float:
        return math.isfinite(value)
    # an integer is finite; math.isfinite would overflow on one beyond a float's range
    return kind is int or (
        _is_number(value) and (isinstance(value, numbers.Integral) or math.isfinite(value))
    )


def _is_box(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(map(_is_finite, value))


def _is_size(value: Any) -> bool:
    return _is_int(value) and value >= 1


SIZE_RULE = "'width' and 'height' are the image's size in pixels (positive integers)"
# key -> (is the value right, what a right value is); one wording per field for every reader
FIELD_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "id": (_is_int, "an 'id' is an integer"),
    "image_id": (_is_int, "an 'image_id' is the integer id of an entry of 'images'"),
    "category_id": (_is_int, "a 'category_id' is the integer id of an entry of 'categories'"),
    "bbox": (_is_box, "a 'bbox' is 4 finite numbers [x, y, width, height] in pixels"),
    "score": (_is_finite, "a 'score' is a number"),
    "area": (_is_finite, "an 'area' is a finite number of pixels"),
    "iscrowd": (lambda v: v in (0, 1), "'iscrowd' is 0 or 1"),
    "segmentation": (
        lambda v: v is not None,
        "a 'segmentation' (polygons or RLE) is needed for segm evaluation",
    ),
    "file_name": (
        lambda v: isinstance(v, str) and v != "",
        "a 'file_name' is the image's path relative to image_dir",
    ),
    "width": (_is_size, SIZE_RULE),
    "height": (_is_size, SIZE_RULE),
    "name": (lambda v: isinstance(v, str), "a category's 'name' is a string"),
}
_KIND = {"images": "image", "annotations": "annotation", "categories": "category"}
_REFERENCED = {"image_id": "images", "category_id": "categories"}
_OUTPUTS = ("score", "bbox")  # the fields of a result a model computes


def _finite_rule(key: str) -> str:
    """The rule a NaN or infinity in ``key`` breaks, in words."""
    return FIELD_RULES["bbox"][1] if key == "bbox" else f"'{key}' must be a finite number"


def _check_images(images: list, source: str) -> set[int]:
    seen: dict[int, int] = {}
    for index, image in enumerate(images):
        _check_fields("images", index, image, ("id",), source)
        image_id = image["id"]
        if image_id in seen:
            raise CocoFormatError(_repeated(source, "images", image_id, seen[image_id], index))
        seen[image_id] = index
        _check_fields("images", index, image, ("file_name", "width", "height"), source)
        problem = outside_folder(image["file_name"])
        if problem:
            raise CocoFormatError(
                f"{subject(source)}: image id {image_id} has file_name '{image['file_name']}', "
                f"{problem}; file names must be relative paths inside image_dir"
            )
    return set(seen)


def outside_folder(name: str) -> str | None:
    """Why ``name`` would point outside the image folder, or ``None`` if it does not."""
    if os.path.isabs(name) or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    parts = os.path.normpath(name.replace("\\", "/")).split(os.sep)
    if parts[0] == "..":
        return "which points outside image_dir"
    return None


def _check_categories(categories: list, source: str) -> set[int]:
    if not categories:
        raise CocoFormatError(
            f"{subject(source)} has an empty 'categories' list; a detector needs at least one class"
        )
    seen: dict[int, int] = {}
    for index, category in enumerate(categories):
        _check_fields("categories", index, category, ("id",), source)
        cat_id = category["id"]
        if cat_id in seen:
            raise CocoFormatError(_repeated(source, "categories", cat_id, seen[cat_id], index))
        seen[cat_id] = index
        _check_fields("categories", index, category, ("name",), source)
    return set(seen)


def _check_annotations(annotations: list, image_ids: set, cat_ids: set, source: str) -> None:
    seen: dict[int, int] = {}
    for index, ann in enumerate(annotations):
        _check_fields("annotations", index, ann, ("id",), source)
        ann_id = ann["id"]
        if ann_id in seen:
            raise CocoFormatError(_repeated(source, "annotations", ann_id, seen[ann_id], index))
        seen[ann_id] = index
        for key, known in (("image_id", image_ids), ("category_id", cat_ids)):
            _check_fields("annotations", index, ann, (key,), source)
            if ann[key] not in known:
                raise CocoFormatError(
                    f"{subject(source)}: "
                    + unknown_reference(f"annotation id {ann_id}", key, ann[key], known)
                )
        _check_fields("annotations", index, ann, ("bbox",), source)
        optional = [key for key in ("iscrowd", "area") if key in ann]
        _check_fields("annotations", index, ann, optional, source)


def _check_fields(section: str, index: int, entry: Any, keys: Iterable[str], source: str) -> None:
    for key in keys:
        problem = field_problem(section, index, entry, key)
        if problem is not None:
            raise CocoFormatError(f"{subject(source)}: {problem}")


def _repeated(source: str, section: str, entry_id: int, first: int, second: int) -> str:
    kind = _KIND[section]
    return (
        f"{subject(source)} repeats {kind} id {entry_id} ({section}[{first}] and "
        f"{section}[{second}])"
    )


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names = {dict: "object", list: "array", str: "string", type(None): "null"}
    return names.get(type(value), type(value).__name__)  # a Python object passed in memory


def _some(values: list, limit: int = 10) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown if len(values) <= limit else f"{shown}, ... ({len(values)} in all)"
