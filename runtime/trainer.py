"""The one training loop both stages run (the shape of big_vision's single trainer).

A stage brings a ``Stage``: its model (compiled inside the strategy's scope), its training data,
its validation and what it saves at the end. ``train`` does the rest once: the distribution
strategy, the chief (under several workers only the chief writes), the run folder's lock,
``--resume`` from the last checkpoint, the epoch loop, a checkpoint and an MLflow record per epoch,
and ``history.json``. ``warmup_cosine`` is the learning-rate schedule both stages use.

    def build(strategy, state):            # state: the checkpoint being resumed, or None
        with strategy.scope():
            model = make_and_compile(warmup_cosine(cfg.lr, steps, cfg.epochs, cfg.warmup_epochs))
        return Stage("stage-x", "run-name", model, data, steps, configs={"x_config.json": {...}})

    final_metrics = train(cfg, cfg.out, cfg.epochs, build, resume=False)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from runtime import atomic
from runtime.checkpoint import Checkpoint
from runtime.storage import join

# The schedule starts at 5 % of the peak learning rate, warms up linearly to it, then decays along a
# cosine to 1 % of it: both stages train from scratch on small data, where a cold start diverges.
WARMUP_START = 0.05
COSINE_FLOOR = 0.01


def warmup_cosine(lr: float, steps_per_epoch: int, epochs: int, warmup_epochs: float):
    """Keras' ``CosineDecay`` with a linear warmup of ``warmup_epochs`` epochs (at least one step)."""
    import keras

    warm = max(1, int(warmup_epochs * steps_per_epoch))
    return keras.optimizers.schedules.CosineDecay(
        lr * WARMUP_START, max(1, steps_per_epoch * epochs - warm), alpha=COSINE_FLOOR, warmup_target=lr,
        warmup_steps=warm)


@dataclass
class Stage:
    """What a stage brings to the loop.

    ``validate(epoch)`` returns the epoch's validation metrics (chief only; {} to skip an epoch).
    ``finish(history)`` saves the stage's models after the last epoch and returns extra metrics.
    ``configs`` are JSON files written into the run folder (and logged) before the first epoch;
    ``params`` are MLflow params logged once when the run starts. With ``best``, the weights of the
    epoch where that validation metric peaked (``RUN_DIR/best.weights.h5``) are restored before
    ``finish``: the saved model is the best validated one, not the last."""

    experiment: str
    run_name: str
    model: Any
    data: Any
    steps: int | None  # per epoch; None: the whole dataset
    configs: dict[str, dict] = field(default_factory=dict)
    validate: Callable[[int], dict] = lambda epoch: {}
    finish: Callable[[list[dict]], dict] = lambda history: {}
    params: dict = field(default_factory=dict)
    best: str | None = None  # a validation metric (higher is better): the epoch it peaks at is kept


def train(cfg: Any, out: str, epochs: int, build: Callable[[Any, dict | None], Stage], resume: bool = False,
          progress: bool = True) -> dict:
    """Train the ``Stage`` that ``build(strategy, state)`` returns for ``epochs`` epochs into ``out``;
    returns the last epoch's metrics with ``finish``'s. ``cfg`` (a dataclass) is logged whole."""
    from runtime.strategy import choose_strategy, is_chief

    strategy = choose_strategy()  # first: under several workers it waits for the others to connect
    chief = is_chief()
    with atomic.folder_lock(out) if chief else contextlib.nullcontext():
        ckpt = Checkpoint(out)
        if ckpt.state() and not resume:
            raise ValueError(f"{out} holds a run already: pass --resume to continue it, or choose another --out")
        state = ckpt.state() if resume else None
        stage = build(strategy, state)
        history, start, run_id = [], 0, None
        if state:
            ckpt.restore(stage.model, state)
            start, history, run_id = state["epoch"] + 1, state["history"], state.get("mlflow_run_id")
            print(f"resuming {out} after epoch {start}/{epochs}", flush=True)
        if not chief:  # the other workers train their share of each step and write nothing
            _other_worker(stage, strategy, range(start, epochs))
            return {}
        return _chief(stage, cfg, out, range(start, epochs), epochs, strategy, ckpt, history, run_id, progress)


def _other_worker(stage: Stage, strategy, epochs: range) -> None:
    from runtime.strategy import fit_epoch

    for _ in epochs:
        fit_epoch(stage.model, stage.data, stage.steps, strategy, progress=False)


def _chief(stage: Stage, cfg: Any, out: str, todo: range, epochs: int, strategy, ckpt: Checkpoint,
           history: list[dict], run_id: str | None, progress: bool) -> dict:
    import mlflow

    from runtime.strategy import fit_epoch
    from runtime.tracking import log_curves, start_run

    atomic.write_json(join(out, "train_config.json"), asdict(cfg))
    for name, obj in stage.configs.items():
        atomic.write_json(join(out, name), obj)
    with start_run(stage.experiment, cfg, run_name=stage.run_name, run_id=run_id,
                   nested=mlflow.active_run() is not None) as run:  # a sweep's trials are child runs
        if not run_id:  # a resumed run logged these when it started
            mlflow.log_params(stage.params)
            for name, obj in stage.configs.items():
                mlflow.log_dict(obj, name)
        for epoch in todo:
            t = time.perf_counter()
            metrics = fit_epoch(stage.model, stage.data, stage.steps, strategy, progress)
            metrics.update(stage.validate(epoch))
            metrics["epoch_seconds"] = time.perf_counter() - t
            keep_if_best(stage, out, history, metrics)
            ckpt.end_epoch(stage.model, epoch, epochs, metrics, history, run.info.run_id)
        atomic.write_json(join(out, "history.json"), history)
        log_curves(history)
        kept = restore_best(stage, out, history)
        extra = {**stage.finish(history), **kept}
    return {**(history[-1] if history else {}), **extra}


def _best_epoch(history: list[dict], key: str) -> dict | None:
    scored = [h for h in history if key in h]
    return max(scored, key=lambda h: (h[key], h["epoch"])) if scored else None


def keep_if_best(stage: Stage, out: str, history: list[dict], metrics: dict) -> None:
    """Save the model's weights as ``best.weights.h5`` when this epoch's ``stage.best`` beats every
    earlier one (ties go to the later epoch)."""
    if not stage.best or stage.best not in metrics:
        return
    before = _best_epoch(history, stage.best)
    if before is None or metrics[stage.best] >= before[stage.best]:
        path = join(out, "best.weights.h5")
        tmp = atomic.scratch(path)
        stage.model.save_weights(tmp)
        atomic.publish(tmp, path)


def restore_best(stage: Stage, out: str, history: list[dict]) -> dict:
    """Load the best epoch's weights back (when it is not the last); returns ``best_epoch`` and its
    metric for the run's summary."""
    from runtime.storage import exists, local_copy

    best = _best_epoch(history, stage.best) if stage.best else None
    path = join(out, "best.weights.h5")
    if best is None or not exists(path):
        return {}
    if best["epoch"] != history[-1]["epoch"]:
        with local_copy(path) as local:
            stage.model.load_weights(local)
        print(f"keeping epoch {best['epoch'] + 1} ({stage.best} {best[stage.best]:.4g}) over the last "
              f"({history[-1].get(stage.best, float('nan')):.4g})", flush=True)
    return {"best_epoch": best["epoch"], f"best_{stage.best}": best[stage.best]}
