"""Training-step time on images of varied sizes: batches as they come vs grouped by aspect
ratio (``data.group_by_aspect``) and padded to a multiple (``data.pad_multiple``).

The data are the embedded shapes drawn at sides of 0.8-1.25 x ``--size`` (aspect ratios 0.64
to 1.56, portrait and landscape), resized as the COCO configs resize (the short side to
``--size``), so an image is ``--size`` on one side and up to 1.56x that on the other, as a COCO
mix of portrait and landscape photos is after its resize; the model is the demo's RetinaNet
(EfficientNet-Lite0 + FPN, no pretrained weights) with ``size_divisor: 32`` and no
``pad_to``. Each variant runs in a fresh process (oneDNN's kernel cache starts empty, as in a
new run) over the same first ``--steps`` batches of epoch 0's order for its batching, and
times every step (forward, loss, backward, SGD step; the batches are loaded before timing).
The mean step time includes the steps that meet a new batch shape, which is what the
batching changes.

    python bench/batch_shapes.py [--images 64] [--size 256] [--batch 4] [--steps 16]
        [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

VARIANTS = {
    "as they come": {"group_by_aspect": False, "pad_multiple": 1},
    "pad to 64": {"group_by_aspect": False, "pad_multiple": 64},
    "grouped, pad to 64": {"group_by_aspect": True, "pad_multiple": 64},
    "grouped, pad to 128": {"group_by_aspect": True, "pad_multiple": 128},
}


def measure(args: argparse.Namespace, variant: dict) -> dict:
    """One variant, in this process: step times, distinct shapes, padding share."""
    import torch

    from cvkit.builder import build
    from cvkit.data.collate import collate_detection, with_pad_multiple
    from cvkit.data.grouping import aspect_groups, dataset_sizes
    from cvkit.data.loader import build_loader
    from cvkit.data.shapes import ShapesDetection
    from cvkit.registry import MODELS

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import albumentations as A

    resize = [A.SmallestMaxSize(max_size=args.size)]
    dataset = ShapesDetection(
        "train", num_images=args.images, image_size=args.size, transforms=resize
    )
    groups = aspect_groups(dataset_sizes(dataset)) if variant["group_by_aspect"] else None
    collate = with_pad_multiple(collate_detection, variant["pad_multiple"])
    loader = build_loader(dataset, args.batch, shuffle=True, collate_fn=collate, groups=groups)
    batches = [b for _, b in zip(range(args.steps), loader)]
    model = build(
        {
            "type": "RetinaNet",
            "backbone": {"type": "TimmBackbone", "name": "tf_efficientnet_lite0",
                         "out_indices": [2, 3, 4]},
            "neck": {"type": "FPN", "out_channels": 64, "extra_levels": 2},
            "head": {"type": "RetinaHead", "num_classes": 3, "feat_channels": 64},
            "preprocessor": {"type": "Preprocessor", "size_divisor": 32},
        },
        MODELS,
    )  # fmt: skip
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times, pixels, padded = [], 0, 0
    for batch in batches:
        start = time.perf_counter()
        loss = sum(model.loss(batch).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
        h, w = (-(-s // 32) * 32 for s in batch.images.shape[-2:])  # after size_divisor
        padded += len(batch.image_sizes) * h * w
        pixels += sum(a * b for a, b in batch.image_sizes)
    return {
        "mean": sum(times) / len(times),
        "total": sum(times),
        "shapes": len({tuple(b.images.shape[-2:]) for b in batches}),
        "padding": 1 - pixels / padded,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variant", help=argparse.SUPPRESS)  # the child process's one variant
    args = p.parse_args()
    if args.variant:
        print(json.dumps(measure(args, VARIANTS[args.variant])))
        return
    common = [f"--{k}={getattr(args, k)}" for k in ("images", "size", "batch", "steps", "threads")]
    rows = {}
    for name in VARIANTS:
        out = subprocess.run(
            [sys.executable, __file__, *common, "--variant", name],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name}: {rows[name]}", flush=True)
    base = rows["as they come"]["mean"]
    print(f"\n{args.steps} steps of {args.batch} images (short side {args.size} px, aspect "
          f"0.64-1.56), "
          f"{args.threads} threads, each variant a fresh process")  # fmt: skip
    print(f"{'batching':<22} {'step (s)':>9} {'ratio':>6} {'shapes':>7} {'padding':>8}")
    for name, r in rows.items():
        print(f"{name:<22} {r['mean']:>9.3f} {r['mean'] / base:>6.2f} {r['shapes']:>7} "
              f"{r['padding']:>8.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
