"""Images per second of the demo detector: one process against several, in one run.

Each layout trains the demo's RetinaNet (``configs/detection/retinanet_effl0_fpn_8e_shapes.yaml``,
EfficientNet-Lite0 FPN on the embedded shapes) through cvkit's own engine for ``--steps``
optimizer steps, started by ``torchrun`` as a user starts it, with no evaluation. A hook times
every step on rank 0; the first ``--warmup`` steps are left out (kernel preparation, loader
start). The effective batch is the same in every layout (``--batch`` images per optimizer
step, ``data.total_batch_size``, which cvkit splits over the processes), so the layouts do
the same work per step.

On the CPU (default) the layouts share the machine's cores: ``1x2`` is one process of two
threads, ``2x1`` two processes of one thread each (DDP over gloo). On CUDA (``--device
cuda``), one process on one GPU: the machine this project can borrow has a single GPU, so
multi-GPU scaling is not measured (see bench/README.md).

    python bench/ddp_scaling.py                      # CPU: 1x2 and 2x1, 2 rounds, ~5 min
    python bench/ddp_scaling.py --device cuda --layouts 1x1 --batch 16
    python bench/ddp_scaling.py --steps 2 --warmup 1 --rounds 1   # seconds: a smoke run

Rounds alternate the layouts, and the ratio is taken within each round (this machine's speed
drifts 10-20% between runs). Results: a table on stdout and ``bench/results/ddp_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "ddp_scaling.json"
DEMO = "cvkit://detection/retinanet_effl0_fpn_8e_shapes.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="+", default=["1x2", "2x1"], help="PROCESSESxTHREADS")
    parser.add_argument("--steps", type=int, default=25, help="optimizer steps per layout")
    parser.add_argument("--warmup", type=int, default=5, help="first steps not timed")
    parser.add_argument("--batch", type=int, default=8, help="images per optimizer step")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results JSON")
    # in a torchrun process: the file to write the step times into
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    rates: dict[str, list[float]] = {layout: [] for layout in args.layouts}
    for r in range(args.rounds):
        for layout in args.layouts:
            rates[layout].append(launch(layout, args))
            print(f"round {r + 1} {layout}: {rates[layout][-1]:.2f} images/s", flush=True)
    report(rates, args)


def launch(layout: str, args: argparse.Namespace) -> float:
    """One layout under torchrun; returns rank 0's images per second."""
    processes, threads = (int(x) for x in layout.split("x"))
    if args.batch % processes:
        raise SystemExit(f"--batch {args.batch} does not split over {processes} processes")
    with tempfile.TemporaryDirectory() as tmp:
        times = Path(tmp) / "times.json"
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(processes), __file__, "--worker", str(times),
            "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--batch", str(args.batch), "--device", args.device,
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "CVKIT_RUNS": tmp}
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        stamps = json.loads(times.read_text())
    timed = stamps[args.warmup :]
    seconds = (timed[-1] - timed[0]) / (len(timed) - 1)
    return args.batch / seconds


def worker(args: argparse.Namespace) -> None:
    """A torchrun process: the demo config, no evaluation, a step timer on rank 0."""
    import torch

    from cvkit.config import load_config
    from cvkit.engine import run
    from cvkit.engine.trainer import Hook
    from cvkit.registry import HOOKS

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    @HOOKS.register()
    class StepTimer(Hook):
        """Time of every optimizer step's end; rank 0 writes them to ``out`` at the end."""

        def __init__(self, out: str) -> None:
            self.out, self.stamps = out, list[float]()

        def after_step(self, trainer, losses) -> None:
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            self.stamps.append(time.perf_counter())

        def after_train(self, trainer) -> None:
            if trainer.processes.is_main:
                Path(self.out).write_text(json.dumps(self.stamps))

    overrides = [
        f"train.device={args.device}",
        f"train.max_steps={args.steps}",
        f"data.total_batch_size={args.batch}",  # split over the processes by cvkit
        f"train.hooks=[{{type: StepTimer, out: {args.worker}}}]",
        "train.tensorboard=false",
        "train.log_interval=1000",
        "eval.plots=false",
        f"run_dir={os.environ['CVKIT_RUNS']}",
        "data.num_workers=0",
    ]
    cfg = load_config(DEMO, overrides)
    cfg.data["data"]["val"] = None  # time training only
    run.train(cfg)


def report(rates: dict[str, list[float]], args: argparse.Namespace) -> None:
    layouts = list(rates)
    base = layouts[0]
    print(f"\n{'layout':<8} {'images/s (median)':>18} {'vs ' + base:>10}")
    rows = []
    for layout in layouts:
        ratios = [a / b for a, b in zip(rates[layout], rates[base])]
        median = statistics.median(rates[layout])
        ratio = statistics.median(ratios)
        print(f"{layout:<8} {median:>18.2f} {ratio:>10.3f}")
        rows.append({"layout": layout, "images_per_s": rates[layout], "ratio": ratio})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
