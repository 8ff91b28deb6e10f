"""Session-scoped fixtures: one tiny synthetic dataset and its records, shared by every test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY = dict(seed=3, individuals=20, train_images=60, test_images=20, species=4, max_side=160)


def run_script(args: list[str], timeout: int = 300, **kw):
    """Run a project script in a fresh interpreter (as a user would), from the repo root."""
    import subprocess

    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from tfrecords.synthetic.world import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("data")
    synthesize(SynthConfig(**TINY), str(out), workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_records(tiny_data, tmp_path_factory) -> Path:
    from tfrecords.builder import build
    from tfrecords.plan import BuildConfig

    out = tmp_path_factory.mktemp("records")
    build(BuildConfig(data=str(tiny_data), out=str(out), folds=3, holdout_individuals=0.2, max_side=128,
                      shards=3, workers=2), progress=True)  # the bar path too
    return out


@pytest.fixture(scope="session")
def tiny_crops(tiny_records, tmp_path_factory) -> Path:
    """Crop records cut at the records' own boxes (no detector needed)."""
    from stage1_detect.cropping import CropConfig, crop_records

    out = tmp_path_factory.mktemp("tiny_crops")
    crop_records(CropConfig(records=str(tiny_records), out=str(out), source="boxes", crop_size=96), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_embedder(tiny_crops, tmp_path_factory) -> Path:
    """A smoke sub-center ArcFace embedder (2 epochs, 64 px) trained on the tiny crops."""
    from stage2_embed.training import smoke, train

    out = tmp_path_factory.mktemp("tiny_embedder")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{out}/mlflow.db"
    try:
        train(smoke(str(tiny_crops), str(out / "run"), epochs=2), progress=False)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    return out / "run"


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """``pipeline/demo.py --size small`` run once as a user would: (workdir, its last JSON line, stdout)."""
    import json

    if os.environ.get("DEMO_DIR"):  # a developer's shortcut: a finished demo's folder (test_demo then fails)
        return Path(os.environ["DEMO_DIR"]), {}, ""
    out = tmp_path_factory.mktemp("small_demo")
    r = run_script(["pipeline/demo.py", "--workdir", str(out), "--size", "small"], timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, json.loads(r.stdout.strip().splitlines()[-1]), r.stdout


@pytest.fixture(autouse=True)
def no_mlflow_run_left_active():
    """A test that leaves an MLflow run active in this process makes every later ``start_run`` fail
    ("Run ... is already active"): the leak is reported on the test that left it."""
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and (run := mlflow.active_run()) is not None:
        mlflow.end_run()
        pytest.fail(f"the test left MLflow run {run.info.run_id} active")
