#!/usr/bin/env python
"""Convert YOLO txt labels to a COCO detection file (cvkit's CocoDetection input).

    python tools/yolo2coco.py IMAGES [--labels DIR] [--classes FILE|a,b,c] [--out FILE]

IMAGES is the image folder (searched recursively); its labels are in the same layout under
--labels, by default the path with its last `images` part turned into `labels`
(data/images/train -> data/labels/train). The class list is classes.txt or a data.yaml's
`names:`, found in the label folder or above unless --classes names it. Image sizes are read
from the files; an image without a label file has no objects and is kept. Then train with
`{type: CocoDetection, ann_file: OUT, image_dir: IMAGES}`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", type=Path, help="the image folder")
    p.add_argument("--labels", type=Path, help="the label folder (default: images -> labels)")
    p.add_argument("--classes", help="classes.txt, data.yaml or a,b,c (default: found)")
    p.add_argument("--out", type=Path, help="the JSON to write (default instances_IMAGES.json)")
    args = p.parse_args(argv)
    # imported after parsing, so --help answers at once (cvkit.data loads torch)
    from cvkit.data.converters import (
        ConversionError,
        class_names_argument,
        default_label_dir,
        find_class_file,
        read_class_file,
        yolo_to_coco,
    )

    try:
        labels = args.labels or default_label_dir(args.images)
        if labels is None:
            raise ConversionError(
                f"'{args.images}' has no 'images' part to turn into 'labels'; pass --labels DIR"
            )
        if args.classes:
            classes = class_names_argument(args.classes)
        else:
            found = find_class_file(labels, args.images)
            print(f"classes from {found}")
            classes = read_class_file(found)
        conversion = yolo_to_coco(args.images, labels, classes)
        path = conversion.write(args.out or Path(f"instances_{args.images.resolve().name}.json"))
    except ValueError as err:  # ConversionError: the message names the file (and line)
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(conversion.summary())
    print(f"wrote {path} (image_dir: {args.images})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
