"""Detector scores: IoU, COCO mAP and the share of chosen boxes that hit a true one (the library
behind stage1_detect/evaluate.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from runtime.flags import option
from stage1_detect.slicing import SLICES, SLICES_HELP
from stage1_detect.views import INPUT_SIZE_HELP, MIRROR, MIRROR_HELP, ZOOM, ZOOM_HELP


@dataclass(frozen=True)
class DetectorEvalConfig:
    """``stage1_detect/evaluate.py``'s options."""

    detector: str = option(help="detector run folder (stage1_detect/train.py --out)")
    records: str = option(help="image records folder")
    out: str | None = option(None, help="folder for predictions.png (None: DETECTOR/eval)")
    val_fold: int | None = option(None, help="the fold to score (None: the fold the run validated on)", lo=0)
    batch_size: int = option(16, help="images per detector batch", lo=1)
    all: bool = option(False, help="score every record with boxes (both splits), not one validation fold: "
                                   "for a folder of photos the detector never trained on")
    tile: int = option(1, help="score k x k grids of the photos (each shrunk to 1/k of the side, every box "
                               "kept): small animals, several to a frame, as photos taken at sea show them; "
                               "COCO mAP only", lo=1, hi=8)
    zoom: int = option(ZOOM, help=ZOOM_HELP, lo=1, hi=8)
    mirror: bool = option(MIRROR, help=MIRROR_HELP)
    slices: int = option(SLICES, help=SLICES_HELP, lo=1, hi=4)
    input_size: int = option(0, help=INPUT_SIZE_HELP, lo=0)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of boxes [N, 4] (any corner format with (lo, lo, hi, hi) order)."""
    lo = np.maximum(a[:, :2], b[:, :2])
    hi = np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def wide_share(boxes: np.ndarray, found: np.ndarray | None = None) -> float:
    """Share of photos whose box (rel yxyx [N, 4]; only where ``found``) covers more than half of the
    photo. Right for close-ups; at sea, where a fin is a few per cent of the frame, it is the frame
    drawn as an animal (README, "Photos at sea").

    >>> wide_share(np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.1, 0.3, 0.2]]))
    0.5
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    wide = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0.5
    if found is not None:
        wide &= np.asarray(found, bool)
    return float(wide.mean()) if len(wide) else 0.0


def covered(boxes: np.ndarray, confidence: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Which true boxes (``truth`` [M, 4], rows with x_max <= x_min are padding) some predicted box
    (``boxes`` [N, 4] where ``confidence`` > 0, of any class) covers at IoU >= 0.5: bool [valid M].

    >>> covered(np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), np.array([0.9, 0.01]),
    ...         np.array([[1, 1, 10, 10], [50, 50, 70, 70], [-1, -1, -1, -1]]))
    array([ True, False])
    """
    truth = np.asarray(truth, np.float64).reshape(-1, 4)
    truth = truth[truth[:, 2] > truth[:, 0]]
    kept = np.asarray(boxes, np.float64).reshape(-1, 4)[np.asarray(confidence).reshape(-1) > 0]
    if not len(kept):
        return np.zeros(len(truth), bool)
    return np.array([iou(kept, np.repeat(t[None], len(kept), 0)).max() >= 0.5 for t in truth], bool)


def coco_map(model, ds, zoom: int = 1, mirror: bool = False, slices: int = 1) -> dict[str, float]:
    """COCO mAP@0.5 and mAP@0.5:0.95 of ``model`` on ``ds`` (images, dense boxes), and ``boxed_share``:
    the share of true boxes that some box of any confidence covers (``covered``), the recall no
    ranking of the boxes can exceed (at sea it told fins not seen from fins outranked: README,
    "Photos at sea"); ``zoom`` > 1: of
    the photos' and their zoomed-out views' boxes together; ``mirror``: each view's boxes fused with
    its mirror image's (``stage1_detect.views``); ``slices`` k > 1: ``ds`` holds photos decoded at k
    times the model's input, and their tiles' boxes join (``stage1_detect.slicing``)."""
    import keras_cv

    from stage1_detect.model import BOX_FORMAT, detect_fn
    from stage1_detect.views import detect_views

    metric = keras_cv.metrics.BoxCOCOMetrics(bounding_box_format=BOX_FORMAT, evaluate_freq=1_000_000_000)
    # the traced decoding called directly: ``predict`` would run under the model's strategy, which
    # several workers must enter together, and only the chief evaluates
    detect = detect_fn(model)
    hits = []
    for x, y in ds:
        pred = detect_views(detect, x, zoom, mirror, slices)
        metric.update_state(y, pred)
        for b, c, t in zip(np.asarray(pred["boxes"]), np.asarray(pred["confidence"]), np.asarray(y["boxes"]),
                           strict=True):
            hits.append(covered(b, c, t))
    r = metric.result(force=True)
    found = np.concatenate(hits) if hits else np.zeros(0, bool)
    return {"map50": float(r["MaP@[IoU=50]"]), "map": float(r["MaP"]),
            "boxed_share": float(found.mean()) if len(found) else float("nan")}


def evaluate(run_dir: str, records: str, val_fold: int | None = None, out: str | None = None,
             batch_size: int = 16, grid: int = 16, every: bool = False, tile: int = 1, zoom: int = ZOOM,
             mirror: bool = MIRROR, slices: int = SLICES, input_size: int = 0) -> dict:
    """COCO mAP of ``run_dir``'s detector on the validation fold (``every``: on every record with
    boxes, both splits), and how often the box the crops take hits an animal: the chosen (best)
    box's IoU with the nearest true box >= 0.5 (``iou50_share``), beside how often the whole photo
    would (``frame_iou50_share``). With ``tile`` k > 1, only COCO mAP, on k x k grids of the photos."""
    from stage1_detect.data import boxed_records, class_map_for, eval_dataset
    from stage1_detect.model import load_detector, most_confident
    from tfrecords.reader import decode_image, subject_box

    model, cfg = load_detector(run_dir, input_size=input_size)
    if val_fold is None and not every:
        train_cfg = os.path.join(run_dir, "train_config.json")
        val_fold = json.loads(open(train_cfg).read())["val_fold"] if os.path.exists(train_cfg) else 0
    fold = None if every else val_fold
    s = cfg.image_size
    ds = eval_dataset(records, s * slices, batch_size, fold, class_map_for(records, cfg.classes), tile)
    scored = "all" if every else val_fold
    if tile > 1:  # COCO mAP alone: one chosen box per grid of several animals would mean nothing
        grids = sum(1 for _ in boxed_records(records, fold)) // (tile * tile)  # parsed, not decoded
        nan = float("nan")
        scores = coco_map(model, ds, zoom, mirror, slices) if grids else {"map50": nan, "map": nan, "boxed_share": nan}
        return {"val_fold": scored, **scores, "tile": tile, "grids": grids, "zoom": zoom, "mirror": mirror,
                "slices": slices}
    result = {"val_fold": scored, **coco_map(model, ds, zoom, mirror, slices), "zoom": zoom, "mirror": mirror,
              "slices": slices}
    val = boxed_records(records, fold)
    images = val.map(lambda e: decode_image(e["image/encoded"], s * slices, antialias=False)).batch(batch_size)
    pred_boxes, scores, _ = most_confident(model, images, s, zoom, mirror, slices)
    truths = [e["image/object/bbox"].numpy().reshape(-1, 4) for e in val]
    ious = np.array([iou(np.repeat(p[None], len(t), 0), t).max() for p, t in zip(pred_boxes, truths, strict=True)])
    # the reference a detector must beat: no detector, the crop is the whole photo (boxes are
    # normalised, so the photo is [0, 0, 1, 1]); close-up photo-ID shots make it a strong one
    frame = np.array([iou(np.tile([0.0, 0.0, 1.0, 1.0], (len(t), 1)), t).max() for t in truths])
    subject = first_box_iou(pred_boxes, truths)
    result.update({"images": int(len(ious)), "mean_iou": float(ious.mean()),
                   "iou50_share": float((ious >= 0.5).mean()), "subject_iou50_share": float((subject >= 0.5).mean()),
                   "found_share": float((scores > 0).mean()),
                   "wide_share": wide_share(pred_boxes, scores > 0),
                   "frame_iou50_share": float((frame >= 0.5).mean())})
    if out:
        os.makedirs(out, exist_ok=True)
        truth = np.stack([subject_box(e).numpy() for e in val.take(grid)])
        result["grid"] = draw_grid(list(val.take(grid)), pred_boxes[:grid], scores[:grid], truth,
                                   os.path.join(out, "predictions.png"))
    return result


def first_box_iou(pred: np.ndarray, truths: list[np.ndarray]) -> np.ndarray:
    """IoU of each photo's chosen box (rel-yxyx [N, 4]) with the photo's first true box, the identified
    animal's (0 where it has none): with several animals a photo, how often the crop is the one the id
    belongs to, not merely an animal (with one box a photo, the IoU with the nearest true box).

    >>> first_box_iou(np.array([[0.5, 0.5, 1.0, 1.0]]), [np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])])
    array([0.])
    """
    return np.array([iou(p[None], t[:1])[0] if len(t) else 0.0 for p, t in zip(pred, truths, strict=True)])


def draw_grid(examples, pred, scores, truth, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    n = len(examples)
    cols = 4
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, e, p, sc, t in zip(axes.flat, examples, pred, scores, truth, strict=False):
        img = tf.io.decode_jpeg(e["image/encoded"], channels=3).numpy()
        h, w = img.shape[:2]
        ax.imshow(img)
        for b, c in ((t, "lime"), (p, "red")):
            ax.add_patch(plt.Rectangle((b[1] * w, b[0] * h), (b[3] - b[1]) * w, (b[2] - b[0]) * h,
                                       fill=False, color=c, lw=2))
        ax.set_title(f"{e['image/filename'].numpy().decode()[:10]}  score {sc:.2f}  IoU "
                     f"{iou(p[None], t[None])[0]:.2f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
