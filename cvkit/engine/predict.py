"""Prediction with a trained checkpoint, and slim checkpoints for it.

``predict`` returns top-k classes for a classifier, detections (in each file's own pixels)
for a detector and a class per pixel for a segmenter; ``export_weights`` keeps only what
prediction needs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
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
    """Predict with a checkpoint on image files (a folder stands for the images in it).

    Classifier: top-k classes with probabilities per image. Detector: the detections per
    image (and, with ``out_dir``, a COCO results JSON and each image with its boxes drawn).
    Segmenter: each class's share of the pixels (and, with ``out_dir``, an index-mask PNG
    and a colour overlay per image; see ``_predict_segmentation``).
    """
    from cvkit.data.image_io import read_image
    from cvkit.structures import ClsBatch

    images = expand_images(images)
    settings = validate(cfg)
    model = build_model(settings, cfg)
    state = load_checkpoint(checkpoint)
    load_model_weights(model, inference_weights(state), Path(checkpoint))
    classes = list(state.get("classes") or []) or [str(i) for i in range(model.num_classes)]
    model.eval()
    if getattr(model, "task", "") == "detection":
        return _predict_detection(model, state, settings, cfg, classes, images, out_dir)
    if getattr(model, "task", "") == "segmentation":
        return _predict_segmentation(model, settings, cfg, classes, images, out_dir)
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
    from cvkit.structures import DetBatch, DetTarget
    from cvkit.visualize.draw import draw_detections

    pipeline = _val_pipeline(settings, cfg)
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


def expand_images(paths: list[str]) -> list[str]:
    """The image files named, a folder replaced by its images (sorted, not recursive).

    Raises:
        FileNotFoundError: a folder holds no images.
    """
    from cvkit.data.image_folder import IMAGE_EXTENSIONS

    files: list[str] = []
    for path in map(str, paths):
        if os.path.isdir(path):
            found = sorted(
                str(p)
                for p in Path(path).iterdir()
                if p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                raise FileNotFoundError(
                    f"folder '{path}' holds no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            files += found
        else:
            files.append(path)  # read_image says what is wrong with a file
    return files


# Transforms that only pad: prediction leaves them out, since the model pads by itself and a
# padded image would be resized back to the file's size padding and all.
_PADDING_TRANSFORMS = ("PadIfNeeded",)


def _val_pipeline(settings, cfg, skip: tuple[str, ...] = ()):
    """The ``data.val`` transforms (resizing) for the image alone, without those in ``skip``."""
    from cvkit.data.transforms import compose
    from cvkit.registry import TRANSFORMS

    val = settings.data.val or {}
    return compose(
        [
            build(t, TRANSFORMS, path=f"data.val.transforms[{i}]", describe=cfg.describe)
            for i, t in enumerate(val.get("transforms", []))
            if not (isinstance(t, dict) and t.get("type") in skip)
        ]
    )


def _predict_segmentation(model, settings, cfg, classes, images, out_dir) -> list[dict]:
    """A class per pixel of each file, with each class's share of the pixels.

    The ``data.val`` transforms are applied first, padding left out (use only resizing
    there); the prediction comes back at the file's own size. With ``out_dir``, per image
    ``<stem>.png``, the class indices as a palette PNG (it reads back as indices, and a
    viewer shows colours), and ``<stem>_overlay.jpg``, the image blended with the class
    colours (a class named ``background`` left transparent) and a legend. Two images with
    one stem get ``<stem>_2``, ...
    """
    from cvkit.data.collate import collate_segmentation
    from cvkit.data.image_io import read_image
    from cvkit.visualize.draw import draw_segmentation, save_index_mask

    pipeline = _val_pipeline(settings, cfg, skip=_PADDING_TRANSFORMS)
    lower = [str(c).lower() for c in classes]
    background = lower.index("background") if "background" in lower else None
    out = Path(out_dir) if out_dir else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results, used = [], set()
    for path in images:
        image = read_image(path)
        x = pipeline(image=image)["image"] if pipeline else image
        item = {"image": x, "orig_size": image.shape[:2], "name": Path(path).stem}
        mask = model.predict(collate_segmentation([item]))[0].mask.numpy()
        counts = np.bincount(mask.ravel(), minlength=len(classes))
        record: dict[str, Any] = {
            "image": str(path),
            "size": [int(mask.shape[0]), int(mask.shape[1])],
            "class_shares": {
                classes[k]: round(float(n) / mask.size, 4) for k, n in enumerate(counts) if n
            },
        }
        if out is not None:
            stem = _unique_stem(Path(path).stem, used)
            record["mask"] = str(save_index_mask(mask, out / f"{stem}.png"))
            overlay = draw_segmentation(image, mask, classes, background=background)
            overlay_path = out / f"{stem}_overlay.jpg"
            if not cv2.imwrite(str(overlay_path), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
                raise OSError(f"could not write '{overlay_path}'")
            record["overlay"] = str(overlay_path)
        results.append(record)
    return results


def _unique_stem(stem: str, used: set[str]) -> str:
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}_{n}"
    used.add(name)
    return name
