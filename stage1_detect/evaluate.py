"""Evaluate a trained detector on the validation fold.

    python stage1_detect/evaluate.py --model RUN_DIR --records OUT [--val-fold K] [--out REPORT_DIR]

COCO mAP@0.5 and mAP@0.5:0.95 (pycocotools through keras-cv), the mean IoU of the chosen crop box
(best box per image) with the truth, the share of images where that IoU >= 0.5, and a PNG grid of
predictions (red, with score) over the truth (green). The last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np

from tfrecords import cli


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of boxes [N, 4] (any corner format with (lo, lo, hi, hi) order)."""
    lo = np.maximum(a[:, :2], b[:, :2])
    hi = np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def evaluate(run_dir: str, records: str, val_fold: int | None = None, out: str | None = None,
             batch_size: int = 16, grid: int = 16) -> dict:
    import tensorflow as tf

    from stage1_detect.data import eval_dataset
    from stage1_detect.model import best_boxes, load_detector
    from stage1_detect.train import coco_map
    from tfrecords.reader import box_union, parsed_records

    model, cfg = load_detector(run_dir)
    if val_fold is None:
        train_cfg = os.path.join(run_dir, "train_config.json")
        val_fold = json.loads(open(train_cfg).read())["val_fold"] if os.path.exists(train_cfg) else 0
    s = cfg.image_size
    result = {"val_fold": val_fold, **coco_map(model, eval_dataset(records, s, batch_size, val_fold))}
    val = parsed_records(records, "train", folds=[val_fold]).filter(
        lambda e: tf.size(e["image/object/class/label"]) > 0)
    images = val.map(lambda e: tf.image.resize(tf.cast(tf.io.decode_jpeg(e["image/encoded"], channels=3),
                                                       tf.float32), (s, s))).batch(batch_size)
    pred_boxes, scores, _ = best_boxes(model.predict(images, verbose=0), s)
    truth = np.stack([box_union(e).numpy() for e in val])
    ious = iou(pred_boxes, truth)
    result.update({"images": int(len(ious)), "mean_iou": float(ious.mean()),
                   "iou50_share": float((ious >= 0.5).mean()), "found_share": float((scores > 0).mean())})
    if out:
        os.makedirs(out, exist_ok=True)
        result["grid"] = draw_grid(list(val.take(grid)), pred_boxes[:grid], scores[:grid], truth[:grid],
                                   os.path.join(out, "predictions.png"))
    return result


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="detector run folder")
    p.add_argument("--records", required=True, help="image records folder")
    p.add_argument("--val-fold", type=int, default=None, help="default: the fold the run validated on")
    p.add_argument("--out", default=None, help="folder for predictions.png (default: RUN_DIR/eval)")
    p.add_argument("--batch-size", type=int, default=16)
    cli.add_debug_flag(p)
    return p.parse_args(argv)


def _main(a: argparse.Namespace) -> int:
    r = evaluate(a.model, a.records, a.val_fold, a.out or os.path.join(a.model, "eval"), a.batch_size)
    print(f"predictions drawn: {r.get('grid')}")
    print(json.dumps(r))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
