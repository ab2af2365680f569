#!/usr/bin/env python
"""Draw samples of a config's dataset with their ground truth, after its augmentations.

    python tools/browse_dataset.py CFG [key=value ...] [--split train|val|test] [-n 16]
        [--out DIR]

Detection samples show their boxes and class names, segmentation samples their mask overlaid,
classification samples their class as a caption, 16 to a PNG grid in --out (default
browse_<config name>/). The samples are the first of the first epoch, augmented as training
augments them, so the pictures show what the model is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of samples, at least 1: {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="a config file or cvkit:// name")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.seed=1")
    p.add_argument("--split", default="train", choices=("train", "val", "test"))
    p.add_argument("-n", "--num", type=_positive, default=16, help="samples to draw")
    p.add_argument("--out", type=Path, help="the folder for the PNGs")
    args = p.parse_args(argv)
    # imported after parsing, so --help answers at once
    from cvkit.config import load_config
    from cvkit.engine.browse import browse_dataset
    from cvkit.errors import ConfigError

    try:
        cfg = load_config(args.config, args.overrides)
        paths = browse_dataset(cfg, args.split, args.num, args.out)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as err:  # missing or bad data: the file is named
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
