"""The record format: one ``tf.train.Example`` per image, TF Object Detection API keys.

    image/encoded            bytes   JPEG, longer side <= the build's max_side
    image/format             bytes   b"jpeg"
    image/filename           bytes   name inside train_images/ or test_images/
    image/height, width      int64   of image/encoded
    image/species            bytes   normalised species ("" for test)
    image/species_index      int64   index into manifest["species"] (-1 unknown)
    image/individual_id      bytes   ("" for test)
    image/individual_index   int64   index into manifest["individuals"] (-1 unknown)
    image/fold               int64   0..K-1 (-1 for test)
    image/holdout            int64   1: individual held out of training (plays new_individual)
    image/object/bbox/xmin, ymin, xmax, ymax   float list, normalised to [0, 1]
    image/object/class/text  bytes list   part label (fin, fluke, body, ...)
    image/object/class/label int64 list   index into manifest["parts"]

Crop records (stage 1) add ``crop/box`` (4 floats, normalised ymin,xmin,ymax,xmax in the source
image), ``crop/score`` and ``crop/source``. ``SCHEMA_VERSION`` (package root) is in every manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import tensorflow as tf

from tfrecords.boxes import Box

BBOX_KEYS = ("image/object/bbox/xmin", "image/object/bbox/ymin", "image/object/bbox/xmax", "image/object/bbox/ymax")


@dataclass(frozen=True)
class ImageRecord:
    encoded: bytes
    filename: str
    height: int
    width: int
    species: str = ""
    species_index: int = -1
    individual_id: str = ""
    individual_index: int = -1
    fold: int = -1
    holdout: int = 0
    boxes: tuple[Box, ...] = field(default_factory=tuple)
    box_labels: tuple[int, ...] = field(default_factory=tuple)
    # crop records only (stage 1): where in the source image this crop was cut, and by what
    crop_box: tuple[float, float, float, float] | None = None  # ymin, xmin, ymax, xmax normalised
    crop_score: float = -1.0
    crop_source: str = ""  # detector | boxes | full


def _bytes(values: Sequence[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _ints(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def _floats(values: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def to_example(r: ImageRecord) -> tf.train.Example:
    f = {
        "image/encoded": _bytes([r.encoded]),
        "image/format": _bytes([b"jpeg"]),
        "image/filename": _bytes([r.filename.encode()]),
        "image/height": _ints([r.height]),
        "image/width": _ints([r.width]),
        "image/species": _bytes([r.species.encode()]),
        "image/species_index": _ints([r.species_index]),
        "image/individual_id": _bytes([r.individual_id.encode()]),
        "image/individual_index": _ints([r.individual_index]),
        "image/fold": _ints([r.fold]),
        "image/holdout": _ints([r.holdout]),
        "image/object/bbox/xmin": _floats([b.xmin for b in r.boxes]),
        "image/object/bbox/ymin": _floats([b.ymin for b in r.boxes]),
        "image/object/bbox/xmax": _floats([b.xmax for b in r.boxes]),
        "image/object/bbox/ymax": _floats([b.ymax for b in r.boxes]),
        "image/object/class/text": _bytes([b.label.encode() for b in r.boxes]),
        "image/object/class/label": _ints(list(r.box_labels)),
    }
    if r.crop_box is not None:
        f["crop/box"] = _floats(list(r.crop_box))
        f["crop/score"] = _floats([r.crop_score])
        f["crop/source"] = _bytes([r.crop_source.encode()])
    return tf.train.Example(features=tf.train.Features(feature=f))


def serialize(r: ImageRecord) -> bytes:
    # deterministic: map entries in key order, so the same image gives the same bytes in any process
    return to_example(r).SerializeToString(deterministic=True)


FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/species": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/species_index": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "image/individual_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/individual_index": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "image/fold": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "image/holdout": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/text": tf.io.VarLenFeature(tf.string),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    # present in crop records only; image records parse with these defaults
    "crop/box": tf.io.FixedLenFeature([4], tf.float32, default_value=[0.0, 0.0, 1.0, 1.0]),
    "crop/score": tf.io.FixedLenFeature([], tf.float32, default_value=-1.0),
    "crop/source": tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """One serialized Example -> a dict of dense tensors (box lists densified, boxes stacked as
    ``image/object/bbox`` [N, 4] in ymin, xmin, ymax, xmax order, the keras-cv "rel_yxyx" format)."""
    p = tf.io.parse_single_example(serialized, FEATURES)
    out = {k: (tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v) for k, v in p.items()}
    out["image/object/bbox"] = tf.stack(
        [out["image/object/bbox/ymin"], out["image/object/bbox/xmin"],
         out["image/object/bbox/ymax"], out["image/object/bbox/xmax"]], axis=-1
    )
    return out


def from_parsed(p: dict) -> ImageRecord:
    """A parsed example (``parse_example``'s dict, as NumPy values) back to an ``ImageRecord``."""
    def s(k: str) -> str:
        v = p[k]
        return (v.numpy() if hasattr(v, "numpy") else v).decode()

    def n(k: str):
        v = p[k]
        return v.numpy() if hasattr(v, "numpy") else v

    texts = [t.decode() for t in n("image/object/class/text")]
    boxes = tuple(Box(float(x0), float(y0), float(x1), float(y1), t) for x0, y0, x1, y1, t in zip(
        n("image/object/bbox/xmin"), n("image/object/bbox/ymin"), n("image/object/bbox/xmax"),
        n("image/object/bbox/ymax"), texts, strict=True))
    return ImageRecord(
        encoded=n("image/encoded"), filename=s("image/filename"), height=int(n("image/height")),
        width=int(n("image/width")), species=s("image/species"), species_index=int(n("image/species_index")),
        individual_id=s("image/individual_id"), individual_index=int(n("image/individual_index")),
        fold=int(n("image/fold")), holdout=int(n("image/holdout")), boxes=boxes,
        box_labels=tuple(int(v) for v in n("image/object/class/label")),
    )
