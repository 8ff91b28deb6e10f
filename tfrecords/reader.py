"""``tf.data`` readers over the record shards (local or gs://).

Every op is a dict -> dict function, usable eagerly and inside ``Dataset.map``:

    ds = make_dataset("work/records", "train", image_size=256, crop_to_box=True, batch_size=32,
                      exclude_folds=[0], shuffle=True)
    for batch in ds: batch["image"]  # float32 [B, 256, 256, 3] in 0..255

``decode`` adds ``image`` (float32, 0..255, at the stored size or resized); ``crop_to_box`` cuts the
union of the image's boxes (plus a margin) and resizes it in one ``crop_and_resize``; images
without a box keep the whole frame.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import tensorflow as tf

from tfrecords import SCHEMA_VERSION
from tfrecords.layout import DataError, exists, join
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


def parsed_records(records: str, split: str, folds: Sequence[int] | None = None,
                   exclude_folds: Sequence[int] | None = None, include_holdout: bool = True) -> tf.data.Dataset:
    """A split's records, parsed (not decoded), read in parallel and filtered by ``filter_folds``."""
    ds = tf.data.TFRecordDataset(list_shards(records, split), num_parallel_reads=AUTOTUNE)
    return filter_folds(ds.map(parse_example, num_parallel_calls=AUTOTUNE), folds, exclude_folds, include_holdout)


def decode(ex: dict[str, tf.Tensor], image_size: int | None = None) -> dict[str, tf.Tensor]:
    """Add ``image`` (float32, 0..255), resized to ``image_size`` squared when given."""
    img = tf.io.decode_jpeg(ex["image/encoded"], channels=3)
    img = tf.cast(img, tf.float32)
    if image_size:
        img = tf.image.resize(img, (image_size, image_size), antialias=True)
    return {**ex, "image": img}


def box_union(ex: dict[str, tf.Tensor], margin: float = 0.0) -> tf.Tensor:
    """The union of the image's boxes (ymin, xmin, ymax, xmax; normalised), grown by ``margin`` of
    its size on each side and clamped to the frame; the whole frame when there is no box."""
    b = ex["image/object/bbox"]
    safe = tf.cond(tf.shape(b)[0] > 0, lambda: b, lambda: tf.constant([[0.0, 0.0, 1.0, 1.0]]))
    u = tf.concat([tf.reduce_min(safe[:, :2], 0), tf.reduce_max(safe[:, 2:], 0)], 0)
    size = tf.tile(u[2:] - u[:2], [2])
    return tf.clip_by_value(u + margin * size * tf.constant([-1.0, -1.0, 1.0, 1.0]), 0.0, 1.0)


def crop_to_box(ex: dict[str, tf.Tensor], image_size: int, margin: float = 0.1) -> dict[str, tf.Tensor]:
    """Add ``image``: the boxed part (see ``box_union``), resized to ``image_size`` squared."""
    img = tf.cast(tf.io.decode_jpeg(ex["image/encoded"], channels=3), tf.float32)
    box = box_union(ex, margin)
    crop = tf.image.crop_and_resize(img[None], box[None], [0], (image_size, image_size))[0]
    return {**ex, "image": crop, "crop/box": box}


def make_dataset(
    records: str,
    split: str = "train",
    *,
    image_size: int | None = None,
    crop: bool = False,
    margin: float = 0.1,
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
