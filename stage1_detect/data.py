"""Detection inputs from the image records, as dict -> dict ``tf.data`` ops.

``to_detection`` decodes a record and resizes it to the square model input with its boxes in
``BOX_FORMAT`` (pixels of that input); ``augmenter`` is keras-cv's box-aware flip, jittered resize
and colour jitter, applied to ragged batches inside the pipeline, after ``mosaic`` (some photos
replaced by 2x2 grids of four, at a quarter of their area) and ``close_ups`` (some photos cut close
around their animal, as photo-ID close-ups are framed); ``to_model_inputs`` pads the boxes
densely for ``YOLOV8Detector.fit``. ``tiles`` turns k*k photos into one k x k grid: small, many
animals per frame, the framing of photos taken at sea, made from any boxed folder for scoring.
"""

from __future__ import annotations

from collections.abc import Callable

import keras_cv
import numpy as np
import tensorflow as tf

from stage1_detect.model import BOX_FORMAT
from tfrecords.reader import decode_image, parsed_records

AUTOTUNE = tf.data.AUTOTUNE
MAX_BOXES = 8
# ``close_ups``: the first box's longer side fills this share of the window's side (past 1: the frame cuts
# it); a box cut to less than CLOSE_UP_KEEP of its area is left out rather than taught as a whole animal
CLOSE_UP_FILL = (0.55, 1.1)
CLOSE_UP_KEEP = 0.3
# ``empty_windows``: a window's side as a share of the photo's, and how many places are tried for one that
# touches no box
EMPTY_SIDE = (0.25, 0.6)
EMPTY_TRIES = 8
# ``far_views``: the shrunk photo's side as a share of the frame's (a box of a median 18 % of the photo then
# covers 0.7-4.5 % of the frame), and the share of its side over which its edges fade into the canvas
FAR_SIDE = (0.2, 0.5)
FAR_FADE = 0.1
FAR_WATER_FRAMES = 64  # ``sea_water`` frames drawn once per run for ``--far-water sea``


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


def photometric_layers(kind: str, seed: int = 0) -> list:
    """Colour jitter on images alone (boxes do not move). ``mild``: saturation and brightness.
    ``wide``: domain randomisation for synthetic-to-real transfer (Tobin et al. 2017): any hue,
    washed-out to vivid colour, contrast from hazy to hard, half the photos blurred (a synthetic
    part's crisp edges and bright marks are cues a real fin does not give) and some grey."""
    if kind not in ("mild", "wide"):
        raise ValueError(f"photometric {kind!r}: choose mild or wide")
    s = layer_seeds(seed + 1, 8)  # seed + 1: apart from the geometric layers' (``augmenter``)
    layers = [seeded(keras_cv.layers.RandomColorDegeneration(0.3, seed=s[0]), s[0]),
              seeded(keras_cv.layers.RandomBrightness(0.15, seed=s[1]), s[1])]
    if kind == "mild":
        return layers
    hue = seeded(keras_cv.layers.RandomHue(0.5, (0, 255), seed=s[2]), s[2])
    saturation = seeded(keras_cv.layers.RandomSaturation((0.2, 0.8), seed=s[3]), s[3])
    contrast = seeded(keras_cv.layers.RandomContrast((0, 255), 0.6, seed=s[4]), s[4])
    blur = seeded(keras_cv.layers.RandomGaussianBlur(5, (0.3, 2.0), seed=s[5]), s[5])
    grey = keras_cv.layers.Grayscale(output_channels=3)
    return layers + [hue, saturation, contrast, keras_cv.layers.RandomApply(blur, rate=0.5, seed=s[6]),
                     keras_cv.layers.RandomApply(grey, rate=0.15, seed=s[7])]


def grids(d: dict, members: tf.Tensor, k: int) -> dict:
    """Grids of k x k photos of the ragged batch ``d``: row i of ``members`` [N, k*k] lists the
    photos of grid i, row by row. Each photo is shrunk to 1/k of the side (antialiased) and its boxes
    move with it, so a grid holds every box of its photos at 1/k^2 of their area."""
    images, boxes = d["images"], d["bounding_boxes"]["boxes"]
    size = images.shape[1]
    small = tf.image.resize(images, (size // k, size // k), antialias=True)
    rows = [tf.concat([tf.gather(small, members[:, r * k + c]) for c in range(k)], axis=2) for r in range(k)]
    grid = tf.concat(rows, axis=1)
    if size % k:  # the tiles' sides are whole pixels: back to the input's size
        grid = tf.image.resize(grid, (size, size))
    placed, classes = [], []
    for j in range(k * k):
        b = tf.gather(boxes, members[:, j])
        offset = tf.constant([j % k, j // k, j % k, j // k], tf.float32) * (size / k)
        placed.append(b.with_flat_values(b.flat_values / k + offset))
        classes.append(tf.gather(d["bounding_boxes"]["classes"], members[:, j]))
    return {"images": tf.clip_by_value(grid, 0.0, 255.0),
            "bounding_boxes": {"boxes": tf.concat(placed, axis=1), "classes": tf.concat(classes, axis=1)}}


def keyed(seed: int) -> Callable[[tf.Tensor, dict], dict]:
    """(i, d) -> d with ``d["seed"] = [seed, i]``, after ``Dataset.enumerate``: the key of the
    stateless draws of ``close_ups`` and ``mosaic``, so that a seeded run draws the same photos and
    windows whatever the order in which parallel ``map`` calls run."""

    def apply(i: tf.Tensor, d: dict) -> dict:
        return {**d, "seed": tf.stack([tf.constant(seed, tf.int64), tf.cast(i, tf.int64)])}

    return apply


def mosaic(rate: float) -> Callable[[dict], dict]:
    """Replace a share ``rate`` of a ragged batch's photos by 2x2 ``grids`` of four different photos
    of the batch (YOLOv4's mosaic, shrunk rather than cropped): animals at a quarter of their area,
    four to a frame, with other photos' water beside them; drawn with the batch's ``seed`` key. The
    synthetic world frames one animal covering 7-90 % of the photo; at sea real fins are often 1-5 %,
    several to a frame."""

    def apply(d: dict) -> dict:
        n = tf.shape(d["images"])[0]
        k1, k2 = tf.unstack(tf.random.experimental.stateless_split(d["seed"], 2))
        members = tf.argsort(tf.random.stateless_uniform([n, n], k1), axis=1)[:, :4]  # four distinct photos
        g = grids(d, members, 2)
        pick = tf.range(n) + n * tf.cast(tf.random.stateless_uniform([n], k2) < rate, tf.int32)
        both = lambda a, b: tf.gather(tf.concat([a, b], axis=0), pick)  # noqa: E731
        boxes = {k: both(d["bounding_boxes"][k], g["bounding_boxes"][k]) for k in ("boxes", "classes")}
        return {**d, "images": both(d["images"], g["images"]), "bounding_boxes": boxes}

    return apply


def close_ups(rate: float, image_size: int) -> Callable[[dict], dict]:
    """Close-ups: a share ``rate`` of photos (``to_detection``'s, at any size) cut to a square window
    around their first box (the identified animal's), whose longer side fills ``CLOSE_UP_FILL`` of the
    window's, the window shifted at random and kept in the photo; every photo then resized to
    ``image_size``. The synthetic world's boxes cover a median 18 % of the photo (nine in ten under
    46 %); photo-ID close-ups, such as the committed real shark fins, 69 % (often cut by the frame),
    and a detector that never saw such boxes drew them around the lower part of the fin. Photos are
    decoded at twice ``image_size`` for this (``train_dataset``): a window is then cut from pixels,
    not blown up. Drawn with the photo's ``seed`` key (``keyed``)."""

    def apply(d: dict) -> dict:
        img, boxes = d["images"], d["bounding_boxes"]["boxes"]
        size = tf.cast(tf.shape(img)[0], tf.float32)
        u = tf.random.stateless_uniform([4], d["seed"])
        x0, y0, x1, y1 = tf.unstack(tf.concat([boxes, [[0.0, 0.0, size, size]]], 0)[0])  # none: the whole photo
        fill = CLOSE_UP_FILL[0] + (CLOSE_UP_FILL[1] - CLOSE_UP_FILL[0]) * u[1]
        side = tf.minimum(tf.maximum(x1 - x0, y1 - y0) / fill, size)
        lo = tf.stack([tf.minimum(x1 - side, x0), tf.minimum(y1 - side, y0)])
        hi = tf.stack([tf.maximum(x1 - side, x0), tf.maximum(y1 - side, y0)])
        corner = tf.clip_by_value(lo + (hi - lo) * u[2:], 0.0, size - side)
        close = (u[0] < rate) & ~d.get("far", tf.constant(False))  # a photo seen from afar stays whole
        corner, side = tf.where(close, corner, 0.0), tf.where(close, side, size)
        window = tf.concat([corner[::-1], corner[::-1] + side], 0) / size  # rel yxyx
        out = tf.image.crop_and_resize(img[None], window[None], [0], (image_size, image_size))[0]
        moved = (boxes - tf.tile(corner, [2])) * (image_size / side)
        cut = tf.clip_by_value(moved, 0.0, float(image_size))
        area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
        keep = area(cut) >= CLOSE_UP_KEEP * tf.maximum(area(moved), 1e-6)
        classes = tf.boolean_mask(d["bounding_boxes"]["classes"], keep)
        return {**d, "images": out, "bounding_boxes": {"boxes": tf.boolean_mask(cut, keep), "classes": classes}}

    return apply


def free_window(boxes: tf.Tensor, size: tf.Tensor, key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A square window (rel yxyx, ``EMPTY_SIDE`` of the side) of a ``size``-px photo that touches none
    of ``boxes``, from ``EMPTY_TRIES`` places drawn with ``key``, and whether one was found (if not,
    the first place)."""
    u = tf.random.stateless_uniform([EMPTY_TRIES, 3], key)
    side = size * (EMPTY_SIDE[0] + (EMPTY_SIDE[1] - EMPTY_SIDE[0]) * u[:, 0])
    x0, y0 = (size - side) * u[:, 1], (size - side) * u[:, 2]
    w = tf.stack([x0, y0, x0 + side, y0 + side], 1)[:, None, :]  # [T, 1, 4] against boxes [1, B, 4]
    lo, hi = tf.maximum(w[..., :2], boxes[None, :, :2]), tf.minimum(w[..., 2:], boxes[None, :, 2:])
    touched = tf.reduce_any(tf.reduce_all(hi > lo, axis=-1), axis=1)  # [T]
    free = tf.where(~touched)[:, 0]
    pick = tf.gather(tf.concat([free, [0]], 0), 0)
    window = tf.gather(tf.concat([w[:, 0, 1::-1], w[:, 0, :1:-1]], 1), pick) / size  # rel yxyx
    return window, tf.size(free) > 0


def empty_windows(rate: float) -> Callable[[dict], dict]:
    """Water alone: a share ``rate`` of photos replaced by a ``free_window`` of their own, scaled back
    to the photo's size, with no box. The synthetic world frames an animal in every photo, so a
    detector trained on it is never told that water is not an animal: on fins shrunk into a sea
    (``tfrecords.synthetic.at_sea``) the demo's detector drew a "fin" over the whole frame in a third
    of the photos. This did not cure it (at sea the same over two seeds, 6x6 grids of fins lower), so
    it is off by default (docs/history.md, "Photos at sea"). Photos where no such window is found stay
    as they are. Drawn with the photo's ``seed`` key (``keyed``)."""

    def apply(d: dict) -> dict:
        img, boxes = d["images"], d["bounding_boxes"]["boxes"]
        key = tf.random.experimental.stateless_fold_in(d["seed"], 7)  # apart from close_ups' draws
        window, found = free_window(boxes, tf.cast(tf.shape(img)[0], tf.float32), key)
        use = (tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(key, 1)) < rate) & found
        out = tf.image.crop_and_resize(img[None], window[None], [0], tf.shape(img)[:2])[0]
        keep = tf.fill(tf.shape(boxes)[:1], ~use)
        return {**d, "images": tf.where(use, out, img),
                "bounding_boxes": {"boxes": tf.boolean_mask(boxes, keep),
                                   "classes": tf.boolean_mask(d["bounding_boxes"]["classes"], keep)}}

    return apply


def sea_water(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` square frames of the ``sea`` scene's open water (``tfrecords.synthetic.sea.surface``: chop,
    foam, glint, sometimes a horizon), uint8 [n, size, size, 3]: canvases for ``far_views``."""
    from tfrecords.synthetic.sea import surface

    rng = np.random.default_rng([seed, 17])
    return np.stack([(np.clip(surface(rng, size, size), 0.0, 1.0) * 255.0).astype(np.uint8) for _ in range(n)])


def far_views(rate: float, water: np.ndarray | None = None) -> Callable[[dict], dict]:
    """Seen from afar: a share ``rate`` of photos shrunk to ``FAR_SIDE`` of their side and laid at a
    random place on a canvas of their own water (a ``free_window`` blown up to the photo's size; none:
    the photo's mean colour), the pasted photo's edges faded over ``FAR_FADE`` of its side. The
    synthetic world frames its animals at 7-90 % of the photo; at sea real fins are 1-5 % with open
    water all round, and where the demo's detector did not see such a fin it boxed the whole frame
    (docs/history.md, "Photos at sea"). Mosaic makes animals smaller but fills the frame with them.
    This did not cure it either (at sea within the spread over two seeds, close-ups and 6x6 grids of
    fins lower), so it is off by default. ``water`` (``sea_water``'s frames): canvases drawn from those
    instead, mirrored at random (fewer wide boxes at sea, no more fins found, close-ups lower: off too).
    Shrunk photos are marked ``far`` so that ``close_ups`` leaves them whole. Drawn with the photo's
    ``seed`` key (``keyed``)."""

    bank = None if water is None else tf.constant(water)

    def apply(d: dict) -> dict:
        img, boxes = d["images"], d["bounding_boxes"]["boxes"]
        n = tf.shape(img)[0]
        size = tf.cast(n, tf.float32)
        key = tf.random.experimental.stateless_fold_in(d["seed"], 11)  # apart from the other draws
        u = tf.random.stateless_uniform([6], tf.random.experimental.stateless_fold_in(key, 1))
        if bank is None:
            window, found = free_window(boxes, size, key)
            own = tf.image.crop_and_resize(img[None], window[None], [0], tf.shape(img)[:2])[0]
            canvas = tf.where(found, own, tf.broadcast_to(tf.reduce_mean(img, [0, 1]), tf.shape(img)))
        else:
            sea = tf.cast(tf.gather(bank, tf.cast(u[4] * bank.shape[0], tf.int32)), tf.float32)
            canvas = tf.image.resize(tf.where(u[5] < 0.5, sea, sea[:, ::-1]), tf.shape(img)[:2])
        z = FAR_SIDE[0] + (FAR_SIDE[1] - FAR_SIDE[0]) * u[1]
        side = tf.maximum(tf.cast(tf.round(size * z), tf.int32), 2)
        x, y = [tf.cast(tf.floor(tf.cast(n - side, tf.float32) * v), tf.int32) for v in (u[2], u[3])]
        ramp = tf.minimum(tf.range(side, dtype=tf.float32) + 0.5, tf.cast(side, tf.float32) - 0.5
                          - tf.range(side, dtype=tf.float32)) / (FAR_FADE * tf.cast(side, tf.float32))
        ramp = tf.clip_by_value(ramp, 0.0, 1.0)
        alpha = tf.image.pad_to_bounding_box((ramp[:, None] * ramp[None, :])[:, :, None], y, x, n, n)
        small = tf.image.pad_to_bounding_box(tf.image.resize(img, (side, side), antialias=True), y, x, n, n)
        use = u[0] < rate
        out = canvas * (1.0 - alpha) + small * alpha
        scale = tf.cast(side, tf.float32) / size
        moved = boxes * scale + tf.cast(tf.stack([x, y, x, y]), tf.float32)
        return {**d, "images": tf.where(use, out, img), "far": use,
                "bounding_boxes": {**d["bounding_boxes"], "boxes": tf.where(use, moved, boxes)}}

    return apply


def tiles(k: int) -> Callable[[dict], dict]:
    """A ragged batch of k*k photos -> their k x k grid (one example, unbatched) for scoring."""

    def apply(d: dict) -> dict:
        g = grids(d, tf.range(k * k)[None], k)
        return {"images": g["images"][0], "bounding_boxes": {key: v[0] for key, v in g["bounding_boxes"].items()}}

    return apply


def augmenter(image_size: int, seed: int = 0, photometric: str = "mild") -> Callable[[dict], dict]:
    """Box-aware flip and jittered resize, then ``photometric_layers(photometric)`` on the images."""
    flip_seed, resize_seed = layer_seeds(seed, 2)
    geometric = [
        keras_cv.layers.RandomFlip(mode="horizontal", bounding_box_format=BOX_FORMAT, seed=flip_seed),
        seeded(keras_cv.layers.JitteredResize(target_size=(image_size, image_size), scale_factor=(0.7, 1.3),
                                              bounding_box_format=BOX_FORMAT, seed=resize_seed), resize_seed),
    ]
    colour = photometric_layers(photometric, seed)

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
                  far_water: str = "own") -> tf.data.Dataset:
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
        ds = ds.map(augmenter(image_size, seed, photometric))
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
