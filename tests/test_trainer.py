"""The one training loop's pieces that both stages share: the schedule, and packages that import
without side effects."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT


def test_warmup_cosine_starts_low_peaks_at_lr_and_ends_at_the_floor():
    from runtime.trainer import COSINE_FLOOR, WARMUP_START, warmup_cosine

    s = warmup_cosine(lr=0.01, steps_per_epoch=10, epochs=5, warmup_epochs=1.0)
    assert float(s(0)) == pytest.approx(0.01 * WARMUP_START)
    assert float(s(10)) == pytest.approx(0.01)  # the peak, after one epoch of warmup
    assert float(s(5)) < float(s(10)) and float(s(30)) < float(s(10))
    assert float(s(50)) == pytest.approx(0.01 * COSINE_FLOOR, rel=1e-3)
    assert float(warmup_cosine(0.01, 3, 1, 0.0)(0)) == pytest.approx(0.01 * WARMUP_START)  # >= one warm step


def test_importing_the_packages_sets_nothing_and_loads_no_tensorflow():
    code = ("import os, sys; before = dict(os.environ); "
            "import runtime, tfrecords, stage1_detect, stage2_embed, pipeline; "
            "import runtime.flags, runtime.cli, stage1_detect.training, stage2_embed.training, pipeline.identify; "
            "assert dict(os.environ) == before, set(os.environ) ^ set(before); "
            "assert 'tensorflow' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1500:]


def test_the_loop_keeps_the_best_validated_epoch_not_the_last(tmp_path, monkeypatch):
    import dataclasses

    import keras
    import numpy as np
    import tensorflow as tf

    from runtime import trainer

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")

    @dataclasses.dataclass(frozen=True)
    class Toy:
        out: str

    scores, seen = [0.5, 0.9, 0.3], []
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, x @ np.ones((4, 1), "float32"))).batch(16)

    def build(strategy, state):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")

        def validate(epoch):
            seen.append([w.numpy().copy() for w in model.weights])
            return {"score": scores[epoch]}

        return trainer.Stage("toy", "toy", model, data, None, validate=validate, best="score",
                             finish=lambda history: {"kernel": model.weights[0].numpy().copy()})

    final = trainer.train(Toy(str(tmp_path / "run")), str(tmp_path / "run"), 3, build, progress=False)
    assert final["best_epoch"] == 1 and final["best_score"] == 0.9 and final["score"] == 0.3
    np.testing.assert_array_equal(final["kernel"], seen[1][0])  # what finish saw is epoch 2's model
    assert not np.array_equal(seen[1][0], seen[2][0])
