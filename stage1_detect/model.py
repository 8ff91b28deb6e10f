"""The stage-1 detector: keras-cv's YOLOV8Detector with a backbone built from its class.

Nothing downloads: the backbone is built from ``YOLOV8Backbone``'s own arguments (the published
xs/s/m sizes), or loaded from a local keras-cv preset folder (``--weights DIR``: a COCO-trained
backbone, the normal start for a detector trained on a few hundred real boxes), or given a
``.weights.h5`` file.

Box format, stated once: ``BOX_FORMAT = "xyxy"`` in pixels of the square model input
(``image_size`` x ``image_size``). Records hold normalised ``rel_yxyx``; ``stage1_detect.data``
converts on the way in and ``to_relative`` on the way out.
"""

from __future__ import annotations

import json
import os
import weakref
from dataclasses import asdict, dataclass, replace

import keras
import keras_cv
import numpy as np

from runtime.storage import exists, join, read_bytes

BOX_FORMAT = "xyxy"
CONFIDENCE_FLOOR = 0.01  # boxes below it are not detections (the NMS decoder's floor)
NMS_IOU = 0.5  # the NMS decoder's overlap threshold (also merges stage1_detect.views' two views)
MAX_DETECTIONS = 20  # boxes the NMS decoder keeps a photo
# A box with less of its area inside the photo is not a detection. Every training box lies inside
# its photo, yet a detector can learn an anchor whose box regression saturates far past the frame
# and fires on any photo: one demo detector (2026-12-01 12:09) put its most confident box at the
# same off-frame place (x 0.65-1.05, y -0.95-0.95 of the photo) on 16 % of validation photos
# (docs/history.md, "Boxes that leave the photo")
MIN_INSIDE = 0.5

# YOLOv8 n / s / m scaling (keras-cv's yolo_v8_{xs,s,m}_backbone presets, without their weights)
BACKBONES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "xs": ((32, 64, 128, 256), (1, 2, 2, 1)),
    "s": ((64, 128, 256, 512), (1, 2, 2, 1)),
    "m": ((96, 192, 384, 576), (2, 4, 4, 2)),
}


@dataclass(frozen=True)
class DetectorConfig:
    classes: tuple[str, ...] = ("body", "fin", "fluke")
    backbone: str = "xs"
    image_size: int = 256
    fpn_depth: int = 1
    weights: str = "none"  # none | a local keras-cv preset folder | a backbone .weights.h5 file

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"--backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.image_size % 32:
            raise ValueError(f"--image-size must be a multiple of 32, got {self.image_size}")
        if not self.classes:
            raise ValueError("the records have no part labels (no boxes): train the detector on records with boxes")


def build_backbone(cfg: DetectorConfig) -> keras_cv.models.YOLOV8Backbone:
    """The YOLOv8 backbone: from a local keras-cv preset folder (``config.json`` + weights, e.g. the
    COCO-trained ``yolo_v8_s_backbone_coco`` attached as a Kaggle model input; its architecture
    wins over ``--backbone``), from a ``.weights.h5`` file of the chosen size, or from scratch."""
    shape = (cfg.image_size, cfg.image_size, 3)
    if cfg.weights not in ("none", "", None) and os.path.isdir(cfg.weights):
        if not os.path.exists(os.path.join(cfg.weights, "config.json")):
            raise FileNotFoundError(f"--weights {cfg.weights}: a folder without config.json is not a keras-cv "
                                    "preset (save one with keras_cv's save_to_preset, or download the preset)")
        return keras_cv.models.YOLOV8Backbone.from_preset(cfg.weights, input_shape=shape)
    channels, depth = BACKBONES[cfg.backbone]
    backbone = keras_cv.models.YOLOV8Backbone(
        stackwise_channels=list(channels), stackwise_depth=list(depth), include_rescaling=True,
        activation="swish", input_shape=shape)
    if cfg.weights not in ("none", "", None):
        if not os.path.exists(cfg.weights):
            raise FileNotFoundError(
                f"--weights {cfg.weights}: no such file or preset folder. Offline, put a keras-cv preset folder "
                f"or a YOLOV8Backbone({cfg.backbone}) .weights.h5 file there, or use --weights none")
        backbone.load_weights(cfg.weights)
    return backbone


def build_detector(cfg: DetectorConfig) -> keras_cv.models.YOLOV8Detector:
    backbone = build_backbone(cfg)
    # a low confidence floor: COCO mAP ranks every candidate, and crop.py applies its own --min-score
    decoder = keras_cv.layers.NonMaxSuppression(bounding_box_format=BOX_FORMAT, from_logits=False,
                                                confidence_threshold=CONFIDENCE_FLOOR, iou_threshold=NMS_IOU,
                                                max_detections=MAX_DETECTIONS)
    return keras_cv.models.YOLOV8Detector(
        num_classes=len(cfg.classes), bounding_box_format=BOX_FORMAT, backbone=backbone, fpn_depth=cfg.fpn_depth,
        prediction_decoder=decoder)


def save_config(cfg: DetectorConfig, run_dir: str) -> None:
    from runtime import atomic

    atomic.write_json(join(run_dir, "detector_config.json"), asdict(cfg))


def load_config(run_dir: str) -> DetectorConfig:
    path = join(run_dir, "detector_config.json")
    if not exists(path):
        raise FileNotFoundError(f"{run_dir}: no detector_config.json; is this a run folder of stage1_detect/train.py?")
    d = json.loads(read_bytes(path))
    return DetectorConfig(**{**d, "classes": tuple(d["classes"])})


# The Keras detectors last loaded by this process, by (file, size, mtime, input size): a process that
# identifies several times with one detector (the demo beside its baselines, bench/real.py's seven
# measurements at --input-size) loads and traces it once, and ``stage1_detect.cropping.boxes_of``
# can remember its boxes. Two entries: the trained detector and one rebuilt for another input (a
# detector is tens of MB). Inference only: nothing trains these.
_LOADED: dict[tuple, object] = {}
_KEEP = 2


def load_detector(run_dir: str, runtime: str = "tf", input_size: int = 0) -> tuple[keras.Model, DetectorConfig]:
    """``RUN_DIR/detector.keras`` (loaded with ``safe_mode=True``) and its config; with
    ``runtime="onnx"``, its export ``detector.onnx`` (``top_box_fn``) as a ``runtime.onnx.Session``.
    A local file already loaded by this process, unchanged since, is not loaded again. ``input_size``
    (not 0 nor the trained size): the same weights in a detector built for that input, and the config
    says that size."""
    cfg = load_config(run_dir)
    resized = bool(input_size) and input_size != cfg.image_size
    if resized and input_size % 32:
        raise ValueError(f"--input-size must be a multiple of 32 (the detector's largest stride), got {input_size}")
    if resized and runtime == "onnx":
        raise ValueError(f"--input-size {input_size}: the ONNX export of {run_dir} has its trained input "
                         f"({cfg.image_size} px); use --runtime tf")
    path = join(run_dir, "detector.keras")
    if not exists(path):
        raise FileNotFoundError(f"{path} not found: train the detector first (stage1_detect/train.py)")
    if runtime == "onnx":
        from runtime.onnx import Session

        return Session(join(run_dir, "detector.onnx"), source=path), cfg
    if resized:
        cfg = replace(cfg, image_size=input_size)
    key = None
    if os.path.exists(path):  # a local file (object storage is read anew each time)
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, cfg.image_size)
        if key in _LOADED:
            _LOADED[key] = _LOADED.pop(key)  # the most recently used goes last
            return _LOADED[key], cfg
    if resized:
        trained, _ = load_detector(run_dir)
        model = build_detector(cfg)
        model.set_weights(trained.get_weights())
    else:
        model = keras.saving.load_model(path, safe_mode=True)
    if key is not None:
        _LOADED[key] = model
        while len(_LOADED) > _KEEP:
            _LOADED.pop(next(iter(_LOADED)))  # the least recently used
    return model, cfg


def anchor_boxes(pred: dict, image_size: int) -> tuple:
    """The detector's raw outputs -> every anchor's box (xyxy px) and class scores, the scores of
    boxes with less than ``MIN_INSIDE`` of their area inside the photo set to 0 (the decoding of
    keras-cv's ``decode_predictions``, before its non-max suppression)."""
    import tensorflow as tf
    from keras_cv.src.models.object_detection.yolo_v8 import yolo_v8_detector as yolo

    anchors, strides = yolo.get_anchors(image_shape=(image_size, image_size, 3))
    boxes = yolo.dist2bbox(yolo.decode_regression_to_boxes(pred["boxes"]), anchors) * strides[:, None]
    inside = tf.reduce_prod(tf.clip_by_value(tf.minimum(boxes[..., 2:], float(image_size))
                                             - tf.maximum(boxes[..., :2], 0.0), 0.0, float(image_size)), axis=-1)
    area = tf.reduce_prod(tf.maximum(boxes[..., 2:] - boxes[..., :2], 0.0), axis=-1)
    kept = tf.cast(inside >= MIN_INSIDE * area, pred["classes"].dtype)
    return boxes, pred["classes"] * kept[..., None]


_DETECT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its traced call


def detect_fn(model):
    """``model``'s forward pass and box decoding (``anchor_boxes``, non-max suppression) as one
    ``tf.function``, traced once per model: what ``predict`` does per batch, without its per-call
    setup, for callers that hold one image at a time."""
    import tensorflow as tf

    fn = _DETECT.get(model)
    if fn is None:
        @tf.function(reduce_retracing=True)
        def detect(x):
            return model.prediction_decoder(*anchor_boxes(model(x, training=False), int(x.shape[1])))

        fn = _DETECT[model] = detect
    return fn


_TOP: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its traced top-box call


def top_box_fn(model, image_size: int):
    """Each image's most confident box as one ``tf.function`` of a [B, S, S, 3] float batch ->
    (boxes [B, 4] xyxy px, confidence [B], class [B]): the forward pass and the box decoding of
    ``decode_predictions`` (``anchor_boxes``) without its non-max suppression, which never removes
    the most confident box. The function that identification calls and that ``pipeline/export.py``
    writes to ONNX (NMS's padded loops are not exportable)."""
    import tensorflow as tf

    fn = _TOP.get(model)
    if fn is None:
        @tf.function(input_signature=[tf.TensorSpec((None, image_size, image_size, 3), tf.float32)])
        def top(x):
            boxes, scores = anchor_boxes(model(x, training=False), image_size)
            conf = tf.reduce_max(scores, axis=-1)  # [B, A]: sigmoid scores of the best class
            best = tf.argmax(conf, axis=-1, output_type=tf.int32)
            cls = tf.argmax(tf.gather(scores, best, batch_dims=1), -1, output_type=tf.int32)  # its class
            return tf.gather(boxes, best, batch_dims=1), tf.gather(conf, best, batch_dims=1), cls

        fn = _TOP[model] = top
    return fn


def top_boxes(out: tuple, image_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``top_box_fn``'s outputs as the crops take them: rel-yxyx [B, 4], score [B] (-1 and the whole
    image where no box reaches ``CONFIDENCE_FLOOR``), class [B] (-1 there)."""
    boxes, conf, cls = (np.asarray(o) for o in out)
    found = conf > CONFIDENCE_FLOOR
    x0, y0, x1, y1 = np.clip(boxes.reshape(-1, 4) / image_size, 0.0, 1.0).T
    rel = np.where(found[:, None], np.stack([y0, x0, y1, x1], 1), [[0.0, 0.0, 1.0, 1.0]])
    return rel.astype(np.float32), np.where(found, conf, -1.0).astype(np.float32), np.where(found, cls, -1)


def most_confident(detector, batches, image_size: int, zoom: int = 1, mirror: bool = False,
                   slices: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``top_boxes`` of every batch of [B, S, S, 3] float images, concatenated; with ``zoom`` > 1 the
    more confident of the photo and its zoomed-out view, with ``mirror`` each view's box fused with
    its mirror image's (``stage1_detect.views``); ``slices`` k > 1: the images are decoded at k times
    ``image_size`` and their tiles join (``stage1_detect.slicing``). ``detector`` is
    the Keras model (run through ``top_box_fn``) or any function with its outputs (an ONNX
    ``runtime.onnx.Session``)."""
    from stage1_detect.views import top_views

    detect = top_box_fn(detector, image_size) if isinstance(detector, keras.Model) else detector
    outs = [top_boxes(top_views(detect, x, zoom, mirror, slices), image_size * slices) for x in batches]
    if not outs:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return tuple(np.concatenate(parts) for parts in zip(*outs, strict=True))
