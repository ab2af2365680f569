#!/usr/bin/env python
"""Print a model's per-layer output shapes, parameters and FLOPs: the same as `cvkit analyze`
(MMDetection keeps this as tools/analysis_tools/get_flops.py).

    python tools/analyze.py CFG [key=value ...] [--checkpoint CKPT] [--input-size H W]
                            [--images N] [--depth N] [--json]
"""

from __future__ import annotations

import sys

from cvkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["analyze", *sys.argv[1:]]))
