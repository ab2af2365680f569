"""Per-image latency of a model in eager PyTorch vs its ONNX export in onnxruntime.

For each of the three demo models (the embedded-data templates: the EfficientNet-Lite0
classifier on digits, the demo's RetinaNet on the shapes, the FCN-8s on the shapes), exports
the model with ``cvkit export`` (ONNX, batch 1, checked against eager as every export is) and
times one image through

- **eager**: the model's ``predict`` in PyTorch, pre- and post-processing included, as
  ``cvkit predict`` runs it with a checkpoint;
- **onnxruntime**: the exported graph, pre- and post-processing inside, as ``cvkit predict``
  runs an ``.onnx`` file;

on ``--threads`` CPU threads each (torch's intra-op threads; onnxruntime's
``intra_op_num_threads``), alternating which goes first from round to round. The image is the
first of the config's validation split, at the size the model takes it.

    python bench/export_speed.py [--runs 30] [--rounds 3] [--threads 2]
        [--checkpoint classifier=runs/cls/best.pt --checkpoint detector=runs/demo_shapes/best.pt]

Without a checkpoint a model has its config's initial weights (ImageNet-pretrained backbone,
new head); a trained detector's checkpoint makes its NMS work that of real detections.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cvkit import __version__
from cvkit.config import load_config
from cvkit.config.class_count import fill_from_classes
from cvkit.engine.checkpoint import save_checkpoint
from cvkit.engine.deployed import load_deployed
from cvkit.engine.export import export, trained_model
from cvkit.engine.export_samples import sample_images
from cvkit.engine.run import build_datasets, build_model, validate
from cvkit.models.deploy import deploy_graph

MODELS = {
    "classifier": "cvkit://classification/efficientnet_lite0_finetune_3e_digits.yaml",
    "detector": "cvkit://detection/retinanet_effl0_fpn_8e_shapes.yaml",
    "fcn": "cvkit://segmentation/fcn_effl0_8s_shapes.yaml",
}


def initial_checkpoint(name: str, folder: Path) -> Path:
    """A weights checkpoint of the config's model as built for training (pretrained backbone)."""
    cfg = load_config(MODELS[name])
    val = build_datasets(validate(cfg), cfg, ("val",))["val"]
    fill_from_classes(cfg, list(val.classes), MODELS[name])
    model = build_model(validate(cfg), cfg)
    state = {
        "model": model.state_dict(),
        "classes": list(val.classes),
        "cat_ids": list(getattr(val, "cat_ids", None) or []) or None,
        "config": cfg.to_yaml(),
        "cvkit_version": __version__,
    }
    return save_checkpoint(state, folder / f"{name}.pt")


def timed(fn, runs: int) -> float:
    """Median seconds of ``fn()`` over ``runs`` calls, after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name: str, checkpoint: Path, folder: Path, runs: int, rounds: int, threads: int):
    result = export(checkpoint, "onnx", folder / f"{name}.onnx")
    model, cfg, _ = trained_model(checkpoint)  # as the export built it
    graph = deploy_graph(model)
    image = torch.from_numpy(sample_images(cfg, graph)[0]).permute(2, 0, 1)[None]
    inputs = graph.inputs_for(image)
    deployed = load_deployed(result.path, threads=threads)
    feeds = {n: t.numpy() for n, t in zip(deployed.metadata["input_names"], inputs)}

    def eager() -> None:
        with torch.inference_mode():
            graph.eager_outputs(*inputs)

    ways = {"eager": eager, "onnxruntime": lambda: deployed(**feeds)}
    times: dict[str, list[float]] = {w: [] for w in ways}
    for r in range(rounds):
        for way in list(ways) if r % 2 == 0 else list(ways)[::-1]:
            times[way].append(timed(ways[way], runs))
    eager_s, ort_s = (statistics.median(times[w]) for w in ways)
    size = "x".join(map(str, image.shape[-2:]))
    print(
        f"{name}: {size} image, eager {eager_s * 1e3:.1f} ms, onnxruntime {ort_s * 1e3:.1f} ms; "
        f"eager / onnxruntime = {eager_s / ort_s:.2f}",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30, help="timed calls a round (median)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each way once a round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="MODEL=PATH",
        help="a trained checkpoint for one of the models (its config's model)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    given = dict(item.split("=", 1) for item in args.checkpoint)
    unknown = set(given) - set(MODELS)
    if unknown:
        p.error(f"--checkpoint for unknown models {sorted(unknown)}; use {', '.join(MODELS)}")
    print(f"torch {torch.__version__}, {args.threads} threads, batch 1", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.models:
            checkpoint = Path(given[name]) if name in given else initial_checkpoint(name, folder)
            bench(name, checkpoint, folder, args.runs, args.rounds, args.threads)


if __name__ == "__main__":
    main()
