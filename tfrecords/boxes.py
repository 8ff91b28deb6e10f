"""Bounding boxes of the animal part, from a CSV or from COCO JSON (``bbox`` = x, y, w, h), in pixels
of the image as displayed (after EXIF orientation).

The CSV's columns may be spelled as public box files spell them: ``image`` (or ``filename``,
``file_name``, ``file``, ``image_id``), the corners ``x_min,y_min,x_max,y_max`` (or ``xmin,...``,
``x1,y1,x2,y2``, ``left,top,right,bottom``) or a corner and a size (``x,y,w,h`` or
``x,y,width,height``), and ``label`` (or ``class``, ``category``, ``part``). Without a label column
every box gets the one ``part`` given (``tfrecords/build.py --part``). For example, a detector's
output for the Kaggle data, ``image,xmin,ymin,xmax,ymax``, builds as it is.

Loading gives pixel boxes per image name; ``normalise`` turns them into [0, 1] ``Box``es for one
image's size, clamping to the frame. A malformed box is a rejection of that box, never of its image.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

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


DEFAULT_PART = "animal"  # the label of boxes whose file has none
SPELLINGS: dict[str, tuple[str, ...]] = {
    "image": ("image", "filename", "file_name", "file", "image_id", "img"),
    "x_min": ("x_min", "xmin", "x1", "x0", "left"),
    "y_min": ("y_min", "ymin", "y1", "y0", "top"),
    "x_max": ("x_max", "xmax", "x2", "right"),
    "y_max": ("y_max", "ymax", "y2", "bottom"),
    "label": ("label", "class", "class_name", "category", "part"),
}
SIZES = (("x", "y", "w", "h"), ("x", "y", "width", "height"))  # a corner and a size instead


def read_box_table(path: str, part: str = DEFAULT_PART) -> pd.DataFrame:
    """A boxes CSV with its columns renamed to ``BOX_COLUMNS`` (see the module docstring); a file
    whose columns name no image or no box is a ``DataError`` that lists the accepted spellings."""
    df = read_csv(path, (), "boxes CSV")
    found = {k: next((c for c in names if c in df.columns), None) for k, names in SPELLINGS.items()}
    corners = [found[k] for k in ("x_min", "y_min", "x_max", "y_max")]
    sized = next((s for s in SIZES if all(c in df.columns for c in s)), None)
    if found["image"] is None or (None in corners and sized is None):
        raise DataError(f"{path}: boxes CSV needs an image column ({'/'.join(SPELLINGS['image'])}) and corners "
                        "(x_min,y_min,x_max,y_max, xmin,..., x1,y1,x2,y2, left,top,right,bottom) or x,y,w,h; "
                        f"found {','.join(df.columns)}")
    out = pd.DataFrame({"image": df[found["image"]]})
    if None in corners:  # x, y, w, h: corners as strings, junk kept for the row's own rejection
        x, y, w, h = (pd.to_numeric(df[c], errors="coerce") for c in sized)
        out = out.assign(x_min=df[sized[0]], y_min=df[sized[1]], x_max=(x + w).astype(str),
                         y_max=(y + h).astype(str))
    else:
        out = out.assign(**{k: df[c] for k, c in zip(("x_min", "y_min", "x_max", "y_max"), corners, strict=True)})
    return out.assign(label=df[found["label"]] if found["label"] else part)[list(BOX_COLUMNS)]


def load_boxes(path: str, part: str = DEFAULT_PART) -> tuple[dict[str, list[PixelBox]], list[Rejection]]:
    """Boxes by image name from a ``.csv`` or COCO ``.json`` file; ``part`` labels boxes of a CSV
    without a label column."""
    if path.lower().endswith(".json"):
        return _load_coco(path)
    df = read_box_table(path, part)
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
