"""Test-time slices: the detector also looks at k x k overlapping tiles of each photo, decoded at k
times its input size, so that animals a few per cent of the frame reach it as large as the animals
it was trained on (slicing-aided inference, SAHI: Akyon et al. 2022).

Why: photos at sea show fins at 1-5 % of the frame; at the demo detector's 160 px such a fin is a
blob of ~20 px. On 6 x 6 grids of the committed real fins (each fin ~2 % of the frame), five
demo-recipe detectors scored COCO mAP@0.5 0.08 on average without slices and 0.21 with 2 x 2 of them,
every one gaining; on the close-ups themselves they lost 0.007-0.018 (docs/history.md, "Slices").

Two rules keep the tiles' boxes from costing the photos where the animal is large:
- a box that touches a tile's edge inside the photo is cut by the slice, and is left to the views
  that see the whole animal (SAHI keeps and merges them; here they outranked whole fins);
- where the whole-photo views' most confident box covers more than ``CLOSE_UP`` of the photo, the
  photo is a close-up: each tile sees a part of the animal, which a synthetic-trained detector boxes
  as if whole (2 x 2 slices without this rule cost the committed close-ups 0.04-0.05 mAP@0.5; with
  it, 0.01-0.02). The crops then never take a tile's box, and the boxes scored keep the tiles' at
  ``DEMOTE`` of their confidence, ranked below the whole photo's: where the wide box is wrong (open
  water at sea) a fin the tiles found still counts.

Boxes are ``BOX_FORMAT`` (xyxy in pixels) of the decoded photo, ``k`` times the model's input.
"""

from __future__ import annotations

from collections.abc import Callable

SLICES = 2  # k: k x k tiles of the photo decoded at k times the model's input (1: no tiles)
SLICES_HELP = ("also look at K x K overlapping tiles of each photo decoded at K times the detector's input "
               "(stage1_detect/slicing.py: fins a few per cent of the frame, as at sea); 1: no tiles")
TILE_OVERLAP = 1 / 3  # of a tile's side: 2 x 2 tiles are 0.6 of the photo's side, overlapping by 0.2
CLOSE_UP = 0.1  # share of the photo: a most confident box above it makes the photo a close-up
# the tiles' boxes in a close-up, scored (COCO): kept at this share of their confidence, so that they rank
# below the whole photo's boxes (a right close-up loses nothing) and a fin the tiles found beside a wrong
# wide box still counts (photos at sea); crops never take them (docs/history.md, "Demoted, not dropped")
DEMOTE = 0.01
# boxes a photo keeps, scored, once its tiles join (COCO's own limit): one view keeps MAX_DETECTIONS (20),
# and a photo of many small animals has more; with 20, 6x6 grids of the real fins lost 0.06-0.09 mAP@0.5
SCORED_LIMIT = 100
EDGE = 2.0  # pixels of the model's input: a box this near a tile's inner edge is cut by it


def tile_grid(size: int, k: int) -> tuple[int, list[int]]:
    """(tile side, offsets along one axis) of k x k tiles over a square of ``size`` pixels.

    >>> tile_grid(320, 2)
    (192, [0, 128])
    >>> tile_grid(160, 1)
    (160, [0])
    """
    if k <= 1:
        return size, [0]
    t = round(size / (k - (k - 1) * TILE_OVERLAP))
    return t, [round(i * (size - t) / (k - 1)) for i in range(k)]


def _tiles(images, model_size: int, k: int):
    """Yield (tile resized to the model's input, x offset, y offset, tile side, inner-edge flags)."""
    import tensorflow as tf

    size = int(images.shape[1])
    t, offs = tile_grid(size, k)
    for oy in offs:
        for ox in offs:
            tile = tf.image.resize(images[:, oy:oy + t, ox:ox + t], (model_size, model_size), antialias=True)
            inner = (ox > 0, oy > 0, ox + t < size, oy + t < size)  # left, top, right, bottom
            yield tile, ox, oy, t, inner


def _uncut(boxes, model_size: int, inner: tuple[bool, ...]):
    """[..., 4] boxes in the tile's model pixels -> True where none touches an inner edge."""
    import tensorflow as tf

    near = [boxes[..., 0] < EDGE, boxes[..., 1] < EDGE, boxes[..., 2] > model_size - EDGE,
            boxes[..., 3] > model_size - EDGE]
    cut = tf.zeros_like(near[0])
    for n, flag in zip(near, inner, strict=True):
        cut = cut | n if flag else cut
    return ~cut


def slice_boxes(look: Callable, images, model_size: int, k: int) -> tuple:
    """Every tile's decoded boxes (``look``: a view's dense, -1 padded predictions) moved to the
    photo's pixels: (boxes [B, N, 4], confidence [B, N], classes [B, N]); cut boxes get -1."""
    import tensorflow as tf

    boxes, conf, classes = [], [], []
    for tile, ox, oy, t, inner in _tiles(images, model_size, k):
        d = look(tile)
        b = tf.cast(d["boxes"], tf.float32)
        c = tf.where(_uncut(b, model_size, inner) & (tf.cast(d["confidence"], tf.float32) > 0),
                     tf.cast(d["confidence"], tf.float32), -1.0)
        moved = b * (t / model_size) + tf.constant([ox, oy, ox, oy], tf.float32)
        boxes.append(tf.where((c > 0)[..., None], moved, -1.0))
        conf.append(c)
        classes.append(tf.cast(d["classes"], tf.float32))
    return tf.concat(boxes, 1), tf.concat(conf, 1), tf.concat(classes, 1)


def top_slice(top: Callable, images, model_size: int, k: int) -> tuple:
    """The most confident uncut top box of the tiles (``top``: ``top_box_fn``'s outputs) in the
    photo's pixels: (boxes [B, 4], confidence [B] (-1: none), class [B])."""
    import tensorflow as tf

    best = None
    for tile, ox, oy, t, inner in _tiles(images, model_size, k):
        b, c, cls = (tf.convert_to_tensor(o) for o in top(tile))
        b = tf.cast(b, tf.float32)
        c = tf.where(_uncut(b, model_size, inner), tf.cast(c, tf.float32), -1.0)
        b = b * (t / model_size) + tf.constant([ox, oy, ox, oy], tf.float32)
        if best is None:
            best = (b, c, cls)
            continue
        better = c > best[1]
        best = (tf.where(better[:, None], b, best[0]), tf.where(better, c, best[1]),
                tf.where(better, tf.cast(cls, best[2].dtype), best[2]))
    return best


def close_up(boxes, conf, size: int):
    """[B] True where the most confident of a photo's boxes ([B, N, 4] or [B, 4] xyxy px of a
    ``size`` square) covers more than ``CLOSE_UP`` of it."""
    import tensorflow as tf

    conf = tf.cast(conf, tf.float32)
    if conf.shape.rank == 2:
        boxes = tf.gather(boxes, tf.argmax(conf, axis=1), batch_dims=1)
        conf = tf.reduce_max(conf, axis=1)
    b = tf.cast(boxes, tf.float32)
    area = tf.reduce_prod(tf.maximum(b[:, 2:] - b[:, :2], 0.0), axis=-1) / float(size * size)
    return (area > CLOSE_UP) & (conf > 0)


def _wide_only(images, close, fn, fills: tuple) -> tuple:
    """``fn``'s outputs for the photos that are not close-ups, ``fills`` (per-output pad values) for
    the rest: the tiles' forward passes are spent only where their boxes can be kept."""
    import tensorflow as tf

    idx = tf.where(~close)[:, 0]
    if int(tf.size(idx)) == 0:
        return None
    outs = [tf.convert_to_tensor(o) for o in fn(tf.gather(images, idx))]
    n = int(images.shape[0])
    return tuple(tf.tensor_scatter_nd_update(tf.fill([n, *o.shape[1:]], tf.cast(f, o.dtype)), idx[:, None], o)
                 for o, f in zip(outs, fills, strict=True))


def with_slices(whole: dict, look: Callable, images, model_size: int, k: int) -> tuple:
    """The whole photos' dense predictions (``whole``, at the model's input) and their tiles' in
    ``images``' pixels: (boxes, confidence, classes) to merge. In a close-up the tiles' boxes are
    kept at ``DEMOTE`` times their confidence, after the whole photo's confident boxes."""
    import tensorflow as tf

    size = int(images.shape[1])
    wc = tf.cast(whole["confidence"], tf.float32)
    wb = tf.where((wc > 0)[..., None], tf.cast(whole["boxes"], tf.float32) * (size / model_size), -1.0)
    wk = tf.cast(whole["classes"], tf.float32)
    tb, tc, tk = slice_boxes(look, images, model_size, k)
    tc = tf.where(close_up(wb, wc, size)[:, None] & (tc > 0), tc * DEMOTE, tc)
    return tuple(tf.concat([w, t], 1) for w, t in zip((wb, wc, wk), (tb, tc, tk), strict=True))


def top_with_slices(whole: tuple, top: Callable, images, model_size: int, k: int) -> tuple:
    """The whole photos' top box (``whole``: boxes at the model's input, confidence, class), or the
    tiles' best uncut box where it is more confident and the photo is not a close-up; ``images``' pixels."""
    import tensorflow as tf

    size = int(images.shape[1])
    b, c, cls = (tf.convert_to_tensor(o) for o in whole)
    b, c = tf.cast(b, tf.float32) * (size / model_size), tf.cast(c, tf.float32)
    tiles = _wide_only(images, close_up(b, c, size), lambda x: top_slice(top, x, model_size, k), (-1, -1, 0))
    if tiles is None:
        return b, c, cls
    tb, tc, tk = tiles
    better = tc > c
    return tf.where(better[:, None], tb, b), tf.where(better, tc, c), tf.where(better, tf.cast(tk, cls.dtype), cls)
