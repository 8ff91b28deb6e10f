"""Test-time zoom-out: the detector also looks at each photo shrunk to 1/``zoom`` of its side in the
middle of a canvas of the photo's mean colour, and the boxes of both views are kept.

Why: a detector trained on the synthetic world finds small animals far better than close-ups. On
the committed real set (111 shark-fin close-ups, fins at a median 69 % of the frame) the demo's
detector scored COCO mAP@0.5 0.175 on the photos and 0.62 on the same photos shrunk to a third;
every detector we trained did better shrunk (docs/history.md, "Zoom-out views"). Photos at sea
show fins at 1-5 % of the frame, where the photo itself is the right view, so both are looked at:
COCO scoring merges the two views' boxes by non-max suppression, and the crops take the most
confident box of either view. It costs a second forward pass per photo.

Mirrored views (``mirror``): the detector also looks at each view flipped left-right, and the
boxes of the two are fused (weighted box fusion: boxes of one class that overlap by ``FUSE_IOU``
are averaged, weighted by confidence; a box seen in one of the two keeps half its confidence).
Why: on the committed real fins, three demo detectors scored COCO mAP@0.5 0.50, 0.56 and 0.67 with
it against 0.49, 0.57 and 0.60 without, and 0.41, 0.40 and 0.45 against 0.35, 0.36 and 0.43 on
3 x 3 grids of them (small fins, several to a frame); the synthetic validation fold 0.978 against
0.972 (docs/history.md, "Mirrored views"). Fusing rather than keeping the more confident box
(non-max suppression) is what helped: with suppression the same detectors went up and down. It
costs a second forward pass per view.

Boxes are ``BOX_FORMAT`` (xyxy in pixels of the square model input) throughout; with ``slices`` (the
photo's tiles, ``stage1_detect.slicing``), in pixels of the photo as decoded, k times the input.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ZOOM = 3  # the second view's shrink factor (1: the photo alone)
ZOOM_HELP = ("also look at each photo shrunk to 1/ZOOM of its side (stage1_detect/views.py: synthetic-trained "
             "detectors miss real close-ups they find shrunk): COCO scoring keeps both views' boxes, crops the "
             "more confident view's; 1: the photo alone")
MIRROR = True
MIRROR_HELP = ("the detector also looks at each view mirrored left-right and fuses the boxes the two agree on "
               "(stage1_detect/views.py: real fins found more often)")
INPUT_SIZE_HELP = ("the detector's input in pixels, a multiple of 32 (0: the size it trained at). The network is "
                   "convolutional: at a larger input it sees small animals larger (photos taken from a boat, fins "
                   "1-5 %% of the frame) and frame-filling ones worse (close-ups); README, Stage 1, 'Photos at sea'")
FUSE_IOU = 0.55  # boxes of the photo and its mirror overlapping this much are one box (WBF's usual value)


def zoom_out(images, zoom: int) -> tuple:
    """[B, S, S, 3] -> (the same shape with each photo shrunk to S/zoom, centred on its mean colour;
    offset, factor): a point at view pixel p is at photo pixel (p - offset) * factor.

    >>> import tensorflow as tf
    >>> x = tf.fill([1, 96, 96, 3], 200.0)
    >>> view, offset, factor = zoom_out(x, 3)
    >>> (view.shape, offset, factor)
    (TensorShape([1, 96, 96, 3]), 32, 3.0)
    """
    import tensorflow as tf

    size = int(images.shape[1])
    inner = max(1, round(size / zoom))
    offset = (size - inner) // 2
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    small = tf.image.resize(images, (inner, inner), antialias=True) - mean
    pad = [[0, 0], [offset, size - inner - offset], [offset, size - inner - offset], [0, 0]]
    return tf.pad(small, pad) + mean, offset, size / inner


def to_photo(boxes, offset: int, factor: float, size: int):
    """Boxes of the zoomed-out view -> the photo's pixels, clipped to it."""
    import tensorflow as tf

    return tf.clip_by_value((tf.cast(boxes, tf.float32) - offset) * factor, 0.0, float(size))


def unmirror(boxes, size: int):
    """Boxes (xyxy px) found in the photos mirrored left-right -> the photos' own pixels."""
    import tensorflow as tf

    b = tf.cast(boxes, tf.float32)
    return tf.stack([size - b[..., 2], b[..., 1], size - b[..., 0], b[..., 3]], axis=-1)


def fuse(boxes: np.ndarray, conf: np.ndarray, classes: np.ndarray, views: int = 2,
         iou_min: float = FUSE_IOU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted box fusion of one photo's boxes from ``views`` looks at it: each box, most confident
    first, joins the cluster of its class whose fused box it overlaps most (IoU > ``iou_min``), or
    starts one. A cluster's box is its members' confidence-weighted mean, its confidence their sum
    over max(``views``, members): a box both looks found keeps its confidence, one look's halves.

    >>> b, c, k = fuse(np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float),
    ...                np.array([0.8, 0.4, 0.6]), np.array([0, 0, 0]))
    >>> b.round(2).tolist(), c.round(2).tolist()
    ([[0.33, 0.0, 10.33, 10.0], [50.0, 50.0, 60.0, 60.0]], [0.6, 0.3])
    """
    from stage1_detect.scoring import iou

    weight, total, members, kind = [], [], [], []
    for i in np.argsort(-conf, kind="stable"):
        fused = np.array([t / w for t, w in zip(total, weight, strict=True)]).reshape(-1, 4)
        overlap = iou(fused, np.repeat(boxes[i][None], len(fused), 0)) if len(fused) else np.zeros(0)
        overlap = np.where(np.array(kind) == classes[i], overlap, 0.0)
        j = int(np.argmax(overlap)) if len(overlap) else -1
        if j < 0 or overlap[j] <= iou_min:
            weight.append(conf[i])
            total.append(conf[i] * boxes[i])
            members.append(1)
            kind.append(classes[i])
        else:
            weight[j] += conf[i]
            total[j] = total[j] + conf[i] * boxes[i]
            members[j] += 1
    fused = np.array([t / w for t, w in zip(total, weight, strict=True)]).reshape(-1, 4)
    score = np.array([w / max(views, m) for w, m in zip(weight, members, strict=True)])
    return fused, score, np.array(kind)


def detect_mirrored(detect: Callable, images) -> dict:
    """``detect``'s dense predictions of the photos and of their mirror images, fused per photo
    (``fuse``), the ``MAX_DETECTIONS`` most confident kept and -1 padded as keras-cv pads."""
    import tensorflow as tf

    from stage1_detect.model import MAX_DETECTIONS

    a, b = detect(images), detect(tf.reverse(images, axis=[2]))
    back = np.asarray(unmirror(b["boxes"], int(images.shape[2])))
    boxes = np.concatenate([np.asarray(a["boxes"], np.float32), back], axis=1)
    conf = np.concatenate([np.asarray(a["confidence"], np.float32), np.asarray(b["confidence"], np.float32)], 1)
    classes = np.concatenate([np.asarray(a["classes"], np.float32), np.asarray(b["classes"], np.float32)], 1)
    out = {"boxes": np.full((len(conf), MAX_DETECTIONS, 4), -1.0, np.float32),
           "confidence": np.full((len(conf), MAX_DETECTIONS), -1.0, np.float32),
           "classes": np.full((len(conf), MAX_DETECTIONS), -1.0, np.float32)}
    counts = []
    for i in range(len(conf)):
        found = conf[i] > 0
        fb, fc, fk = fuse(boxes[i][found], conf[i][found], classes[i][found])
        keep = np.argsort(-fc, kind="stable")[:MAX_DETECTIONS]
        out["boxes"][i, :len(keep)], out["confidence"][i, :len(keep)], out["classes"][i, :len(keep)] = (
            fb[keep], fc[keep], fk[keep])
        counts.append(len(keep))
    return {**{k: tf.constant(v) for k, v in out.items()}, "num_detections": tf.constant(counts, tf.int32)}


def top_mirrored(top: Callable, images) -> tuple:
    """``top_box_fn``'s outputs of the photos and of their mirror images, fused per photo: where the
    two boxes overlap by ``FUSE_IOU`` their confidence-weighted mean, else the more confident one;
    the higher confidence and its class."""
    import tensorflow as tf

    from stage1_detect.scoring import iou

    b1, c1, k1 = (np.asarray(o) for o in top(images))
    b2, c2, k2 = (np.asarray(o) for o in top(tf.reverse(images, axis=[2])))
    b2 = np.asarray(unmirror(b2, int(images.shape[2])))
    agree = iou(b1.astype(np.float64), b2.astype(np.float64)) > FUSE_IOU
    mean = (c1[:, None] * b1 + c2[:, None] * b2) / np.maximum(c1 + c2, 1e-9)[:, None]
    first = c1 >= c2
    boxes = np.where(agree[:, None], mean, np.where(first[:, None], b1, b2))
    return boxes.astype(np.float32), np.maximum(c1, c2).astype(np.float32), np.where(first, k1, k2)


def _merge(boxes, conf, classes, limit: int = 0) -> dict:
    """Boxes of several views ([B, N, 4] xyxy px, -1 padded) merged by class-agnostic non-max
    suppression as the detector's own decoder merges one view (``NMS_IOU``; ``limit`` boxes a photo,
    0: ``MAX_DETECTIONS``)."""
    import tensorflow as tf

    from stage1_detect.model import MAX_DETECTIONS, NMS_IOU

    limit = limit or MAX_DETECTIONS
    yxyx = tf.gather(boxes, [1, 0, 3, 2], axis=-1)
    keep, count = tf.image.non_max_suppression_padded(yxyx, conf, limit, NMS_IOU, score_threshold=0.0,
                                                      pad_to_max_output_size=True)
    valid = tf.range(limit)[None] < count[:, None]
    pick = lambda t: tf.where(valid if t.shape.rank == 2 else valid[..., None],  # noqa: E731
                              tf.gather(t, keep, batch_dims=1), -1.0)
    return {"boxes": pick(boxes), "confidence": pick(conf), "classes": pick(classes),
            "num_detections": tf.cast(count, tf.int32)}


def detect_views(detect: Callable, images, zoom: int = ZOOM, mirror: bool = False, slices: int = 1) -> dict:
    """``detect``'s decoded predictions (``decode_predictions``' dense dict, -1 padded) of the photos
    and of their zoomed-out view, merged by class-agnostic non-max suppression; ``zoom`` 1: the
    photos' alone. ``mirror``: each view's boxes fused with its mirror image's first
    (``detect_mirrored``). ``slices`` k > 1: ``images`` are decoded at k times the model's input,
    and the boxes of their k x k tiles join (``stage1_detect.slicing``); boxes in ``images``' pixels."""
    import tensorflow as tf

    from stage1_detect.slicing import SCORED_LIMIT, with_slices

    look = (lambda x: detect_mirrored(detect, x)) if mirror else detect
    if slices > 1:
        s = int(images.shape[1]) // slices
        whole = detect_views(detect, tf.image.resize(images, (s, s), antialias=True), zoom, mirror)
        return _merge(*with_slices(whole, look, images, s, slices), limit=SCORED_LIMIT)
    first = look(images)
    if zoom <= 1:
        return first
    view, offset, factor = zoom_out(images, zoom)
    second = look(view)
    size = int(images.shape[1])
    found = second["confidence"] > 0
    moved = tf.where(found[..., None], to_photo(second["boxes"], offset, factor, size), -1.0)
    boxes = tf.concat([tf.cast(first["boxes"], tf.float32), moved], axis=1)
    conf = tf.concat([tf.cast(first["confidence"], tf.float32), tf.cast(second["confidence"], tf.float32)], axis=1)
    classes = tf.concat([tf.cast(first["classes"], tf.float32), tf.cast(second["classes"], tf.float32)], axis=1)
    return _merge(boxes, conf, classes)


def top_views(top: Callable, images, zoom: int = ZOOM, mirror: bool = False, slices: int = 1) -> tuple:
    """``top_box_fn``'s outputs (boxes [B, 4] xyxy px, confidence [B], class [B]) of the more
    confident of the two views, each photo on its own; ``zoom`` 1: the photos' alone. ``top`` may
    be an ONNX session: its outputs are taken as arrays. ``mirror``: each view's box fused with its
    mirror image's first (``top_mirrored``). ``slices`` k > 1: ``images`` are decoded at k times
    the model's input, and the tiles' best uncut box is taken where it is more confident, unless the
    photo is a close-up (``stage1_detect.slicing``); boxes in ``images``' pixels."""
    import tensorflow as tf

    from stage1_detect.slicing import top_with_slices

    if slices > 1:
        s = int(images.shape[1]) // slices
        whole = top_views(top, tf.image.resize(images, (s, s), antialias=True), zoom, mirror)
        return top_with_slices(whole, (lambda x: top_mirrored(top, x)) if mirror else top, images, s, slices)
    look = (lambda x: top_mirrored(top, x)) if mirror else top
    boxes, conf, cls = (tf.convert_to_tensor(o) for o in look(images))
    if zoom <= 1:
        return boxes, conf, cls
    view, offset, factor = zoom_out(images, zoom)
    vboxes, vconf, vcls = (tf.convert_to_tensor(o) for o in look(view))
    better = vconf > conf
    moved = to_photo(vboxes, offset, factor, int(images.shape[1]))
    return (tf.where(better[:, None], moved, tf.cast(boxes, tf.float32)), tf.where(better, vconf, conf),
            tf.where(better, tf.cast(vcls, cls.dtype), cls))
