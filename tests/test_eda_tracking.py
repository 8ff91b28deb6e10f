import json

import pandas as pd
from conftest import run_script

from tfrecords.cleaning import normalize_species


def test_eda_report_numbers_match_the_csv(tiny_data, tmp_path):
    r = run_script(["tfrecords/eda.py", "--data", str(tiny_data), "--out", str(tmp_path / "eda"), "--quiet"])
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    train = pd.read_csv(tiny_data / "train.csv")
    per = train["individual_id"].value_counts()
    assert summary["train_images"] == len(train) and summary["individuals"] == len(per)
    assert summary["singleton_share"] == round(float((per == 1).mean()), 4)
    assert summary["species"] == train["species"].map(normalize_species).nunique()
    for name in ("species.png", "images_per_individual.png", "image_sizes.png", "boxes.png", "index.html"):
        assert (tmp_path / "eda" / name).stat().st_size > 1000
    page = (tmp_path / "eda" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # self-contained


def test_tracking_logs_the_whole_config(tmp_path, monkeypatch):
    import mlflow

    from runtime.tracking import start_run
    from tfrecords.plan import BuildConfig

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = BuildConfig(data="d", out="o", folds=7)
    with start_run("test-exp", cfg, run_name="r1") as run:
        mlflow.log_metric("m", 0.5)
    got = mlflow.MlflowClient(uri).get_run(run.info.run_id)
    assert got.data.params["folds"] == "7" and got.data.params["data"] == "d"
    assert got.data.metrics["m"] == 0.5


def test_continuing_a_run_with_a_changed_config_records_the_change(tmp_path, monkeypatch):
    import mlflow

    from runtime.tracking import start_run
    from tfrecords.plan import BuildConfig

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with start_run("exp", BuildConfig(data="d", out="o", folds=3)) as run:
        pass
    with start_run("exp", BuildConfig(data="d", out="o", folds=4), run_id=run.info.run_id):
        pass
    got = mlflow.MlflowClient(uri).get_run(run.info.run_id)
    assert got.data.params["folds"] == "3" and got.data.tags["resumed_with.folds"] == "4"
