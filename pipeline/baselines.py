"""The baselines a pipeline score must beat, computed in the same run on the same test photos.

- ``new_plus_frequent``: ``new_individual`` and then the four most frequent training individuals
  for every photo (what a submission scores knowing nothing about the photo);
- ``untrained``: the same pipeline (detector, crops, threshold from validation) with a randomly
  initialised embedder of the trained one's shape;
- ``pixels``: the same pipeline with the 16 x 16 grey-thumbnail embedder
  (``stage2_embed.pixels``): nearest neighbours on pixels;
- ``pixels_sift``: the pixels proposing candidates, re-ranked by SIFT inliers
  (``pipeline/rerank.py``): the training-free reference, what the pipeline gives with no trained
  model at all.

The first three run without the re-ranking, so they are the plain references.

Each writes a ``submission.csv`` under ``OUT/<name>/`` and is scored with the project's MAP@5.
"""

from __future__ import annotations

import json
import os

import pandas as pd

BASELINES = ("new_plus_frequent", "untrained", "pixels", "pixels_sift")


def score(submission: str, truth_csv: str) -> float:
    """MAP@5 of a submission against a ``test_truth.csv`` (``image,species,individual_id``)."""
    from pipeline.search import map_at_5

    truth = pd.read_csv(truth_csv, dtype=str, keep_default_na=False).set_index("image")["individual_id"]
    sub = pd.read_csv(submission, dtype=str, keep_default_na=False).set_index("image")["predictions"]
    return map_at_5([sub[i].split() for i in truth.index], truth.tolist())


def true_new_share(truth_csv: str) -> float:
    from pipeline.search import NEW

    return float((pd.read_csv(truth_csv, dtype=str)["individual_id"] == NEW).mean())


def new_plus_frequent(train_csv: str, images: list[str], out: str) -> str:
    """``new_individual`` + the four most frequent training individuals, for every image."""
    from pipeline.search import NEW
    from runtime import atomic

    ids = pd.read_csv(train_csv, dtype=str)["individual_id"].value_counts().index[:4].tolist()
    path = os.path.join(out, "submission.csv")
    os.makedirs(out, exist_ok=True)
    rows = pd.DataFrame({"image": images, "predictions": " ".join([NEW, *ids])})
    atomic.write_bytes(path, rows.to_csv(index=False).encode())
    return path


def write_variant(out: str, model, cfg: dict, head_from: str | None = None) -> str:
    """An embedder folder of ``model``; with ``head_from``, that run's training model beside it (the
    ArcFace head that ``pipeline.blend`` reads)."""
    import shutil

    from runtime import atomic
    from runtime.checkpoint import save_model

    os.makedirs(out, exist_ok=True)
    for f in ("train_model.keras", "train_config.json", "head.npz"):
        if os.path.exists(os.path.join(out, f)):
            os.remove(os.path.join(out, f))
        if head_from and f != "head.npz":
            shutil.copy(os.path.join(head_from, f), os.path.join(out, f))
    save_model(model, os.path.join(out, "embedder.keras"))
    atomic.write_json(os.path.join(out, "embedder_config.json"), cfg)
    return out


def untrained_embedder(trained: str, out: str, seed: int = 0) -> str:
    """A randomly initialised embedder of ``trained``'s shape (the same one for a given seed)."""
    import keras

    from stage2_embed.model import EmbedderConfig, build_models

    cfg = {**json.loads(open(os.path.join(trained, "embedder_config.json")).read()),
           "pixel_weight": 0.0, "hog_weight": 0.0, "pixel_metric": False, "hog_metric": False}
    ecfg = EmbedderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    keras.utils.set_random_seed(seed)
    return write_variant(out, build_models(ecfg)[1], cfg)


def through_pipeline(emb: str, det: str, crops: str, records: str, rerank: str = "none",
                     group_thresholds: bool = True, blend: bool = False) -> str:
    """``emb``'s threshold (and ``rerank``, and the head ``blend`` where ``emb`` has a head) from
    validation, then the test records identified with it (one threshold per group of the best
    candidate's catalog photos, or one for all); the submission."""
    from pipeline.identify import InferConfig, run
    from pipeline.validation import EvalConfig, evaluate

    evaluate(EvalConfig(embedder=emb, records=crops, out=os.path.join(emb, "evaluation"), rerank=rerank,
                        blend=blend), progress=False)
    run(InferConfig(detector=det, embedder=emb, catalog=crops, records=records, out=emb,
                    group_thresholds=group_thresholds), progress=False)
    return os.path.join(emb, "submission.csv")


def run_baselines(out: str, data: str, det: str, emb: str, crops: str, records: str) -> dict[str, float]:
    """Test MAP@5 of every baseline (``BASELINES``), each with its submission under ``out``."""
    from stage2_embed.pixel_embedder import write_pixel_embedder

    truth = os.path.join(data, "test_truth.csv")
    images = pd.read_csv(truth, dtype=str)["image"].tolist()
    size = json.loads(open(os.path.join(emb, "embedder_config.json")).read())["image_size"]
    subs = {"new_plus_frequent": new_plus_frequent(os.path.join(data, "train.csv"), images,
                                                   os.path.join(out, "new_plus_frequent")),
            "untrained": through_pipeline(untrained_embedder(emb, os.path.join(out, "untrained")), det, crops,
                                          records),
            "pixels": through_pipeline(write_pixel_embedder(os.path.join(out, "pixels"), size), det, crops, records),
            "pixels_sift": through_pipeline(write_pixel_embedder(os.path.join(out, "pixels_sift"), size), det, crops,
                                            records, rerank="sift")}
    return {k: score(v, truth) for k, v in subs.items()}

