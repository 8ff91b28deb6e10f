"""Detection inputs from the image records, as dict -> dict ``tf.data`` ops.

``to_detection`` decodes a record and resizes it to the square model input with its boxes in
``BOX_FORMAT`` (pixels of that input); ``train_dataset`` frames some photos anew
(``stage1_detect.framing``: close-ups, 2x2 mosaics, optionally water alone or photos seen from
afar), then applies ``augmenter`` (keras-cv's box-aware flip, jittered resize and colour jitter) to
ragged batches; ``to_model_inputs`` pads the boxes densely for ``YOLOV8Detector.fit``.
``eval_dataset`` reads a validation fold or a whole folder unaugmented, as k x k grids with ``tile``.
"""

from __future__ import annotations

from collections.abc import Callable

import keras_cv
import tensorflow as tf

from stage1_detect.framing import FAR_WATER_FRAMES, close_ups, empty_windows, far_views, keyed, mosaic, sea_water, tiles
from stage1_detect.model import BOX_FORMAT
from tfrecords.reader import decode_image, parsed_records

AUTOTUNE = tf.data.AUTOTUNE
MAX_BOXES = 8


def to_detection(ex: dict[str, tf.Tensor], image_size: int, class_map: tuple[int, ...] | None = None
                 ) -> dict[str, tf.Tensor]:
    """A parsed record -> {"images": float32 [S, S, 3] in 0..255, "bounding_boxes": {boxes xyxy px,
    classes}}, plus the filename for bookkeeping. ``class_map``: the detector's class index of each
    of the records' parts (``class_map_for``), for records built from another folder."""
    img = decode_image(ex["image/encoded"], image_size, antialias=False)
    b = tf.reshape(ex["image/object/bbox"], (-1, 4)) * float(image_size)  # rel yxyx -> px yxyx
    boxes = tf.stack([b[:, 1], b[:, 0], b[:, 3], b[:, 2]], axis=-1)
    label = ex["image/object/class/label"]
    if class_map is not None:
        label = tf.gather(tf.constant(class_map, tf.int64), label)
    classes = tf.cast(label, tf.float32)
    return {"images": img, "bounding_boxes": {"boxes": boxes, "classes": classes},
            "filename": ex["image/filename"]}


class SeededUniform(keras_cv.core.UniformFactorSampler):
    """keras-cv's uniform factor drawn from a ``tf.random.Generator`` of its own. keras-cv's sampler
    calls ``tf.random.uniform(seed=...)``, a stateful op whose sequence is shared by every op of that
    seed in the process: two datasets built alike drew different jitter. See ``seeded``."""

    def __init__(self, lower: float, upper: float, seed: int):
        super().__init__(lower, upper, seed)
        self._generator = tf.random.Generator.from_seed(seed)

    def __call__(self, shape=(), dtype="float32"):
        return self._generator.uniform(shape, self.lower, self.upper, dtype=dtype)


def seeded(layer, seed: int):
    """``layer`` (a keras-cv augmentation layer) with its generator and each of its uniform factors
    (brightness, hue, blur sigma, resize scale, ...) keyed by ``seed``: its draws then depend on the
    seed and the order of calls alone. (``JitteredResize`` does not pass its seed on: it drew its
    offsets from TensorFlow's global generator.)"""
    layer._random_generator = tf.random.Generator.from_seed(seed)
    for i, (name, value) in enumerate(sorted(vars(layer).items())):
        if type(value) is keras_cv.core.UniformFactorSampler:
            setattr(layer, name, SeededUniform(value.lower, value.upper, seed * 31 + i))
    return layer


def layer_seeds(seed: int, n: int) -> list[int]:
    """``n`` distinct, non-zero seeds for keras-cv layers from one run seed. One seed for all would
    give every layer the same random stream (the flip and the brightness drawn together), and keras-cv
    takes a seed of 0 for "none" (its global generator: another draw every run)."""
    return [seed * 1009 + i + 1 for i in range(n)]


def photometric_layers(kind: str, seed: int = 0, grey: float = 0.0, desaturate: float = 0.3) -> list:
    """Colour jitter on images alone (boxes do not move). ``mild``: saturation and brightness.
    ``wide``: domain randomisation for synthetic-to-real transfer (Tobin et al. 2017): any hue,
    washed-out to vivid colour, contrast from hazy to hard, half the photos blurred (a synthetic
    part's crisp edges and bright marks are cues a real fin does not give) and some grey. ``grey``:
    a share of the photos turned grey after either (the synthetic sea is always coloured and its
    parts grey, a cue no overcast sea gives: docs/history.md, "Grey seas"). ``desaturate``: the most
    of its colour a photo loses in the saturation jitter of either kind (each drawn in [0, desaturate];
    1.0: anything from full colour to grey, an overcast sea's washed-out tints included)."""
    if kind not in ("mild", "wide"):
        raise ValueError(f"photometric {kind!r}: choose mild or wide")
    s = layer_seeds(seed + 1, 8)  # seed + 1: apart from the geometric layers' (``augmenter``)
    layers = [seeded(keras_cv.layers.RandomColorDegeneration(desaturate, seed=s[0]), s[0]),
              seeded(keras_cv.layers.RandomBrightness(0.15, seed=s[1]), s[1])]
    greyed = ([keras_cv.layers.RandomApply(keras_cv.layers.Grayscale(output_channels=3), rate=grey, seed=s[7] + 1)]
              if grey > 0 else [])  # none built at 0: the default pipeline stays as it was
    if kind == "mild":
        return layers + greyed
    hue = seeded(keras_cv.layers.RandomHue(0.5, (0, 255), seed=s[2]), s[2])
    saturation = seeded(keras_cv.layers.RandomSaturation((0.2, 0.8), seed=s[3]), s[3])
    contrast = seeded(keras_cv.layers.RandomContrast((0, 255), 0.6, seed=s[4]), s[4])
    blur = seeded(keras_cv.layers.RandomGaussianBlur(5, (0.3, 2.0), seed=s[5]), s[5])
    grey_15 = keras_cv.layers.Grayscale(output_channels=3)
    return layers + [hue, saturation, contrast, keras_cv.layers.RandomApply(blur, rate=0.5, seed=s[6]),
                     keras_cv.layers.RandomApply(grey_15, rate=0.15, seed=s[7])] + greyed



def augmenter(image_size: int, seed: int = 0, photometric: str = "mild", grey: float = 0.0,
              desaturate: float = 0.3) -> Callable[[dict], dict]:
    """Box-aware flip and jittered resize, then ``photometric_layers(photometric, ...)`` on the images."""
    flip_seed, resize_seed = layer_seeds(seed, 2)
    geometric = [
        keras_cv.layers.RandomFlip(mode="horizontal", bounding_box_format=BOX_FORMAT, seed=flip_seed),
        seeded(keras_cv.layers.JitteredResize(target_size=(image_size, image_size), scale_factor=(0.7, 1.3),
                                              bounding_box_format=BOX_FORMAT, seed=resize_seed), resize_seed),
    ]
    colour = photometric_layers(photometric, seed, grey, desaturate)

    def apply(d: dict) -> dict:
        out = {"images": d["images"], "bounding_boxes": d["bounding_boxes"]}
        for layer in geometric:
            out = layer(out, training=True)
        images = out["images"]
        for layer in colour:  # images only: keras-cv's RandomApply cannot carry ragged boxes
            images = layer(images, training=True)
        return {**d, **out, "images": images}

    return apply


def to_model_inputs(d: dict, max_boxes: int = MAX_BOXES) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Images and boxes padded to ``max_boxes`` (a grid of k x k photos holds k*k times a photo's)."""
    return d["images"], keras_cv.bounding_box.to_dense(d["bounding_boxes"], max_boxes=max_boxes)


def count_with_boxes(records: str, val_fold: int) -> int:
    """Training images (folds != val_fold) that have a box: parsed, not decoded."""
    ds = parsed_records(records, "train", exclude_folds=[val_fold])
    return int(ds.reduce(0, lambda c, e: c + tf.cast(tf.size(e["image/object/class/label"]) > 0, tf.int32)))


def train_dataset(records: str, image_size: int, batch_size: int, val_fold: int, seed: int = 0,
                  augment: bool = True, photometric: str = "mild", mosaic_rate: float = 0.0,
                  close_up_rate: float = 0.0, empty_rate: float = 0.0, far_rate: float = 0.0,
                  far_water: str = "own", grey: float = 0.0, desaturate: float = 0.3) -> tf.data.Dataset:
    ds = parsed_records(records, "train", exclude_folds=[val_fold])
    ds = ds.filter(lambda e: tf.size(e["image/object/class/label"]) > 0)  # water alone comes from empty_windows
    close = augment and (close_up_rate > 0 or empty_rate > 0 or far_rate > 0)  # windows: from twice the pixels
    ds = ds.map(lambda e: to_detection(e, image_size * (2 if close else 1)), num_parallel_calls=AUTOTUNE)
    if close:
        ds = ds.enumerate().map(keyed(2 * seed), num_parallel_calls=AUTOTUNE)
        if empty_rate > 0:
            ds = ds.map(empty_windows(empty_rate), num_parallel_calls=AUTOTUNE)
        if far_rate > 0:
            water = sea_water(FAR_WATER_FRAMES, 2 * image_size, seed) if far_water == "sea" else None
            ds = ds.map(far_views(far_rate, water), num_parallel_calls=AUTOTUNE)
        ds = ds.map(close_ups(close_up_rate, image_size), num_parallel_calls=AUTOTUNE)
        ds = ds.map(lambda d: {k: v for k, v in d.items() if k not in ("seed", "far")})  # batches get their keys
    ds = ds.shuffle(1024, seed=seed).ragged_batch(batch_size, drop_remainder=True)
    mixed = augment and mosaic_rate > 0
    if mixed:
        ds = ds.enumerate().map(keyed(2 * seed + 1), num_parallel_calls=AUTOTUNE)
        ds = ds.map(mosaic(mosaic_rate), num_parallel_calls=AUTOTUNE)
    if augment:  # one call at a time: keras-cv's layers draw from stateful generators, in call order
        ds = ds.map(augmenter(image_size, seed, photometric, grey, desaturate))
    boxes = MAX_BOXES * (4 if mixed else 1)  # a 2x2 grid holds four photos' boxes
    return ds.map(lambda d: to_model_inputs(d, boxes), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def boxed_records(records: str, val_fold: int | None) -> tf.data.Dataset:
    """Parsed records with boxes: the validation fold, or with ``None`` every record of both splits
    (a folder of photos the detector never trained on)."""
    if val_fold is None:
        ds = parsed_records(records, "train").concatenate(parsed_records(records, "test"))
    else:
        ds = parsed_records(records, "train", folds=[val_fold])
    return ds.filter(lambda e: tf.size(e["image/object/class/label"]) > 0)


def class_map_for(records: str, classes: tuple[str, ...]) -> tuple[int, ...] | None:
    """The detector's class index of each part the records were built with (their manifest's
    ``parts``); None when they are the detector's own. A folder built on its own numbers its parts
    from its labels alone (a fin-only folder: fin = 0), so scoring without this mapping would count
    every right box of a right class as wrong."""
    from runtime.cli import DataError
    from tfrecords.reader import read_manifest

    parts = tuple(read_manifest(records).get("parts", ()))
    if parts == tuple(classes):
        return None
    unknown = [p for p in parts if p not in classes]
    if unknown:
        raise DataError(f"box labels {unknown} of {records} are not among the detector's classes {list(classes)}: "
                        "give the boxes one of those labels (boxes.csv's label column, or tfrecords/build.py --part "
                        "when it has none) and build the records again")
    return tuple(classes.index(p) for p in parts)


def eval_dataset(records: str, image_size: int, batch_size: int, val_fold: int | None,
                 class_map: tuple[int, ...] | None = None, tile: int = 1) -> tf.data.Dataset:
    """``boxed_records``, unaugmented, as (images, dense boxes); with ``tile`` k > 1, as k x k grids
    of consecutive photos (the last photos that do not fill a grid are left out)."""
    ds = boxed_records(records, val_fold).map(lambda e: to_detection(e, image_size, class_map),
                                              num_parallel_calls=AUTOTUNE)
    if tile > 1:
        ds = ds.ragged_batch(tile * tile, drop_remainder=True).map(tiles(tile))
    return ds.ragged_batch(batch_size).map(lambda d: to_model_inputs(d, MAX_BOXES * tile * tile)).prefetch(AUTOTUNE)
