#!/usr/bin/env python
"""Train a model from a config: the same as `cvkit train`, for those who keep MMDetection's
habit of `tools/train.py` (and for a checkout without the `cvkit` command on its PATH).

    python tools/train.py CFG [key=value ...] [--resume RUN_DIR|CKPT]
"""

from __future__ import annotations

import sys

from cvkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
