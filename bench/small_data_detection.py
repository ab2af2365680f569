"""RetinaNet on small data: deep head towers against the demo's, and the CPU templates.

Two comparisons, each a list of full training runs through cvkit's own engine
(``cvkit.engine.run.train``), one after the other, on the embedded shapes (400 train / 100 val
images, generated once, no download):

``towers``: the demo's config (``configs/detection/retinanet_effl0_fpn_8e_shapes.yaml``, a
2-conv head) against the same config with torchvision's 4-conv head towers (N(0, 0.01)
init, as in the paper), with 4-conv towers that have GroupNorm and He-initialised weights
(``RetinaHead(norm="GN", tower_init="kaiming")``), and those with the head and neck at twice
the backbone's LR (``train.optimizer.lr=2e-3``, ``train.param_groups.backbone_lr_mult=0.5``;
the 2-conv demo too, for a fair pair); then a 2-conv / 4-conv pair on the small-object config
(``retinanet_effl0_fpn_p2_8e_shapes.yaml``: P2-P5, GIoU). All 8 epochs. Goal: 4 convs within
3 AP points of 2.

``templates``: the CPU/offline templates a user copies (``retinanet_effl0_fpn_my_dataset.yaml``
and ``faster_rcnn_effl0_fpn_my_dataset.yaml``), exactly as shipped but for their data paths,
which point at the shapes' train and val COCO files (``split: all``: separate files, as the
templates' comment says). Each run's wall time is measured; the RetinaNet template also runs
for the epochs that fit in the Faster R-CNN template's time. Goal: the RetinaNet template
within 5 AP points of the Faster R-CNN template at equal training time.

    python bench/small_data_detection.py towers templates          # ~30 min on 2 cores
    python bench/small_data_detection.py towers --only "warmup 100"  # two of the tower runs
    python bench/small_data_detection.py towers --smoke            # seconds: 1 step each

Run it on a quiet machine: the times are wall clock. Results: a table on stdout and
``bench/results/small_data_detection.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cvkit.config import load_config
from cvkit.config.load import packaged_root
from cvkit.data.shapes import ShapesDetection
from cvkit.engine import run

RESULTS = Path(__file__).parent / "results" / "small_data_detection.json"
DEMO = "cvkit://detection/retinanet_effl0_fpn_8e_shapes.yaml"
P2 = "cvkit://detection/retinanet_effl0_fpn_p2_8e_shapes.yaml"
DEEP = ["model.head.num_convs=4"]
GN_HE = [*DEEP, "model.head.norm=GN", "model.head.norm_groups=16", "model.head.tower_init=kaiming"]
# the head and neck at LR 2e-3, the backbone at the configs' 1e-3
HEAD_LR = ["train.optimizer.lr=2e-3", "train.param_groups.backbone_lr_mult=0.5"]
WARMUP = "train.schedule.warmup_steps=100"  # the configs warm up over 50 steps
TOWERS = {  # label: (config, overrides)
    "P3-P5, 2 convs (the demo)": (DEMO, []),
    "P3-P5, 4 convs": (DEMO, DEEP),
    "P3-P5, 4 convs, GN + He init": (DEMO, GN_HE),
    "P3-P5, 4 convs, GN + He init, head LR 2x": (DEMO, [*GN_HE, *HEAD_LR]),
    "P3-P5, 2 convs, head LR 2x": (DEMO, HEAD_LR),
    "P3-P5, 4 convs, GN + He init, head LR 2x, warmup 100": (DEMO, [*GN_HE, *HEAD_LR, WARMUP]),
    "P3-P5, 2 convs, warmup 100": (DEMO, [WARMUP]),
    "P2-P5 + GIoU, 2 convs": (P2, []),
    "P2-P5 + GIoU, 4 convs, GN + He init, head LR 2x": (P2, [*GN_HE, *HEAD_LR]),
}
TEMPLATES = {
    "RetinaNet template": "detection/retinanet_effl0_fpn_my_dataset.yaml",
    "Faster R-CNN template": "detection/faster_rcnn_effl0_fpn_my_dataset.yaml",
}
SMOKE = ["train.max_steps=1", "train.epochs=1", "data.num_workers=0"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("parts", nargs="+", choices=["towers", "templates"])
    p.add_argument(
        "--smoke", action="store_true", help="one step per run, 16+8 images, 2 tower runs"
    )
    p.add_argument("--only", help="towers: only the runs whose label contains this")
    p.add_argument("--work-dir", type=Path, default=Path("runs/bench_small_data"))
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args()


def train(cfg_path: str | Path, overrides: list[str], name: str, args) -> dict:
    """One run: its AP, AP50 and wall seconds (data, model, training and evaluation)."""
    extra = [f"run_dir={args.work_dir}", f"name={name}", "train.tensorboard=false"]
    if args.smoke:
        extra += SMOKE
    cfg = load_config(str(cfg_path), [*overrides, *extra])
    start = time.perf_counter()
    result = run.train(cfg)
    seconds = time.perf_counter() - start
    return {"AP": result.metrics["AP"], "AP50": result.metrics["AP50"], "seconds": seconds}


def towers(args) -> dict:
    data = ["data.train.num_images=16", "data.val.num_images=8"] if args.smoke else []
    runs = list(TOWERS.items())
    if args.only:
        runs = [(label, run) for label, run in runs if args.only in label]
    if args.smoke:  # the first and the last: both configs, every override
        runs = [runs[0], runs[-1]]
    return {
        label: train(cfg, [*overrides, *data], f"towers_{i}", args)
        for i, (label, (cfg, overrides)) in enumerate(runs)
    }


def shapes_files(args) -> dict[str, tuple[str, str]]:
    """The shapes' COCO files and image folders: what a user's own data would be."""
    sizes = {"train": 16, "val": 8} if args.smoke else {"train": 400, "val": 100}
    out = {}
    for split, n in sizes.items():
        ds = ShapesDetection(split=split, num_images=n, image_size=128)
        out[split] = (ds.ann_file, ds.image_dir)
    return out


def template_copy(template: str, files: dict, folder: Path) -> Path:
    """The template with its data paths (and only those) pointed at ``files``."""
    text = (packaged_root() / template).read_text()
    for split in ("train", "val"):
        ann_file, image_dir = files[split]
        block = text[text.index(f"  {split}:\n") :]
        edited = block.replace("data/my_dataset/annotations.json", ann_file, 1)
        edited = edited.replace("data/my_dataset/images", image_dir, 1)
        edited = edited.replace(f"split: {split}", "split: all", 1)
        text = text.replace(block, edited)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / Path(template).name
    path.write_text(text)
    return path


def templates(args) -> dict:
    files = shapes_files(args)
    results = {}
    for i, (label, template) in enumerate(TEMPLATES.items()):
        path = template_copy(template, files, args.work_dir / "configs")
        results[label] = train(path, [], f"template_{i}", args)
    # the RetinaNet template again, for the epochs that fit in Faster R-CNN's time
    retina, frcnn = results["RetinaNet template"], results["Faster R-CNN template"]
    path = args.work_dir / "configs" / Path(TEMPLATES["RetinaNet template"]).name
    epochs = load_config(str(path)).get("train.epochs")
    fit = max(1, int(epochs * frcnn["seconds"] / retina["seconds"]))
    if fit != epochs and not args.smoke:
        overrides = [f"train.epochs={fit}", f"eval.interval={fit}"]
        results[f"RetinaNet template, {fit} epochs"] = train(path, overrides, "template_fit", args)
    return results


def main() -> None:
    args = parse_args()
    parts = {"templates": templates, "towers": towers}  # the timed comparison first
    report = {part: parts[part](args) for part in parts if part in args.parts}
    print("| part | run | AP | AP50 | seconds |\n| --- | --- | --- | --- | --- |")
    for part, runs in report.items():
        for label, r in runs.items():
            print(f"| {part} | {label} | {r['AP']:.4f} | {r['AP50']:.4f} | {r['seconds']:.0f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
