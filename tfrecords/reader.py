"""``tf.data`` readers over the record shards (local or gs://).

Every op is a dict -> dict function, usable eagerly and inside ``Dataset.map``:

    ds = make_dataset("work/records", "train", image_size=256, crop_to_box=True, batch_size=32,
                      exclude_folds=[0], shuffle=True)
    for batch in ds: batch["image"]  # float32 [B, 256, 256, 3] in 0..255

``decode`` adds ``image`` (float32, 0..255, at the stored size or resized); ``crop_to_box`` cuts the
image's first box, the photographed individual's (plus a margin), and resizes it; images without a
box keep the whole frame.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from runtime.cli import DataError
from runtime.storage import exists, join
from tfrecords import SCHEMA_VERSION
from tfrecords.layout import CROP_MARGIN
from tfrecords.schema import parse_example

AUTOTUNE = tf.data.AUTOTUNE


def read_manifest(records: str) -> dict:
    """The records folder's manifest, checked for this code's schema version."""
    path = join(records, "manifest.json")
    if not exists(path):
        raise DataError(f"{records}: no manifest.json; is this a records folder written by tfrecords/build.py?")
    with tf.io.gfile.GFile(path, "rb") as f:
        m = json.loads(f.read())
    if m.get("schema_version") != SCHEMA_VERSION:
        raise DataError(f"{path}: schema version {m.get('schema_version')}, this code reads {SCHEMA_VERSION}; "
                        "rebuild the records with this version's tfrecords/build.py")
    return m


def crop_margin(manifest: dict, crop: bool) -> float | None:
    """The margin around each box that an embedder of these records saw, for inference to cut the
    same: the one crop records were cut with, ``CROP_MARGIN`` where image records are cut at
    training (``crop``), else None (the whole photo)."""
    cut = manifest.get("config", {}) if manifest.get("kind") == "crops" else {}
    return cut.get("margin", CROP_MARGIN if crop else None)


def list_shards(records: str, split: str) -> list[str]:
    """The split's shard files, in name order (from the manifest when there is one)."""
    if exists(join(records, "manifest.json")):
        files = [join(records, s["file"]) for s in read_manifest(records)["shards"] if s["split"] == split]
    else:
        files = sorted(tf.io.gfile.glob(join(records, f"{split}-*.tfrec")))
    if not files:
        raise DataError(f"{records}: no {split} shards")
    return files


def filter_folds(ds: tf.data.Dataset, folds: Sequence[int] | None = None,
                 exclude_folds: Sequence[int] | None = None, include_holdout: bool = True) -> tf.data.Dataset:
    """Keep parsed records of ``folds``, drop those of ``exclude_folds``, and with
    ``include_holdout=False`` drop held-out individuals."""
    if folds is not None:
        keep = tf.constant(list(folds), tf.int64)
        ds = ds.filter(lambda ex: tf.reduce_any(tf.equal(ex["image/fold"], keep)))
    if exclude_folds:
        drop = tf.constant(list(exclude_folds), tf.int64)
        ds = ds.filter(lambda ex: tf.logical_not(tf.reduce_any(tf.equal(ex["image/fold"], drop))))
    if not include_holdout:
        ds = ds.filter(lambda ex: tf.equal(ex["image/holdout"], 0))
    return ds


def train_counts(manifest: dict, val_fold: int | None = None) -> np.ndarray:
    """Training images per individual (in ``individuals`` order; holdouts out, ``val_fold`` out),
    from the manifest's ``fold_counts``: the records are not rescanned."""
    if "fold_counts" not in manifest:
        raise DataError("records built before manifests carried fold_counts: rebuild them with tfrecords/build.py")
    folds = manifest["fold_counts"]
    return np.array([sum(n for f, n in enumerate(folds.get(i, [])) if f != val_fold)
                     for i in manifest["individuals"]], np.int64)


def parsed_records(records: str, split: str, folds: Sequence[int] | None = None,
                   exclude_folds: Sequence[int] | None = None, include_holdout: bool = True) -> tf.data.Dataset:
    """A split's records, parsed (not decoded), read in parallel and filtered by ``filter_folds``."""
    ds = tf.data.TFRecordDataset(list_shards(records, split), num_parallel_reads=AUTOTUNE)
    return filter_folds(ds.map(parse_example, num_parallel_calls=AUTOTUNE), folds, exclude_folds, include_holdout)


def decode_image(encoded: tf.Tensor, image_size: int | None = None, antialias: bool = True) -> tf.Tensor:
    """JPEG bytes -> float32 RGB (0..255), resized to ``image_size`` squared when given: the one
    decode-and-resize of every reader, trainer and inference path. The detector's paths pass
    ``antialias=False`` (it trains and infers on the plain bilinear resize)."""
    img = tf.cast(tf.io.decode_jpeg(encoded, channels=3), tf.float32)
    if image_size:  # an antialiased resize rings a little past the range: clipped back
        img = tf.clip_by_value(tf.image.resize(img, (image_size, image_size), antialias=antialias), 0.0, 255.0)
    return img


def decode(ex: dict[str, tf.Tensor], image_size: int | None = None) -> dict[str, tf.Tensor]:
    """Add ``image`` (float32, 0..255), resized to ``image_size`` squared when given."""
    return {**ex, "image": decode_image(ex["image/encoded"], image_size)}


def grow(box, margin: float) -> tf.Tensor:
    """Grow rel-yxyx boxes [..., 4] by ``margin`` of their size on each side, clamped to [0, 1]."""
    box = tf.convert_to_tensor(box, tf.float32)
    size = tf.concat([box[..., 2:] - box[..., :2]] * 2, -1)
    return tf.clip_by_value(box + margin * size * tf.constant([-1.0, -1.0, 1.0, 1.0]), 0.0, 1.0)


def slice_box(img: tf.Tensor, box: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The pixels of rel-yxyx ``box`` in ``img`` [H, W, C] (at least one pixel), and the pixel-exact
    box actually cut (rel-yxyx): the one crop cut of training crops, ``--crop`` and inference."""
    hw = tf.cast(tf.shape(img)[:2], tf.float32)
    lo = tf.floor(box[:2] * hw + 1e-3)  # the tolerance keeps 0.6 * 100 = 60.000004 at pixel 60
    hi = tf.maximum(tf.math.ceil(box[2:] * hw - 1e-3), lo + 1.0)
    lo_i, hi_i = tf.cast(lo, tf.int32), tf.cast(tf.minimum(hi, hw), tf.int32)
    exact = tf.concat([tf.cast(lo_i, tf.float32) / hw, tf.cast(hi_i, tf.float32) / hw], 0)
    return img[lo_i[0]:hi_i[0], lo_i[1]:hi_i[1]], exact


def crop_square(img: tf.Tensor, box: tf.Tensor, image_size: int) -> tf.Tensor:
    """``box``'s pixels resized (antialiased: ``crop_and_resize`` aliases fine marks) to
    ``image_size`` squared, float32."""
    patch, _ = slice_box(img, box)
    return tf.clip_by_value(tf.image.resize(tf.cast(patch, tf.float32), (image_size, image_size), antialias=True),
                            0.0, 255.0)


def subject_box(ex: dict[str, tf.Tensor], margin: float = 0.0) -> tf.Tensor:
    """The image's first box (ymin, xmin, ymax, xmax; normalised), grown by ``margin`` of its size on
    each side and clamped to the frame; the whole frame when there is no box. The first, not the union:
    a photo may show several animals, each boxed, the identified one's box first (``boxes.csv``, as
    ``tfrecords/synthesize.py --companions`` writes it); with one box a photo the two are the same."""
    b = ex["image/object/bbox"]
    safe = tf.cond(tf.shape(b)[0] > 0, lambda: b, lambda: tf.constant([[0.0, 0.0, 1.0, 1.0]]))
    return grow(safe[0], margin)


def crop_to_box(ex: dict[str, tf.Tensor], image_size: int, margin: float = CROP_MARGIN) -> dict[str, tf.Tensor]:
    """Add ``image``: the identified animal's part (see ``subject_box``), resized to ``image_size`` squared."""
    box = subject_box(ex, margin)
    return {**ex, "image": crop_square(tf.io.decode_jpeg(ex["image/encoded"], channels=3), box, image_size),
            "crop/box": box}


def make_dataset(
    records: str,
    split: str = "train",
    *,
    image_size: int | None = None,
    crop: bool = False,
    margin: float = CROP_MARGIN,
    batch_size: int | None = None,
    folds: Sequence[int] | None = None,
    exclude_folds: Sequence[int] | None = None,
    include_holdout: bool = True,
    shuffle: bool = False,
    repeat: bool = False,
    deterministic: bool = True,
    seed: int = 0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Read a split's shards: interleaved, parsed, filtered by fold, decoded, optionally batched.

    ``crop=True`` needs ``image_size`` and cuts each image to its box (``crop_to_box``); a
    ``batch_size`` needs ``image_size`` (images of one batch must share a shape).
    """
    if (crop or batch_size) and not image_size:
        raise ValueError("crop and batch_size need image_size")
    files = list_shards(records, split)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8), num_parallel_calls=AUTOTUNE,
                       deterministic=deterministic)
    ds = ds.map(parse_example, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    ds = filter_folds(ds, folds, exclude_folds, include_holdout)
    if shuffle:
        ds = ds.shuffle(2048, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if crop:
        ds = ds.map(lambda ex: crop_to_box(ex, image_size, margin), num_parallel_calls=AUTOTUNE,
                    deterministic=deterministic)
    else:
        ds = ds.map(lambda ex: decode(ex, image_size), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if batch_size:
        # ragged box lists cannot be batched densely: keep the fixed-size fields and the crop box
        ds = ds.map(_fixed_fields).batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(AUTOTUNE)


def _fixed_fields(ex: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {k: v for k, v in ex.items() if not k.startswith("image/object/") and k != "image/encoded"}
