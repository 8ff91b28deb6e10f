"""Pseudo-labels (the Happywhale winners' "key": 1st place 2 rounds, 2nd place 5): confident
identifications of the test photos become training photos, the embedder is trained again, and the
test photos are identified again.

A test photo is confident when its best candidate's score is at least ``score`` and beats the
second candidate's by at least ``margin``. Both come from validation (``rule``): of the pairs that
keep the precision of the accepted validation queries at ``precision`` or more (a new individual's
query accepted counts as wrong), the one that accepts the most. ``evaluate.py`` stores the rule in
``threshold.json`` (``pseudo``) from the same candidates the threshold was chosen on.

The added photos are the test crops themselves, relabelled (individual, species, a training fold,
never the validation fold) in one more shard of a copy of the crop records
(``write_records``); ``pipeline/pseudo_label.py`` runs the rounds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields

import numpy as np

from runtime.flags import check, option

SHARD = "train-pseudo.tfrec"
MARGINS = (0.0, 0.02, 0.05, 0.1, 0.2)


@dataclass(frozen=True)
class PseudoConfig:
    """``pipeline/pseudo_label.py``'s options."""
    embedder: str = option(help="the embedder run folder to start from, evaluated (pipeline/evaluate.py: its "
                                "threshold.json holds the confidence rule)")
    records: str = option(help="crop records with the train and test splits (stage1_detect/crop.py output)")
    out: str = option(help="folder of the rounds: roundN/{identify,records,embedder}, labels.csv each")
    rounds: int = option(2, help="rounds of label, add, train again, re-identify", lo=1)
    epochs: int | None = option(None, help="epochs per round (None: the starting run's)", lo=1)
    init: bool = option(True, help="each round starts from the previous round's embedder (--init), not from scratch")
    truth: str | None = option(None, help="test_truth.csv, where known (synthetic data): the precision of the "
                                          "added labels is recorded")

    def __post_init__(self) -> None:
        check(self)


def rule(cands, truths: np.ndarray, precision: float = 0.9) -> dict:
    """The (score, margin) that accepts the most validation queries at ``precision``; with the
    precision and share accepted that it gave. Accepts nothing (score inf) when no pair reaches it."""
    from pipeline.search import NEW

    best = cands.scores[:, 0]
    second = cands.scores[:, 1] if cands.scores.shape[1] > 1 else np.full(len(best), -np.inf)
    second = np.where(np.isfinite(second), second, best - 1.0)  # no second candidate: no rival
    right = (cands.ids[:, 0].astype(str) == np.asarray(truths).astype(str)) & (np.asarray(truths) != NEW)
    chosen = {"score": float("inf"), "margin": 0.0, "precision": float("nan"), "accepted": 0.0}
    for m in MARGINS:
        ok = best - second >= m
        for s in np.unique(best[ok]):
            take = ok & (best >= s)
            p = float(right[take].mean())
            if p >= precision and take.mean() > chosen["accepted"]:
                chosen = {"score": float(s), "margin": m, "precision": p, "accepted": float(take.mean())}
    return chosen


def confident(matches, pseudo: dict) -> dict[str, str]:
    """image -> individual for the rows of ``matches.csv`` that pass ``pseudo`` (``rule``'s dict)."""
    top = matches.sort_values(["image", "rank"]).groupby("image")["score"].apply(list)
    first = matches[matches["rank"] == 1].set_index("image")["individual_id"]
    out = {}
    for image, scores in top.items():
        second = scores[1] if len(scores) > 1 else scores[0] - 1.0
        if scores[0] >= pseudo["score"] and scores[0] - second >= pseudo["margin"]:
            out[image] = str(first[image])
    return out


def write_records(crops: str, out: str, labels: dict[str, str], val_fold: int) -> dict:
    """A copy of the crop records ``crops`` with the test crops of ``labels`` (filename -> individual)
    added as training photos in one more shard, spread over the training folds; returns the new
    manifest. Photos labelled with a holdout individual are left out: validation needs it unseen."""
    import tensorflow as tf

    from runtime import atomic
    from runtime.storage import join, makedirs
    from tfrecords.reader import list_shards, read_manifest

    manifest = read_manifest(crops)
    index = {i: n for n, i in enumerate(manifest["individuals"])}
    species = {s: n for n, s in enumerate(manifest["species"])}
    folds = [f for f in range(int(manifest["folds"])) if f != val_fold]
    makedirs(out)
    for s in manifest["shards"]:
        tf.io.gfile.copy(join(crops, s["file"]), join(out, s["file"]), overwrite=True)
    fold_counts = {k: list(v) for k, v in manifest["fold_counts"].items()}
    rows = []
    for raw in tf.data.TFRecordDataset(list_shards(crops, "test")):
        ex = tf.train.Example.FromString(raw.numpy())
        name = ex.features.feature["image/filename"].bytes_list.value[0].decode()
        if labels.get(name) not in fold_counts:  # unlabelled, or a holdout individual: it stays unseen
            continue
        ind, fold = labels[name], folds[len(rows) % len(folds)]
        sp = manifest["individual_species"][ind]
        _set(ex, {"image/individual_id": ind.encode(), "image/individual_index": index[ind],
                  "image/species": sp.encode(), "image/species_index": species[sp], "image/fold": fold,
                  "image/holdout": 0})
        fold_counts[ind][fold] += 1
        rows.append(ex.SerializeToString())
    tmp = join(out, SHARD + ".tmp")
    with tf.io.TFRecordWriter(tmp) as w:
        for r in rows:
            w.write(r)
    tf.io.gfile.rename(tmp, join(out, SHARD), overwrite=True)
    shard = {"file": SHARD, "split": "train", "records": len(rows), "sha256": atomic.sha256_file(join(out, SHARD))}
    new = {**manifest, "fold_counts": fold_counts,
           "shards": [*manifest["shards"], shard], "pseudo_labels": len(rows), "pseudo_from": crops,
           "counts": {**manifest["counts"], "train": manifest["counts"]["train"] + len(rows)}}
    atomic.write_json(join(out, "manifest.json"), new)
    return new


def _set(ex, values: dict) -> None:
    for k, v in values.items():
        f = ex.features.feature[k]
        kind = f.WhichOneof("kind")
        del getattr(f, kind).value[:]
        getattr(f, kind).value.append(v)


def run_rounds(cfg: PseudoConfig, progress: bool = True) -> dict:
    """Every round: identify the test crops with the last embedder, keep the confident ones
    (``threshold.json``'s ``pseudo``), add them to a copy of the records, train again, evaluate.
    Each round is an MLflow child run of one ``pipeline-pseudo-label`` run. Returns the last
    embedder folder and each round's figures."""
    import mlflow

    from runtime.tracking import start_run

    with start_run("pipeline-pseudo-label", cfg, run_name="pseudo-label") as parent:
        pass
    last, rounds = cfg.embedder, []
    for r in range(1, cfg.rounds + 1):
        figures = one_round(cfg, last, os.path.join(cfg.out, f"round{r}"), progress)
        with start_run("pipeline-pseudo-label", cfg, run_name=f"round-{r}",
                       tags={"mlflow.parentRunId": parent.info.run_id}):
            mlflow.log_metrics({k: float(v) for k, v in figures.items() if isinstance(v, int | float)})
        rounds.append({"round": r, **figures})
        last = figures["embedder"]
        print(f"round {r}: {figures['added']} test photos added (precision {figures['added_precision']:.3f}); "
              f"validation MAP@5 {figures['val_map5']:.3f}", flush=True)
    return {"embedder": last, "rounds": rounds, "mlflow_run_id": parent.info.run_id}


def one_round(cfg: PseudoConfig, start: str, out: str, progress: bool) -> dict:
    """Label with ``start``, add, train into ``out/embedder``, evaluate; the round's figures (also in
    ``out/round.json``, written last: a rerun from the same start takes a finished round as it is)."""
    from pipeline.validation import EvalConfig, evaluate
    from runtime import atomic
    from stage2_embed.training import TrainConfig, train

    done = os.path.join(out, "round.json")
    if os.path.exists(done) and json.loads(open(done).read()).get("start") == start:
        return json.loads(open(done).read())
    base = json.loads(open(os.path.join(start, "train_config.json")).read())
    added = add_confident(start, cfg.records, out, base["val_fold"], cfg.truth, progress)
    known = {f.name for f in fields(TrainConfig)}
    tcfg = TrainConfig(**{**{k: v for k, v in base.items() if k in known}, "records": added["records"],
                          "out": os.path.join(out, "embedder"), "init": start if cfg.init else None,
                          "epochs": cfg.epochs or base["epochs"], "all_folds": None})
    history = train(tcfg, resume=os.path.exists(os.path.join(tcfg.out, "ckpt", "state.json")), progress=progress)
    ev = evaluate(EvalConfig(embedder=tcfg.out, records=tcfg.records), progress=False)
    figures = {"start": start, "embedder": tcfg.out, "added": added["added"],
               "added_precision": added["added_precision"], "val_map5": history.get("val_map5", float("nan")),
               "eval_map5": ev["map5"], "threshold": ev["threshold"]}
    atomic.write_json(done, figures)
    return figures


def add_confident(start: str, records: str, out: str, val_fold: int, truth: str | None = None,
                  progress: bool = True) -> dict:
    """Identify the test crops of ``records`` with the evaluated embedder ``start`` (against the
    records' training photos), keep the confident identifications (``start``'s ``threshold.json``
    ``pseudo`` rule) and write a copy of ``records`` with them as training photos of the folds
    other than ``start``'s ``val_fold``: ``out/records``, the labels in ``out/labels.csv``. Returns
    ``records``, ``added`` and ``added_precision`` (NaN without ``truth``): one round's labelling."""
    import pandas as pd

    from pipeline.identify import InferConfig, run
    from tfrecords.reader import read_manifest

    saved = json.loads(open(os.path.join(start, "threshold.json")).read())
    if not saved.get("pseudo"):
        raise ValueError(f"{start}/threshold.json has no pseudo-label rule: run pipeline/evaluate.py on it again")
    run(InferConfig(detector="none", embedder=start, catalog=records, records=records,
                    out=os.path.join(out, "identify")), progress=progress)
    trainable = read_manifest(records)["fold_counts"]  # holdout individuals stay unseen (validation's new)
    labels = {i: v for i, v in confident(pd.read_csv(os.path.join(out, "identify", "matches.csv"),
                                                     dtype={"individual_id": str}), saved["pseudo"]).items()
              if v in trainable}
    pd.Series(labels, name="individual_id").rename_axis("image").to_csv(os.path.join(out, "labels.csv"))
    write_records(records, os.path.join(out, "records"), labels, val_fold)
    return {"records": os.path.join(out, "records"), "added": len(labels),
            "added_precision": label_precision(labels, truth)}


def label_precision(labels: dict[str, str], truth: str | None) -> float:
    """Share of the added labels that ``truth`` (``image,individual_id``) confirms; NaN without it."""
    import pandas as pd

    if not truth or not labels:
        return float("nan")
    t = pd.read_csv(truth, dtype=str).set_index("image")["individual_id"]
    return float(np.mean([t.get(i) == ind for i, ind in labels.items()]))
