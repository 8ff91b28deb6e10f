import json
import os

import pandas as pd

from pipeline.infer import validate_submission


def test_small_demo_runs_end_to_end(small_demo):
    tmp_path, out, stdout = small_demo
    m = json.loads((tmp_path / "records" / "manifest.json").read_text())
    assert m["counts"]["train"] == out["train_images"] == 72 and m["counts"]["test"] == 24
    assert (tmp_path / "eda" / "index.html").exists()
    assert (tmp_path / "detector" / "detector.keras").exists() and 0.0 <= out["detector_map50"] <= 1.0
    crops = json.loads((tmp_path / "crops" / "manifest.json").read_text())
    assert crops["counts"] == {"train": 72, "test": 24} and sum(crops["sources"].values()) == 96
    assert (tmp_path / "mlflow.db").exists()
    assert "[10/10]" in stdout and "pipeline/review.py --matches" in stdout
    for key in ("submission", "evaluation_report", "embedder"):  # every artefact the demo printed exists
        assert os.path.exists(out[key])
    images = pd.read_csv(tmp_path / "data" / "test_truth.csv")["image"].tolist()
    assert len(validate_submission(out["submission"], images)) == 24
    for key in ("test_map5", "baseline_most_frequent_map5", "baseline_untrained_map5"):
        assert 0.0 <= out[key] <= 1.0
