"""Classifier confusion (hand-made counts, and the files a training run writes) and the Optuna
sweep (trials as MLflow child runs, a ranked table, a plot)."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from stage2_embed.confusion_matrix import confused_pairs, species_confusion
from tfrecords.reader import parsed_records


def test_species_confusion_counts_every_species_even_absent_ones():
    cm = species_confusion(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), ["a", "b", "c", "d"])
    assert cm.loc["a"].tolist() == [1, 1, 0, 0] and cm.loc["c", "b"] == 1 and cm.loc["d"].sum() == 0
    assert list(cm.columns) == ["a", "b", "c", "d"]


def test_one_species_is_all_diagonal_and_the_report_draws_no_matrix(recwarn, tmp_path):
    from pipeline.report import plots
    from stage2_embed.confusion_matrix import plot_confusion

    cm = species_confusion(np.zeros(7, int), np.zeros(7, int), ["white_shark"])
    assert cm.to_numpy().tolist() == [[7]] and not recwarn.list  # no sklearn "single label" warning
    plot_confusion(cm, str(tmp_path / "cm.png"), "species, subcenter run, fold 0 (accuracy 100.0%)")
    assert (tmp_path / "cm.png").stat().st_size > 0 and not recwarn.list  # the trainer's file: room for its title
    imgs = plots(np.linspace(0, 1, 5), np.full(5, 0.5), 0.5, {"white_shark": 0.4}, cm)
    assert set(imgs) == {"threshold", "species"} and not recwarn.list  # nor a tight-layout one
    two = species_confusion(np.array([0, 1]), np.array([0, 0]), ["a", "b"])
    assert set(plots(np.linspace(0, 1, 5), np.full(5, 0.5), 0.5, {"a": 0.4, "b": 0.2}, two)) == {
        "threshold", "species", "confusion"}


def test_confused_pairs_most_frequent_first_with_species():
    true = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([1, 1, 0, 0, 2, 2])
    pairs = confused_pairs(true, pred, ["x", "y", "z"], {"x": "s", "y": "t", "z": "t"})
    assert pairs[["true_id", "predicted_id", "count"]].values.tolist() == [["x", "y", 2], ["y", "x", 1], ["y", "z", 1]]
    assert pairs["true_species"].tolist() == ["s", "t", "t"]


def _check_confusion(run, crops):
    cm = pd.read_csv(run / "confusion" / "species_confusion.csv", index_col=0)
    manifest = json.loads((crops / "manifest.json").read_text())
    assert list(cm.index) == manifest["species"] == list(cm.columns)
    assert cm.to_numpy().sum() == sum(1 for _ in parsed_records(str(crops), "train", folds=[0]))
    assert (run / "confusion" / "species_confusion.png").stat().st_size > 1000
    pairs = pd.read_csv(run / "confusion" / "confused_individuals.csv")
    assert list(pairs.columns[:3]) == ["true_id", "predicted_id", "count"]


@pytest.mark.slow  # minutes of training: pytest -m slow
def test_training_writes_confusion_files_for_both_heads(tiny_crops, tiny_embedder, tmp_path):
    from stage2_embed.training import smoke, train

    _check_confusion(tiny_embedder, tiny_crops)  # the sub-center ArcFace run
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/mlflow.db"
    try:
        r = train(smoke(str(tiny_crops), str(tmp_path / "softmax"), head="softmax", epochs=1), progress=False)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    _check_confusion(tmp_path / "softmax", tiny_crops)
    assert 0.0 <= r["species_accuracy"] <= 1.0 and 0.0 <= r["individual_accuracy"] <= 1.0


@pytest.mark.slow  # minutes of training: pytest -m slow
def test_sweep_runs_trials_as_child_runs_and_ranks_them(tiny_crops, tmp_path):
    import mlflow

    from stage2_embed.sweep import SweepConfig, run_sweep

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/mlflow.db"
    try:
        table = run_sweep(SweepConfig(records=str(tiny_crops), out=str(tmp_path / "sweep"), trials=2, epochs=1,
                                      batch_size=8, space="smoke", budget_minutes=10), progress=False)
        assert len(table) == 2 and (table["state"] == "COMPLETE").all()
        scores = table["val_map5"].tolist()
        assert scores == sorted(scores, reverse=True)
        assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 1000
        runs = mlflow.search_runs(experiment_names=["stage2-embed"])
        parents = runs[runs["tags.mlflow.runName"].str.startswith("sweep-")]
        assert len(parents) == 1
        children = runs[runs.get("tags.mlflow.parentRunId") == parents["run_id"].iloc[0]]
        assert len(children) == 2
        again = run_sweep(SweepConfig(records=str(tmp_path / "x"), out=str(tmp_path / "sweep"), trials=2,
                                      epochs=1, space="smoke"), progress=False)  # already done: no new trial
        assert len(again) == 2
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
