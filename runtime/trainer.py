"""The one training loop both stages run (the shape of big_vision's single trainer).

A stage brings a ``Stage``: its model (compiled inside the strategy's scope), its training data,
its validation and what it saves at the end. ``train`` does the rest once: the distribution
strategy, the chief (under several workers only the chief writes), the run folder's lock,
``--resume`` from the last checkpoint, the epoch loop, an MLflow record per epoch and a checkpoint
when one is due (``runtime.checkpoint``), ``history.json``, and a time budget (``--budget-minutes``:
the epochs and the schedule cut to what fits, ``plan_epochs``). ``warmup_cosine`` is the
learning-rate schedule both stages use.

    def build(strategy, state):            # state: the checkpoint being resumed, or None
        schedule = schedule_of(cfg, steps)
        with strategy.scope():
            model = make_and_compile(schedule(cfg.epochs))
        return Stage("stage-x", "run-name", model, data, steps, configs={"x_config.json": {...}},
                     schedule=schedule)

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

clock = time.perf_counter  # the budget's clock (a test's fake one stands in)

BUDGET_HELP = ("minutes the training may take (0: no limit): after the first epoch the run keeps the epochs "
               "that fit at its pace, the learning-rate schedule shortened to them, and starts no epoch that "
               "would end past the budget, keeping back the time its closing work takes (the embedder's "
               "fusion and saving: about 1.5 epochs)")


def warmup_cosine(lr: float, steps_per_epoch: int, epochs: int, warmup_epochs: float):
    """Keras' ``CosineDecay`` with a linear warmup of ``warmup_epochs`` epochs (at least one step)."""
    import keras

    warm = max(1, int(warmup_epochs * steps_per_epoch))
    return keras.optimizers.schedules.CosineDecay(
        lr * WARMUP_START, max(1, steps_per_epoch * epochs - warm), alpha=COSINE_FLOOR, warmup_target=lr,
        warmup_steps=warm)


def schedule_of(cfg: Any, steps_per_epoch: int) -> Callable[[int], Any]:
    """``epochs -> warmup_cosine`` at ``cfg.lr`` and ``cfg.warmup_epochs``: the schedule a stage compiles
    with (``cfg.epochs``) and, as ``Stage.schedule``, the one a budget shortens it to."""
    return lambda epochs: warmup_cosine(cfg.lr, steps_per_epoch, epochs, cfg.warmup_epochs)


@dataclass
class Stage:
    """What a stage brings to the loop.

    ``validate(epoch, last)`` returns the epoch's validation metrics (chief only; {} to skip an epoch);
    ``last`` is true on the run's final epoch, which a time budget may bring forward.
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
    validate: Callable[[int, bool], dict] = lambda epoch, last: {}
    finish: Callable[[list[dict]], dict] = lambda history: {}
    params: dict = field(default_factory=dict)
    best: str | None = None  # a validation metric (higher is better): the epoch it peaks at is kept
    schedule: Callable[[int], Any] | None = None  # the learning-rate schedule for E epochs (for a budget)
    # epochs' worth of time that the last validation and ``finish`` take: a budget keeps it back, so that the
    # whole command ends within it (the embedder's fusion re-embeds every photo and fits the descriptors)
    reserve_epochs: float = 0.0


def train(cfg: Any, out: str, epochs: int, build: Callable[[Any, dict | None], Stage], resume: bool = False,
          progress: bool = True) -> dict:
    """Train the ``Stage`` that ``build(strategy, state)`` returns for ``epochs`` epochs into ``out``;
    returns the last epoch's metrics with ``finish``'s. ``cfg`` (a dataclass) is logged whole."""
    from runtime.strategy import choose_strategy, is_chief, multi_worker

    started = clock()  # a budget counts the setup (data, model, trace) too
    strategy = choose_strategy()  # first: under several workers it waits for the others to connect
    chief = is_chief()
    if budget_seconds(cfg) and multi_worker(strategy):
        raise ValueError("--budget-minutes needs one machine: several workers would each cut the run at "
                         "their own pace; give --epochs instead")
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
        return _chief(stage, cfg, out, Run(start, epochs, started), strategy, ckpt, history, run_id, progress)


def _other_worker(stage: Stage, strategy, epochs: range) -> None:
    from runtime.strategy import fit_epoch

    for _ in epochs:
        fit_epoch(stage.model, stage.data, stage.steps, strategy, progress=False)


@dataclass
class Run:
    """Where the epoch loop stands: the next epoch, the epochs it will train, when the process began."""
    epoch: int
    epochs: int
    started: float


def budget_seconds(cfg: Any) -> float:
    return 60.0 * float(getattr(cfg, "budget_minutes", 0.0) or 0.0)


def pace(took: float, timing: dict) -> tuple[float, float]:
    """(seconds an epoch takes once traced, seconds its trace took) from an epoch of ``took`` s and
    ``fit_epoch``'s ``timing``: the steps after the first set the pace; the first step's excess is
    the trace (and the first epoch's set-up)."""
    n, first = timing.get("steps", 0), timing.get("first_step", 0.0)
    if n < 2:
        return took, 0.0
    step = (took - first) / (n - 1)
    return step * n, max(0.0, first - step)


def plan_epochs(budget: float, spent: float, epoch: float, wanted: int, trace: float = 0.0) -> int:
    """Epochs of a run under a ``budget`` (s) after its first epoch, with ``spent`` s gone since the
    start, an epoch taking ``epoch`` s and a new schedule's trace ``trace`` s: as many more as fit,
    at least the one trained, at most ``wanted``."""
    if budget <= 0:
        return wanted
    return int(min(wanted, max(1, 1 + (budget - spent - trace) // max(epoch, 1e-9))))


def _chief(stage: Stage, cfg: Any, out: str, run: Run, strategy, ckpt: Checkpoint,
           history: list[dict], run_id: str | None, progress: bool) -> dict:
    import mlflow

    from runtime.tracking import log_curves, start_run

    atomic.write_json(join(out, "train_config.json"), asdict(cfg))
    for name, obj in stage.configs.items():
        atomic.write_json(join(out, name), obj)
    planned = int(history[-1].get("epochs_planned", run.epochs)) if history else run.epochs
    if budget_seconds(cfg) and planned < run.epochs:  # resumed under a budget: its plan, not --epochs again
        _reschedule(stage, planned)
        run.epochs = planned
    with start_run(stage.experiment, cfg, run_name=stage.run_name, run_id=run_id,
                   nested=mlflow.active_run() is not None) as mrun:  # a sweep's trials are child runs
        if not run_id:  # a resumed run logged these when it started
            mlflow.log_params(stage.params)
            for name, obj in stage.configs.items():
                mlflow.log_dict(obj, name)
        spent = sum(h.get("epoch_seconds", 0.0) for h in history)  # a resumed run's epochs count
        while run.epoch < run.epochs:
            metrics = _epoch(stage, cfg, run, strategy, spent, fresh=not history, progress=progress)
            best = keep_if_best(stage, out, history, metrics)
            ckpt.end_epoch(stage.model, run.epoch, run.epochs, metrics, history, mrun.info.run_id, force=best)
            run.epoch += 1
        atomic.write_json(join(out, "history.json"), history)
        log_curves(history)
        kept = restore_best(stage, out, history)
        extra = {**stage.finish(history), **kept}
    return {**(history[-1] if history else {}), **extra}


def _epoch(stage: Stage, cfg: Any, run: Run, strategy, spent: float, fresh: bool, progress: bool) -> dict:
    """One epoch trained and validated; under a budget the first epoch of a run plans the rest
    (``plan_epochs``), and any epoch ends the run where another would not fit."""
    from runtime.strategy import fit_epoch

    t, timing = clock(), {}
    metrics = fit_epoch(stage.model, stage.data, stage.steps, strategy, progress, timing=timing)
    took, budget = clock() - t, budget_seconds(cfg)
    gone = spent + clock() - run.started
    epoch_s, trace_s = pace(took, timing)
    room = budget - stage.reserve_epochs * epoch_s  # what the closing work will take is kept back
    if budget and fresh and run.epoch == 0:
        planned = plan_epochs(max(room, 1e-9), gone, epoch_s, run.epochs, trace_s)
        if planned < run.epochs:
            print(f"--budget-minutes {budget / 60:g}: {planned} of {run.epochs} epochs fit ({epoch_s:.0f} s "
                  f"each once traced, {budget - room:.0f} s kept for the closing work); the schedule is shortened "
                  "to them", flush=True)
            _reschedule(stage, planned)
            run.epochs = planned
    elif budget and run.epoch + 1 < run.epochs and gone + epoch_s > room:
        print(f"--budget-minutes {budget / 60:g}: ending after epoch {run.epoch + 1} of {run.epochs} "
              f"({gone / 60:.1f} minutes gone, an epoch takes {epoch_s:.0f} s)", flush=True)
        run.epochs = run.epoch + 1
    elif not budget and run.epoch == 0 and fresh and epoch_s * run.epochs > 1800:
        print(f"{run.epochs} epochs will take about {epoch_s * run.epochs / 60:.0f} minutes at this pace; "
              "--budget-minutes M fits the run into M", flush=True)
    metrics.update(stage.validate(run.epoch, run.epoch + 1 == run.epochs))
    metrics["epoch_seconds"] = clock() - t
    metrics["epochs_planned"] = float(run.epochs)
    return metrics


def _reschedule(stage: Stage, epochs: int) -> None:
    """The optimizer on ``stage.schedule(epochs)``; its train step is traced again to take it in (the
    old schedule's constants live in the traced graph). The first epoch was warmup, which the new
    schedule shares, so the rate moves on without a jump."""
    from runtime.strategy import retrace

    if stage.schedule is None:
        raise ValueError(f"{stage.experiment}: this stage cannot shorten its schedule for --budget-minutes")
    stage.model.optimizer.learning_rate = stage.schedule(epochs)
    retrace(stage.model)


def _best_epoch(history: list[dict], key: str) -> dict | None:
    scored = [h for h in history if key in h]
    return max(scored, key=lambda h: (h[key], h["epoch"])) if scored else None


def keep_if_best(stage: Stage, out: str, history: list[dict], metrics: dict) -> bool:
    """Save the model's weights as ``best.weights.h5`` when this epoch's ``stage.best`` beats every
    earlier one (ties go to the later epoch); True when it did."""
    if not stage.best or stage.best not in metrics:
        return False
    before = _best_epoch(history, stage.best)
    if before is None or metrics[stage.best] >= before[stage.best]:
        path = join(out, "best.weights.h5")
        tmp = atomic.scratch(path)
        stage.model.save_weights(tmp)
        atomic.publish(tmp, path)
        return True
    return False


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
