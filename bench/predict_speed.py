"""Prediction speed on a folder of JPEGs: ``cvkit predict`` (batched, decoding in a worker)
vs torchvision's RetinaNet in the usual eager loop, with the same weights.

The goal (issue 16): images/s of cvkit's prediction on a folder at least torchvision's eager
detector with the same weights, on 2 CPU threads.

    python bench/predict_speed.py                          # 48 images 640x480, size 512
    python bench/predict_speed.py --images 4 --size 64 --threads 1   # smoke test

What is compared:

- Data: ``--images`` JPEGs of 640x480, crops of scikit-image's example photos (each photo
  scaled up to cover 640x480 where it is smaller), written once into a temporary folder.
- Models: cvkit's RetinaNet of ``retinanet_parity.py`` (``build_cvkit``: EfficientNet-Lite0
  + FPN on P3-P5, 4-conv towers) and torchvision's RetinaNet around a copy of its backbone,
  FPN and head (``build_torchvision`` + ``copy_head``): the same weights.
- Pixels: both get each file resized by the same ``data.val`` pipeline
  (``LongestMaxSize(--size)``, OpenCV). torchvision's transform is pinned to that size
  (``min_size`` = the short side, ``max_size`` = the long side: scale 1), so its resize
  changes nothing and both normalise the same pixels with mean = std = 0.5.
- torchvision: the usual eager loop, one image at a time: ``cv2.imread``, the pipeline,
  ``model([image / 255])`` under ``no_grad`` in ``eval()`` mode.
- cvkit: ``task_of(model).predict_images``, what ``cvkit predict`` runs: one image a pass
  (the CLI's default) with a DataLoader worker decoding beside the model; batches of
  ``--batch-size`` with the worker; and batch 1 without a worker (the path before). All three
  must give the same records.

Each way predicts the first few images once before the timed pass (OpenCV and oneDNN set up
on first use); then one timed pass over the folder. ``torch.set_num_threads(--threads)``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data as skdata

sys.path.insert(0, str(Path(__file__).parent))
from retinanet_parity import build_cvkit, build_torchvision

from cvkit.engine.predict import _pipeline, expand_images
from cvkit.engine.tasks import PredictRequest, task_of

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
WIDTH, HEIGHT = 640, 480


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--size", type=int, default=512, help="LongestMaxSize of data.val")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8, help="the batched variant's")
    return p.parse_args()


def write_images(folder: Path, count: int) -> list[str]:
    """``count`` 640x480 JPEG crops of scikit-image's photos, at seeded offsets."""
    rng = np.random.default_rng(0)
    photos = [getattr(skdata, name)() for name in PHOTOS]
    for i in range(count):
        photo = photos[i % len(photos)]
        scale = max(WIDTH / photo.shape[1], HEIGHT / photo.shape[0], 1.0)
        if scale > 1:
            size = (round(photo.shape[1] * scale + 0.5), round(photo.shape[0] * scale + 0.5))
            photo = cv2.resize(photo, size, interpolation=cv2.INTER_LINEAR)
        y = int(rng.integers(0, photo.shape[0] - HEIGHT + 1))
        x = int(rng.integers(0, photo.shape[1] - WIDTH + 1))
        crop = np.ascontiguousarray(photo[y : y + HEIGHT, x : x + WIDTH, :3])
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return expand_images([str(folder)])


def val_transforms(size: int) -> list[dict]:
    return [{"type": "LongestMaxSize", "max_size": size}]


def cvkit_way(model, size: int, batch_size: int, workers: int | None) -> Callable:
    request = PredictRequest(
        classes=["0", "1", "2"],
        cat_ids=[1, 2, 3],
        pipeline=lambda skip: _pipeline(val_transforms(size), skip, "data.val"),
        batch_size=batch_size,
        workers=workers,
    )
    task = task_of(model)
    return lambda files: task.predict_images(model, files, request)


def torchvision_way(model, size: int) -> Callable:
    pipeline = _pipeline(val_transforms(size), (), "data.val")
    # the resized files are 480:640, so the pipeline's output is short x long with
    # long = size; pinning the transform to that size makes its resize a scale of 1
    short = round(size * HEIGHT / WIDTH)
    model.transform.min_size, model.transform.max_size = (short,), size

    @torch.no_grad()
    def run(files: list[str]) -> list:
        out = []
        for path in files:
            image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
            image = pipeline(image=image)["image"]
            x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
            out.append(model([x])[0])
        return out

    return run


def timed(run: Callable, files: list[str], warmup: int) -> tuple[float, list]:
    run(files[:warmup])
    start = time.perf_counter()
    result = run(files)
    return len(files) / (time.perf_counter() - start), result


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    cv_model = build_cvkit().eval()
    tv_model = build_torchvision(cv_model).eval()
    warmup = min(args.batch_size, args.images)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_images(Path(tmp), args.images)
        ways = {
            "torchvision eager, batch 1": torchvision_way(tv_model, args.size),
            "cvkit predict (batch 1 + worker, the default)": cvkit_way(
                cv_model, args.size, 1, None
            ),
            f"cvkit predict, batch {args.batch_size} + worker": cvkit_way(
                cv_model, args.size, args.batch_size, None
            ),
            "cvkit predict, batch 1, no worker (before)": cvkit_way(cv_model, args.size, 1, 0),
        }
        rates, results = {}, {}
        for name, run in ways.items():
            rates[name], results[name] = timed(run, files, warmup)
    print(
        f"{args.images} JPEGs {WIDTH}x{HEIGHT}, LongestMaxSize {args.size}, "
        f"{args.threads} threads, torch {torch.__version__}"
    )
    for name, rate in rates.items():
        print(f"{name}: {rate:.2f} images/s")
    names = list(ways)
    same = results[names[1]] == results[names[2]] == results[names[3]]
    print(f"cvkit batched and batch 1 give the same records: {'yes' if same else 'NO'}")
    ratio = rates[names[1]] / rates[names[0]]
    print(f"predict: cvkit / torchvision = {ratio:.3f} (goal >= 1.0: {ratio >= 1.0})")
    for name in names[2:]:
        print(f"{name} / torchvision = {rates[name] / rates[names[0]]:.3f}")


if __name__ == "__main__":
    main()
