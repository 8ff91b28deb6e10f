"""Pseudo-labels (pipeline/pseudo.py): the confidence rule on hand-made scores, the confident rows of
a matches table, the records with the added photos, and (slow) a whole round."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from pipeline import pseudo
from pipeline.search import NEW, Candidates


def cands(ids, scores):
    ids = np.array(ids, dtype=object)
    return Candidates(ids, ids.copy(), np.array(scores, float), np.array(["s"] * len(ids), dtype=object))


def test_rule_accepts_the_most_queries_at_the_precision_and_uses_the_margin_when_it_helps():
    # best / second scores; queries 0-3 right, 4 wrong with a high score but a close second, 5 a new one
    c = cands([["a", "b"], ["a", "b"], ["a", "b"], ["a", "b"], ["b", "a"], ["a", "b"]],
              [[0.9, 0.1], [0.8, 0.2], [0.7, 0.1], [0.3, 0.1], [0.95, 0.94], [0.2, 0.1]])
    truths = np.array(["a", "a", "a", "a", "a", NEW], dtype=object)
    r = pseudo.rule(c, truths, precision=0.9)
    # without a margin the wrong 0.95 is accepted first (precision at most 4/5); with margin >= 0.02
    # it drops out, and scores down to 0.3 keep precision 1: four queries
    assert r["margin"] == 0.02 and r["score"] == pytest.approx(0.3) and r["accepted"] == pytest.approx(4 / 6)
    assert r["precision"] == 1.0
    none = pseudo.rule(c, np.array([NEW] * 6, dtype=object))
    assert none["score"] == float("inf") and none["accepted"] == 0.0


def test_confident_keeps_the_rows_that_pass_score_and_margin():
    m = pd.DataFrame({"image": ["x", "x", "y", "y", "z"], "rank": [1, 2, 1, 2, 1],
                      "individual_id": ["a", "b", "c", "a", "d"], "score": [0.9, 0.5, 0.9, 0.89, 0.6]})
    assert pseudo.confident(m, {"score": 0.55, "margin": 0.05}) == {"x": "a", "z": "d"}
    assert pseudo.confident(m, {"score": float("inf"), "margin": 0.0}) == {}


def test_written_records_add_the_labelled_test_crops_to_training_folds_and_keep_the_rest(tiny_crops, tmp_path):
    from tfrecords.reader import parsed_records, read_manifest, train_counts

    before = read_manifest(str(tiny_crops))
    test = [e["image/filename"].numpy().decode() for e in parsed_records(str(tiny_crops), "test")]
    known = before["individuals"][:3]
    labels = {test[0]: known[0], test[1]: known[1], test[2]: known[0]}
    out = tmp_path / "rec"
    m = pseudo.write_records(str(tiny_crops), str(out), labels, val_fold=0)
    assert m["counts"]["train"] == before["counts"]["train"] + 3 and m["pseudo_labels"] == 3
    added = {e["image/filename"].numpy().decode(): e for e in parsed_records(str(out), "train")
             if e["image/filename"].numpy().decode() in labels}
    assert set(added) == set(labels)
    for name, e in added.items():
        ind = labels[name]
        assert e["image/individual_id"].numpy().decode() == ind
        assert int(e["image/individual_index"]) == before["individuals"].index(ind)
        assert e["image/species"].numpy().decode() == before["individual_species"][ind]
        assert int(e["image/fold"]) != 0 and int(e["image/holdout"]) == 0  # never the validation fold
    grown = train_counts(read_manifest(str(out)), 0) - train_counts(before, 0)
    assert grown.sum() == 3 and grown[before["individuals"].index(known[0])] == 2
    old = sum(1 for _ in parsed_records(str(tiny_crops), "train"))
    assert sum(1 for _ in parsed_records(str(out), "train")) == old + 3  # the original photos all stay
    assert json.loads((tiny_crops / "manifest.json").read_text()) == before  # the source is untouched


@pytest.mark.slow  # a training round: pytest -m slow
def test_a_round_adds_confident_photos_trains_again_and_records_each_round(tiny_crops, tiny_embedder, tiny_data,
                                                                            tmp_path):
    import shutil

    import mlflow

    from pipeline.validation import EvalConfig, evaluate
    from tfrecords.reader import read_manifest

    start = tmp_path / "start"
    shutil.copytree(tiny_embedder, start)
    os.environ["MLFLOW_TRACKING_URI"] = uri = f"sqlite:///{tmp_path}/mlflow.db"
    try:
        evaluate(EvalConfig(embedder=str(start), records=str(tiny_crops)), progress=False)
        saved = json.loads((start / "threshold.json").read_text())
        saved["pseudo"] = {"score": -1.0, "margin": 0.0}  # accept every photo: the tiny model is unsure
        (start / "threshold.json").write_text(json.dumps(saved))
        cfg = pseudo.PseudoConfig(embedder=str(start), records=str(tiny_crops), out=str(tmp_path / "pl"),
                                  rounds=1, epochs=1, truth=str(tiny_data / "test_truth.csv"))
        r = pseudo.run_rounds(cfg, progress=False)
        mtime = os.path.getmtime(os.path.join(r["embedder"], "embedder.keras"))
        again = pseudo.run_rounds(cfg, progress=False)  # a finished round is taken as it is
        assert again["rounds"] == r["rounds"]
        assert os.path.getmtime(os.path.join(r["embedder"], "embedder.keras")) == mtime
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    one = r["rounds"][0]
    labelled = pd.read_csv(tmp_path / "pl" / "round1" / "labels.csv", dtype=str)
    assert one["added"] == len(labelled) > 0 and 0.0 <= one["added_precision"] <= 1.0
    assert labelled["individual_id"].isin(read_manifest(str(tiny_crops))["fold_counts"]).all()  # no holdouts
    matches = pd.read_csv(tmp_path / "pl" / "round1" / "identify" / "matches.csv", dtype=str)
    assert len(labelled) < matches["image"].nunique()  # the photos of holdout individuals were left out
    assert os.path.exists(os.path.join(r["embedder"], "embedder.keras"))
    assert json.loads(open(os.path.join(r["embedder"], "train_config.json")).read())["init"] == str(start)
    child = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("pipeline-pseudo-label").experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{r['mlflow_run_id']}'")
    assert len(child) == 1 and child[0].data.metrics["added"] == one["added"]
