"""Pascal VOC XML annotations -> a COCO detection file.

**Box coordinates.** VOC's ``xmin..ymax`` are 1-based pixel indices, both ends inside the box:
``xmin=1, xmax=W`` covers a whole image ``W`` pixels wide. COCO boxes are continuous
coordinates from 0 (the left edge of the first pixel). So ``x = xmin - 1``,
``w = xmax - xmin + 1`` (and the same for y): the whole image becomes ``[0, 0, W, H]``. This is
Detectron2's reading (``pascal_voc.py`` subtracts 1 from ``xmin`` and ``ymin`` only).
MMDetection subtracts 1 from all four, so its boxes are one pixel narrower and shorter; the
difference is below what matters for mAP but shows in a side-by-side check.

**Difficult objects** (``<difficult>1</difficult>``): ``crowd`` (the default) writes them with
``iscrowd: 1``. That is what MMDetection's VOC converter does and what its XML dataset means by
``ignore_flag``; COCO evaluation then counts a detection on such an object neither as a hit
nor as a false positive and a miss costs nothing, as in VOC's own protocol, and cvkit's
training ignores crowd boxes in matching. ``keep`` writes them as ordinary objects (Detectron2
trains on them: they "don't hurt accuracy", its comment says); ``skip`` leaves them out.
Whatever the choice, each annotation keeps ``difficult`` and ``truncated`` (0 or 1) as extra
keys, which COCO readers ignore.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cvkit.data.converters.common import (
    IMAGE_EXTENSIONS,
    Conversion,
    ConversionError,
    Notes,
    annotation,
    categories,
    check_folder,
    check_names,
    coco_box,
    image_size,
)
from cvkit.errors import did_you_mean

DIFFICULT_CHOICES = ("crowd", "keep", "skip")
_COORDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class VocObject:
    """One ``<object>``: its class name, 1-based inclusive box and flags."""

    name: str
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax as written
    difficult: bool = False
    truncated: bool = False


@dataclass
class VocImage:
    """One XML file: the image it names, the size it states (``None``: none or 0), objects."""

    xml: Path
    filename: str
    size: tuple[int, int] | None  # (width, height)
    objects: list[VocObject] = field(default_factory=list)


def read_split(path: str | os.PathLike) -> list[str]:
    """The image ids of an ``ImageSets/Main/<split>.txt`` list: the first word of each line.

    Raises:
        ConversionError: the file does not exist (with the lists next to it).
    """
    path = Path(path)
    if not path.is_file():
        there = sorted(p.stem for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        hint = f"; lists there: {', '.join(there[:12])}" if there else ""
        raise ConversionError(f"split list '{path}' does not exist{hint}")
    return [
        line.split()[0]
        for line in path.read_text(encoding="utf-8-sig").splitlines()
        if line.strip()
    ]


def read_voc_xml(path: str | os.PathLike) -> VocImage:
    """Parse one VOC annotation file.

    Raises:
        ConversionError: not XML, or an object without a name or with a missing, non-numeric
            or reversed coordinate; the message names the file and the object.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ConversionError(f"'{path}' is not valid XML ({err}); fix or remove it") from None
    except OSError as err:
        raise ConversionError(f"'{path}' cannot be read ({err.strerror})") from None
    filename = (root.findtext("filename") or "").strip()
    width, height = _int(root, "size/width", path), _int(root, "size/height", path)
    size = (width, height) if width and height else None
    objects = [_object(obj, i, path) for i, obj in enumerate(root.findall("object"), start=1)]
    return VocImage(path, filename, size, objects)


def voc_to_coco(
    ann_dir: str | os.PathLike,
    image_dir: str | os.PathLike,
    ids: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    difficult: Literal["crowd", "keep", "skip"] = "crowd",
) -> Conversion:
    """Convert a folder of VOC XML files to a COCO detection dict.

    Args:
        ann_dir: the ``Annotations`` folder (``<id>.xml`` files).
        image_dir: the folder the XMLs' ``<filename>`` entries are in (``JPEGImages``); COCO
            ``file_name`` entries are relative to it.
        ids: the image ids to convert, in order (``read_split``); default every XML, sorted.
        classes: the class names, category ids ``1..K`` in this order; an object of another
            class is an error. Default: every name found, sorted.
        difficult: ``"crowd"``, ``"keep"`` or ``"skip"`` (see the module's docstring).

    Returns:
        The conversion: image ids ``1..N`` in ``ids`` order, annotation ids from 1, and notes
        counting clipped boxes, boxes left out, images without objects and sizes read from
        the image files.

    Raises:
        ConversionError: a missing folder, XML or image file; an unknown class; a size in the
            XML that differs from the image file's; a malformed XML. Each names the file.
    """
    if difficult not in DIFFICULT_CHOICES:
        raise ConversionError(f"difficult must be one of {DIFFICULT_CHOICES}, got {difficult!r}")
    ann_dir, image_dir = Path(ann_dir), Path(image_dir)
    check_folder(ann_dir, "annotation folder")
    check_folder(image_dir, "image folder")
    notes = Notes()
    records = [read_voc_xml(p) for p in _xml_files(ann_dir, ids, notes)]
    names = check_names(classes, "given") if classes is not None else sorted(_names(records))
    if not names:
        raise ConversionError(
            f"no XML in '{ann_dir}' has an object, so there are no classes to name; pass "
            "--classes a,b,c to write a file of negatives"
        )
    cat_of = {name: i for i, name in enumerate(names, start=1)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, record in enumerate(records, start=1):
        file_name, (width, height) = _image(record, image_dir, notes)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        before = len(annotations)
        for index, obj in enumerate(record.objects, start=1):
            where = f"'{record.xml.name}' object {index}"
            if obj.name not in cat_of:
                raise _unknown_class(record.xml, index, obj.name, names)
            if obj.difficult and difficult == "skip":
                notes.add("difficult objects left out (--difficult skip)", where)
                continue
            x1, y1, x2, y2 = obj.box
            bbox, moved = coco_box(x1 - 1, y1 - 1, x2, y2, width, height)
            if bbox[2] <= 0 or bbox[3] <= 0:
                notes.add("boxes left out: nothing of them inside their image", where)
                continue
            if moved:
                notes.add("boxes clipped to their image", where)
            crowd = int(obj.difficult and difficult == "crowd")
            if crowd:
                notes.add("difficult objects written with iscrowd 1 (ignored)", where)
            ann = annotation(len(annotations) + 1, image_id, cat_of[obj.name], bbox, crowd)
            ann.update(difficult=int(obj.difficult), truncated=int(obj.truncated))
            annotations.append(ann)
        if len(annotations) == before:
            notes.add("images without objects, kept as negatives", f"'{record.xml.name}'")
    coco = {"images": images, "annotations": annotations, "categories": categories(names)}
    return Conversion(coco, notes.lines())


def _xml_files(ann_dir: Path, ids: Sequence[str] | None, notes: Notes) -> list[Path]:
    if ids is None:
        files = sorted(p for p in ann_dir.iterdir() if p.is_file())
        others = [p for p in files if p.suffix.lower() != ".xml"]
        if others:
            notes.add("files that are not .xml in the annotation folder, skipped",
                      f"'{others[0].name}'", len(others))  # fmt: skip
        xmls = [p for p in files if p.suffix.lower() == ".xml"]
        if not xmls:
            raise ConversionError(f"annotation folder '{ann_dir}' holds no .xml files")
        return xmls
    paths = [ann_dir / f"{i}.xml" for i in ids]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ConversionError(
            f"{len(missing)} of the {len(paths)} ids in the split list have no XML file in "
            f"'{ann_dir}', e.g. '{missing[0].name}'; check the list matches the folder"
        )
    return paths


def _names(records: list[VocImage]) -> set[str]:
    return {obj.name for record in records for obj in record.objects}


def _unknown_class(xml: Path, index: int, name: str, names: Sequence[str]) -> ConversionError:
    hint = did_you_mean(name, names)
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    return ConversionError(
        f"'{xml}' object {index} is a '{name}', which is not in the class list "
        f"({len(names)} classes: {shown})" + (f"; {hint}" if hint else "")
        + "; add it to --classes or correct the name in the XML"
    )  # fmt: skip


def _image(record: VocImage, image_dir: Path, notes: Notes) -> tuple[str, tuple[int, int]]:
    """The image's path relative to ``image_dir`` and its size, checked against the XML."""
    path = image_dir / record.filename if record.filename else None
    if path is None or not path.is_file():
        found = [image_dir / (record.xml.stem + e) for e in IMAGE_EXTENSIONS]
        found = [p for p in found if p.is_file()]
        if not found:
            named = f"names image '{record.filename}'" if record.filename else "has no <filename>"
            looked = f"'{path}' or " if path is not None else ""
            raise ConversionError(
                f"'{record.xml}' {named}, and no image of it is in image folder "
                f"'{image_dir}' (looked for {looked}'{record.xml.stem}' with an image "
                "extension); put the image there, pass the right image folder, or leave the "
                "id out of the split"
            )
        notes.add("images found by the XML file's name (its <filename> is not in the folder)",
                  f"'{record.xml.name}'")  # fmt: skip
        path = found[0]
    size = image_size(path)
    if record.size is None:
        notes.add("sizes read from the image file (no <size> in the XML)", f"'{record.xml.name}'")
    elif record.size != size:
        turned = record.size == size[::-1]
        hint = (
            ": width and height are swapped, so the image has an EXIF orientation the "
            "annotation tool did not apply; rotate the pixels (e.g. `exiftran -ai`) and "
            "check the boxes"
            if turned
            else "; the boxes were drawn on another version of the image: fix the XML's "
            "<size> and boxes, or use the image they were drawn on"
        )
        raise ConversionError(
            f"'{record.xml}' says the image is {record.size[0]}x{record.size[1]} but '{path}' "
            f"is {size[0]}x{size[1]} (width x height){hint}"
        )
    return path.relative_to(image_dir).as_posix(), size


def _object(obj: ET.Element, index: int, xml: Path) -> VocObject:
    name = (obj.findtext("name") or "").strip()
    if not name:
        raise ConversionError(f"'{xml}' object {index} has no <name>; give every object a class")
    box = obj.find("bndbox")
    if box is None:
        raise ConversionError(
            f"'{xml}' object {index} ('{name}') has no <bndbox>; add one or remove the object"
        )
    values = []
    for key in _COORDS:
        text = (box.findtext(key) or "").strip()
        try:
            values.append(float(text))
        except ValueError:
            shown = f"'{text}'" if text else "nothing"
            raise ConversionError(
                f"'{xml}' object {index} ('{name}') has {shown} as <{key}>; each of "
                f"{', '.join(_COORDS)} is a number of pixels"
            ) from None
    xmin, ymin, xmax, ymax = values
    if xmax < xmin or ymax < ymin:
        raise ConversionError(
            f"'{xml}' object {index} ('{name}') has xmin {xmin:g}, ymin {ymin:g}, xmax "
            f"{xmax:g}, ymax {ymax:g}: a max below its min; swap them or fix the box"
        )
    return VocObject(
        name,
        (xmin, ymin, xmax, ymax),
        _flag(obj, "difficult", f"'{xml}' object {index} ('{name}')"),
        _flag(obj, "truncated", f"'{xml}' object {index} ('{name}')"),
    )


def _flag(obj: ET.Element, key: str, where: str) -> bool:
    text = (obj.findtext(key) or "0").strip()
    if text not in ("0", "1"):
        raise ConversionError(f"{where} has <{key}>{text}</{key}>; it is 0 or 1")
    return text == "1"


def _int(root: ET.Element, key: str, xml: Path) -> int | None:
    text = (root.findtext(key) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConversionError(f"'{xml}' has <{key}> '{text}'; it is a number of pixels") from None
    if value != int(value) or value < 0:
        raise ConversionError(f"'{xml}' has <{key}> {text}; it is a whole number of pixels")
    return int(value)
