"""``cvkit doctor``: read a config's datasets (or one COCO file) whole and report every
problem at once, with statistics, as text, ``report.json`` and ``dataset.png``.

A COCO dataset is checked from its annotation file and image folder as the config names them,
without building the dataset (whose reader stops at the first problem); a dataset of another
kind is built, then its files are checked: every image decoded (``data.doctor.image_files``),
every mask's size and values (``data.segmentation_checks.check_pair``). Exit codes: 0 clean
(warnings allowed), 1 warnings with ``strict``, 2 errors.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cvkit import plugins
from cvkit.builder import build
from cvkit.config import Config
from cvkit.data.doctor.coco_checks import CocoContents, check_coco_file
from cvkit.data.doctor.findings import ERROR, WARNING, Findings
from cvkit.data.doctor.image_files import ImageFacts, inspect_images
from cvkit.data.doctor.stats import box_stats, label_stats, pixel_stats
from cvkit.data.segmentation_checks import MaskError, check_pair
from cvkit.errors import ConfigError
from cvkit.registry import DATASETS

SPLITS = ("train", "val", "test")


@dataclass
class Source:
    """One dataset checked: the splits that read it (two splits of one COCO file are one
    source), what it is, and what it holds."""

    label: str  # "data.train", "data.train + data.val", or the annotation file
    kind: str  # "coco", "masks", "images" or "memory" (no files)
    files: dict[str, str] = field(default_factory=dict)  # "ann_file", "image_dir", ...
    stats: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # content hash -> example name


@dataclass
class DoctorReport:
    sources: list[Source]
    findings: Findings

    def exit_code(self, strict: bool = False) -> int:
        """1 when the data have errors (or, ``strict``, warnings): bad data, the code every
        command gives for them; 0 otherwise. (2 stays a config or usage mistake.)"""
        if self.findings.of(ERROR):
            return 1
        return 1 if strict and self.findings.of(WARNING) else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "errors": sum(f.count for f in self.findings.of(ERROR)),
            "warnings": sum(f.count for f in self.findings.of(WARNING)),
            "findings": self.findings.to_json(),
            "sources": [
                {"label": s.label, "kind": s.kind, "files": s.files, "stats": s.stats}
                for s in self.sources
            ],
        }


def doctor_files(
    ann_file: str, image_dir: str, limit: int = 5, images: bool = True
) -> DoctorReport:
    """Check one COCO file and its image folder."""
    findings = Findings(limit)
    source = _coco_source(ann_file, ann_file, image_dir, findings, images)
    return DoctorReport([source], findings)


def doctor_config(cfg: Config, limit: int = 5, images: bool = True) -> DoctorReport:
    """Check every split of ``cfg``'s ``data`` (``train``, ``val``, ``test``), then whether
    two splits share an image. Only ``data`` (and ``imports``) is read: a config of nothing
    else works."""
    imports = cfg.get("imports") or []
    if imports:
        plugins.import_plugins(list(imports), "config imports")
    findings = Findings(limit)
    specs = {s: dict(cfg.get(f"data.{s}")) for s in SPLITS if cfg.get(f"data.{s}")}
    if not specs:
        raise ConfigError("the config has no data.train, data.val or data.test to check",
                          where="data")  # fmt: skip
    sources = []
    for key, splits in _group_by_file(specs).items():
        label = " + ".join(f"data.{s}" for s in splits)
        if isinstance(key, tuple):
            sources.append(_coco_source(label, key[0], key[1], findings, images))
        else:
            sources.append(_built_source(label, specs[splits[0]], cfg, findings, images))
    _check_overlap(sources, findings)
    return DoctorReport(sources, findings)


def _group_by_file(specs: dict[str, dict]) -> dict[Any, list[str]]:
    """Splits by what they read: ``(ann_file, image_dir)`` for a COCO spec (two splits of one
    file are checked once), else the split's own name."""
    groups: dict[Any, list[str]] = {}
    for split, spec in specs.items():
        key: Any = split
        if "ann_file" in spec and "image_dir" in spec:
            key = (str(spec["ann_file"]), str(spec["image_dir"]))
        groups.setdefault(key, []).append(split)
    return groups


def _coco_source(
    label: str, ann_file: str, image_dir: str, findings: Findings, images: bool
) -> Source:
    source = Source(label, "coco", {"ann_file": ann_file, "image_dir": image_dir})
    contents = check_coco_file(ann_file, label, findings)
    if contents is None:
        return source
    if images:
        _check_coco_images(source, contents, image_dir, findings)
    source.stats = box_stats(contents.annotations, contents.categories, len(contents.images))
    return source


def _check_coco_images(
    source: Source, contents: CocoContents, image_dir: str, findings: Findings
) -> None:
    if not os.path.isdir(image_dir):
        findings.add("dataset-error", f"{source.label}: image_dir '{image_dir}' is not a folder")
        return
    entries = list(contents.images.values())
    paths = [os.path.join(image_dir, e["file_name"]) for e in entries]
    facts = inspect_images(paths)
    names = [f"image id {e['id']} '{e['file_name']}'" for e in entries]
    for entry, name, fact in zip(entries, names, facts):
        declared = (entry["height"], entry["width"])
        if _file_problem(source.label, name, fact, findings):
            continue
        if (fact.height, fact.width) != declared:
            swapped = (fact.width, fact.height) == declared
            findings.add(
                "image-size-mismatch",
                f"{source.label}: {name} is {fact.width}x{fact.height} pixels, declared "
                f"{entry['width']}x{entry['height']}"
                + (" (swapped: an EXIF orientation the annotations ignored)" if swapped else ""),
            )
    _note_duplicates(source, names, facts, findings)


def _file_problem(label: str, name: str, fact: ImageFacts, findings: Findings) -> bool:
    if fact.error == "missing":
        findings.add("image-missing", f"{label}: {name}")
    elif fact.error is not None:
        findings.add("image-undecodable", f"{label}: {name}: {fact.error}")
    return fact.error is not None


def _note_duplicates(
    source: Source, names: list[str], facts: list[ImageFacts], findings: Findings
) -> None:
    for name, fact in zip(names, facts):
        if not fact.digest:
            continue
        first = source.digests.setdefault(fact.digest, name)
        if first != name:
            findings.add("duplicate-file", f"{source.label}: {name} has the content of {first}")


def _built_source(
    label: str, spec: dict[str, Any], cfg: Config, findings: Findings, images: bool
) -> Source:
    """A dataset of another kind than a COCO file: built (with its own mask check off, where
    it has one, as every mask is checked here), then its files checked."""
    if "check" in _parameters(spec.get("type")):
        spec = {**spec, "check": "none"}
    try:
        dataset = build(spec, DATASETS, path=label.split(" + ")[0], describe=cfg.describe)
    except (ConfigError, ValueError, OSError) as err:
        findings.add("dataset-error", f"{label}: {err}")
        return Source(label, "memory")
    if hasattr(dataset, "ann_file") and hasattr(dataset, "image_dir"):  # generated COCO data
        return _coco_source(label, dataset.ann_file, dataset.image_dir, findings, images)
    files = list(getattr(dataset, "files", None) or [])
    classes = list(getattr(dataset, "classes", None) or [])
    kind = "masks" if hasattr(dataset, "mask_files") else "images" if files else "memory"
    source = Source(label, kind, {"type": type(dataset).__name__})
    if images and files:
        facts = inspect_images(files, _exif(dataset))
        names = [f"'{path}'" for path in files]
        for name, fact in zip(names, facts):
            _file_problem(label, name, fact, findings)
        _note_duplicates(source, names, facts, findings)
    if kind == "masks":
        source.stats = _mask_stats(label, dataset, classes, findings)
    elif hasattr(dataset, "labels") and classes:
        source.stats = label_stats(list(dataset.labels), classes)
    return source


def _parameters(type_name: Any) -> set[str]:
    try:
        return set(inspect.signature(DATASETS.get(str(type_name))).parameters)
    except (KeyError, TypeError, ValueError):
        return set()


def _exif(dataset: Any) -> bool:
    return bool(getattr(getattr(dataset, "spec", None), "exif_orientation", True))


def _mask_stats(label: str, dataset: Any, classes: list[str], findings: Findings) -> dict:
    """Check every (image, mask) pair of a segmentation folder; pixels per class."""
    pixels = np.zeros(len(classes) + 1, dtype=np.int64)
    images_with = np.zeros(len(classes), dtype=np.int64)
    for image, mask in zip(dataset.files, dataset.mask_files):
        try:
            counts = check_pair(image, mask, dataset.spec, values=True)
        except MaskError as err:
            findings.add(_mask_kind(str(err)), f"{label}: {err}")
            continue
        except (ValueError, OSError):
            continue  # the image itself is broken: reported by the image check
        if counts is not None:
            pixels += counts
            images_with += counts[:-1] > 0
    return pixel_stats(pixels, images_with, classes)


def _mask_kind(message: str) -> str:
    if "holds values" in message:
        return "mask-values"
    if "could not be" in message:
        return "mask-unreadable"
    return "mask-size-mismatch"


def _check_overlap(sources: list[Source], findings: Findings) -> None:
    """The same file content in two sources: an image of one split in another."""
    seen: dict[str, tuple[str, str]] = {}
    for source in sources:
        for digest, name in source.digests.items():
            if digest in seen and seen[digest][0] != source.label:
                other_label, other_name = seen[digest]
                findings.add(
                    "split-overlap",
                    f"{source.label}: {name} is {other_label}'s {other_name}",
                )
            seen.setdefault(digest, (source.label, name))


def render(report: DoctorReport) -> str:
    """The report as text: what was read, each kind of problem with its count and
    examples (errors first), and the headline statistics."""
    lines = []
    for s in report.sources:
        files = ", ".join(f"{k} '{v}'" for k, v in s.files.items())
        lines.append(f"{s.label}: {s.kind}{f' ({files})' if files else ''}")
        lines += [f"  {line}" for line in _stats_lines(s.stats)]
    for severity in (ERROR, WARNING):
        found = report.findings.of(severity)
        if not found:
            continue
        total = sum(f.count for f in found)
        lines.append(f"\n{severity}s: {total} in {len(found)} kind{'s' * (len(found) > 1)}")
        for f in found:
            lines.append(f"  {f.kind} x{f.count}: {f.advice}")
            lines += [f"      {example}" for example in f.examples]
            if f.count > len(f.examples):
                lines.append(f"      ... and {f.count - len(f.examples)} more")
    if not report.findings.by_kind:
        lines.append("\nno problems found")
    return "\n".join(lines)


def _stats_lines(stats: dict[str, Any]) -> list[str]:
    if not stats:
        return []
    lines = []
    if "instances" in stats:
        sizes = stats["sizes"]
        lines.append(
            f"{stats['images']} images ({stats['images_without_annotations']} without "
            f"annotations), {stats['instances']} instances, {stats['crowd_regions']} crowd; "
            f"small {sizes['small']}, medium {sizes['medium']}, large {sizes['large']}"
        )
        per_class = stats["instances_per_class"]
    elif "pixels_per_class" in stats:
        per_class = stats["images_per_class"]
        lines.append(f"images containing each class (ignored pixels: {stats['ignored_pixels']})")
    else:
        per_class = stats["images_per_class"]
        lines.append(f"{stats['images']} images")
    shown = sorted(per_class.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{name} {n}" for name, n in shown[:12])
    lines.append(
        f"per class: {text}" + (f", ... ({len(shown)} classes)" if len(shown) > 12 else "")
    )
    return lines


def write_report(report: DoctorReport, out: str | os.PathLike) -> list[Path]:
    """``report.json`` and ``dataset.png`` (the statistics drawn) in ``out``."""
    import json

    from cvkit.visualize.dataset_plot import plot_dataset

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.json"
    path.write_text(json.dumps(report.to_json(), indent=2))
    stats = {s.label: s.stats for s in report.sources if s.stats}
    written = [path]
    if stats:
        written.append(plot_dataset(stats, folder / "dataset.png"))
    return written
