"""Training and embedding inputs from crop records, as dict -> dict ``tf.data`` ops.

Augmentation (training only): a random resized crop (70-100 % of the area), small rotations,
brightness / contrast / saturation jitter; a horizontal flip only when asked, since it moves a
dorsal fin's marks to the other side and real photos of the left and right side differ.
Class imbalance: ``class_weight`` (per-example weights ~ count^-1/2) or ``resample`` (rare
individuals repeated ~ (median / count)^1/2 times per epoch).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrecords.reader import crop_to_box, decode, parsed_records

AUTOTUNE = tf.data.AUTOTUNE


def augment(ex: dict, image_size: int, flip: bool = False) -> dict:
    """Random resized crop, rotation, colour jitter (and a flip when asked) of ``ex["image"]``.
    Stateless random ops keyed by ``ex["seed"]`` (int64 [2]; ``train_dataset`` gives each element
    its own), so a seeded run draws the same augmentations whatever the thread scheduling."""
    img = ex["image"]
    seeds = tf.unstack(tf.random.experimental.stateless_split(ex["seed"], 6))
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(img), tf.zeros((1, 0, 4)), seeds[0], min_object_covered=0.0, aspect_ratio_range=(0.8, 1.25),
        area_range=(0.7, 1.0), use_image_if_no_bounding_boxes=True)
    img = tf.image.resize(tf.slice(img, begin, size), (image_size, image_size), antialias=True)
    img = _rotate(img, tf.random.stateless_uniform((), seeds[1], -0.12, 0.12))  # ~7 degrees
    img = tf.image.stateless_random_brightness(img, 25.0, seeds[2])
    img = tf.image.stateless_random_contrast(img, 0.8, 1.2, seeds[3])
    img = tf.image.stateless_random_saturation(img, 0.8, 1.2, seeds[4])
    if flip:
        img = tf.image.stateless_random_flip_left_right(img, seeds[5])
    return {**ex, "image": tf.clip_by_value(img, 0.0, 255.0)}


def _rotate(img: tf.Tensor, angle: tf.Tensor) -> tf.Tensor:
    """Rotate about the centre (bilinear, edges reflected) with ``ImageProjectiveTransformV3``."""
    h, w = tf.cast(tf.shape(img)[0], tf.float32), tf.cast(tf.shape(img)[1], tf.float32)
    c, s = tf.cos(angle), tf.sin(angle)
    x0 = (w - 1) / 2 - c * (w - 1) / 2 + s * (h - 1) / 2
    y0 = (h - 1) / 2 - s * (w - 1) / 2 - c * (h - 1) / 2
    m = tf.stack([c, -s, x0, s, c, y0, 0.0, 0.0])[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=img[None], transforms=m, output_shape=tf.shape(img)[:2], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")
    return out[0]


def _loader(crop: bool, size: int | None):
    """Decode (and with ``crop`` cut to the boxes); ``size`` squares the result, None keeps it."""
    def load_crop(e):
        return crop_to_box(e, size)

    def load_whole(e):
        return decode(e, size)

    return load_crop if crop else load_whole


def _to_uint8(ex: dict) -> dict:
    """Only what training reads, the image as uint8 (a quarter of the float32 bytes to cache)."""
    keep = ("image/individual_index", "image/species_index")
    return {"image": tf.cast(tf.round(tf.clip_by_value(ex["image"], 0.0, 255.0)), tf.uint8),
            **{k: ex[k] for k in keep}}


def repeat_factors(counts: np.ndarray) -> np.ndarray:
    """Per-class repeats for ``resample``: ~(median / count)^1/2, at least 1."""
    med = np.median(counts[counts > 0]) if (counts > 0).any() else 1.0
    return np.maximum(1, np.round(np.sqrt(med / np.maximum(counts, 1)))).astype(np.int64)


def train_dataset(records: str, image_size: int, batch_size: int, val_fold: int | None, counts: np.ndarray,
                  balance: str = "none", flip: bool = False, seed: int = 0, crop: bool = False,
                  cache: bool = False) -> tf.data.Dataset:
    """((inputs, targets[, sample_weight]) batches, repeated; training folds only (``val_fold`` None:
    every fold), holdouts out.
    ``crop=True`` cuts image records to their boxes first (for records that are not crops).
    ``cache`` keeps the decoded images (uint8, 5/4 of ``image_size``) in memory after the first pass:
    on a small CPU the JPEG decode otherwise competes with the training step for the same cores."""
    ds = parsed_records(records, "train", exclude_folds=None if val_fold is None else [val_fold],
                        include_holdout=False)
    load = _loader(crop, image_size * 5 // 4)  # room for the random resized crop
    ds = ds.map(lambda e: _to_uint8(load(e)), num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache()
    if balance == "resample":
        rep = tf.constant(repeat_factors(counts))
        ds = ds.flat_map(lambda e: tf.data.Dataset.from_tensors(e).repeat(rep[e["image/individual_index"]]))
    ds = ds.shuffle(4096, seed=seed).repeat().enumerate()  # the count keys each element's augmentation

    def to_float(i, e):
        return {**e, "image": tf.cast(e["image"], tf.float32), "seed": tf.stack([tf.cast(seed, tf.int64), i])}

    ds = ds.map(lambda i, e: augment(to_float(i, e), image_size, flip), num_parallel_calls=AUTOTUNE)
    weights = tf.constant((np.maximum(counts, 1) ** -0.5 / np.mean(np.maximum(counts, 1) ** -0.5)).astype("float32"))

    def to_xy(e):
        x = {"image": e["image"], "label": tf.cast(e["image/individual_index"], tf.int32)}
        y = {"individual": x["label"], "species": tf.cast(e["image/species_index"], tf.int32)}
        if balance == "class_weight":
            return x, y, weights[e["image/individual_index"]]
        return x, y

    return ds.map(to_xy, num_parallel_calls=AUTOTUNE).batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def image_dataset(records: str, split: str, image_size: int, batch_size: int, crop: bool = False,
                  folds: list[int] | None = None) -> tf.data.Dataset:
    """Every record of a split (optionally some folds), in order: dicts with ``image`` and labels."""
    ds = parsed_records(records, split, folds=folds)
    load = _loader(crop, image_size)
    keep = ("image", "image/filename", "image/individual_id", "image/species", "image/fold", "image/holdout")
    return ds.map(load, num_parallel_calls=AUTOTUNE).map(lambda e: {k: e[k] for k in keep}).batch(
        batch_size).prefetch(AUTOTUNE)
