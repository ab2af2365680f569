"""COCO-like ground truth and detector results, for parity tests and benchmarks.

Ground truth: ``num_images`` images of 640x480 with a Poisson number of objects (mean
``objects_per_image``) whose sizes are log-uniform from 4 to 400 px, so every area range is
populated; about 3% are crowd regions; some images have no objects and one category has
none at all. Results: per image up to ``max_detections`` (sometimes more than 100 for one
category), most near a gt box (jittered, sometimes with the wrong class), the rest random;
scores rounded to 3 decimals so equal scores are common.
"""

from __future__ import annotations

import numpy as np

WIDTH, HEIGHT = 640, 480


def coco_like(
    num_images: int = 500,
    num_classes: int = 80,
    objects_per_image: float = 7.0,
    max_detections: int = 100,
    seed: int = 0,
) -> tuple[dict, list[dict]]:
    """``(ground_truth_dict, results_list)``; the last category never has ground truth."""
    rng = np.random.default_rng(seed)
    images: list[dict] = []
    annotations: list[dict] = []
    results: list[dict] = []
    for i in range(num_images):
        image_id = 3 * i + 1  # ids with gaps, not 0..N-1
        images.append(
            {"id": image_id, "width": WIDTH, "height": HEIGHT, "file_name": f"{image_id}.jpg"}
        )
        gts = _objects(rng, image_id, num_classes - 1, objects_per_image, len(annotations) + 1)
        annotations += gts
        results += _detections(rng, image_id, gts, num_classes, max_detections)
    categories = [{"id": k + 1, "name": f"class_{k + 1}"} for k in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _objects(rng, image_id: int, num_classes: int, mean: float, first_id: int) -> list[dict]:
    out = []
    for j in range(rng.poisson(mean)):
        side = float(np.exp(rng.uniform(np.log(4), np.log(400))))
        w, h = side * rng.uniform(0.5, 1.5), side * rng.uniform(0.5, 1.5)
        x, y = rng.uniform(0, max(1.0, WIDTH - w)), rng.uniform(0, max(1.0, HEIGHT - h))
        out.append(
            {
                "id": first_id + j,
                "image_id": image_id,
                "category_id": int(rng.integers(num_classes)) + 1,
                "bbox": [round(float(v), 2) for v in (x, y, w, h)],
                # a segmentation's area is below its box's; areas decide the area range
                "area": round(float(w * h * rng.uniform(0.6, 1.0)), 2),
                "iscrowd": int(rng.random() < 0.03),
            }
        )
    return out


def _detections(rng, image_id: int, gts: list[dict], num_classes: int, max_dets: int):
    out = []
    for _ in range(int(rng.integers(0, max_dets + 1))):
        if gts and rng.random() < 0.6:
            gt = gts[int(rng.integers(len(gts)))]
            x, y, w, h = gt["bbox"]
            jx, jy, jw, jh = rng.normal(0.0, 0.1, 4) * (w, h, w, h)
            box = (x + jx, y + jy, max(0.5, w + jw), max(0.5, h + jh))
            cat = gt["category_id"] if rng.random() > 0.1 else int(rng.integers(num_classes)) + 1
        else:
            side = float(np.exp(rng.uniform(np.log(4), np.log(400))))
            box = (rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), side, side * rng.uniform(0.5, 2))
            cat = int(rng.integers(num_classes)) + 1
        out.append(
            {
                "image_id": image_id,
                "category_id": cat,
                "bbox": [round(float(v), 2) for v in box],
                "score": round(float(rng.random()), 3),
            }
        )
    return out
