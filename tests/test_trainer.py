"""The one training loop's pieces that both stages share: the schedule, and packages that import
without side effects."""

from __future__ import annotations

import json
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

        def validate(epoch, last):
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


def test_plan_epochs_keeps_what_fits_at_the_traced_pace():
    from runtime.trainer import pace, plan_epochs

    assert pace(took=60.0, timing={"steps": 11, "first_step": 15.0}) == (49.5, 10.5)  # 4.5 s a step after
    assert pace(took=8.0, timing={"steps": 1, "first_step": 8.0}) == (8.0, 0.0)  # one step: all of it
    assert plan_epochs(budget=600, spent=70, epoch=60, wanted=30) == 9  # 1 + 530 // 60
    assert plan_epochs(budget=600, spent=70, epoch=60, wanted=30, trace=50) == 9  # 1 + 480 // 60
    assert plan_epochs(budget=600, spent=70, epoch=60, wanted=30, trace=51) == 8  # the retrace tips it
    assert plan_epochs(budget=600, spent=70, epoch=60, wanted=5) == 5  # never more than asked
    assert plan_epochs(budget=60, spent=90, epoch=80, wanted=30) == 1  # the first epoch is the least
    assert plan_epochs(budget=0, spent=10**6, epoch=10**6, wanted=30) == 30  # no budget


def _toy_run(tmp_path, monkeypatch, budget_minutes: float, epoch_seconds: list[float], epochs: int = 10,
             first_step: float = 5.0, resume: bool = False, reserve: float = 0.0):
    """A linear model trained by the loop under a fake clock that moves only while an epoch trains
    (``epoch_seconds`` each, 4 steps; the first epoch's first step ``first_step`` s, later ones a
    quarter): (the loop's result, the epochs' ``last`` flags, the model)."""
    import dataclasses

    import keras
    import numpy as np
    import tensorflow as tf

    from runtime import strategy, trainer

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    now, real_fit = [0.0], getattr(strategy.fit_epoch, "real", strategy.fit_epoch)  # not an earlier fake

    def fit_epoch(*a, timing=None, **kw):
        out = real_fit(*a, **kw)
        took = epoch_seconds[min(len(lasts), len(epoch_seconds) - 1)]
        now[0] += took
        timing.update(steps=4, first_step=first_step if not lasts else took / 4)
        return out

    fit_epoch.real = real_fit

    monkeypatch.setattr(strategy, "fit_epoch", fit_epoch)
    monkeypatch.setattr(trainer, "clock", lambda: now[0])

    @dataclasses.dataclass(frozen=True)
    class Toy:
        out: str
        budget_minutes: float

    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, x @ np.ones((4, 1), "float32"))).batch(16)
    lasts, box = [], {}

    def build(strategy_, state):
        keras.utils.set_random_seed(0)
        model = box["model"] = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(trainer.warmup_cosine(0.05, 4, epochs, 1.0)), loss="mse")
        return trainer.Stage("toy", "toy", model, data, None,
                             validate=lambda epoch, last: lasts.append(last) or {},
                             schedule=lambda e: trainer.warmup_cosine(0.05, 4, e, 1.0), reserve_epochs=reserve)

    out = str(tmp_path / f"run{budget_minutes}-{epochs}-{reserve}")
    final = trainer.train(Toy(out, budget_minutes), out, epochs, build, resume=resume, progress=False)
    return final, lasts, box["model"]


def test_a_budget_cuts_the_epochs_and_trains_them_as_a_run_of_that_length(tmp_path, monkeypatch):
    """First epoch 14 s, its first step 5 s: 3 s a step, so 12 s an epoch and a 2 s trace; in a
    minute 1 + (60 - 14 - 2) // 12 = 4 epochs fit. The run
    trains 4 with the 4-epoch schedule: the same weights as a run asked for 4 epochs (the traced step
    took in the new schedule: with the 10-epoch one the last three epochs' rates differ)."""
    import numpy as np

    final, lasts, model = _toy_run(tmp_path, monkeypatch, 1.0, [14.0, 10.0])
    assert final["epoch"] == 3 and final["epochs_planned"] == 4.0
    assert lasts == [False, False, False, True]
    _, lasts4, model4 = _toy_run(tmp_path, monkeypatch, 0.0, [14.0, 10.0], epochs=4)
    assert lasts4 == lasts
    np.testing.assert_allclose(model.weights[0].numpy(), model4.weights[0].numpy(), rtol=1e-6)
    _, _, model10 = _toy_run(tmp_path, monkeypatch, 0.0, [14.0, 10.0], epochs=10)  # no budget: all 10
    assert not np.allclose(model10.weights[0].numpy(), model4.weights[0].numpy(), rtol=1e-4)
    again, lasts_again, _ = _toy_run(tmp_path, monkeypatch, 1.0, [14.0, 10.0], resume=True)
    assert again["epoch"] == 3 and lasts_again == []  # --resume keeps the plan: nothing left to train


def test_a_budget_ends_the_run_where_slower_epochs_would_overrun_it(tmp_path, monkeypatch):
    """First epoch 10 s, no trace: 6 planned in a minute; then 25 s each: after 10 + 25 + 25 = 60 s
    another would end past the budget, so the third epoch is the last (and validated as such)."""
    final, lasts, _ = _toy_run(tmp_path, monkeypatch, 1.0, [10.0, 25.0], first_step=2.5)
    assert final["epoch"] == 2 and final["epochs_planned"] == 3.0
    assert lasts == [False, False, True]


def test_a_budget_keeps_back_the_time_of_the_closing_work(tmp_path, monkeypatch):
    """A stage whose closing work takes 1.5 epochs: of a minute, 1.5 x 12 s are kept back, so
    1 + (42 - 14 - 2) // 12 = 3 epochs are planned (4 without); and with 25-s epochs after a 10-s first one
    and a reserve of one epoch, the second epoch ends the run (35 s gone, 25 s more and 25 s kept back
    would pass the minute)."""
    final, lasts, _ = _toy_run(tmp_path, monkeypatch, 1.0, [14.0, 10.0], reserve=1.5)
    assert final["epoch"] == 2 and final["epochs_planned"] == 3.0 and lasts == [False, False, True]
    final, lasts, _ = _toy_run(tmp_path, monkeypatch, 1.0, [10.0, 25.0], first_step=2.5, reserve=1.0)
    assert final["epoch"] == 1 and final["epochs_planned"] == 2.0 and lasts == [False, True]


def test_a_checkpoint_is_written_when_due_the_best_and_the_last_epoch_always(tmp_path, monkeypatch):
    """Epochs ending every 25 s, a save due 60 s after the last: epoch 2 is due (75 s), epoch 3 is
    forced (the best validated so far, 100 s), so epoch 6 is the next due (175 s); the last (7) is
    saved regardless."""
    import keras
    import numpy as np

    from runtime import checkpoint
    from runtime.tracking import start_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    now = [0.0]
    monkeypatch.setattr(checkpoint, "clock", lambda: now[0])
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(np.ones((4, 3), "float32"), np.zeros((4, 2), "float32"), epochs=1, verbose=0)
    ckpt, history, states = checkpoint.Checkpoint(str(tmp_path / "run"), every_s=60.0), [], []
    with start_run("checkpoint", {"out": str(tmp_path / "run")}) as run:  # (log_metrics outside a run opens one)
        for epoch in range(8):
            now[0] += 25.0
            saved = ckpt.end_epoch(model, epoch, 8, {"loss": 1.0 / (epoch + 1)}, history, run.info.run_id,
                                   force=epoch == 3)
            states.append((saved, ckpt.state()["epoch"] if ckpt.state() else None))
    assert states == [(False, None), (False, None), (True, 2), (True, 3), (False, 3), (False, 3), (True, 6),
                      (True, 7)]
    assert [h["epoch"] for h in ckpt.state()["history"]] == list(range(8))
    assert sorted(p.name for p in (tmp_path / "run" / "ckpt").iterdir()) == [
        "epoch7.optimizer.npz", "epoch7.weights.h5", "state.json"]


def test_a_run_stopped_between_saves_trains_those_epochs_again_and_ends_as_if_never_stopped(tmp_path, monkeypatch):
    """No save due by the clock: the best validated epoch (1) is the last saved when epoch 3 fails;
    --resume trains epochs 2-4 again from it, each epoch once in the history, the same weights."""
    import dataclasses

    import keras
    import numpy as np
    import tensorflow as tf

    from runtime import checkpoint, trainer

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setattr(checkpoint, "EVERY_S", 1e9)

    @dataclasses.dataclass(frozen=True)
    class Toy:
        out: str

    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, x @ np.ones((4, 1), "float32"))).batch(16)
    scores, fail_at, box = [0.5, 0.9, 0.3, 0.4, 0.2], [3], {}

    def build(strategy, state):
        keras.utils.set_random_seed(0)
        model = box["model"] = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(trainer.warmup_cosine(0.05, 4, 5, 1.0)), loss="mse")

        def validate(epoch, last):
            if epoch in fail_at:
                fail_at.clear()
                raise RuntimeError("stopped")
            return {"score": scores[epoch]}

        return trainer.Stage("toy", "toy", model, data, None, validate=validate, best="score")

    def run(name: str, resume: bool = False):
        return trainer.train(Toy(str(tmp_path / name)), str(tmp_path / name), 5, build, resume=resume,
                             progress=False)

    with pytest.raises(RuntimeError, match="stopped"):
        run("a")
    assert json.loads((tmp_path / "a" / "ckpt" / "state.json").read_text())["epoch"] == 1
    resumed = run("a", resume=True)
    weights = box["model"].weights[0].numpy()
    whole = run("b")
    assert [h["epoch"] for h in json.loads((tmp_path / "a" / "history.json").read_text())] == [0, 1, 2, 3, 4]
    assert resumed["best_epoch"] == whole["best_epoch"] == 1
    np.testing.assert_allclose(weights, box["model"].weights[0].numpy(), rtol=1e-6)
