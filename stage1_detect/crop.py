"""Cut the animal part out of every image record: crop records for stage 2.

    python stage1_detect/crop.py --model RUN_DIR --records OUT --out CROPS [--margin 0.1]
        [--min-score 0.2] [--crop-size 384] [--source detector|boxes] [--batch-size 16]

``--source detector``: batched tf.data inference (one ``predict`` over each shard), the best box
per image; below ``--min-score`` the full image is kept (source ``full``: counted and reported,
never dropped). ``--source boxes``: the records' own boxes (no model needed), so stage 2 can run
without a trained detector. Each box is grown by ``--margin`` of its size, clamped to the image,
cut from the full-resolution record image and scaled so its longer side is ``--crop-size``.
Crop records keep the image schema (boxes moved into the crop's frame) plus ``crop/box``,
``crop/score``, ``crop/source``; shards are written atomically and a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from tfrecords import cli


@dataclass(frozen=True)
class CropConfig:
    records: str
    out: str
    model: str | None = None
    source: str = "detector"
    margin: float = 0.1
    min_score: float = 0.2
    crop_size: int = 384
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.source not in ("detector", "boxes"):
            raise ValueError("--source must be detector or boxes")
        if self.source == "detector" and not self.model:
            raise ValueError("--source detector needs --model RUN_DIR (or use --source boxes)")
        if not 0 <= self.margin <= 2 or self.crop_size < 32:
            raise ValueError("--margin must be in [0, 2] and --crop-size >= 32")


def grow(box, margin: float):
    """Grow rel-yxyx boxes [..., 4] by ``margin`` of their size on each side, clamped to [0, 1]."""
    import tensorflow as tf

    box = tf.convert_to_tensor(box, tf.float32)
    size = tf.concat([box[..., 2:] - box[..., :2]] * 2, -1)
    return tf.clip_by_value(box + margin * size * tf.constant([-1.0, -1.0, 1.0, 1.0]), 0.0, 1.0)


def cut(encoded, box, crop_size: int):
    """Cut rel-yxyx ``box`` out of a JPEG, longer side scaled down to ``crop_size`` (never up).
    Returns (JPEG bytes, the pixel-exact box actually cut, rel-yxyx)."""
    import tensorflow as tf

    img = tf.io.decode_jpeg(encoded, channels=3)
    hw = tf.cast(tf.shape(img)[:2], tf.float32)
    lo = tf.floor(box[:2] * hw + 1e-3)  # the tolerance keeps 0.6 * 100 = 60.000004 at pixel 60
    hi = tf.maximum(tf.math.ceil(box[2:] * hw - 1e-3), lo + 1.0)
    lo_i, hi_i = tf.cast(lo, tf.int32), tf.cast(tf.minimum(hi, hw), tf.int32)
    crop = img[lo_i[0]:hi_i[0], lo_i[1]:hi_i[1]]
    ch = tf.cast(tf.shape(crop)[:2], tf.float32)
    scale = tf.minimum(1.0, crop_size / tf.reduce_max(ch))
    size = tf.maximum(tf.cast(tf.round(ch * scale), tf.int32), 1)
    crop = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(crop, size, antialias=True)), 0, 255), tf.uint8)
    exact = tf.concat([tf.cast(lo_i, tf.float32) / hw, tf.cast(hi_i, tf.float32) / hw], 0)
    return tf.io.encode_jpeg(crop, quality=95), exact


def boxes_in_crop(boxes, crop_box) -> list:
    """Move rel boxes (``Box`` list) into a crop's frame; boxes left with no area are dropped."""
    from tfrecords.boxes import Box

    y0, x0, y1, x1 = crop_box
    h, w = max(y1 - y0, 1e-9), max(x1 - x0, 1e-9)
    out = []
    for b in boxes:
        nb = Box(min(max((b.xmin - x0) / w, 0.0), 1.0), min(max((b.ymin - y0) / h, 0.0), 1.0),
                 min(max((b.xmax - x0) / w, 0.0), 1.0), min(max((b.ymax - y0) / h, 0.0), 1.0), b.label)
        if nb.xmax > nb.xmin and nb.ymax > nb.ymin:
            out.append(nb)
    return out


def choose_boxes(cfg: CropConfig, model, image_size: int, parsed) -> tuple:
    """Per image of one shard: (rel-yxyx box before the margin, score, source)."""
    import numpy as np
    import tensorflow as tf

    from stage1_detect.model import best_boxes
    from tfrecords.reader import box_union

    if next(iter(parsed.take(1)), None) is None:  # an empty shard (e.g. a split with no images)
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), []
    if cfg.source == "boxes":
        boxes, sources = [], []
        for ex in parsed:
            has = int(tf.shape(ex["image/object/bbox"])[0]) > 0
            boxes.append(box_union(ex).numpy())
            sources.append("boxes" if has else "full")
        return np.array(boxes).reshape(-1, 4), np.where(np.array(sources) == "boxes", 1.0, -1.0), sources
    ds = parsed.map(lambda e: tf.image.resize(tf.cast(tf.io.decode_jpeg(e["image/encoded"], channels=3),
                                                      tf.float32), (image_size, image_size)),
                    num_parallel_calls=tf.data.AUTOTUNE).batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)
    boxes, scores, _ = best_boxes(model.predict(ds, verbose=0), image_size)
    ok = scores >= cfg.min_score
    boxes[~ok] = (0.0, 0.0, 1.0, 1.0)
    return boxes, scores, ["detector" if k else "full" for k in ok]


def crop_records(cfg: CropConfig, progress: bool = True) -> dict:
    """Write the crop records; returns the manifest (with the count per source)."""
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    from tfrecords import SCHEMA_VERSION, atomic
    from tfrecords.layout import exists, join, makedirs, read_bytes, rmtree
    from tfrecords.reader import read_manifest
    from tfrecords.schema import from_parsed, parse_example, serialize

    src = read_manifest(cfg.records)
    model, image_size = None, 0
    if cfg.source == "detector":
        from stage1_detect.model import load_detector

        model, dcfg = load_detector(cfg.model)
        image_size = dcfg.image_size
    makedirs(cfg.out)
    shards, counts = [], Counter()
    total = sum(s["records"] for s in src["shards"])
    with atomic.folder_lock(cfg.out), tqdm(total=total, desc="crop", unit="img", disable=not progress) as bar:
        for s in src["shards"]:
            final = join(cfg.out, s["file"])
            state_path = join(cfg.out, ".state", s["file"] + ".json")
            if exists(final) and exists(state_path):  # done by an earlier, killed run
                st = json.loads(read_bytes(state_path))
            else:
                parsed = tf.data.TFRecordDataset(join(cfg.records, s["file"])).map(parse_example)
                boxes, scores, sources = choose_boxes(cfg, model, image_size, parsed)
                grown = grow(boxes, cfg.margin).numpy() if len(boxes) else boxes
                tmp = atomic.tmp_name(final)
                cuts = tf.data.Dataset.zip(parsed, tf.data.Dataset.from_tensor_slices(np.reshape(grown, (-1, 4))))
                cuts = cuts.map(lambda e, b: (e, *cut(e["image/encoded"], b, cfg.crop_size)),
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
                with tf.io.TFRecordWriter(tmp) as w:
                    for (ex, enc, exact), score, source in zip(cuts, scores, sources, strict=True):
                        rec = from_parsed(ex)
                        shape = tf.io.extract_jpeg_shape(enc).numpy()
                        w.write(serialize(replace(
                            rec, encoded=enc.numpy(), height=int(shape[0]), width=int(shape[1]),
                            boxes=tuple(boxes_in_crop(rec.boxes, exact.numpy())), box_labels=(),
                            crop_box=tuple(float(v) for v in exact.numpy()), crop_score=float(score),
                            crop_source=source)))
                        bar.update(1)
                st = {"file": s["file"], "split": s["split"], "records": len(sources),
                      "sources": dict(Counter(sources)), "sha256": atomic.sha256_file(tmp)}
                makedirs(join(cfg.out, ".state"))
                atomic.write_json(state_path, st)
                atomic.commit(tmp, final)
            shards.append(st)
            counts.update(st["sources"])
        manifest = {**{k: src[k] for k in ("species", "individuals", "parts", "folds", "holdout_individuals")},
                    "schema_version": SCHEMA_VERSION, "kind": "crops", "config": vars(cfg),
                    "counts": {"train": sum(x["records"] for x in shards if x["split"] == "train"),
                               "test": sum(x["records"] for x in shards if x["split"] == "test")},
                    "sources": dict(sorted(counts.items())),
                    "shards": [{k: x[k] for k in ("file", "split", "records", "sha256")} for x in shards]}
        atomic.write_json(join(cfg.out, "manifest.json"), manifest)
        rmtree(join(cfg.out, ".state"))
    return manifest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = CropConfig(records="", out="", source="boxes")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="detector run folder (stage1_detect/train.py --out)")
    p.add_argument("--records", required=True, help="image records folder")
    p.add_argument("--out", required=True, help="crop records folder to write")
    p.add_argument("--source", default="detector", choices=["detector", "boxes"])
    p.add_argument("--margin", type=float, default=d.margin)
    p.add_argument("--min-score", type=float, default=d.min_score)
    p.add_argument("--crop-size", type=int, default=d.crop_size)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--quiet", action="store_true")
    cli.add_debug_flag(p)
    return p.parse_args(argv)


def _main(a: argparse.Namespace) -> int:
    cfg = CropConfig(records=a.records, out=a.out, model=a.model, source=a.source, margin=a.margin,
                     min_score=a.min_score, crop_size=a.crop_size, batch_size=a.batch_size)
    m = crop_records(cfg, progress=not a.quiet)
    print(f"wrote {a.out}: {m['counts']['train']} train and {m['counts']['test']} test crops; by source: "
          + ", ".join(f"{k}={v}" for k, v in m["sources"].items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
