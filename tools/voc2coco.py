#!/usr/bin/env python
"""Convert Pascal VOC XML annotations to a COCO detection file (cvkit's CocoDetection input).

    python tools/voc2coco.py VOC_ROOT [--split trainval] [--classes a,b,c|FILE]
        [--difficult crowd|keep|skip] [--out instances_trainval.json]

VOC_ROOT holds Annotations/ and JPEGImages/ (e.g. VOCdevkit/VOC2007). Boxes become COCO's
0-based pixels (x = xmin - 1, w = xmax - xmin + 1); difficult objects get iscrowd 1 (ignored,
as VOC's evaluation ignores them) unless --difficult says otherwise. Then train with
`{type: CocoDetection, ann_file: OUT, image_dir: VOC_ROOT/JPEGImages}`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="The box and difficult conventions: cvkit/data/converters/voc.py.",
    )
    p.add_argument("root", type=Path, help="the VOC folder (with Annotations/, JPEGImages/)")
    p.add_argument("--split", help="convert the ids of ImageSets/Main/SPLIT.txt (default: all)")
    p.add_argument(
        "--classes",
        help="a,b,c or a file, one name a line (default: the names found, sorted); "
        "category ids 1..K in this order",
    )
    p.add_argument(
        "--difficult",
        choices=("crowd", "keep", "skip"),
        default="crowd",
        help="difficult objects: iscrowd 1 (the default), ordinary, or left out",
    )
    p.add_argument("--annotations", type=Path, help="the XML folder (default ROOT/Annotations)")
    p.add_argument("--images", type=Path, help="the image folder (default ROOT/JPEGImages)")
    p.add_argument("--out", type=Path, help="the JSON to write (default instances_SPLIT.json)")
    args = p.parse_args(argv)
    # imported after parsing, so --help answers at once (cvkit.data loads torch)
    from cvkit.data.converters import class_names_argument, read_split, voc_to_coco

    try:
        split = args.root / "ImageSets" / "Main" / f"{args.split}.txt"
        ids = read_split(split) if args.split else None
        classes = class_names_argument(args.classes) if args.classes else None
        images = args.images or args.root / "JPEGImages"
        conversion = voc_to_coco(
            args.annotations or args.root / "Annotations", images, ids, classes, args.difficult
        )
        path = conversion.write(args.out or Path(f"instances_{args.split or 'all'}.json"))
    except ValueError as err:  # ConversionError: the message names the file and the fix
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(conversion.summary())
    print(f"wrote {path} (image_dir: {images})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
