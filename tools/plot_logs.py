#!/usr/bin/env python
"""Overlay the curves of several runs in one picture: each run's training losses, learning
rate and evaluation metrics against the step (what each run's own curves.png shows alone).

    python tools/plot_logs.py runs/a runs/b [--keys loss AP] [--out compare.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cvkit.engine.curves import curve_keys, read_metrics
from cvkit.visualize.plots import plot_curves


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (with metrics.jsonl)")
    p.add_argument("--keys", nargs="+", help="the metrics to draw (default: what runs log)")
    p.add_argument("--out", type=Path, default=Path("curves.png"), help="the PNG to write")
    args = p.parse_args(argv)
    records, keys = [], list(args.keys or [])
    for run in args.runs:
        own = read_metrics(run)
        if not own:
            print(f"error: {run}: no metrics.jsonl with records in this folder", file=sys.stderr)
            return 1
        # a line per run and phase: the run's name in front of the phase
        records += [{**r, "phase": f"{run.name} {r.get('phase')}"} for r in own]
        keys += [k for k in curve_keys(own) if not args.keys and k not in keys]
    try:
        path = plot_curves(records, keys, args.out)
    except ValueError as err:  # a --keys name that no run logs
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
