"""Bounding boxes of the animal part, from our CSV (``image,x_min,y_min,x_max,y_max,label``, pixels
of the image as displayed, i.e. after EXIF orientation) or from COCO JSON (``bbox`` = x, y, w, h).

Loading gives pixel boxes per image name; ``normalise`` turns them into [0, 1] ``Box``es for one
image's size, clamping to the frame. A malformed box is a rejection of that box, never of its image.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass

from runtime.cli import DataError
from runtime.storage import read_bytes
from tfrecords.cleaning import Rejection, unsafe_name_reason
from tfrecords.layout import BOX_COLUMNS, read_csv


@dataclass(frozen=True)
class Box:
    """Normalised [0, 1] corners plus the part label."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    label: str


PixelBox = tuple[float, float, float, float, str]  # x_min, y_min, x_max, y_max, label


def _num(v: object) -> float:
    x = float(v)  # raises ValueError on junk
    if not math.isfinite(x):
        raise ValueError("not finite")
    return x


def load_boxes(path: str) -> tuple[dict[str, list[PixelBox]], list[Rejection]]:
    """Boxes by image name from a ``.csv`` or COCO ``.json`` file."""
    if path.lower().endswith(".json"):
        return _load_coco(path)
    df = read_csv(path, BOX_COLUMNS, "boxes CSV")
    out: dict[str, list[PixelBox]] = defaultdict(list)
    rej = []
    for row in df.itertuples(index=False):
        try:
            box = (_num(row.x_min), _num(row.y_min), _num(row.x_max), _num(row.y_max), row.label or "")
        except ValueError:
            rej.append(Rejection("boxes", row.image, "box with a non-numeric coordinate"))
            continue
        _add(out, rej, row.image, box)
    return dict(out), rej


def _add(out: dict, rej: list, image: str, box: PixelBox) -> None:
    reason = unsafe_name_reason(image)
    if reason is None and not box[4]:
        reason = "box without a label"
    if reason is None and not (box[2] > box[0] and box[3] > box[1]):
        reason = "box with x_max <= x_min or y_max <= y_min"
    if reason:
        rej.append(Rejection("boxes", image, reason))
    else:
        out[image].append(box)


def _load_coco(path: str) -> tuple[dict[str, list[PixelBox]], list[Rejection]]:
    try:
        coco = json.loads(read_bytes(path).decode("utf-8-sig"))
        images = {im["id"]: str(im["file_name"]) for im in coco["images"]}
        cats = {c["id"]: str(c["name"]) for c in coco.get("categories") or []}
        anns = coco["annotations"]
        if not isinstance(anns, list):
            raise TypeError("annotations is not a list")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a COCO detection JSON ({type(e).__name__}: {e})") from None
    out: dict[str, list[PixelBox]] = defaultdict(list)
    rej = []
    for a in anns:
        if not isinstance(a, dict):
            rej.append(Rejection("boxes", "", "COCO annotation that is not an object"))
            continue
        try:
            name = images.get(a.get("image_id"), "")
        except TypeError:  # an unhashable image_id
            name = ""
        try:
            x, y, w, h = (_num(v) for v in a["bbox"])
            box = (x, y, x + w, y + h, cats.get(a.get("category_id"), ""))
        except (KeyError, ValueError, TypeError):
            rej.append(Rejection("boxes", name, "COCO annotation without a numeric bbox"))
            continue
        _add(out, rej, name, box)
    return dict(out), rej


def normalise(
    boxes: list[PixelBox], width: int, height: int, split: str, image: str
) -> tuple[list[Box], list[Rejection]]:
    """Pixel boxes -> [0, 1] boxes for an image of ``width`` x ``height`` (clamped to the frame)."""
    out, rej = [], []
    for x0, y0, x1, y1, label in boxes:
        nx0, nx1 = max(0.0, x0 / width), min(1.0, x1 / width)
        ny0, ny1 = max(0.0, y0 / height), min(1.0, y1 / height)
        if nx1 - nx0 <= 1e-6 or ny1 - ny0 <= 1e-6:
            where = f"box {x0:g},{y0:g},{x1:g},{y1:g} lies outside the {width}x{height} image"
            rej.append(Rejection(split, image, where))
            continue
        out.append(Box(nx0, ny0, nx1, ny1, label))
    return out, rej
