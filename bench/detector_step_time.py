"""Training-step time: cvkit's RetinaNet R50-FPN vs torchvision's retinanet_resnet50_fpn.

The same batch (2 images, 512x512, three boxes each), no pretrained weights, the same number
of threads, in one process, alternating which goes first. torchvision's own transform is
pinned to 512 (min_size = max_size = 512) so both models see the same pixels; both use
trainable batch norm (torchvision's choice without weights) and SGD. A step is forward, loss,
backward and optimizer step.

    python bench/detector_step_time.py [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

import cvkit
from cvkit.structures import DetBatch, DetTarget


def batch(num_classes: int = 80) -> tuple[torch.Tensor, list[dict]]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 512, 512), generator=g, dtype=torch.uint8)
    boxes = torch.tensor(
        [[40.0, 60.0, 200.0, 220.0], [250.0, 100.0, 480.0, 300.0], [100.0, 300.0, 180.0, 420.0]]
    )
    labels = torch.tensor([3, 17, 42]) % num_classes
    return images, [{"boxes": boxes.clone(), "labels": labels.clone()} for _ in range(2)]


def cvkit_step(model, opt, images, targets) -> None:
    det = DetBatch(
        images,
        [(512, 512)] * 2,
        [
            DetTarget(t["boxes"], t["labels"], torch.zeros(3, dtype=torch.bool), i, (512, 512))
            for i, t in enumerate(targets)
        ],
    )
    loss = sum(model.loss(det).values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def torchvision_step(model, opt, images, targets) -> None:
    # torchvision takes float images on 0..1 and labels where 0 is background
    tv_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
    loss = sum(model(list(images.float() / 255), tv_targets).values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def build_cvkit():
    return cvkit.build(
        {
            "type": "RetinaNet",
            "backbone": {"type": "TimmBackbone", "name": "resnet50", "out_indices": [2, 3, 4]},
            # P6 from P5, as torchvision's retinanet_resnet50_fpn does (the paper takes C5)
            "neck": {"type": "FPN", "out_channels": 256, "extra_levels": 2, "extra_from": "output"},
            "head": {"type": "RetinaHead", "num_classes": 80},
        },
        cvkit.MODELS,
    )


def build_torchvision():
    return torchvision.models.detection.retinanet_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=81, min_size=512, max_size=512
    )


def time_steps(step, model, images, targets, n: int) -> list[float]:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    step(model, opt, images, targets)  # warm-up: kernels for this shape, allocations
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step(model, opt, images, targets)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, targets = batch()
    models = {
        "cvkit": (build_cvkit(), cvkit_step),
        "torchvision": (build_torchvision(), torchvision_step),
    }
    params = {k: sum(p.numel() for p in m.parameters()) for k, (m, _) in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(args.rounds):
        for name in list(models) if r % 2 == 0 else list(models)[::-1]:
            model, step = models[name]
            t = time_steps(step, model, images, targets, args.steps)
            times[name] += t
            print(f"round {r + 1} {name:>11}: median {statistics.median(t):.3f} s/step", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in models:
        print(f"{k:>11}: {med[k]:.3f} s/step (median of {len(times[k])}), {params[k]:,} parameters")
    print(f"cvkit / torchvision = {med['cvkit'] / med['torchvision']:.3f}  (goal: <= 1.0)")


if __name__ == "__main__":
    main()
