"""End-to-end identification throughput: ``pipeline/infer.py``'s batched path (decode, detect,
crop, embed, search, rank; models loaded once, as for the loop) beside a per-image loop as a
careful user would write it (decode, the detector's traced call on one image, crop, the
embedder's traced call on one crop, one matrix product over the catalog), both warmed before
timing, over the same models and catalog; plus the share of time per stage of the batched path;
plus the same batched path with both models exported to ONNX (``pipeline/export.py``,
``infer.py --runtime onnx``) against TensorFlow: images/s of each, timed alternately, the
largest cosine difference of the embeddings and the share of identical top-5 predictions.

    python bench/infer.py [--images 400] [--catalog 400] [--det-size 192] [--emb-size 96]
        [--demo WORKDIR]

Untrained models (speed does not depend on the weights) and generated data; with ``--demo``, the
ONNX comparison runs on that demo's trained models, catalog and test photos instead (re-ranking
as infer does it for the top-5, off for the timing: SIFT runs the same in both). The last line is
JSON with images/s of both paths and their ratio, the cost of the local-feature re-ranking
(``pipeline/rerank.py``, K = 10; ``_k30``: 30, the deepest validation may choose) per query and
against the crop + embedding path, and
``onnx_speedup``, ``onnx_max_cosine_diff`` and ``onnx_same_top5``.
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
    p.add_argument("--images", type=int, default=400, help="query photos")
    p.add_argument("--catalog", type=int, default=400, help="catalog embeddings")
    p.add_argument("--det-size", type=int, default=192, help="detector input side")
    p.add_argument("--emb-size", type=int, default=96, help="embedder input side")
    p.add_argument("--demo", help="a demo's --workdir: compare the runtimes on its models and test photos")
    a = p.parse_args(argv)

    from pipeline.final import identifying_embedder
    from pipeline.identify import InferConfig, load, run

    os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///" + os.path.join(tempfile.gettempdir(), "bench.db"))
    with tempfile.TemporaryDirectory() as tmp:
        cfg, cat, ids, encoded = untrained_setup(a, tmp)
        run(cfg, progress=False)  # the whole command works; models are loaded once below, as the loop's are
        models = load(cfg)
        batched = batched_speed(models, cfg, encoded)
        times = stage_times(models, cfg, cat, ids, encoded, a.det_size, a.emb_size)
        loop = loop_speed(models, cat, ids, encoded, a.det_size, a.emb_size)
        if a.demo:
            demo = Path(a.demo)
            cfg = InferConfig(detector=str(demo / "detector"), embedder=identifying_embedder(str(demo)),
                              catalog=str(demo / "catalog.npz"), images=str(demo / "data" / "test_images"),
                              out=os.path.join(tmp, "demo"))
        onnx = compare_runtimes(cfg)
    print(json.dumps(report(a, batched, loop, times, onnx)))
    return 0


def untrained_setup(a, tmp: str) -> tuple:
    """Generated photos (records), untrained models saved as run folders, and a catalog of ``a.catalog``
    random unit vectors (search cost is what counts): the infer config over them (one view, as the
    per-image loop's), the catalog's vectors and ids, and the test photos' JPEG bytes."""
    import numpy as np

    from pipeline.catalog import Catalog, save_npz
    from pipeline.identify import InferConfig
    from runtime import atomic
    from runtime.checkpoint import save_model
    from stage1_detect.model import DetectorConfig, build_detector, save_config
    from stage2_embed.model import EmbedderConfig, build_models
    from tfrecords.builder import build
    from tfrecords.plan import BuildConfig
    from tfrecords.reader import parsed_records
    from tfrecords.synthetic.world import SynthConfig, synthesize

    data, rec, det, emb = (os.path.join(tmp, d) for d in ("data", "rec", "det", "emb"))
    synthesize(SynthConfig(seed=4, individuals=60, train_images=120, test_images=a.images, max_side=640),
               data, progress=False)
    build(BuildConfig(data=data, out=rec, max_side=640, shards=1), progress=False)
    dcfg = DetectorConfig(image_size=a.det_size)
    os.makedirs(det)
    save_model(build_detector(dcfg), os.path.join(det, "detector.keras"))
    save_config(dcfg, det)
    ecfg = EmbedderConfig(num_classes=a.catalog // 4, image_size=a.emb_size)
    os.makedirs(emb)
    save_model(build_models(ecfg)[1], os.path.join(emb, "embedder.keras"))
    atomic.write_json(os.path.join(emb, "embedder_config.json"), {**ecfg.__dict__})
    rng = np.random.default_rng(0)
    cat = rng.normal(size=(a.catalog, 256)).astype(np.float32)
    cat /= np.linalg.norm(cat, axis=1, keepdims=True)
    ids = np.array([f"id{i % (a.catalog // 4)}" for i in range(a.catalog)])
    save_npz(Catalog(cat, np.array([f"c{i}.jpg" for i in range(a.catalog)]), ids, np.full(a.catalog, "s"),
                     json.dumps({**ecfg.__dict__}, sort_keys=True)), os.path.join(tmp, "cat.npz"))
    cfg = InferConfig(detector=det, embedder=emb, catalog=os.path.join(tmp, "cat.npz"), records=rec,
                      out=os.path.join(tmp, "sub"), threshold=0.5, zoom=1, mirror=False, slices=1)
    encoded = [e["image/encoded"].numpy() for e in parsed_records(rec, "test")]
    return cfg, cat, ids, encoded


def batched_speed(models, cfg, encoded: list[bytes]) -> float:
    """Images/s of ``identify`` over ``cfg.chunk``-photo chunks, after a traced warm-up."""
    from pipeline.identify import identify

    names = [f"q{i}.jpg" for i in range(len(encoded))]
    identify(models, [(names[:8], encoded[:8])], cfg)  # warm-up: tracing
    t = time.perf_counter()
    identify(models, [(names[i:i + cfg.chunk], encoded[i:i + cfg.chunk]) for i in range(0, len(names), cfg.chunk)],
             cfg)
    return len(encoded) / (time.perf_counter() - t)


def stage_times(models, cfg, cat, ids, encoded: list[bytes], det_size: int, emb_size: int) -> dict:
    """Seconds of each stage of the batched path (detect, crop + embed, search) and of the
    local-feature re-ranking at K = 10 and at the deepest K validation may choose (real keypoints:
    the query photos' own, dealt round the catalog)."""
    import numpy as np
    import tensorflow as tf

    from pipeline import local, rerank
    from pipeline.identify import embed_chunk
    from pipeline.search import search
    from stage1_detect.cropping import choose_boxes

    species = np.full(len(cat), "s")
    parsed = tf.data.Dataset.from_tensor_slices({"image/encoded": tf.constant(encoded)})
    t = time.perf_counter()
    choose_boxes(parsed, models.detector, det_size, zoom=cfg.zoom, mirror=cfg.mirror, slices=cfg.slices)
    out = {"detect": time.perf_counter() - t}
    t = time.perf_counter()
    q, _, _ = embed_chunk(encoded, None, 0, models.embedder, {"image_size": emb_size}, cfg)
    out["crop_embed"] = time.perf_counter() - t
    t = time.perf_counter()
    cands = search(q, cat, ids, species)
    out["search"] = time.perf_counter() - t
    t = time.perf_counter()
    q_local = local.of_crops(encoded)
    keypoints = time.perf_counter() - t
    cat_local = local.from_list([q_local.of(i % len(encoded)) for i in range(len(cat))])
    deep = search(q, cat, ids, species, k=max(rerank.DEPTHS))  # the deepest validation may choose
    for key, k, c in (("rerank", 10, cands), ("rerank_k30", max(rerank.DEPTHS), deep)):
        t = time.perf_counter()
        rerank.inlier_matrix(c, q, q_local, cat, ids, cat_local, k=k)
        out[key] = keypoints + time.perf_counter() - t
    return out


def loop_speed(models, cat, ids, encoded: list[bytes], det_size: int, emb_size: int) -> float:
    """Images/s of a per-image loop as a careful user would write it: decode, the detector's traced
    call on one image, crop, the embedder's traced call on one crop, one matrix product over the
    catalog, the best score per individual."""
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    from stage1_detect.model import top_box_fn, top_boxes
    from stage2_embed.forward import forward_fn
    from tfrecords.reader import grow

    detect, forward = top_box_fn(models.detector, det_size), forward_fn(models.embedder)

    def one(enc: bytes) -> list[str]:
        img = tf.cast(tf.io.decode_jpeg(enc, channels=3), tf.float32)
        box, _, _ = top_boxes(detect(tf.image.resize(img, (det_size,) * 2)[None]), det_size)
        crop = tf.image.crop_and_resize(img[None], grow(box, 0.1), [0], (emb_size, emb_size))
        sims = cat @ np.asarray(forward(crop))[0]
        return pd.Series(sims).groupby(ids).max().nlargest(5).index.tolist()

    one(encoded[0])  # warm-up: tracing
    t = time.perf_counter()
    for enc in encoded:
        one(enc)
    return len(encoded) / (time.perf_counter() - t)


def report(a, batched: float, loop: float, times: dict, onnx: dict) -> dict:
    """The printed summary lines, and the JSON line's keys."""
    total = times["detect"] + times["crop_embed"] + times["search"]
    shares = {k: times[k] / total for k in ("detect", "crop_embed", "search")}
    per_query = 1000 * times["rerank"] / a.images
    print(f"batched {batched:.1f} img/s, per-image loop {loop:.1f} img/s; time per stage: "
          + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    print(f"re-ranking (K = 10): {per_query:.1f} ms per query, "
          f"{times['rerank'] / times['crop_embed']:.2f}x the crop + embedding path")
    return {"images": a.images, "catalog": a.catalog, "batched_img_s": round(batched, 1),
            "rerank_ms_per_query": round(per_query, 1),
            "rerank_vs_embedding": round(times["rerank"] / times["crop_embed"], 2),
            "rerank_vs_identify": round(times["rerank"] * batched / a.images, 2),
            "rerank_ms_per_query_k30": round(1000 * times["rerank_k30"] / a.images, 1),
            "rerank_vs_embedding_k30": round(times["rerank_k30"] / times["crop_embed"], 2),
            "per_image_loop_img_s": round(loop, 1), "speedup": round(batched / loop, 2),
            **{f"share_{k}": round(v, 3) for k, v in shares.items()}, **onnx}


def compare_runtimes(cfg, reps: int = 3) -> dict:
    """``identify`` with TensorFlow and with both models' ONNX exports: the same predictions and
    embeddings (with ``cfg``'s re-ranking), and images/s of each (without re-ranking, which runs
    the same in both), timed alternately ``reps`` times each on a machine whose speed drifts."""
    from dataclasses import replace

    import numpy as np

    from pipeline import photos
    from pipeline.exporting import ExportConfig, export
    from pipeline.identify import identify, load

    export(ExportConfig(detector=cfg.detector, embedder=cfg.embedder))
    chunks = list(photos.chunks(photos.inputs(cfg, {}), cfg.chunk))
    n = sum(len(c[0]) for c in chunks)
    runs = {rt: replace(cfg, runtime=rt) for rt in ("tf", "onnx")}
    models = {rt: load(c) for rt, c in runs.items()}
    out = {rt: identify(models[rt], chunks, c) for rt, c in runs.items()}  # also the warm-up
    spent = dict.fromkeys(runs, 0.0)
    for _ in range(reps):
        for rt, c in runs.items():
            t = time.perf_counter()
            identify(replace(models[rt], fusion=None), chunks, c)
            spent[rt] += time.perf_counter() - t
    tf_s, onnx_s = (reps * n / spent[rt] for rt in ("tf", "onnx"))
    (_, e_tf, *_, p_tf, _), (_, e_onnx, *_, p_onnx, _) = out["tf"], out["onnx"]
    print(f"ONNX Runtime {onnx_s:.1f} img/s, TensorFlow {tf_s:.1f} img/s ({onnx_s / tf_s:.2f}x) on {n} photos")
    return {"onnx_images": n, "onnx_img_s": round(onnx_s, 1), "tf_img_s": round(tf_s, 1),
            "onnx_speedup": round(onnx_s / tf_s, 2),
            "onnx_max_cosine_diff": float(np.max(np.abs(1.0 - np.sum(e_tf * e_onnx, axis=1)))),
            "onnx_same_top5": float(np.mean([a == b for a, b in zip(p_tf, p_onnx, strict=True)]))}


if __name__ == "__main__":
    sys.exit(main())
