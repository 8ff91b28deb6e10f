"""A field researcher's catalog: 20 photos of 8 individuals, every individual with fewer photos
than the default 5 folds, through build, crop, train, evaluate and infer with default options."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from conftest import run_script


@pytest.mark.slow  # ~2.5 min of five CLI steps: pytest -m slow
def test_twenty_photos_of_eight_individuals_go_through_with_defaults(tmp_path):
    from tfrecords.synthetic.world import SynthConfig, synthesize

    data = tmp_path / "data"
    synthesize(SynthConfig(seed=11, individuals=8, train_images=20, test_images=6, species=2, max_side=160),
               str(data), workers=1, progress=False)
    train = pd.read_csv(data / "train.csv")
    if train["individual_id"].value_counts().max() >= 5:  # keep the case scikit-learn refuses
        keep = train.groupby("individual_id").head(4)
        keep.to_csv(data / "train.csv", index=False)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    steps = [
        ["tfrecords/build.py", "--data", str(data), "--out", str(tmp_path / "records")],  # --folds 5
        ["stage1_detect/crop.py", "--records", str(tmp_path / "records"), "--out", str(tmp_path / "crops"),
         "--source", "boxes", "--crop-size", "96", "--quiet"],
        ["stage2_embed/train.py", "--records", str(tmp_path / "crops"), "--out", str(tmp_path / "emb"), "--smoke",
         "--quiet"],
        ["pipeline/evaluate.py", "--embedder", str(tmp_path / "emb"), "--records", str(tmp_path / "crops")],
        ["pipeline/infer.py", "--detector", "none", "--embedder", str(tmp_path / "emb"), "--catalog",
         str(tmp_path / "crops"), "--records", str(tmp_path / "records"), "--out", str(tmp_path / "sub"),
         "--quiet"],
    ]
    for args in steps:
        r = run_script(args, env={**os.environ, **env})
        assert r.returncode == 0, f"{args[0]}: {r.stderr[-1500:]}"
    index = pd.read_csv(tmp_path / "records" / "index.csv")
    manifest = json.loads((tmp_path / "records" / "manifest.json").read_text())
    assert manifest["counts"]["train"] == len(pd.read_csv(data / "train.csv"))
    per = index[index["split"] == "train"].groupby("individual_id")["fold"]
    assert per.size().max() < 5 and (per.nunique() == per.size()).all()  # distinct folds per individual
    sub = pd.read_csv(tmp_path / "sub" / "submission.csv")
    assert len(sub) == 6 and np.all(sub["predictions"].str.split().str.len() == 5)
