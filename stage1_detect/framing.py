"""How training photos are framed before keras-cv's jitter: dict -> dict ``tf.data`` ops.

The synthetic world frames one animal covering 7-90 % of a photo; real photos frame it from a
close-up that the frame cuts (photo-ID catalogues) to a fin of 1-5 % of a frame at sea. ``mosaic``
(2x2 ``grids`` of four photos of a batch) and ``close_ups`` (a window cut around the first box) are
on by default in ``stage1_detect/train.py``; ``empty_windows`` (water alone, no box) and
``far_views`` (a photo shrunk onto open water) are options, off (docs/history.md, "Photos at sea").
Every draw is stateless, keyed by ``keyed``'s per-photo seed, so a seeded run frames the same photos
the same way whatever order parallel ``map`` calls run in. ``tiles`` makes k x k grids of any boxed
folder for scoring.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

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
