"""COCO evaluation speed: cvkit vs pycocotools vs faster-coco-eval on the same files.

For each size, COCO-like ground truth and results (``cvkit.data.synthetic_coco``:
80 classes, about 7 objects and up to 100 detections per image, crowd regions, every area
range) are written once to ``--data-dir`` and reused. With ``--iou-type segm`` each object and
detection also gets a mask (see ``segm_files``: polygons in the ground truth, crowds as
uncompressed RLE, compressed RLE in the results, which keep their boxes as detectors write
them) and every backend scores the masks.

Two ways to time, each measurement in a fresh process so imports, caches and peak memory
belong to one backend alone:

- by default, inside the process: from the two file paths to the 12 stats
  (``evaluate_coco(gt_path, results_path, iou_type, backend=...)``), file reading included;
  importing cvkit and the backend happens before it and is reported on its own. Prints a
  table per size (read / load / evaluate / accumulate / total, peak RSS, the largest
  |stat - pycocotools|, speed ratios) and how time grows with the image count.
- ``--whole-process``: whole processes as a user runs them, interpreter start and imports
  included: ``cvkit coco-eval GT RESULTS`` and ``cvkit coco-eval GT RESULTS --out DIR`` (the
  JSON and the plots), against a script doing what each reference's documentation shows
  (``COCO(gt)``, ``loadRes``, ``evaluate``, ``accumulate``, ``summarize``). Prints wall and CPU
  seconds, peak RSS, the ratio to faster-coco-eval's wall time and whether the stats agree.

Every number goes to ``bench/results/coco_eval_speed.json`` (or ``--out``).

    python bench/coco_eval_speed.py [--sizes 500 5000 20000] [--repeats 3]
        [--backends cvkit pycocotools faster-coco-eval] [--iou-type bbox|segm]
        [--whole-process] [--data-dir bench/data/coco_like] [--once-above SECONDS]
        [--out bench/results/coco_eval_speed.json] [--resume]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("cvkit", "pycocotools", "faster-coco-eval")
PHASES = ("read", "load", "evaluate", "accumulate", "total")
REFERENCE = "pycocotools"  # the numbers every backend must reproduce


# --------------------------------------------------------------------------- child process


def child(backend: str, gt_path: str, results_path: str, iou_type: str = "bbox") -> None:
    """One measurement: import, then time ``evaluate_coco`` from paths; print one JSON line."""
    t0 = time.perf_counter()
    # Import everything the backend needs before the clock starts: importing cvkit imports
    # torch (seconds) and the reference backends import lazily inside evaluate_coco, which
    # would otherwise charge their import to the first phase.
    from cvkit.evaluation.coco_map import evaluate_coco

    if backend == "cvkit":
        import cvkit.evaluation.coco.accumulate
        import cvkit.evaluation.coco.match  # noqa: F401
    elif backend == "pycocotools":
        import pycocotools.cocoeval  # noqa: F401
    else:
        import faster_coco_eval  # noqa: F401
    import_s = time.perf_counter() - t0
    baseline_mb = _max_rss_mb()  # what the interpreter + imports hold before any work

    cpu0 = _cpu_s()
    result = evaluate_coco(gt_path, results_path, iou_type, backend=backend)
    # CPU seconds barely move when other processes compete for the cores; wall time does
    cpu_s = _cpu_s() - cpu0

    record = {
        "import_s": import_s,
        "baseline_rss_mb": baseline_mb,
        "peak_rss_mb": _max_rss_mb(),
        "vm_hwm_mb": _vm_hwm_mb(),
        "cpu_s": cpu_s,
        "timings": result.timings,
        "stats": result.stats,
    }
    # The reference backends print; the record is the last line so the parent can find it.
    print("\n" + json.dumps(record))


def _max_rss_mb() -> float:
    # Linux carries ru_maxrss over from the parent through fork and exec, so this is only
    # the child's own peak because the parent stays smaller than any child (see main).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _vm_hwm_mb() -> float:
    """The peak RSS of this process's own memory map (fresh at exec): a cross-check."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(backend: str, gt_path: Path, results_path: Path, iou_type: str = "bbox") -> dict:
    """Run ``child`` in a fresh interpreter and return its record."""
    return _run_self("--child", backend, str(gt_path), str(results_path), "--iou-type", iou_type)


def _run_self(*args: str) -> dict:
    """Run this script with ``args`` in a fresh interpreter; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    *messages, record = proc.stdout.strip().splitlines()
    if "--prepare" in args:  # pass on "generated ..."; a backend's own log is noise here
        for line in filter(None, messages):
            print(line)
    return json.loads(record)


def prepare(num_images: int, data_dir: Path, seed: int, iou_type: str = "bbox") -> None:
    """Make (or find) this size's files and describe them; print one JSON line."""
    gt_path, res_path = data_files(num_images, data_dir, seed)
    if iou_type == "segm":
        gt_path, res_path = segm_files(gt_path, res_path)
    record = {"gt": str(gt_path), "results": str(res_path), **describe(gt_path, res_path)}
    print("\n" + json.dumps(record))


# --------------------------------------------------------------------------- data


def data_files(num_images: int, data_dir: Path, seed: int) -> tuple[Path, Path]:
    """The cached ``(gt, results)`` files for this size, generated on the first call."""
    gt_path = data_dir / f"coco_like_{num_images}_seed{seed}_gt.json"
    res_path = data_dir / f"coco_like_{num_images}_seed{seed}_results.json"
    if gt_path.exists() and res_path.exists():
        return gt_path, res_path
    import orjson

    from cvkit.data.synthetic_coco import coco_like

    t0 = time.perf_counter()
    gt, results = coco_like(num_images, seed=seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    for path, obj in ((gt_path, gt), (res_path, results)):
        # write then rename: an interrupted run must not leave a truncated file in the cache
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(obj))
        tmp.replace(path)
    print(f"generated {num_images} images in {time.perf_counter() - t0:.1f}s -> {data_dir}")
    return gt_path, res_path


def segm_files(gt_path: Path, res_path: Path) -> tuple[Path, Path]:
    """The bbox files with a mask for every object and detection (generated on first use).

    Each mask is the ellipse inscribed in the box, as a polygon of 24 points whose radius
    varies by up to 15%, so that mask IoU differs from box IoU. Ground truth: polygons, and
    crowd regions (their box's pixels) as uncompressed RLE, as COCO ships them; ``area`` is
    the mask's (it decides the area range). Results: compressed RLE (counts as a string, as
    detectors write them), keeping their ``bbox``. Clipped to the image like every COCO mask.
    """
    out = [p.with_name(p.name.replace("_gt.json", "_segm_gt.json").replace(
        "_results.json", "_segm_results.json")) for p in (gt_path, res_path)]  # fmt: skip
    if all(p.exists() for p in out):
        return out[0], out[1]
    import numpy as np
    import orjson
    from pycocotools import mask as mask_utils

    t0 = time.perf_counter()
    gt = orjson.loads(gt_path.read_bytes())
    results = orjson.loads(res_path.read_bytes())
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    rng = np.random.default_rng(0)
    for ann, polygon in zip(gt["annotations"], _polygons(gt["annotations"], rng)):
        h, w = sizes[ann["image_id"]]
        if ann["iscrowd"]:  # a crowd region: the box's pixels
            counts = _uncompressed_counts(_box_mask(ann["bbox"], h, w))
            ann["segmentation"] = {"counts": counts, "size": [h, w]}
            rle = mask_utils.frPyObjects(ann["segmentation"], h, w)
        else:
            ann["segmentation"] = [polygon]
            rle = mask_utils.frPyObjects([polygon], h, w)[0]
        ann["area"] = float(mask_utils.area(rle))
    polygons = _polygons(results, rng)
    for r, polygon in zip(results, polygons):
        h, w = sizes[r["image_id"]]
        rle = mask_utils.frPyObjects([polygon], h, w)[0]
        r["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
    for path, obj in zip(out, (gt, results)):
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(obj))
        tmp.replace(path)
    print(f"added masks in {time.perf_counter() - t0:.1f}s -> {out[0].parent}")
    return out[0], out[1]


def _polygons(rows: list[dict], rng) -> list[list[float]]:
    """An irregular ellipse in each row's ``bbox``: 24 points, ``[x0, y0, x1, y1, ...]``."""
    import numpy as np

    box = np.array([r["bbox"] for r in rows], dtype=np.float64).reshape(-1, 4)
    angle = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
    radius = 0.5 * rng.uniform(0.85, 1.0, (len(box), len(angle)))
    cx, cy = box[:, :1] + box[:, 2:3] / 2, box[:, 1:2] + box[:, 3:4] / 2
    x = cx + box[:, 2:3] * radius * np.cos(angle)
    y = cy + box[:, 3:4] * radius * np.sin(angle)
    return np.stack([x, y], axis=2).reshape(len(box), -1).round(2).tolist()


def _box_mask(box: list[float], height: int, width: int):
    """``uint8 [H, W]``: 1 on the box's pixels (rounded to whole pixels, at least one)."""
    import numpy as np

    mask = np.zeros((height, width), dtype=np.uint8)
    x, y, w, h = (round(v) for v in box)
    mask[max(y, 0) : y + max(h, 1), max(x, 0) : x + max(w, 1)] = 1
    return mask


def _uncompressed_counts(mask) -> list[int]:
    """COCO's uncompressed RLE counts of a ``[H, W]`` mask: run lengths in column order,
    starting with a run of zeros."""
    import numpy as np

    flat = mask.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.r_[0, change, flat.size]
    counts = np.diff(bounds).tolist()
    return [0, *counts] if flat.size and flat[0] else counts


def describe(gt_path: Path, res_path: Path) -> dict:
    """Check the generated data against the description: counts, crowd share, area ranges."""
    import numpy as np
    import orjson

    gt = orjson.loads(gt_path.read_bytes())
    results = orjson.loads(res_path.read_bytes())
    num_images = len(gt["images"])
    anns = gt["annotations"]
    crowd = np.array([a["iscrowd"] for a in anns], dtype=bool)
    # pycocotools assigns ground truth to area ranges by its "area" field, detections by w*h
    gt_area = np.array([a["area"] for a in anns])
    det_area = np.array([r["bbox"][2] * r["bbox"][3] for r in results])
    per_image = np.bincount(np.unique([r["image_id"] for r in results], return_inverse=True)[1])
    objects = np.bincount(np.unique([a["image_id"] for a in anns], return_inverse=True)[1])
    gt_cats = {a["category_id"] for a in anns}
    return {
        "images": num_images,
        "categories": len(gt["categories"]),
        "categories_without_gt": len(gt["categories"]) - len(gt_cats),
        "objects_per_image": len(anns) / num_images,
        "images_without_objects": num_images - len(objects),
        "detections_per_image": len(results) / num_images,
        "max_detections_per_image": int(per_image.max()),
        "max_objects_per_image": int(objects.max()),
        "crowd_share": float(crowd.mean()),
        "gt_area_shares": _area_shares(gt_area[~crowd]),
        "det_area_shares": _area_shares(det_area),
        "gt_mb": gt_path.stat().st_size / 2**20,
        "results_mb": res_path.stat().st_size / 2**20,
    }


def _area_shares(area) -> dict[str, float]:
    small, large = area < 32**2, area >= 96**2
    return {
        "small": float(small.mean()),
        "medium": float((~small & ~large).mean()),
        "large": float(large.mean()),
    }


def print_description(d: dict) -> None:
    g, r = d["gt_area_shares"], d["det_area_shares"]
    print(
        f"data: {d['images']} images ({d['gt_mb']:.1f} + {d['results_mb']:.1f} MB), "
        f"{d['categories']} classes ({d['categories_without_gt']} without gt); "
        f"{d['objects_per_image']:.2f} objects/image (max {d['max_objects_per_image']}, "
        f"{d['images_without_objects']} images without any), "
        f"{d['detections_per_image']:.1f} detections/image (max "
        f"{d['max_detections_per_image']}); crowd {d['crowd_share']:.1%}; "
        f"gt area small/medium/large {g['small']:.0%}/{g['medium']:.0%}/{g['large']:.0%}, "
        f"detections {r['small']:.0%}/{r['medium']:.0%}/{r['large']:.0%}"
    )


# --------------------------------------------------------------------------- benchmark


def bench_size(
    paths: tuple[Path, Path], backends: list[str], repeats: int, once_above: float, iou_type: str
):
    """``{backend: [record, ...]}``. Repeats go round-robin over the backends so a burst of
    load from another process hits every backend rather than one; a backend whose first run
    took longer than ``once_above`` seconds is not repeated (pycocotools on 20,000 images)."""
    runs: dict[str, list[dict]] = {b: [] for b in backends}
    for rep in range(repeats):
        for backend in backends:
            if rep > 0 and runs[backend][0]["timings"]["total"] > once_above:
                continue
            record = measure(backend, *paths, iou_type)
            runs[backend].append(record)
            print(f"  {backend:<17} run {rep + 1}: {record['timings']['total']:.2f}s", flush=True)
    return runs


def summarize_backend(records: list[dict]) -> dict:
    """The run with the median total (its phases add up to it), plus memory and import time."""
    ordered = sorted(records, key=lambda r: r["timings"]["total"])
    median = ordered[(len(ordered) - 1) // 2]  # the lower median for an even count
    return {
        "runs": len(records),
        "timings": {p: median["timings"][p] for p in PHASES},
        "cpu_s": median["cpu_s"],
        "all_totals": [r["timings"]["total"] for r in records],
        "import_s": statistics.median(r["import_s"] for r in records),
        "baseline_rss_mb": max(r["baseline_rss_mb"] for r in records),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in records),
        "vm_hwm_mb": max(r["vm_hwm_mb"] for r in records),
        "stats": median["stats"],
        # every repeat must give the same numbers; a difference would mean non-determinism
        "stats_vary_between_runs": any(r["stats"] != median["stats"] for r in records),
    }


def compare(summary: dict[str, dict]) -> None:
    """Add the largest |stat - pycocotools| and the speed ratios to each backend's summary."""
    ref = summary.get(REFERENCE)
    for s in summary.values():
        s["max_abs_diff_vs_pycocotools"] = (
            max(abs(s["stats"][k] - ref["stats"][k]) for k in ref["stats"]) if ref else None
        )
        for other in ("pycocotools", "faster-coco-eval"):
            if other in summary:
                ratio = summary[other]["timings"]["total"] / s["timings"]["total"]
                s[f"speedup_vs_{other}"] = ratio
                s[f"cpu_speedup_vs_{other}"] = summary[other]["cpu_s"] / s["cpu_s"]


def table(summary: dict[str, dict]) -> str:
    head = (
        "| backend | read s | load s | evaluate s | accumulate s | total s (median) | CPU s | runs "
        "| import s | RSS after import MB | peak RSS MB | max abs diff vs pycocotools "
        "| x faster than pycocotools | x faster than faster-coco-eval |"
    )
    lines = [head, "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"]
    for backend, s in summary.items():
        t = s["timings"]
        diff = s["max_abs_diff_vs_pycocotools"]
        cells = [
            backend,
            *(f"{t[p]:.3f}" for p in PHASES),
            f"{s['cpu_s']:.2f}",
            str(s["runs"]),
            f"{s['import_s']:.2f}",
            f"{s['baseline_rss_mb']:.0f}",
            f"{s['peak_rss_mb']:.0f}",
            "n/a" if diff is None else f"{diff:.1e}" if diff else "0",
            _ratio(s.get("speedup_vs_pycocotools")),
            _ratio(s.get("speedup_vs_faster-coco-eval")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal(summary: dict[str, dict]) -> str:
    """The issue's target: identical stats, and cvkit at most half of faster-coco-eval's time."""
    cvkit = summary.get("cvkit", {})
    speedup = cvkit.get("speedup_vs_faster-coco-eval")
    diff = cvkit.get("max_abs_diff_vs_pycocotools")
    return (
        f"\ngoal: stats identical to pycocotools: {'n/a' if diff is None else diff == 0}; "
        f"cvkit total <= half of faster-coco-eval's: "
        f"{'n/a' if speedup is None else speedup >= 2} ({_ratio(speedup)})"
    )


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def scaling(results: dict[int, dict], backends: list[str]) -> str:
    """Total time per size, per image, and the exponent b in time ~ images^b between the
    smallest and the largest size (1 = linear)."""
    sizes = sorted(results)
    columns = " | ".join(f"{n} images: s (us/image)" for n in sizes)
    lines = [f"| backend | {columns} | exponent |"]
    lines.append("|" + "---|" * (len(sizes) + 2))
    for b in backends:
        totals = [results[n]["backends"][b]["timings"]["total"] for n in sizes]
        cells = [f"{t:.2f} ({1e6 * t / n:.0f})" for t, n in zip(totals, sizes)]
        exponent = (
            math.log(totals[-1] / totals[0]) / math.log(sizes[-1] / sizes[0])
            if len(sizes) > 1
            else float("nan")
        )
        lines.append(f"| {b} | " + " | ".join(cells) + f" | {exponent:.2f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- whole processes

# What each process is measured against: the reference that is fastest to run.
WHOLE_BASELINE = "faster-coco-eval"
# The targets, as a share of faster-coco-eval's wall time: (iou_type, process) -> x
WHOLE_GOALS = {
    ("bbox", "cvkit coco-eval"): 0.2,
    ("bbox", "cvkit coco-eval --out"): 1.0,
    ("segm", "cvkit coco-eval"): 0.5,
}
_STAT_LINE = re.compile(r"^ Average (?:Precision|Recall) .* = (-?\d+\.\d+)$", re.M)


def native(backend: str, gt_path: str, results_path: str, iou_type: str) -> None:
    """A reference's whole evaluation as its documentation shows it; the stats as the last
    line (after the reference's own printing), at full precision."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    coco_gt = COCO(gt_path)
    coco_dt = coco_gt.loadRes(results_path)
    evaluator = COCOeval(coco_gt, coco_dt, iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    print("\n" + json.dumps({"stats": [float(v) for v in evaluator.stats[:12]]}))


def whole_commands(
    paths: tuple[Path, Path], backends: list[str], iou_type: str, out_dir: Path
) -> dict[str, list[str]]:
    """``{name: argv}`` of the processes to time, cvkit's as a user types them."""
    gt, res = str(paths[0]), str(paths[1])
    script = Path(sys.executable).with_name("cvkit")  # the console script pip installs
    cvkit = [str(script)] if script.exists() else [sys.executable, "-m", "cvkit"]
    commands = {}
    if "cvkit" in backends:
        plain = [*cvkit, "coco-eval", gt, res, "--iou-type", iou_type]
        commands["cvkit coco-eval"] = plain
        commands["cvkit coco-eval --out"] = [*plain, "--out", str(out_dir)]
    for backend in ("faster-coco-eval", "pycocotools"):
        if backend in backends:
            commands[backend] = [sys.executable, __file__, "--native", backend, gt, res, iou_type]
    return commands


def run_whole(argv: list[str]) -> dict:
    """Run one process; its wall and CPU seconds (its own, from wait4), peak RSS and stats."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{stderr[-4000:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "stats": _whole_stats(argv, stdout),
        "tail": stdout.strip().splitlines()[-1],
    }


def _whole_stats(argv: list[str], stdout: str) -> dict:
    """``{"stats": [12], "digits": d}``: full precision from a reference's last line or from
    ``coco_eval.json``, else the 3 decimals ``cvkit coco-eval`` prints."""
    if "--native" in argv:
        return {"stats": json.loads(stdout.strip().splitlines()[-1])["stats"], "digits": None}
    if "--out" in argv:
        report = json.loads((Path(argv[argv.index("--out") + 1]) / "coco_eval.json").read_text())
        return {"stats": list(report["stats"].values()), "digits": None}
    return {"stats": [float(v) for v in _STAT_LINE.findall(stdout)], "digits": 3}


def bench_whole(paths: tuple[Path, Path], args: argparse.Namespace) -> dict[str, list[dict]]:
    """``{process: [record, ...]}``, repeats round-robin as in ``bench_size``."""
    with tempfile.TemporaryDirectory(prefix="coco_eval_report_") as folder:
        commands = whole_commands(paths, args.backends, args.iou_type, Path(folder))
        runs: dict[str, list[dict]] = {name: [] for name in commands}
        for rep in range(args.repeats):
            for name, argv in commands.items():
                if rep > 0 and runs[name][0]["wall_s"] > args.once_above:
                    continue
                record = run_whole(argv)
                runs[name].append(record)
                print(f"  {name:<22} run {rep + 1}: {record['wall_s']:.2f}s", flush=True)
    return runs


def summarize_whole(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Per process: the run with the median wall time, and the stats checked against the
    reference (pycocotools if it ran, else faster-coco-eval)."""
    summary = {}
    for name, records in runs.items():
        ordered = sorted(records, key=lambda r: r["wall_s"])
        median = ordered[(len(ordered) - 1) // 2]
        summary[name] = {
            "runs": len(records),
            "wall_s": median["wall_s"],
            "cpu_s": median["cpu_s"],
            "all_wall_s": [r["wall_s"] for r in records],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in records),
            "stats": median["stats"],
        }
    ref_name = REFERENCE if REFERENCE in summary else WHOLE_BASELINE
    ref = summary.get(ref_name, {}).get("stats")
    base = summary.get(WHOLE_BASELINE)
    for s in summary.values():
        s["x_of_faster_coco_eval"] = s["wall_s"] / base["wall_s"] if base else None
        s["cpu_x_of_faster_coco_eval"] = s["cpu_s"] / base["cpu_s"] if base else None
        s["stats_vs"] = ref_name if ref else None
        s["max_abs_diff"] = _stats_diff(s["stats"], ref["stats"]) if ref else None
    return summary


def _stats_diff(ours: dict, ref: list[float]) -> float:
    """The largest |stat - reference|, ours rounded as printed when it was printed."""
    if len(ours["stats"]) != len(ref):
        return float("inf")
    digits = ours["digits"]
    return max(
        abs(a - (b if digits is None else round(b, digits))) for a, b in zip(ours["stats"], ref)
    )


def whole_table(summary: dict[str, dict], iou_type: str) -> str:
    head = (
        "| process | wall s (median) | CPU s | runs | peak RSS MB | x faster-coco-eval's wall "
        "| x its CPU | goal | max abs stat diff |"
    )
    lines = [head, "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"]
    for name, s in summary.items():
        goal = WHOLE_GOALS.get((iou_type, name))
        x = s["x_of_faster_coco_eval"]
        diff = s["max_abs_diff"]
        met = "" if goal is None or x is None else f"<= {goal}x: {'yes' if x <= goal else 'NO'}"
        cells = [
            name,
            f"{s['wall_s']:.2f}",
            f"{s['cpu_s']:.2f}",
            str(s["runs"]),
            f"{s['peak_rss_mb']:.0f}",
            "n/a" if x is None else f"{x:.2f}x",
            "n/a"
            if s["cpu_x_of_faster_coco_eval"] is None
            else f"{s['cpu_x_of_faster_coco_eval']:.2f}x",
            met,
            "n/a" if diff is None else (f"{diff:.1e}" if diff else "0") + f" (vs {s['stats_vs']})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "cpus": os.cpu_count()}
    for pkg in ("numpy", "orjson", "pycocotools", "faster-coco-eval", "torch"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000, 20000])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--once-above", type=float, default=float("inf"),
        help="seconds: a backend whose first run takes longer is run once at that size",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "bench/data/coco_like")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/coco_eval_speed.json")
    parser.add_argument(
        "--resume", action="store_true",
        help="keep the sizes an earlier, interrupted run already wrote to --out",
    )  # fmt: skip
    parser.add_argument("--iou-type", choices=("bbox", "segm"), default="bbox")
    parser.add_argument(
        "--whole-process", action="store_true",
        help="time whole processes: `cvkit coco-eval` (with and without --out) against each "
        "reference's own script, interpreter start and imports included",
    )  # fmt: skip
    parser.add_argument("--child", nargs=3, metavar=("BACKEND", "GT", "RESULTS"))
    parser.add_argument("--native", nargs=4, metavar=("BACKEND", "GT", "RESULTS", "IOU_TYPE"))
    parser.add_argument("--prepare", type=int, metavar="NUM_IMAGES")
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.iou_type)
        return
    if args.native:
        native(*args.native)
        return
    if args.prepare:
        prepare(args.prepare, args.data_dir, args.seed, args.iou_type)
        return

    report = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "versions": versions(),
        "sizes": {},
    }
    done = _finished_sizes(args) if args.resume else {}
    for n in args.sizes:
        print(f"\n## {n} images")
        if str(n) in done:
            entry = done[str(n)]
            print("(kept from an earlier run: --resume)")
            print_description(entry["data"])
        else:
            entry = bench_one_size(n, args)
        print()
        if args.whole_process:
            print(whole_table(entry["processes"], args.iou_type))
        else:
            print(table(entry["backends"]))
            print(goal(entry["backends"]))
        report["sizes"][str(n)] = entry
        # written after every size, so a run that is killed keeps what it measured
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))

    if len(args.sizes) > 1 and not args.whole_process:
        print("\n## scaling (median total)\n")
        print(scaling({int(n): e for n, e in report["sizes"].items()}, args.backends))
    print(f"\nwrote {args.out}")


def bench_one_size(n: int, args: argparse.Namespace) -> dict:
    """Data, checks and every backend's measurements for one size."""
    # Generating and describing the data happen in a child too: the parent must stay
    # small, or every measurement child would inherit its peak RSS (see _max_rss_mb).
    data = _run_self("--prepare", str(n), "--data-dir", str(args.data_dir),
                     "--seed", str(args.seed), "--iou-type", args.iou_type)  # fmt: skip
    paths = Path(data.pop("gt")), Path(data.pop("results"))
    print_description(data)
    load_before = os.getloadavg()  # the machine is shared: keep how busy it was
    if args.whole_process:
        processes = bench_whole(paths, args)
        timed = {"processes": summarize_whole(processes), "runs": processes}
    else:
        runs = bench_size(paths, args.backends, args.repeats, args.once_above, args.iou_type)
        summary = {b: summarize_backend(r) for b, r in runs.items()}
        compare(summary)
        timed = {"backends": summary, "runs": runs}
    return {
        "data": data,
        **timed,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def _finished_sizes(args: argparse.Namespace) -> dict:
    """Sizes in an earlier ``--out`` measured the same way (backends, repeats, seed, IoU
    type, whole processes or not)."""
    if not args.out.exists():
        return {}
    old = json.loads(args.out.read_text())
    keys = ("backends", "repeats", "seed", "iou_type", "whole_process")
    defaults = {"iou_type": "bbox", "whole_process": False}  # files from before these options
    same = all(old["args"].get(k, defaults.get(k)) == getattr(args, k) for k in keys)
    return old["sizes"] if same else {}


if __name__ == "__main__":
    main()
