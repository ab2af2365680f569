"""Transfer learning is real: ImageNet-pretrained EfficientNet-Lite0 vs the same net from scratch.

Three runs of configs/classification/efficientnet_lite0_finetune_3e_digits.yaml, on the CPU:

1. few-shot, pretrained: 10 images per class (seeded), scored on the other 1,697 images;
2. few-shot, from scratch: the same recipe with random weights (norm layers in train mode);
3. the full digits train split, pretrained, scored on the validation split (goal: >= 98%).

    python bench/transfer_learning.py [--few-shot-epochs 30] [--out bench/results]

Prints a table and writes transfer_learning.json with every metric and the wall times.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from cvkit.config import load_config
from cvkit.engine import run

CONFIG = (
    Path(__file__).resolve().parents[1]
    / "configs/classification/efficientnet_lite0_finetune_3e_digits.yaml"
)


def few_shot(pretrained: bool, epochs: int) -> list[str]:
    rest = (
        "{type: DigitsClassification, split: all, per_class: 10, per_class_rest: true, "
        "image_size: 64}"
    )
    overrides = [
        "data.train.split=all",
        "+data.train.per_class=10",
        f"train.epochs={epochs}",
        f"data.val={rest}",
        "data.batch_size=25",
        f"eval.interval={epochs}",
    ]
    if not pretrained:
        # the same recipe with random weights; its norm layers must learn their statistics
        overrides += ["model.backbone.pretrained=false", "model.backbone.norm_eval=false"]
    return overrides


def train(name: str, overrides: list[str], folder: str) -> dict:
    cfg = load_config(
        CONFIG,
        [
            *overrides,
            f"run_dir={folder}",
            f"name={name}",
            "eval.plots=false",
            "train.tensorboard=false",
        ],
    )
    start = time.perf_counter()
    result = run.train(cfg)
    seconds = time.perf_counter() - start
    print(f"{name}: top1 {result.metrics['top1']:.4f} in {seconds:.0f} s", flush=True)
    return {"metrics": result.metrics, "seconds": seconds, "overrides": overrides}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--few-shot-epochs", type=int, default=30)
    p.add_argument("--out", default="bench/results")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        results["few_shot_pretrained"] = train(
            "few_shot_pretrained", few_shot(True, args.few_shot_epochs), folder
        )
        results["few_shot_scratch"] = train(
            "few_shot_scratch", few_shot(False, args.few_shot_epochs), folder
        )
        results["full_pretrained"] = train("full_pretrained", [], folder)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer_learning.json").write_text(json.dumps(results, indent=2))
    print("\n| run | train images | scored on | top-1 | macro F1 | time |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = [
        ("few-shot, pretrained", "100", "the other 1,697"),
        ("few-shot, from scratch", "100", "the other 1,697"),
        ("full, pretrained", "train split", "val split"),
    ]
    for (label, n, scored), r in zip(rows, results.values()):
        m = r["metrics"]
        print(
            f"| {label} | {n} | {scored} | {m['top1']:.4f} | {m['macro_f1']:.4f} "
            f"| {r['seconds']:.0f} s |"
        )


if __name__ == "__main__":
    main()
