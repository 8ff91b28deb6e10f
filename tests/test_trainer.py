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


def test_an_epoch_of_fixed_steps_continues_the_last_epochs_data_iterator():
    """Epochs of a fixed number of steps over a repeated dataset share one iterator: the second epoch
    takes the batches after the first's (a new iterator per epoch would start again at batch 0, and
    freeing each dropped one stalled the trainer for ~10-20 s: docs/history.md)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from runtime.strategy import _ITERATORS, fit_epoch

    x = np.arange(40, dtype="float32").reshape(20, 2)
    ds = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(2).repeat()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    strategy = tf.distribute.get_strategy()
    for _ in range(2):
        fit_epoch(model, ds, 3, strategy, progress=False)
    batch_x, _ = next(_ITERATORS[ds])
    np.testing.assert_array_equal(batch_x.numpy(), x[12:14])  # batch 6: after 2 epochs of 3 steps


def test_the_detector_trains_over_a_repeated_dataset_in_fixed_steps(tiny_records, tmp_path):
    """So that the trainer keeps its iterator (the test above): the whole training split each epoch."""
    import tensorflow as tf

    from stage1_detect.data import count_with_boxes
    from stage1_detect.training import _stage, smoke

    cfg = smoke(str(tiny_records), str(tmp_path))
    stage = _stage(cfg, tf.distribute.get_strategy())
    assert stage.steps == count_with_boxes(cfg.records, cfg.val_fold) // cfg.batch_size > 0
    assert stage.data.cardinality() == tf.data.INFINITE_CARDINALITY
