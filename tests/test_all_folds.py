"""``stage2_embed/train.py --all-folds CV_RUN``: the final model trains on every fold and takes the
cross-validation run's choices; ``pipeline/evaluate.py`` carries its threshold over."""

from __future__ import annotations

import json
import os
import shutil

import pytest


def test_all_folds_trains_on_every_fold_and_carries_the_cross_validation_choices_over(
        tiny_crops, tiny_embedder, tmp_path, monkeypatch):
    import keras

    from pipeline.validation import EvalConfig, evaluate
    from stage2_embed import data
    from stage2_embed.head import load_head, trained_individuals
    from stage2_embed.training import smoke, train

    held_out, made = [], data.train_dataset

    def spy(records, image_size, batch_size, val_fold, *a, **kw):
        held_out.append(val_fold)
        return made(records, image_size, batch_size, val_fold, *a, **kw)

    monkeypatch.setattr(data, "train_dataset", spy)

    cv = tmp_path / "cv"
    shutil.copytree(tiny_embedder, cv)
    saved = {"threshold": 0.4321, "map5": 0.5, "fold": 0, "records": str(tiny_crops), "curves": [],
             "rerank": None, "blend": {"weight": 0.25}}
    (cv / "threshold.json").write_text(json.dumps(saved))
    cv_cfg = {**json.loads((cv / "embedder_config.json").read_text()), "pixel_weight": 0.1, "hog_weight": 0.5,
              "hog_metric": True, "pixel_metric": False}  # as if validation had kept the edges' projection
    (cv / "embedder_config.json").write_text(json.dumps(cv_cfg))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/mlflow.db"
    try:
        out = tmp_path / "final"
        cfg = smoke(str(tiny_crops), str(out), epochs=1, all_folds=str(cv))
        history = train(cfg, progress=False)
        assert held_out == [None]  # no fold kept out of the training data
        assert "val_map5" not in history and not (out / "confusion").exists()  # no fold left to validate on
        final_cfg = json.loads((out / "embedder_config.json").read_text())
        assert {k: final_cfg[k] for k in ("pixel_weight", "hog_weight", "pixel_metric", "hog_metric")} == {
            "pixel_weight": 0.1, "hog_weight": 0.5, "pixel_metric": False, "hog_metric": True}
        final = keras.saving.load_model(out / "embedder.keras", safe_mode=True)  # the projection refitted on
        n_fitted = len(set(trained_individuals(str(tiny_crops), None)))           # every fold's individuals
        assert final.get_layer("hog_metric").get_weights()[0].shape == (324, min(324, n_fitted - 1))
        assert "pixels_metric" not in [layer.name for layer in final.layers]
        head = load_head(str(out))
        assert head.ids.tolist() == list(trained_individuals(str(tiny_crops), None))
        assert len(head.ids) > len(load_head(str(cv)).ids)  # individuals only in the validation fold too
        r = evaluate(EvalConfig(embedder=str(out), records=str(tiny_crops)), progress=False)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    carried = json.loads((out / "threshold.json").read_text())
    assert r["threshold"] == carried["threshold"] == 0.4321 and r["carried_from"] == str(cv)
    assert carried["blend"] == {"weight": 0.25} and carried["carried_from"] == str(cv)


def test_all_folds_names_a_missing_cross_validation_run_before_training(tiny_crops, tmp_path):
    from stage2_embed.training import smoke, train

    with pytest.raises(FileNotFoundError, match="--all-folds .*embedder_config.json not found"):
        train(smoke(str(tiny_crops), str(tmp_path / "final"), epochs=1, all_folds=str(tmp_path / "nope")),
              progress=False)


def test_a_demo_folder_identifies_with_its_final_embedder_once_it_is_trained(tmp_path):
    """Benchmarks reusing a demo's models search its catalog with the model that embedded it: the
    final embedder once its ``embedder.keras`` is written (an interrupted fine-tune leaves only a
    folder), else the cross-validated one."""
    from pipeline.final import identifying_embedder

    (tmp_path / "embedder").mkdir()
    (tmp_path / "embedder" / "embedder.keras").write_bytes(b"cv")
    assert identifying_embedder(str(tmp_path)) == str(tmp_path / "embedder")
    (tmp_path / "embedder_final" / "ckpt").mkdir(parents=True)  # training, not finished
    assert identifying_embedder(str(tmp_path)) == str(tmp_path / "embedder")
    (tmp_path / "embedder_final" / "embedder.keras").write_bytes(b"final")
    assert identifying_embedder(str(tmp_path)) == str(tmp_path / "embedder_final")
