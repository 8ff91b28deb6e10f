"""Identification: photos -> detector -> crops -> embeddings -> catalog search -> re-ranking ->
five ids with ``new_individual`` at the threshold, and the submission files (the library behind
``pipeline/infer.py``).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from runtime.flags import check, option
from stage1_detect.slicing import SLICES, SLICES_HELP
from stage1_detect.views import INPUT_SIZE_HELP, MIRROR, MIRROR_HELP, ZOOM, ZOOM_HELP


@dataclass(frozen=True)
class InferConfig:
    detector: str = option(help="detector run folder, or none (the images are crops already)")
    embedder: str = option(help="embedder run folder (stage2_embed/train.py --out, or stage2_embed/pixels.py's)")
    catalog: str = option(help="crop records of the known individuals, or a catalog .npz (pipeline/enroll.py)")
    out: str = option(help="folder to write submission.csv, matches.csv and run.json into")
    images: str | None = option(None, help="folder of photos to identify (or --records)")
    records: str | None = option(None, help="image records to identify (tfrecords/build.py output; or --images)")
    split: str = option("test", help="with --records: the split to identify", choices=("train", "test"))
    threshold: float | None = option(None, help="new_individual threshold as given (None: from "
                                                "EMB_DIR/threshold.json's curves at the new-individual share)")
    new_share: float | None = option(None, help="share of new individuals among the photos (None: estimated "
                                                "from their own scores)", lo=0.0, hi=1.0)
    group_thresholds: bool = option(True, help="one new_individual threshold per number of catalog photos of the "
                                               "best candidate (1, 2, 3+), at the estimated mix of queries "
                                               "(pipeline/threshold.py); else one for all")
    rerank: str = option("auto", help="re-rank by SIFT inliers as fitted by evaluate.py; auto: when "
                                      "EMB_DIR/threshold.json has a fit", choices=("auto", "sift", "none"))
    blend: str = option("auto", help="blend kNN scores with the ArcFace head's class cosines at the weight "
                                     "evaluate.py chose (threshold.json; pipeline/blend.py); none: kNN alone",
                        choices=("auto", "none"))
    species_consistency: bool = option(False, help="demote candidates of another species than the best one's")
    tta: str = option("none", help="flip: average the embedding with the mirrored crop's", choices=("none", "flip"))
    runtime: str = option("tf", help="onnx: run both models' ONNX exports with ONNX Runtime (pipeline/export.py "
                                     "writes them; faster on CPU)", choices=("tf", "onnx"))
    batch_size: int = option(32, help="images per detector and embedder batch", lo=1)
    min_score: float = option(0.2, help="below this detector score the whole image is used (above 1: always)",
                              lo=0.0)
    zoom: int = option(ZOOM, help=ZOOM_HELP, lo=1, hi=8)
    mirror: bool = option(MIRROR, help=MIRROR_HELP)
    slices: int = option(SLICES, help=SLICES_HELP, lo=1, hi=4)
    input_size: int = option(0, help=INPUT_SIZE_HELP, lo=0)
    max_side: int = option(1024, help="photos are scaled down to this longer side before detection", lo=32)
    chunk: int = option(512, help="images held in memory at once", lo=1)

    def __post_init__(self) -> None:
        check(self)
        if (self.images is None) == (self.records is None):
            raise ValueError("give exactly one of --images DIR and --records RECORDS")


def embed_chunk(encoded: list[bytes], detector, det_size: int, embedder, ecfg: dict, cfg: InferConfig
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings [N, D], detection scores [N]; -1 where the whole image was used, crop boxes [N, 4]
    rel-yxyx as cut). Crops are cut as the embedder's training crops were: boxes grown by its config's
    ``crop_margin`` and resized to its ``image_size``."""
    import tensorflow as tf

    from stage1_detect.cropping import boxes_of
    from stage2_embed.forward import forward_fn
    from tfrecords.layout import CROP_MARGIN
    from tfrecords.reader import crop_square, grow, slice_box

    parsed = tf.data.Dataset.from_tensor_slices({"image/encoded": tf.constant(encoded, tf.string)})
    if detector is None:
        boxes, scores = np.tile([[0.0, 0.0, 1.0, 1.0]], (len(encoded), 1)).astype(np.float32), -np.ones(len(encoded))
    else:
        boxes, scores, sources = boxes_of(encoded, detector, det_size, min_score=cfg.min_score,
                                          batch_size=cfg.batch_size, zoom=cfg.zoom, mirror=cfg.mirror,
                                          slices=cfg.slices)
        scores = np.where(np.array(sources) == "detector", scores, -1.0)
        margin = ecfg.get("crop_margin")
        boxes = grow(boxes, CROP_MARGIN if margin is None else margin).numpy()

    def crop(e, box):  # the training crops' cut (slice, then an antialiased resize)
        img = tf.io.decode_jpeg(e["image/encoded"], channels=3)
        return crop_square(img, box, ecfg["image_size"]), slice_box(img, box)[1]

    crops = tf.data.Dataset.zip(parsed, tf.data.Dataset.from_tensor_slices(boxes)).map(
        crop, num_parallel_calls=tf.data.AUTOTUNE).batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)
    forward = forward_fn(embedder)
    out, cut = [], []
    for x, exact in crops:
        e = forward(x)
        if cfg.tta == "flip":
            e = tf.math.l2_normalize(e + forward(tf.image.flip_left_right(x)), axis=-1)
        out.append(np.asarray(e))
        cut.append(exact.numpy())
    return np.concatenate(out), scores, np.concatenate(cut).astype(np.float32)


@dataclass(frozen=True)
class Models:
    """What ``infer`` loads once: the models, the catalog and its index."""
    embedder: object
    embedder_cfg: dict
    detector: object | None
    detector_size: int
    catalog: object
    index: object | None
    fusion: object | None = None  # pipeline.rerank.Fusion: re-rank by local features
    head: object | None = None  # pipeline.blend.Head: the ArcFace centres blended in at ``blend_weight``
    blend_weight: float = 0.0


def load(cfg: InferConfig) -> Models:
    from pipeline import catalog as catalog_lib
    from pipeline import index as approx
    from stage2_embed.embedder import load_embedder
    from stage2_embed.fusion import warn_if_weak

    embedder, ecfg = load_embedder(cfg.embedder, cfg.runtime)
    detector, det_size = None, 0
    if cfg.detector != "none":
        from stage1_detect.model import load_detector

        detector, dcfg = load_detector(cfg.detector, cfg.runtime, cfg.input_size)
        det_size = dcfg.image_size
    fusion = load_fusion(cfg)
    cat = catalog_lib.load(cfg.catalog, embedder, ecfg, local=fusion is not None)
    if not len(cat):
        raise ValueError(f"--catalog {cfg.catalog} holds no labelled images")
    if fusion is not None and cat.local is None:
        raise ValueError(f"--catalog {cfg.catalog} has no local features to re-rank with: re-export it "
                         "(pipeline.catalog.export), give crop records, or pass --rerank none")
    index = approx.for_catalog(cfg.catalog, cat.embeddings)  # None (exact) below pipeline.index.APPROX_FROM
    warn_if_weak(cfg.embedder)  # once all loaded (bad input stays one line): the embedder lost to pixels
    return Models(embedder, ecfg, detector, det_size, cat, index, fusion, *load_blend(cfg))


def load_blend(cfg: InferConfig) -> tuple:
    """(head, weight) as ``evaluate.py`` chose them; (None, 0) with ``--blend none`` or no blend."""
    from pipeline import blend
    from pipeline import threshold as thr

    weight = float(((thr.load(cfg.embedder)[0] or {}).get("blend") or {}).get("weight", 0.0))
    if cfg.blend == "none" or weight <= 0:
        return None, 0.0
    head = blend.load_head(cfg.embedder)
    return (head, weight) if head is not None else (None, 0.0)


def load_fusion(cfg: InferConfig):
    """The re-ranking fitted by ``evaluate.py`` (``threshold.json``), unless ``--rerank none``."""
    from pipeline import threshold as thr
    from pipeline.rerank import Fusion

    if cfg.rerank == "none":
        return None
    saved = thr.load(cfg.embedder)[0] or {}
    if saved.get("rerank"):
        return Fusion.from_json(saved["rerank"])
    if cfg.rerank == "sift":
        raise ValueError(f"--rerank sift: {cfg.embedder}/threshold.json has no fitted re-ranking (evaluate.py "
                         "--rerank auto leaves it off where validation does not gain by it); run "
                         "pipeline/evaluate.py --rerank sift first")
    return None


def identify(m: Models, chunks, cfg: InferConfig, progress: bool = False):
    """(names, embeddings, detection scores, crop boxes, candidates, five predictions each, threshold
    info) for (names, JPEGs) chunks."""
    from tqdm import tqdm

    from pipeline import blend, local, rerank
    from pipeline import threshold as thr
    from pipeline.search import predict, search

    names, embs, det_scores, boxes, feats = [], [], [], [], []
    with tqdm(desc="infer", unit="img", disable=not progress) as bar:
        for chunk_names, encoded in chunks:
            e, s, b = embed_chunk(encoded, m.detector, m.detector_size, m.embedder, m.embedder_cfg, cfg)
            if m.fusion is not None:
                feats.append(local.of_crops(encoded, b))
            names += chunk_names
            embs.append(e)
            det_scores.append(s)
            boxes.append(b)
            bar.update(len(chunk_names))
    emb = np.concatenate(embs) if embs else np.zeros((0, m.catalog.embeddings.shape[1]), np.float32)
    det = np.concatenate(det_scores) if det_scores else np.zeros(0)
    box = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    k = m.fusion.k if m.fusion is not None else rerank.K  # as deep as validation re-ranked
    cands = search(emb, m.catalog.embeddings, m.catalog.individual_ids, m.catalog.species, k=k, index=m.index)
    cands = blend.apply(cands, emb, m.head, m.blend_weight)
    if m.fusion is not None:
        q_local = local.from_list([f.of(i) for f in feats for i in range(len(f))])
        cands = rerank.rerank(cands, emb, q_local, m.catalog, m.fusion)
    groups = thr.group(cands, m.catalog.individual_ids)
    threshold, how = thr.choose(cfg.embedder, thr.best_scores(cands), groups, cfg.threshold, cfg.new_share,
                                cfg.group_thresholds)
    how["threshold"], how["blend_weight"] = threshold, m.blend_weight
    preds = predict(cands, thr.per_query(threshold, how, groups), cfg.species_consistency)
    return names, emb, det, box, cands, preds, how


def run(cfg: InferConfig, progress: bool = True) -> dict:
    from pipeline import photos
    from pipeline.search import NEW, matches_table
    from runtime import atomic
    from runtime.storage import join, makedirs
    from stage1_detect.scoring import wide_share

    photos.check_inputs(cfg)  # before minutes of model loading and catalog embedding
    m = load(cfg)
    cat = m.catalog
    failures: dict[str, str] = {}
    stream = photos.chunks(photos.inputs(cfg, failures), cfg.chunk)
    names, emb, det, boxes, cands, preds, how = identify(m, stream, cfg, progress)
    if not names and not failures:
        raise ValueError("no input images: the records split or the folder is empty")
    frequent = pd.Series(cat.individual_ids).value_counts().index[:4].tolist()
    rows = [(n, " ".join(p)) for n, p in zip(names, preds, strict=True)]
    rows += [(n, " ".join([NEW, *frequent])) for n in sorted(failures)]  # still one row each
    sub = pd.DataFrame(rows, columns=["image", "predictions"]).sort_values("image")
    out_dir = cfg.out
    makedirs(out_dir)
    atomic.write_bytes(join(out_dir, "submission.csv"), sub.to_csv(index=False).encode())
    matches = matches_table(names, emb, det, boxes, cands, cat)
    atomic.write_bytes(join(out_dir, "matches.csv"), matches.to_csv(index=False).encode())
    atomic.write_json(join(out_dir, "run.json"), {**asdict(cfg), **how})  # for review.py
    if failures:
        atomic.write_bytes(join(out_dir, "failures.csv"), pd.DataFrame(
            sorted(failures.items()), columns=["image", "reason"]).to_csv(index=False).encode())
        print(f"warning: {len(failures)} image(s) could not be read; they got a default row: "
              f"{join(out_dir, 'failures.csv')}", file=sys.stderr)
    result = {"submission": join(out_dir, "submission.csv"), "images": len(sub), "failures": len(failures), **how,
              "catalog_images": len(cat), "reranked": m.fusion is not None,
              # a pixel embedder folder: identification with no trained model at all
              "embedder_kind": m.embedder_cfg.get("kind", "trained"),
              "pixel_weight": m.embedder_cfg.get("pixel_weight", 0.0),
              "hog_weight": m.embedder_cfg.get("hog_weight", 0.0),
              "new_individual_first": float(np.mean([p[0] == NEW for p in preds]))
              if preds else 0.0,
              # crops over half their photo: right for close-ups; photos at sea: the frame, no animal seen
              "wide_crop_share": wide_share(boxes)}
    return {**result, "mlflow_run_id": track(cfg, result, sub)}


def track(cfg: InferConfig, result: dict, sub: pd.DataFrame) -> str:
    """The run in MLflow (experiment ``pipeline-infer``): the config, every number of ``result``
    (per-group thresholds as ``threshold_group_G``), ``run.json`` and ``submission.csv``."""
    import mlflow

    from runtime.tracking import start_run

    nums = {k: float(v) for k, v in result.items() if isinstance(v, int | float) and np.isfinite(v)}
    nums.update({f"threshold_group_{g}": float(t) for g, t in (result.get("thresholds_by_group") or {}).items()})
    with start_run("pipeline-infer", cfg, run_name="infer") as run:
        mlflow.log_metrics(nums)
        mlflow.set_tags({k: str(v) for k, v in result.items() if isinstance(v, str)})
        mlflow.log_dict({**asdict(cfg), **result}, "run.json")
        mlflow.log_text(sub.to_csv(index=False), "submission.csv")
    return run.info.run_id
