"""Test-time zoom-out: the detector also looks at each photo shrunk to 1/``zoom`` of its side in the
middle of a canvas of the photo's mean colour, and the boxes of both views are kept.

Why: a detector trained on the synthetic world finds small animals far better than close-ups. On
the committed real set (111 shark-fin close-ups, fins at a median 69 % of the frame) the demo's
detector scored COCO mAP@0.5 0.175 on the photos and 0.62 on the same photos shrunk to a third;
every detector we trained did better shrunk (docs/history.md, "Zoom-out views"). Photos at sea
show fins at 1-5 % of the frame, where the photo itself is the right view, so both are looked at:
COCO scoring merges the two views' boxes by non-max suppression, and the crops take the most
confident box of either view. It costs a second forward pass per photo.

Boxes are ``BOX_FORMAT`` (xyxy in pixels of the square model input) throughout.
"""

from __future__ import annotations

from collections.abc import Callable

ZOOM = 3  # the second view's shrink factor (1: the photo alone)
ZOOM_HELP = ("also look at each photo shrunk to 1/ZOOM of its side (stage1_detect/views.py: synthetic-trained "
             "detectors miss real close-ups they find shrunk): COCO scoring keeps both views' boxes, crops the "
             "more confident view's; 1: the photo alone")


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


def detect_views(detect: Callable, images, zoom: int = ZOOM) -> dict:
    """``detect``'s decoded predictions (``decode_predictions``' dense dict, -1 padded) of the photos
    and of their zoomed-out view, merged by class-agnostic non-max suppression; ``zoom`` 1: the
    photos' alone. Merged as the detector's own decoder merges one view (``NMS_IOU``, ``MAX_DETECTIONS``)."""
    import tensorflow as tf

    from stage1_detect.model import MAX_DETECTIONS, NMS_IOU

    first = detect(images)
    if zoom <= 1:
        return first
    view, offset, factor = zoom_out(images, zoom)
    second = detect(view)
    size = int(images.shape[1])
    found = second["confidence"] > 0
    moved = tf.where(found[..., None], to_photo(second["boxes"], offset, factor, size), -1.0)
    boxes = tf.concat([tf.cast(first["boxes"], tf.float32), moved], axis=1)
    conf = tf.concat([tf.cast(first["confidence"], tf.float32), tf.cast(second["confidence"], tf.float32)], axis=1)
    classes = tf.concat([tf.cast(first["classes"], tf.float32), tf.cast(second["classes"], tf.float32)], axis=1)
    yxyx = tf.gather(boxes, [1, 0, 3, 2], axis=-1)
    keep, count = tf.image.non_max_suppression_padded(yxyx, conf, MAX_DETECTIONS, NMS_IOU, score_threshold=0.0,
                                                      pad_to_max_output_size=True)
    valid = tf.range(MAX_DETECTIONS)[None] < count[:, None]
    pick = lambda t: tf.where(valid if t.shape.rank == 2 else valid[..., None],  # noqa: E731
                              tf.gather(t, keep, batch_dims=1), -1.0)
    return {"boxes": pick(boxes), "confidence": pick(conf), "classes": pick(classes),
            "num_detections": tf.cast(count, tf.int32)}


def top_views(top: Callable, images, zoom: int = ZOOM) -> tuple:
    """``top_box_fn``'s outputs (boxes [B, 4] xyxy px, confidence [B], class [B]) of the more
    confident of the two views, each photo on its own; ``zoom`` 1: the photos' alone. ``top`` may
    be an ONNX session: its outputs are taken as arrays."""
    import tensorflow as tf

    boxes, conf, cls = (tf.convert_to_tensor(o) for o in top(images))
    if zoom <= 1:
        return boxes, conf, cls
    view, offset, factor = zoom_out(images, zoom)
    vboxes, vconf, vcls = (tf.convert_to_tensor(o) for o in top(view))
    better = vconf > conf
    moved = to_photo(vboxes, offset, factor, int(images.shape[1]))
    return (tf.where(better[:, None], moved, tf.cast(boxes, tf.float32)), tf.where(better, vconf, conf),
            tf.where(better, tf.cast(vcls, cls.dtype), cls))
