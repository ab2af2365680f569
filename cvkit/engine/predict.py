"""Prediction with a trained checkpoint, and slim checkpoints for it.

``predict`` returns top-k classes for a classifier and detections (in each file's own
pixels) for a detector; ``export_weights`` keeps only what prediction needs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import torch

from cvkit import __version__
from cvkit.builder import build
from cvkit.config import Config
from cvkit.engine.checkpoint import load_checkpoint, save_checkpoint
from cvkit.engine.run import build_model, validate
from cvkit.engine.weights import inference_weights, load_model_weights


def predict(
    cfg: Config,
    checkpoint: str | os.PathLike,
    images: list[str],
    topk: int = 5,
    out_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Classifier: top-k classes with probabilities per image. Detector: the detections per
    image (and, with ``out_dir``, a COCO results JSON and each image with its boxes drawn)."""
    from cvkit.data.image_io import read_image
    from cvkit.structures import ClsBatch

    settings = validate(cfg)
    model = build_model(settings, cfg)
    state = load_checkpoint(checkpoint)
    load_model_weights(model, inference_weights(state), Path(checkpoint))
    classes = list(state.get("classes") or []) or [str(i) for i in range(model.num_classes)]
    model.eval()
    if getattr(model, "task", "") == "detection":
        return _predict_detection(model, state, settings, cfg, classes, images, out_dir)
    results = []
    for path in images:
        image = torch.from_numpy(read_image(path)).permute(2, 0, 1)[None].contiguous()
        pred = model.predict(ClsBatch(image))[0]
        probs, idx = pred.probs.topk(min(topk, len(pred.probs)))
        results.append(
            {
                "image": str(path),
                "top": [
                    {"class": classes[i], "index": i, "prob": float(p)}
                    for p, i in zip(probs.tolist(), idx.tolist())
                ],
            }
        )
    return results


def export_weights(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """A checkpoint for prediction: the weights (EMA if kept), class names and config only."""
    state = load_checkpoint(checkpoint)
    slim = {
        "model": inference_weights(state),
        "classes": state.get("classes", []),
        "config": state.get("config"),
        "cvkit_version": __version__,
    }
    return save_checkpoint(slim, out)


def _predict_detection(model, state, settings, cfg, classes, images, out_dir) -> list[dict]:
    """Detections in each file's own pixels; the val transforms (resizing) are applied first."""
    from cvkit.data.image_io import read_image
    from cvkit.data.transforms import compose
    from cvkit.draw import draw_detections
    from cvkit.registry import TRANSFORMS
    from cvkit.structures import DetBatch, DetTarget

    val = settings.data.val or {}
    pipeline = compose(
        [
            build(t, TRANSFORMS, path="data.val.transforms", describe=cfg.describe)
            for t in val.get("transforms", [])
        ]
    )
    cat_ids = state.get("cat_ids") or list(range(1, len(classes) + 1))
    out = Path(out_dir) if out_dir else None
    results, coco = [], []
    for image_id, path in enumerate(images, 1):
        image = read_image(path)
        x = pipeline(image=image)["image"] if pipeline else image
        empty = DetTarget(
            torch.zeros(0, 4),
            torch.zeros(0, dtype=torch.int64),
            torch.zeros(0, dtype=torch.bool),
            image_id,
            image.shape[:2],
        )
        batch = DetBatch(
            torch.from_numpy(x).permute(2, 0, 1)[None].contiguous(), [x.shape[:2]], [empty]
        )
        pred = model.predict(batch)[0]
        dets = [
            {
                "class": classes[int(lbl)],
                "category_id": int(cat_ids[int(lbl)]),
                "bbox_xyxy": [round(v, 2) for v in box],
                "score": round(float(sc), 4),
            }
            for box, sc, lbl in zip(pred.boxes.tolist(), pred.scores, pred.labels)
        ]
        results.append({"image": str(path), "image_id": image_id, "detections": dets})
        coco += [
            {
                "image_id": image_id,
                "category_id": d["category_id"],
                "score": d["score"],
                "bbox": [
                    d["bbox_xyxy"][0],
                    d["bbox_xyxy"][1],
                    d["bbox_xyxy"][2] - d["bbox_xyxy"][0],
                    d["bbox_xyxy"][3] - d["bbox_xyxy"][1],
                ],
            }
            for d in dets
        ]
        if out is not None:
            drawn = draw_detections(
                image, pred.boxes.numpy(), pred.labels.tolist(), pred.scores.tolist(), classes
            )
            out.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / f"{Path(path).stem}.png"), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    if out is not None:
        (out / "results.json").write_text(json.dumps(coco))
        (out / "images.json").write_text(
            json.dumps([{"id": r["image_id"], "file_name": r["image"]} for r in results], indent=1)
        )
    return results
