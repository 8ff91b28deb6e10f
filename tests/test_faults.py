"""Fault injection: each command killed with SIGKILL at random moments, then run again, ends with
the outputs of an uninterrupted run (bit-identical files; for training, a history with every epoch
once), and no output is ever half-written where a reader would accept it.

The default run kills ``enroll`` (the catalog is the asset that must never be lost) once; the
``slow`` run kills every command at 5 random points (``pytest -m slow tests/test_faults.py``)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT


def _env(tmp: Path) -> dict:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}


def _run(argv: list[str], env: dict) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return time.perf_counter() - t


def _kill_at(argv: list[str], env: dict, seconds: float) -> bool:
    """Start, SIGKILL after ``seconds``; True when the kill landed before the command finished."""
    p = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        return True


def _kill_points(reference_seconds: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return sorted(rng.uniform(0.5, 0.95 * reference_seconds) for _ in range(n))


def _same_files(a: Path, b: Path, names: list[str]) -> None:
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


def _same_npz(a: Path, b: Path) -> None:
    with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
        assert sorted(x.files) == sorted(y.files)
        for k in x.files:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.fixture(scope="module")
def enroll_inputs(tiny_data, tmp_path_factory) -> tuple[Path, Path]:
    """20 labelled photos to enroll, and the labels CSV."""
    root = tmp_path_factory.mktemp("enroll_in")
    train = pd.read_csv(tiny_data / "train.csv").head(20)
    (root / "photos").mkdir()
    for n in train["image"]:
        shutil.copy(tiny_data / "train_images" / n, root / "photos" / n)
    train[["image", "individual_id", "species"]].to_csv(root / "labels.csv", index=False)
    return root / "photos", root / "labels.csv"


def _faults(points: int, name: str, argv, check, tmp_path: Path, rerun_argv=None) -> None:
    """Reference run into ``ref``; then per kill point a fresh folder: kill, rerun, ``check``."""
    env = _env(tmp_path)
    ref = tmp_path / "ref"
    ref.mkdir()
    seconds = _run(argv(ref), env)
    landed = 0
    for i, at in enumerate(_kill_points(seconds, points, seed=sum(name.encode()))):
        out = tmp_path / f"killed{i}"
        out.mkdir()
        landed += _kill_at(argv(out), env, at)
        check(ref, out, after_kill=True)
        _run((rerun_argv or argv)(out), env)
        check(ref, out, after_kill=False)
    assert landed >= 1


def _enroll(points: int, tiny_embedder, enroll_inputs, tmp_path) -> None:
    photos, labels = enroll_inputs

    def argv(out: Path) -> list[str]:
        return ["pipeline/enroll.py", "--embedder", str(tiny_embedder), "--catalog", str(out / "cat.npz"),
                "--images", str(photos), "--labels", str(labels)]

    def check(ref: Path, out: Path, after_kill: bool) -> None:
        if after_kill:  # the catalog is absent or whole, never half-written
            if (out / "cat.npz").exists():
                _same_npz(ref / "cat.npz", out / "cat.npz")
        else:
            _same_npz(ref / "cat.npz", out / "cat.npz")
            assert not (out / ".lock").exists()  # the killed run's stale lock was taken over and released

    _faults(points, "enroll", argv, check, tmp_path)


def test_enroll_killed_then_rerun_gives_the_same_catalog(tiny_embedder, enroll_inputs, tmp_path):
    _enroll(1, tiny_embedder, enroll_inputs, tmp_path)


@pytest.mark.slow
def test_enroll_killed_at_5_points(tiny_embedder, enroll_inputs, tmp_path):
    _enroll(5, tiny_embedder, enroll_inputs, tmp_path)


@pytest.mark.slow
def test_crop_killed_at_5_points(tiny_records, tmp_path):
    def argv(out: Path) -> list[str]:
        return ["stage1_detect/crop.py", "--source", "boxes", "--records", str(tiny_records), "--out",
                str(out / "crops"), "--crop-size", "96", "--quiet"]

    def check(ref: Path, out: Path, after_kill: bool) -> None:
        if not after_kill:
            names = sorted(p.name for p in (ref / "crops").iterdir() if not p.name.startswith("."))
            assert names == sorted(p.name for p in (out / "crops").iterdir() if not p.name.startswith("."))
            _same_files(ref / "crops", out / "crops", [n for n in names if n != "manifest.json"])
            manifests = [json.loads((d / "crops" / "manifest.json").read_text()) for d in (ref, out)]
            for m in manifests:
                m["config"].pop("out")  # the only difference: where each was written
            assert manifests[0] == manifests[1]

    _faults(5, "crop", argv, check, tmp_path)


@pytest.mark.slow
def test_embed_killed_at_5_points(tiny_embedder, tiny_crops, tmp_path):
    def argv(out: Path) -> list[str]:
        return ["stage2_embed/embed.py", "--embedder", str(tiny_embedder), "--records", str(tiny_crops), "--npz",
                str(out / "emb.npz")]

    def check(ref: Path, out: Path, after_kill: bool) -> None:
        if not after_kill or (out / "emb.npz").exists():
            _same_npz(ref / "emb.npz", out / "emb.npz")

    _faults(5, "embed", argv, check, tmp_path)


@pytest.mark.slow
def test_infer_killed_at_5_points(tiny_embedder, tiny_crops, tmp_path):
    def argv(out: Path) -> list[str]:
        return ["pipeline/infer.py", "--detector", "none", "--embedder", str(tiny_embedder), "--catalog",
                str(tiny_crops), "--records", str(tiny_crops), "--split", "test", "--threshold", "0.5",
                "--out", str(out), "--quiet"]

    def check(ref: Path, out: Path, after_kill: bool) -> None:
        for n in ("submission.csv", "matches.csv"):
            if not after_kill or (out / n).exists():
                _same_files(ref, out, [n])

    _faults(5, "infer", argv, check, tmp_path)


def _history_once(out: Path, epochs: int) -> None:
    history = json.loads((out / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(epochs))


@pytest.mark.slow
@pytest.mark.parametrize("script", ["stage2_embed/train.py", "stage1_detect/train.py"])
def test_training_killed_at_5_points_resumes(script, tiny_records, tiny_crops, tmp_path):
    records = tiny_crops if script.startswith("stage2") else tiny_records

    def argv(out: Path) -> list[str]:
        return [script, "--records", str(records), "--out", str(out / "run"), "--smoke", "--quiet", "--resume"]

    def check(ref: Path, out: Path, after_kill: bool) -> None:
        state = out / "run" / "ckpt" / "state.json"
        if after_kill and state.exists():  # a state always names a whole checkpoint
            e = json.loads(state.read_text())["epoch"]
            assert (out / "run" / "ckpt" / f"epoch{e}.weights.h5").exists()
        if not after_kill:
            _history_once(out, 2)
            assert (out / "run" / ("embedder.keras" if script.startswith("stage2") else "detector.keras")).exists()

    _faults(5, script, argv, check, tmp_path)
