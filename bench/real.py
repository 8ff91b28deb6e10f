"""Measure the whole pipeline on your own photos: any Kaggle-layout folder (``train.csv``,
``train_images/``, ``test_images/``, optional ``boxes.csv`` and ``test_truth.csv``).

    python bench/real.py --data DIR [--detector RUN_DIR|train|none] [--embedder RUN_DIR|train|pixels|hog|fitted]
        [--workdir work/real] [--epochs 30] [--budget-minutes M] [--repeats N] [--init EMBEDDER_RUN]
        [--descriptor-metric auto|on|off]

Builds the records, crops them with the given detector (``train``: trains one on the boxes first;
``none``: the records' own boxes, else whole photos), embeds with the given embedder (``train``:
trains one with the defaults; ``pixels``: 16x16 grey pixels, ``hog``: HOG edges, no training; ``fitted``: both,
mixed and LDA-projected on the validation fold, no network: ``stage2_embed/pixels.py``), fits the threshold and
the SIFT re-ranking on a validation fold, identifies the test photos against the training photos
and prints one JSON line:

- ``detector_map50``, ``detector_iou50_share``: the detector on every photo's boxes (a given
  detector) or on the validation fold's (one trained here), when ``boxes.csv`` exists, beside
  ``frame_iou50_share``: how often the whole photo, no detector at all, would hit the fin as well;
  ``detector_map50_tile3``: mAP@0.5 on 3x3 grids of the same photos (``stage1_detect/evaluate.py
  --tile 3``): every animal at 1/9 of its area, nine to a frame, as photos taken at sea frame them;
  ``detector_map50_tile6``: on 6x6 grids (fins at ~2 % of the frame), and ``_unsliced`` without the
  photo's tiles (``--slices 1``), with ``tile6_slices_ratio`` of the two (``stage1_detect/slicing.py``);
  ``detector_map50_at_sea``, ``detector_iou50_share_at_sea``: on the boxed photos shrunk to 1.5-6 % of
  a synthetic sea frame, their animals cut out along their outlines (``tfrecords/synthetic/at_sea.py``),
  and ``detector_wide_share_at_sea``: how often the box the crops take there covers over half the
  frame (water boxed as an animal), and
  ``detector_boxed_share_at_sea``: the share of fins that any box of any confidence covers (IoU >= 0.5):
  the most any ranking of the boxes could find (also without ``_at_sea``, on the photos); the same
  four ending ``_at_sea_real`` with each frame's water tiled out of the band above the boxes of another
  of the folder's surface photos (real water instead of the synthetic sea); a given detector only
  (one trained here saw these photos); with a ``views.csv`` (image,view: ``surface`` or ``underwater``)
  in the folder, the eight again ending ``_surface``: the photos taken from the surface alone, each in
  the frame it has among all (photos at sea are taken from a boat);
- ``known_map5``: MAP@5 of the test photos of known individuals, ranking the catalog's individuals
  only (closed set: what a researcher scrolling the candidates sees);
- ``open_set_map5``: Kaggle's MAP@5 of ``submission.csv`` against ``test_truth.csv``;
- ``embedder_known_map5``: the same without the SIFT re-ranking: the embedder alone;
- ``pixels_known_map5``, ``pixels_sift_known_map5``: the same closed-set MAP@5 for 16x16
  grey-pixel nearest neighbours, alone and re-ranked by SIFT: the training-free references every
  learned part must beat; ``hog_known_map5``, ``hog_sift_known_map5``: the same for HOG edges
  (``stage2_embed.layers.HOGDescriptor``), the stronger training-free reference; ``fitted_known_map5``,
  ``fitted_sift_known_map5``: both descriptors fitted on the crops' validation fold (no network);
- ``images_per_s``: identification throughput (detector, crop, embedding, search, re-ranking);
- ``embedder_train_minutes``: how long training the embedder took here (``--budget-minutes`` caps
  each training: ``runtime/trainer.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import atomic, flags
from runtime.trainer import BUDGET_HELP
from stage2_embed.fusion import METRIC_MODES

CROPS_STAMP = "bench_real_crops.sha256"  # beside an embedder trained here: the crops it learned on


def at_sea(data: str, det: str, w: str, water: str = "sea", input_size: int = 0) -> dict:
    """The detector on the boxed photos shrunk into a synthetic sea, or with ``water="real"`` into the
    folder's own water (``tfrecords.synthetic.at_sea``); keys end ``_at_sea`` or ``_at_sea_real``, and
    where the folder has a ``views.csv``, the same for its surface photos alone (``..._surface``)."""
    from tfrecords.synthetic.at_sea import surface_photos

    name = "at_sea" if water == "sea" else "at_sea_real"
    out = _scored_at_sea(data, det, w, name, water, input_size)
    surface = surface_photos(data)
    if surface:
        out.update(_scored_at_sea(data, det, w, f"{name}_surface", water, input_size, surface))
    return out


def _scored_at_sea(data: str, det: str, w: str, name: str, water: str, input_size: int,
                   only: set[str] | None = None) -> dict:
    """Paste (once), build and score one at-sea proxy: its four keys ending ``name``."""
    from stage1_detect.scoring import evaluate
    from tfrecords.builder import build
    from tfrecords.plan import BuildConfig
    from tfrecords.synthetic.at_sea import paste_at_sea, pasted

    folder, records = os.path.join(w, name), os.path.join(w, f"{name}_records")
    if not pasted(folder, 0, water):  # once; again where an earlier paste differs (at_sea.PASTE)
        paste_at_sea(data, folder, seed=0, water=water, only=only)
    build(BuildConfig(data=folder, out=records, folds=2), progress=False)
    r = evaluate(det, records, out=os.path.join(w, f"detector_eval_{name}"), every=True, input_size=input_size)
    return {f"detector_map50_{name}": r["map50"], f"detector_iou50_share_{name}": r["iou50_share"],
            f"detector_wide_share_{name}": r["wide_share"], f"detector_boxed_share_{name}": r["boxed_share"]}


def stage1(a, records: str, w: str) -> tuple[str, dict]:
    """(crop records, detector figures)."""
    from stage1_detect.cropping import CropConfig, crop_records

    crops, det, figures = os.path.join(w, "crops"), a.detector, {}
    if det == "train":
        from stage1_detect.training import TrainConfig, train

        det = os.path.join(w, "detector")
        if not os.path.exists(os.path.join(det, "detector.keras")):
            train(TrainConfig(records=records, out=det, epochs=a.epochs, budget_minutes=a.budget_minutes),
                  progress=False)
    if det != "none":
        from stage1_detect.scoring import evaluate

        if os.path.exists(os.path.join(a.data, "boxes.csv")):
            # a given detector never saw these photos: all of them; one trained here: its validation fold
            every = a.detector != "train"
            n = a.input_size
            r = evaluate(det, records, out=os.path.join(w, "detector_eval"), every=every, input_size=n)
            small = {k: evaluate(det, records, out=None, every=every, tile=k, input_size=n)["map50"] for k in (3, 6)}
            # fins at ~2 % of the frame, as at sea, with the photo's tiles and without (the reference)
            whole = evaluate(det, records, out=None, every=every, tile=6, slices=1, input_size=n)["map50"]
            figures = {"detector_map50": r["map50"], "detector_iou50_share": r["iou50_share"],
                       "detector_boxed_share": r["boxed_share"], "frame_iou50_share": r["frame_iou50_share"],
                       "detector_map50_tile3": small[3],
                       "detector_map50_tile6": small[6], "detector_map50_tile6_unsliced": whole,
                       "tile6_slices_ratio": round(small[6] / max(whole, 1e-9), 3)}
            if every:  # a detector trained here saw most of these photos: at sea they would flatter it
                figures.update(at_sea(a.data, det, w, input_size=n))
                figures.update(at_sea(a.data, det, w, water="real", input_size=n))
        crop_records(CropConfig(records=records, out=crops, detector=det, input_size=a.input_size), progress=False)
    else:
        crop_records(CropConfig(records=records, out=crops, source="boxes"), progress=False)
    return crops, {"detector": det, **figures}


def stage2(a, crops: str, w: str, seed: int = 0) -> tuple[str, dict]:
    """(embedder run folder, ``embedder_train_minutes`` when it was trained here). An embedder trained here
    before is kept only if it learned on the same crops (``CROPS_STAMP``): a workdir rerun with another
    detector must not score a stale embedder on new crops."""
    from stage2_embed.pixel_embedder import KINDS, write_pixel_embedder

    if a.embedder in KINDS:
        return write_pixel_embedder(os.path.join(w, a.embedder), 96, descriptor=a.embedder, records=crops), {}
    if a.embedder != "train":
        return a.embedder, {}
    from stage2_embed.training import TrainConfig, train

    emb = os.path.join(w, "embedder" if seed == 0 else f"embedder_seed{seed}")
    stamp, crops_now = os.path.join(emb, CROPS_STAMP), crops_fingerprint(crops)
    if os.path.exists(os.path.join(emb, "embedder.keras")):
        if os.path.exists(stamp) and open(stamp).read() == crops_now:
            return emb, {}
        # trained on other crops (another detector's, or before the stamp): its figures would be stale
        print(f"{emb}: trained on other crops than {crops}'s; training it again", file=sys.stderr)
        shutil.rmtree(emb)
    t = time.perf_counter()
    train(TrainConfig(records=crops, out=emb, epochs=a.epochs, init=a.init, seed=seed,
                      budget_minutes=a.budget_minutes, descriptor_metric=a.descriptor_metric), progress=False)
    atomic.write_text(stamp, crops_now)
    return emb, {"embedder_train_minutes": round((time.perf_counter() - t) / 60, 2)}


def crops_fingerprint(crops: str) -> str:
    """The crop records' content: the SHA-256 of their shards' (``manifest.json``), which change with the
    detector that cut them and the photos, not with a rebuild of the same crops."""
    shards = json.loads(open(os.path.join(crops, "manifest.json")).read())["shards"]
    return hashlib.sha256(json.dumps(sorted((s["file"], s["sha256"]) for s in shards)).encode()).hexdigest()


def identify(det: str, emb: str, crops: str, records: str, out: str, rerank: str | None = None,
             input_size: int = 0) -> dict:
    """Fit the threshold and the SIFT re-ranking on the validation fold (``evaluate.py --rerank
    RERANK``), then identify the test photos with what it chose and without re-ranking
    (``out/<rerank>``, ``out/none``): {rerank: (infer result, images/s)}. ``None``: the pipeline's
    default (``EvalConfig.rerank``); the training-free references re-rank always (``sift``)."""
    from pipeline.identify import InferConfig, run
    from pipeline.validation import EvalConfig, evaluate

    rerank = rerank or EvalConfig.rerank
    evaluate(EvalConfig(embedder=emb, records=crops, out=os.path.join(out, "evaluation"), rerank=rerank),
             progress=False)
    runs = {}
    for way in (rerank, "none"):  # as validation chose, then the embedding alone
        t = time.perf_counter()
        r = run(InferConfig(detector=det, embedder=emb, catalog=crops, records=records,
                            out=os.path.join(out, way), rerank=way, input_size=input_size), progress=False)
        runs[way] = (r, r["images"] / (time.perf_counter() - t))
    return runs


def identification(a, det: str, emb: str, crops: str, records: str, w: str, references: bool = True) -> dict:
    """The pipeline's figures, and with ``test_truth.csv`` the closed-set MAP@5 of the pipeline,
    of its embedder alone, and (``references``) of the training-free references: 16x16 pixels and
    HOG edges, each alone and + SIFT."""
    import pandas as pd

    from pipeline.baselines import score
    from pipeline.search import matches_known_map5
    from pipeline.validation import EvalConfig
    from stage2_embed.pixel_embedder import KINDS, write_pixel_embedder

    runs = identify(det, emb, crops, records, os.path.join(w, "pipeline"), input_size=a.input_size)
    inf, speed = runs[EvalConfig.rerank]
    out = {"images_per_s": round(speed, 2)}
    truth_csv = os.path.join(a.data, "test_truth.csv")
    if os.path.exists(truth_csv):
        truth = pd.read_csv(truth_csv, dtype=str).set_index("image")["individual_id"].to_dict()
        known = set(pd.read_csv(os.path.join(a.data, "train.csv"), dtype=str)["individual_id"])
        closed = lambda run_out: matches_known_map5(os.path.join(run_out, "matches.csv"), truth, known)  # noqa: E731
        out["known_map5"] = closed(os.path.join(w, "pipeline", EvalConfig.rerank))
        out["open_set_map5"] = score(inf["submission"], truth_csv)
        out["embedder_known_map5"] = closed(os.path.join(w, "pipeline", "none"))
        for kind in KINDS if references else ():
            if kind == a.embedder and EvalConfig.rerank == "sift":  # the pipeline ran this reference already
                out[f"{kind}_known_map5"] = out["embedder_known_map5"]
                out[f"{kind}_sift_known_map5"] = out["known_map5"]
                continue
            ref = os.path.join(w, f"{kind}_reference_run")  # re-ranked always, as the reference was defined
            px = write_pixel_embedder(os.path.join(w, f"{kind}_reference"), 96, descriptor=kind, records=crops)
            identify(det, px, crops, records, ref, rerank="sift", input_size=a.input_size)
            out[f"{kind}_known_map5"] = closed(os.path.join(ref, "none"))
            out[f"{kind}_sift_known_map5"] = closed(os.path.join(ref, "sift"))
    return {**out, "embedder_kind": inf["embedder_kind"], "pixel_weight": inf["pixel_weight"],
            "hog_weight": inf["hog_weight"],
            "reranked": inf["reranked"], "test_images": inf["images"]}


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--data", required=True, help="Kaggle-layout folder")
    p.add_argument("--detector", default="none", help="run folder, train or none")
    p.add_argument("--embedder", default="train", help="run folder, train, pixels or hog (training-free), or "
                                                      "fitted (both, mixed and projected on the crops' validation "
                                                      "fold, no network)")
    p.add_argument("--workdir", default="work/real", help="outputs")
    p.add_argument("--epochs", type=int, default=30, help="epochs when training")
    p.add_argument("--budget-minutes", type=float, default=0.0, help=BUDGET_HELP + " (each training here)")
    p.add_argument("--repeats", type=int, default=1, help="with --embedder train: train this many embedders "
                                                          "(seeds 0..N-1) and report the mean and spread")
    p.add_argument("--descriptor-metric", default="auto", choices=METRIC_MODES,
                   help="with --embedder train: when the fusion may project the descriptors (stage2_embed/train.py's "
                        "option; default: %(default)s)")
    p.add_argument("--input-size", type=int, default=0, help="the detector's input in px for every measurement "
                                                             "here (evaluate.py's --input-size; 0: as trained)")
    p.add_argument("--init", default=None, help="with --embedder train: start from this run's embedder "
                                                "(e.g. the demo's, trained on the synthetic world)")
    a = p.parse_args(argv)

    from tfrecords.builder import build
    from tfrecords.plan import BuildConfig

    w = a.workdir
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.abspath(w)}/mlflow.db")
    records = os.path.join(w, "records")
    build(BuildConfig(data=a.data, out=records, folds=5, holdout_individuals=0.1), progress=False)
    crops, out = stage1(a, records, w)
    det = out.pop("detector")
    runs = []
    for seed in range(a.repeats if a.embedder == "train" else 1):
        emb, took = stage2(a, crops, w, seed)
        runs.append({**identification(a, det, emb, crops, records, os.path.join(w, f"seed{seed}"), seed == 0),
                     **took})
    out.update(runs[0])
    if len(runs) > 1:  # what training changes from seed to seed: mean, sample spread and every run
        import numpy as np

        for k in ("known_map5", "open_set_map5", "embedder_known_map5", "embedder_train_minutes"):
            v = [r[k] for r in runs if k in r]
            if v:
                out.update({k: float(np.mean(v)), f"{k}_sd": float(np.std(v, ddof=1)), f"{k}_runs": v})
        for k in ("pixel_weight", "hog_weight"):  # what each run's validation mixed into its embedding
            out[f"{k}_runs"] = [r[k] for r in runs]
    out["repeats"] = len(runs)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
