"""Converters of other detection formats to COCO files, the format cvkit trains on.

- :func:`voc_to_coco`: Pascal VOC XML (``Annotations/*.xml``, optional
  ``ImageSets/Main/<split>.txt``);
- :func:`yolo_to_coco`: YOLO txt labels (``class cx cy w h``, normalised) beside an image
  folder, with a ``classes.txt`` or ``data.yaml`` class list.

Each returns a :class:`Conversion` (``.coco``, ``.notes``, ``.write(path)``); the file written
is checked with the reader training uses. ``tools/voc2coco.py`` and ``tools/yolo2coco.py``
are the command lines.
"""

from cvkit.data.converters.common import (
    Conversion,
    ConversionError,
    class_names_argument,
    read_class_file,
)
from cvkit.data.converters.voc import read_split, read_voc_xml, voc_to_coco
from cvkit.data.converters.yolo import default_label_dir, find_class_file, yolo_to_coco

__all__ = [
    "Conversion",
    "ConversionError",
    "class_names_argument",
    "default_label_dir",
    "find_class_file",
    "read_class_file",
    "read_split",
    "read_voc_xml",
    "voc_to_coco",
    "yolo_to_coco",
]
