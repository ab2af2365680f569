"""train.channels_last and train.compile: the model runs differently, its checkpoints and
exact resume stay those of an eager run."""

from __future__ import annotations

import pytest
import torch

from cvkit.config import from_dict
from cvkit.engine import run
from cvkit.engine.checkpoint import load_checkpoint
from cvkit.engine.ema import ModelEMA
from cvkit.engine.speed import apply_speed_settings
from tests.test_engine import tiny

SETTINGS = {
    "channels_last": {"channels_last": True},
    # the eager backend runs dynamo's capture and guards without a C++ build: the plumbing
    # of torch.compile in seconds (the inductor backend is what a GPU run uses)
    "compile": {"compile": {"backend": "eager"}},
}


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_resume_is_exact_and_checkpoints_are_an_eager_runs(tmp_path, setting, capsys):
    common = {"deterministic": True, "ema": {"decay": 0.9, "warmup_steps": 2}, "epochs": 1}
    extra = SETTINGS[setting]
    full = run.train(from_dict(tiny(tmp_path, "full", max_steps=4, **common, **extra)))
    assert f"train.{setting}:" in capsys.readouterr().out
    part = run.train(from_dict(tiny(tmp_path, "part", max_steps=2, **common, **extra)))
    resumed = tiny(tmp_path, "part", max_steps=4, **common, **extra)
    run.train(from_dict(resumed), resume=part.run_dir)
    a, b = load_checkpoint(full.run_dir / "last.pt"), load_checkpoint(part.run_dir / "last.pt")
    assert a["trainer"]["step"] == b["trainer"]["step"] == 4
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    eager = run.build(tiny_model(), run.MODELS)  # the parameter names of an eager model
    assert set(eager.state_dict()) == set(a["model"])


def test_channels_last_relays_weights_and_keeps_values():
    model = run.build(tiny_model(), run.MODELS)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lines = apply_speed_settings(model, channels_last=True, compile=False)
    conv = next(p for p in model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and lines
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_ema_copy_of_a_compiled_model_runs_its_own_weights():
    """A deep copy of a module compiled in place must not call the original's forward."""
    model = run.build(tiny_model(), run.MODELS).eval()
    apply_speed_settings(model, channels_last=False, compile={"backend": "eager"})
    ema = ModelEMA(model, decay=0.5, warmup_steps=0)
    with torch.no_grad():
        for p in ema.module.parameters():
            p.zero_()
    x = torch.randint(0, 255, (1, 3, 16, 16), dtype=torch.uint8)
    assert not torch.equal(ema.module(x), model(x))  # zeroed weights: not the live model's


def tiny_model() -> dict:
    return tiny(None)["model"]
