"""Framework overhead: one epoch of classifier training through cvkit vs a plain PyTorch loop.

Both sides train the same model (cvkit's ImageClassifier, built once per side from the same
seed), on the same data (the embedded digits), with the same batch size, optimizer, threads
and single-process loading, in one process, alternating which goes first. cvkit's side is
``cvkit.engine.run.train`` on a config: validation, the trainer with its hooks (progress bar,
metrics.jsonl, checkpoint writing), the resumable sampler, everything but evaluation.

    python bench/classifier_overhead.py [--repeats 3] [--backbone resnet18] [--threads 2]

Prints each timing, the ratios of the medians and of the fastest runs, and the median of the
paired ratios (each cvkit run against the plain run beside it, which share the machine's
conditions: the most robust figure on a noisy VM); goal: cvkit at most 1.05x the plain loop.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import cvkit
from cvkit.config import from_dict
from cvkit.data.builtin import DigitsClassification
from cvkit.engine import run


def config(backbone: str, batch: int, folder: str) -> dict:
    return {
        "model": {
            "type": "ImageClassifier",
            "backbone": {"type": "TimmBackbone", "name": backbone},
            "neck": {"type": "GlobalPool"},
            "head": {"type": "ClsHead", "num_classes": 10},
        },
        "data": {
            "train": {"type": "DigitsClassification", "split": "train", "image_size": 32},
            "batch_size": batch,
            "num_workers": 0,
        },
        "train": {
            "epochs": 1,
            "optimizer": {"type": "SGD", "lr": 0.05, "momentum": 0.9},
            "tensorboard": False,
            "log_interval": 20,
        },
        "eval": {"plots": False},
        "run_dir": folder,
        "name": "overhead",
    }


def time_cvkit(cfg: dict) -> float:
    start = time.perf_counter()
    run.train(from_dict(cfg))
    return time.perf_counter() - start


def time_plain(cfg: dict, folder: str) -> float:
    start = time.perf_counter()
    torch.manual_seed(0)
    model = cvkit.build(cfg["model"], cvkit.MODELS)
    data = DigitsClassification(split="train", image_size=32)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=cfg["data"]["batch_size"],
        shuffle=True,
        num_workers=0,
        collate_fn=lambda items: (
            torch.from_numpy(np.stack([i[0] for i in items])).permute(0, 3, 1, 2).contiguous(),
            torch.tensor([i[1] for i in items]),
        ),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for images, labels in loader:
        loss = F.cross_entropy(model(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    # any real training script keeps its weights; cvkit's last.pt also holds the optimizer,
    # schedule and RNG states (for resume), which stay on cvkit's side of the ledger
    torch.save(model.state_dict(), Path(folder) / "plain.pt")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {"cvkit": [], "plain": []}
    with tempfile.TemporaryDirectory() as folder:
        cfg = config(args.backbone, args.batch, folder)
        time_plain(cfg, folder)  # warm-up: first-touch allocations, lazy imports
        for r in range(args.repeats):
            order = ("cvkit", "plain") if r % 2 == 0 else ("plain", "cvkit")
            for side in order:
                t = time_cvkit(cfg) if side == "cvkit" else time_plain(cfg, folder)
                times[side].append(t)
                print(f"repeat {r + 1} {side:>5}: {t:6.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}  # least disturbed by other processes
    print(
        f"\nmedian epoch: cvkit {med['cvkit']:.2f} s, plain loop {med['plain']:.2f} s, "
        f"ratio {med['cvkit'] / med['plain']:.3f}"
    )
    print(
        f"fastest epoch: cvkit {best['cvkit']:.2f} s, plain loop {best['plain']:.2f} s, "
        f"ratio {best['cvkit'] / best['plain']:.3f}"
    )
    paired = statistics.median(c / p for c, p in zip(times["cvkit"], times["plain"]))
    print(f"median of paired ratios (each cvkit run / the plain run beside it): {paired:.3f}")
    print("goal: cvkit / plain <= 1.05")
    print(
        f"backbone {args.backbone}, batch {args.batch}, {args.threads} threads, "
        f"torch {torch.__version__}"
    )


if __name__ == "__main__":
    main()
