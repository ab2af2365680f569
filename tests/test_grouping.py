"""Shape-aware batching: aspect-ratio groups, one group per batch of every process, padding
to a multiple, and exact resume with both on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvkit.config import from_dict
from cvkit.data.collate import collate_classification, collate_detection, with_pad_multiple
from cvkit.data.grouping import aspect_groups, grouped_order
from cvkit.data.loader import EpochSampler
from cvkit.engine import run
from cvkit.engine.checkpoint import load_checkpoint


def test_aspect_groups_bin_width_over_height():
    sizes = [(100, 40), (100, 60), (100, 90), (100, 100), (100, 140), (100, 190), (100, 300)]
    assert aspect_groups(sizes) == [0, 1, 2, 3, 3, 4, 5]


def test_grouped_order_is_a_permutation_of_single_group_chunks():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 3, size=103).tolist()
    order = rng.permutation(103).tolist()
    out = grouped_order(order, groups, chunk=8)
    assert sorted(out) == list(range(103))
    full = sum(groups.count(g) // 8 for g in set(groups))
    for k in range(full):
        assert len({groups[i] for i in out[8 * k : 8 * k + 8]}) == 1
    # within a group, samples keep the epoch's order
    for g in set(groups):
        assert [i for i in out if groups[i] == g] == [i for i in order if groups[i] == g]
    assert grouped_order(order, groups, chunk=1) == order


def test_every_process_batch_is_of_one_group_and_the_order_resumes():
    groups = [i % 2 if i < 60 else 2 for i in range(70)]  # three groups of 30, 30, 10
    world, batch = 2, 4
    samplers = [
        EpochSampler(70, True, seed=3, rank=r, world_size=world, groups=groups, chunk=batch * world)
        for r in range(world)
    ]
    for sampler in samplers:
        sampler.set_epoch(5)
        indices = [i for _, i in sampler]
        batches = [indices[k : k + batch] for k in range(0, len(indices), batch)]
        mixed = [k for k, b in enumerate(batches) if len({groups[i] for i in b}) > 1]
        # only the leftovers mix (6 + 6 + 2 = 14 samples: the last two chunks of 8)
        assert mixed and all(k >= len(batches) - 2 for k in mixed)
        sampler.set_epoch(5, start=8)
        assert [i for _, i in sampler] == indices[8:]
    shards = [set(s.shard(5)) for s in samplers]
    assert shards[0] | shards[1] == set(range(70))
    # the same order on another run, another on another epoch
    again = EpochSampler(70, True, seed=3, groups=groups, chunk=8)
    assert again.order(5) == samplers[0].order(5) != again.order(6)


def test_pad_multiple_rounds_the_batch_up():
    items = [
        {"image": np.zeros((50, 70, 3), np.uint8), "boxes": np.zeros((0, 4)), "labels": []},
        {"image": np.zeros((65, 40, 3), np.uint8), "boxes": np.zeros((0, 4)), "labels": []},
    ]
    batch = with_pad_multiple(collate_detection, 32)(items)
    assert batch.images.shape == (2, 3, 96, 96) and batch.image_sizes == [(50, 70), (65, 40)]
    assert collate_detection(items).images.shape == (2, 3, 65, 70)
    with pytest.raises(ValueError, match="pads no batch: it applies to detection"):
        with_pad_multiple(collate_classification, 32)


def _detector(tmp_path, name: str, **train) -> dict:
    return {
        "model": {
            "type": "RetinaNet",
            "backbone": {"type": "TinyNet", "width": 4, "out_indices": [1, 2, 3]},
            "neck": {"type": "FPN", "out_channels": 8, "extra_levels": 0},
            "head": {"type": "RetinaHead", "num_classes": 3, "num_convs": 1, "feat_channels": 8},
            "preprocessor": {"type": "Preprocessor", "size_divisor": 32},
        },
        "data": {
            "train": {
                "type": "ShapesDetection",
                "num_images": 12,
                "image_size": 64,
                "root": str(tmp_path / "cache"),
            },
            "batch_size": 2,
            "num_workers": 0,
            "group_by_aspect": True,
            "pad_multiple": 64,
        },
        "train": {"epochs": 1, "deterministic": True, "tensorboard": False, **train},
        "eval": {"plots": False},
        "run_dir": str(tmp_path / "runs"),
        "name": name,
    }


@pytest.mark.slow
def test_a_grouped_run_resumes_bit_for_bit(tmp_path, monkeypatch):
    shapes = []
    real = run.Trainer.run_step

    def record(self, batch, *args):
        shapes.append(tuple(batch.images.shape[-2:]))
        return real(self, batch, *args)

    monkeypatch.setattr(run.Trainer, "run_step", record)
    full = run.train(from_dict(_detector(tmp_path, "full")))
    assert all(h % 64 == 0 and w % 64 == 0 for h, w in shapes) and len(shapes) == 6
    part = run.train(from_dict(_detector(tmp_path, "part", max_steps=3)))
    run.train(from_dict(_detector(tmp_path, "part")), resume=part.run_dir)
    a = load_checkpoint(full.run_dir / "last.pt")["model"]
    b = load_checkpoint(part.run_dir / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
