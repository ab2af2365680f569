"""Detection validation time: one forward per batch (``loss_and_predict``) vs two (``loss``
then ``predict``, what cvkit's evaluation did before the task protocol).

Builds the demo's model (``cvkit://detection/retinanet_effl0_fpn_8e_shapes.yaml``: RetinaNet,
EfficientNet-Lite0, FPN) and evaluates it on the demo's val split (the embedded shapes,
generated once into the cache) through cvkit's evaluation loop, both ways, alternating which
goes first from round to round. Both ways must give identical metrics; the ratio is one
forward / two forwards.

    python bench/detection_eval_time.py --rounds 3 [--checkpoint runs/demo/last.pt]

With ``--checkpoint`` (a trained demo run) the detections, and so the NMS and COCO work the
two ways share, are those of a real model; without, the backbone is ImageNet-pretrained and
the head untrained.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from cvkit.config import load_config
from cvkit.data.loader import build_loader
from cvkit.engine.checkpoint import load_checkpoint
from cvkit.engine.evaluate import evaluate
from cvkit.engine.run import build_datasets, build_model, validate
from cvkit.engine.tasks import task_of
from cvkit.engine.weights import inference_weights, load_model_weights


class TwoForwards(nn.Module):
    """The evaluation before the task protocol: ``loss(batch)``, then ``predict(batch)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def loss_and_predict(self, batch):
        return self.model.loss(batch), self.model.predict(batch)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpoint", help="a trained demo checkpoint (default: untrained head)")
    p.add_argument("--images", type=int, default=0, help="evaluate the first N val images only")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config("cvkit://detection/retinanet_effl0_fpn_8e_shapes.yaml")
    settings = validate(cfg)
    model = build_model(settings, cfg).eval()
    if args.checkpoint:
        state = load_checkpoint(args.checkpoint)
        load_model_weights(model, inference_weights(state), Path(args.checkpoint))
    dataset = build_datasets(settings, cfg, ("val",))["val"]
    if args.images:
        dataset = torch.utils.data.Subset(dataset, range(args.images))
        dataset.coco, dataset.cat_ids = dataset.dataset.coco, dataset.dataset.cat_ids
    task = task_of(model)
    loader = build_loader(dataset, settings.data.batch_size, shuffle=False,
                          collate_fn=task.collate(model))  # fmt: skip
    ways = {"one forward": model, "two forwards": TwoForwards(model)}
    times: dict[str, list[float]] = {k: [] for k in ways}
    metrics = {}
    for r in range(args.rounds):
        for name in list(ways) if r % 2 == 0 else list(ways)[::-1]:
            start = time.perf_counter()
            result = evaluate(
                ways[name], loader, torch.device("cpu"), task.evaluator(model, dataset)
            )
            times[name].append(time.perf_counter() - start)
            metrics[name] = result.metrics
            print(f"round {r + 1} {name:>12}: {times[name][-1]:.2f} s", flush=True)
    assert metrics["one forward"] == metrics["two forwards"], metrics
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(dataset)} images, AP {metrics['one forward']['AP']:.4f} both ways")
    for name, t in med.items():
        print(f"{name:>12}: {t:.2f} s (median of {args.rounds})")
    ratio = med["one forward"] / med["two forwards"]
    print(f"detection_eval: one forward / two forwards = {ratio:.3f}")


if __name__ == "__main__":
    main()
