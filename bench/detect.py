"""Crop throughput: the batched tf.data path of ``stage1_detect/crop.py`` beside a per-image
Python loop (decode, resize, the model's traced call on one image, best box, cut, encode) over the
same model, both warmed before timing: the loop a careful user would write, not ``predict`` per
image (which sets up a dataset on every call).

    python bench/detect.py [--images 160] [--image-size 256] [--backbone xs]

Uses an untrained detector (speed does not depend on the weights) and generated data; the last
line is JSON with images/s of both paths and their ratio.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import flags


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--images", type=int, default=160, help="photos to detect")
    p.add_argument("--image-size", type=int, default=256, help="detector input side")
    p.add_argument("--backbone", default="xs", help="YOLOv8 backbone size")
    a = p.parse_args(argv)

    import tensorflow as tf

    from stage1_detect.cropping import CropConfig, crop_records, cut
    from stage1_detect.model import DetectorConfig, build_detector, save_config, top_box_fn, top_boxes
    from tfrecords.builder import build
    from tfrecords.plan import BuildConfig
    from tfrecords.reader import grow, list_shards
    from tfrecords.schema import parse_example
    from tfrecords.synthetic.world import SynthConfig, synthesize

    with tempfile.TemporaryDirectory() as tmp:
        data, rec, run = (os.path.join(tmp, d) for d in ("data", "rec", "run"))
        synthesize(SynthConfig(seed=2, individuals=a.images // 4, train_images=a.images, test_images=0,
                               max_side=640), data, progress=False)
        build(BuildConfig(data=data, out=rec, max_side=640, shards=1), progress=False)
        cfg = DetectorConfig(backbone=a.backbone, image_size=a.image_size)
        model = build_detector(cfg)
        os.makedirs(run)
        model.save(os.path.join(run, "detector.keras"))
        save_config(cfg, run)

        one_view = {"zoom": 1, "mirror": False, "slices": 1}  # the photo alone, as the loop below looks at it
        crop_cfg = CropConfig(records=rec, out=os.path.join(tmp, "warm"), detector=run, min_score=0.0, **one_view)
        crop_records(crop_cfg, progress=False)  # warm-up: graph tracing, file cache
        t = time.perf_counter()
        crop_records(CropConfig(records=rec, out=os.path.join(tmp, "crops"), detector=run, min_score=0.0,
                                **one_view), progress=False)
        batched = a.images / (time.perf_counter() - t)

        s = a.image_size
        examples = list(tf.data.TFRecordDataset(list_shards(rec, "train")).map(parse_example))
        detect = top_box_fn(model, s)  # a careful user's loop: the traced call, warmed, not predict per image

        def one(ex, w) -> None:
            img = tf.image.resize(tf.cast(tf.io.decode_jpeg(ex["image/encoded"], channels=3), tf.float32), (s, s))
            box, _, _ = top_boxes(detect(img[None]), s)
            enc, _ = cut(ex["image/encoded"], grow(box, 0.1)[0], 384)
            w.write(enc.numpy())

        with tf.io.TFRecordWriter(os.path.join(tmp, "warm.tfrec")) as w:
            one(examples[0], w)
        t = time.perf_counter()
        with tf.io.TFRecordWriter(os.path.join(tmp, "loop.tfrec")) as w:
            for ex in examples:
                one(ex, w)
        loop = len(examples) / (time.perf_counter() - t)
    print(json.dumps({"images": a.images, "image_size": s, "backbone": a.backbone,
                      "batched_img_s": round(batched, 1), "per_image_loop_img_s": round(loop, 1),
                      "speedup": round(batched / loop, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
