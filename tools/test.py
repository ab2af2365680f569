#!/usr/bin/env python
"""Evaluate a checkpoint (or an exported .onnx / .pt2) on a config's validation data: the same
as `cvkit eval CFG --checkpoint CKPT`, in MMDetection's `tools/test.py CFG CKPT` order.

    python tools/test.py CFG CHECKPOINT [key=value ...] [--split val|test|train] [--out DIR]
"""

from __future__ import annotations

import sys

from cvkit.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        sys.exit(0)
    if len(args) < 2 or args[0].startswith("-") or args[1].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)  # a usage error: exit code 2, as argparse's
        sys.exit(2)
    sys.exit(main(["eval", args[0], "--checkpoint", args[1], *args[2:]]))
