import json
import os
from pathlib import Path

import pandas as pd
import pytest

from pipeline.submission import validate_submission


def test_small_demo_runs_end_to_end(small_demo):
    tmp_path, out, stdout = small_demo
    m = json.loads((tmp_path / "records" / "manifest.json").read_text())
    assert m["counts"]["train"] == out["train_images"] == 72 and m["counts"]["test"] == 24
    assert (tmp_path / "eda" / "index.html").exists()
    assert (tmp_path / "detector" / "detector.keras").exists() and 0.0 <= out["detector_map50"] <= 1.0
    crops = json.loads((tmp_path / "crops" / "manifest.json").read_text())
    # the embedder trained on the photos' own boxes while the detector trained in its own process
    assert crops["counts"] == {"train": 72, "test": 24} and crops["sources"] == {"boxes": 96}
    scores = json.loads((tmp_path / "detector" / "eval" / "scores.json").read_text())
    assert scores["map50"] == out["detector_map50"] and f"mAP@0.5 {scores['map50']:.3f}" in stdout
    assert (tmp_path / "mlflow.db").exists() and (tmp_path / "mlartifacts").is_dir()  # the runs stay in --workdir
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert {m.name for m in client.search_registered_models()} >= {"happywhale-detector", "happywhale-embedder"}
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert any("curves.png" in {a.path for a in client.list_artifacts(r.info.run_id)} for r in runs)
    assert "[11/11]" in stdout and "pipeline/review.py --matches" in stdout
    for key in ("submission", "evaluation_report", "embedder", "embedder_final"):  # every artefact printed exists
        assert os.path.exists(out[key])
    # the final model (every fold, fine-tuned from the cross-validated one) took its threshold over
    final_cfg = json.loads((Path(out["embedder_final"]) / "train_config.json").read_text())
    assert final_cfg["all_folds"] == final_cfg["init"] == out["embedder"]
    assert json.loads((Path(out["embedder_final"]) / "threshold.json").read_text())["carried_from"] == out["embedder"]
    images = pd.read_csv(tmp_path / "data" / "test_truth.csv")["image"].tolist()
    assert len(validate_submission(out["submission"], images)) == 24
    assert "share of new individuals among the test photos: estimated" in stdout
    assert out["new_share_true"] == pytest.approx(5 / 24)  # the estimate: NaN, too few validation queries


def test_the_demo_detector_trains_on_its_world_half_at_sea_and_is_scored_on_the_demos(small_demo):
    """The detector's world is the demo's (same photos, individuals and folds) with every other photo of
    each split drawn by the sea scene: the even ones are the same files byte for byte, the odd ones not."""
    tmp_path, out, _ = small_demo
    own, plain = tmp_path / "detector_world" / "data", tmp_path / "data"
    assert (own / "train.csv").read_text() == (plain / "train.csv").read_text()
    names = pd.read_csv(plain / "train.csv")["image"].tolist()
    same = [(own / "train_images" / n).read_bytes() == (plain / "train_images" / n).read_bytes() for n in names]
    assert same == [i % 2 == 0 for i in range(len(names))]
    trained = json.loads((tmp_path / "detector" / "train_config.json").read_text())
    assert trained["records"] == out["detector_records"] == str(tmp_path / "detector_world" / "records")
    scores = json.loads((tmp_path / "detector" / "eval" / "scores.json").read_text())
    own_index = pd.read_csv(Path(out["detector_records"]) / "index.csv")
    plain_index = pd.read_csv(tmp_path / "records" / "index.csv")
    assert own_index.drop(columns="shard").equals(plain_index.drop(columns="shard"))  # the same folds
    assert scores["trained_on"] == out["detector_records"]


def test_small_demo_stays_near_its_plain_baselines_and_sift_lifts_the_pixels(small_demo):
    """The baselines are computed in the same run on the same 24 test photos; one photo moves MAP@5
    by up to 0.04, and the detector trains differently run to run (mAP@0.5 0.352 and 0.184 in two
    runs of the fixture's seed on 12-03; its embedder the same in both). So the test asserts only
    what held on every run at hand: the three seeds of ``bench/demo_spread.py`` (RESULTS.md,
    ``demo_spread``) and those two runs (pipeline 0.456 and 0.460; knowing nothing 0.302 in both,
    pixels 0.397 and 0.212, untrained 0.291 and 0.297, pixels + SIFT 0.567 and 0.383):
    - the pipeline never more than two photos' worth below plain pixels or the untrained embedder
      (at worst 0.045 below, seed 3);
    - the training-free reference above the pixels it re-ranks (by 0.13-0.28): SIFT's evidence works.
    Not asserted here, as 58 training photos do not support it: the pipeline above knowing nothing
    (seed 3: 0.321 against 0.411) and near the training-free reference (0.10-0.22 below it in four of
    the five runs; the mix is chosen on 13 validation queries, the re-ranking fitted on 8 photos).
    The margins over every baseline are asserted on the default demo (``pytest -m slow``) and
    reported in RESULTS.md."""
    _, out, _ = small_demo
    pipeline = out["test_map5"]
    for name in ("pixels", "untrained"):
        assert pipeline >= out[f"baseline_{name}_map5"] - 2 / 24, name
    assert out["baseline_pixels_sift_map5"] > out["baseline_pixels_map5"] + 1 / 24


def test_a_failed_training_process_stops_the_demo_in_one_line():
    import time

    from runtime import side_by_side

    p = side_by_side.start(os.path.join, (None,), "fails")  # os.path.join(None) raises in the child
    with pytest.raises(SystemExit, match=r"^the detector's training failed \(exit code 1; its output is above\)$"):
        side_by_side.wait(p, "the detector's training")
    # beside a long one, the failure is reported when it happens, not when the long one ends
    long = side_by_side.start(time.sleep, (300,), "sleeper")
    failing = side_by_side.start(os.path.join, (None,), "fails")
    started = time.monotonic()
    with pytest.raises(SystemExit, match=r"^the detector's training failed"):
        side_by_side.wait_all((long, "the embedder's training"), (failing, "the detector's training"))
    assert time.monotonic() - started < 120
    long.kill()


def test_a_training_process_stops_when_its_parent_is_killed(tmp_path):
    """A parent that dies without its clean-up (SIGKILL; ``os._exit`` here) leaves no training behind."""
    import subprocess
    import sys
    import time

    code = ("import os, sys, time; sys.path.insert(0, os.getcwd()); from runtime import side_by_side; "
            "p = side_by_side.start(time.sleep, (300,), 'sleeper'); print(p.pid, flush=True); time.sleep(1); "
            "os._exit(0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    child = int(out.stdout.split()[0])
    for _ in range(60):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.kill(child, 9)
    raise AssertionError("the orphaned training process was still running 30 s after its parent died")


@pytest.mark.slow  # the default demo: ~18-25 minutes on 2 cores
def test_default_demo_beats_every_baseline_by_a_margin(tmp_path):
    from conftest import run_script

    r = run_script(["pipeline/demo.py", "--workdir", str(tmp_path)], timeout=5400)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["test_map5"] >= 0.6
    for name in ("pixels", "untrained", "new_plus_frequent", "pixels_sift"):
        assert out["test_map5"] >= out[f"baseline_{name}_map5"] + 0.05, name
    assert abs(out["new_share_estimate"] - out["new_share_true"]) < 0.3
