import json

from conftest import run_script


def test_small_demo_runs_end_to_end(tmp_path):
    r = run_script(["pipeline/demo.py", "--workdir", str(tmp_path), "--size", "small"])
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    m = json.loads((tmp_path / "records" / "manifest.json").read_text())
    assert m["counts"]["train"] == out["train_images"] == 72 and m["counts"]["test"] == 24
    assert (tmp_path / "eda" / "index.html").exists()
    assert (tmp_path / "detector" / "detector.keras").exists() and 0.0 <= out["detector_map50"] <= 1.0
    crops = json.loads((tmp_path / "crops" / "manifest.json").read_text())
    assert crops["counts"] == {"train": 72, "test": 24} and sum(crops["sources"].values()) == 96
    assert (tmp_path / "mlflow.db").exists()
    assert "[6/6]" in r.stdout
