"""Photos in, ``submission.csv`` out: detect the fin / fluke / body, crop, embed, search the catalog.

    python pipeline/infer.py --detector DET_DIR --embedder EMB_DIR --catalog RECORDS_OR_NPZ
        (--images DIR | --records RECORDS [--split test]) --out submission.csv [--threshold T]
        [--species-consistency] [--tta flip] [--batch-size 32]

One batched ``tf.data`` path per chunk of images: decode -> detector (best box, grown by
the crop margin; the whole image where no box scores 0.2) -> crop at the embedder's size -> embed
(``--tta flip`` averages with the mirrored crop) -> cosine search over the catalog (exact with
scikit-learn; a FAISS IVF index above 200k catalog images) -> best score per individual -> five
distinct ids, ``new_individual`` inserted where the score falls below the threshold: the best of
the validation curves in ``EMB_DIR/threshold.json`` (``pipeline/evaluate.py``) at the share of new
individuals estimated from these queries' own scores (``pipeline.threshold``), or at
``--new-share``, or ``--threshold`` as given.
``--detector none`` takes the images as crops.

Writes ``submission.csv`` (every input image exactly once; an undecodable one still gets a row
and is listed in ``failures.csv``), ``matches.csv`` (top candidates with scores, the crop box and the
best-scoring catalog photo of each candidate) and ``run.json`` (this run's settings and threshold,
read by ``pipeline/review.py``) beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np
import pandas as pd

from tfrecords import cli


@dataclass(frozen=True)
class InferConfig:
    detector: str  # run folder, or "none": the images are crops already
    embedder: str
    catalog: str
    out: str
    images: str | None = None
    records: str | None = None
    split: str = "test"
    threshold: float | None = None
    new_share: float | None = None  # None: estimated from the queries' scores
    rerank: str = "auto"  # auto: as EMB_DIR/threshold.json says; sift: required; none: off
    species_consistency: bool = False
    tta: str = "none"
    batch_size: int = 32
    margin: float = 0.1
    min_score: float = 0.2
    max_side: int = 1024
    chunk: int = 512  # images held in memory at once

    def __post_init__(self) -> None:
        if (self.images is None) == (self.records is None):
            raise ValueError("give exactly one of --images DIR and --records RECORDS")
        if self.tta not in ("none", "flip"):
            raise ValueError("--tta must be none or flip")
        if self.rerank not in ("auto", "sift", "none"):
            raise ValueError("--rerank must be auto, sift or none")


def embed_chunk(encoded: list[bytes], detector, det_size: int, embedder, emb_size: int, cfg: InferConfig
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings [N, D], detection scores [N]; -1 where the whole image was used, crop boxes [N, 4]
    rel-yxyx as cut)."""
    import tensorflow as tf

    from stage1_detect.crop import CropConfig, choose_boxes, grow
    from stage2_embed.forward import forward_fn

    parsed = tf.data.Dataset.from_tensor_slices({"image/encoded": tf.constant(encoded, tf.string)})
    if detector is None:
        boxes, scores = np.tile([[0.0, 0.0, 1.0, 1.0]], (len(encoded), 1)).astype(np.float32), -np.ones(len(encoded))
    else:
        ccfg = CropConfig(records="", out="", model="-", min_score=cfg.min_score, batch_size=cfg.batch_size)
        boxes, scores, sources = choose_boxes(ccfg, detector, det_size, parsed)
        scores = np.where(np.array(sources) == "detector", scores, -1.0)
        boxes = grow(boxes, cfg.margin).numpy()

    def crop(e, box):  # slice, then an antialiased resize, as the training crops were made:
        img = tf.io.decode_jpeg(e["image/encoded"], channels=3)  # crop_and_resize aliases fine marks
        hw = tf.cast(tf.shape(img)[:2], tf.float32)
        lo = tf.cast(tf.floor(box[:2] * hw), tf.int32)
        hi = tf.maximum(tf.cast(tf.math.ceil(box[2:] * hw), tf.int32), lo + 1)
        patch = tf.cast(img[lo[0]:hi[0], lo[1]:hi[1]], tf.float32)
        return tf.image.resize(patch, (emb_size, emb_size), antialias=True)

    crops = tf.data.Dataset.zip(parsed, tf.data.Dataset.from_tensor_slices(boxes)).map(
        crop, num_parallel_calls=tf.data.AUTOTUNE).batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)
    forward = forward_fn(embedder)
    out = []
    for x in crops:
        e = forward(x)
        if cfg.tta == "flip":
            e = tf.math.l2_normalize(e + forward(tf.image.flip_left_right(x)), axis=-1)
        out.append(np.asarray(e))
    return np.concatenate(out), scores, np.asarray(boxes, np.float32)


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


def load(cfg: InferConfig) -> Models:
    from pipeline import catalog as catalog_lib
    from pipeline import index as approx
    from stage2_embed.embed import load_embedder
    from stage2_embed.fusion import warn_if_weak

    embedder, ecfg = load_embedder(cfg.embedder)
    detector, det_size = None, 0
    if cfg.detector != "none":
        from stage1_detect.model import load_detector

        detector, dcfg = load_detector(cfg.detector)
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
    return Models(embedder, ecfg, detector, det_size, cat, index, fusion)


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
        raise ValueError(f"--rerank sift: {cfg.embedder}/threshold.json has no fitted re-ranking; run "
                         "pipeline/evaluate.py --rerank sift first")
    return None


def identify(m: Models, chunks, cfg: InferConfig, progress: bool = False):
    """(names, embeddings, detection scores, crop boxes, candidates, five predictions each, threshold
    info) for (names, JPEGs) chunks."""
    from tqdm import tqdm

    from pipeline import local, rerank
    from pipeline import threshold as thr
    from pipeline.search import predict, search

    names, embs, det_scores, boxes, feats = [], [], [], [], []
    with tqdm(desc="infer", unit="img", disable=not progress) as bar:
        for chunk_names, encoded in chunks:
            e, s, b = embed_chunk(encoded, m.detector, m.detector_size, m.embedder, m.embedder_cfg["image_size"],
                                  cfg)
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
    cands = search(emb, m.catalog.embeddings, m.catalog.individual_ids, m.catalog.species, index=m.index)
    if m.fusion is not None:
        q_local = local.from_list([f.of(i) for f in feats for i in range(len(f))])
        cands = rerank.rerank(cands, emb, q_local, m.catalog, m.fusion)
    threshold, how = thr.choose(cfg.embedder, thr.best_scores(cands), thr.group(cands, m.catalog.individual_ids),
                                cfg.threshold, cfg.new_share)
    how["threshold"] = threshold
    return names, emb, det, box, cands, predict(cands, threshold, cfg.species_consistency), how


def run(cfg: InferConfig, progress: bool = True) -> dict:
    from pipeline import photos
    from pipeline.search import NEW, matches_table
    from tfrecords import atomic
    from tfrecords.layout import dirname, join, makedirs

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
    out_dir = dirname(cfg.out)
    makedirs(out_dir)
    atomic.write_bytes(cfg.out, sub.to_csv(index=False).encode())
    matches = matches_table(names, emb, det, boxes, cands, cat)
    atomic.write_bytes(join(out_dir, "matches.csv"), matches.to_csv(index=False).encode())
    atomic.write_json(join(out_dir, "run.json"), {**asdict(cfg), **how})  # for review.py
    if failures:
        atomic.write_bytes(join(out_dir, "failures.csv"), pd.DataFrame(
            sorted(failures.items()), columns=["image", "reason"]).to_csv(index=False).encode())
        print(f"warning: {len(failures)} image(s) could not be read; they got a default row: "
              f"{join(out_dir, 'failures.csv')}", file=sys.stderr)
    return {"submission": cfg.out, "images": len(sub), "failures": len(failures), **how,
            "catalog_images": len(cat), "reranked": m.fusion is not None,
            # a pixel embedder folder: identification with no trained model at all
            "embedder_kind": m.embedder_cfg.get("kind", "trained"),
            "pixel_weight": m.embedder_cfg.get("pixel_weight", 0.0),
            "new_individual_first": float(np.mean([p[0] == NEW for p in preds]))
            if preds else 0.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", required=True, help="detector run folder, or none (the images are crops)")
    p.add_argument("--embedder", required=True, help="embedder run folder")
    p.add_argument("--catalog", required=True, help="crop records of the known individuals, or a catalog .npz")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of photos")
    src.add_argument("--records", help="image records (tfrecords/build.py output)")
    p.add_argument("--split", default="test", help="with --records: the split to identify")
    p.add_argument("--out", required=True, help="submission.csv to write (matches.csv goes beside it)")
    p.add_argument("--threshold", type=float, help="new_individual threshold as given (default: from "
                   "EMB_DIR/threshold.json's curves at the new-individual share)")
    p.add_argument("--new-share", type=float, help="share of new individuals among the photos (default: "
                   "estimated from their scores)")
    p.add_argument("--species-consistency", action="store_true", help="demote candidates of another species")
    p.add_argument("--tta", choices=("none", "flip"), default="none", help="flip: average with the mirrored crop "
                   "(default: %(default)s)")
    p.add_argument("--rerank", choices=("auto", "sift", "none"), default="auto",
                   help="re-rank by SIFT inliers as fitted by evaluate.py; auto: when threshold.json has it "
                        "(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--quiet", action="store_true")
    cli.add_debug_flag(p)
    return p.parse_args(argv)


def _main(a: argparse.Namespace) -> int:
    cfg = InferConfig(detector=a.detector, embedder=a.embedder, catalog=a.catalog, out=a.out, images=a.images,
                      records=a.records, split=a.split, threshold=a.threshold, new_share=a.new_share, rerank=a.rerank,
                      species_consistency=a.species_consistency, tta=a.tta, batch_size=a.batch_size)
    print(json.dumps(run(cfg, progress=not a.quiet)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
