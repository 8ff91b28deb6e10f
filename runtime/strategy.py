"""Choose the ``tf.distribute`` strategy from the environment and run training epochs under it.

``choose_strategy``: MultiWorkerMirroredStrategy when ``TF_CONFIG`` names several workers, a TPU
(Kaggle / Colab / GCP, found by ``TPUClusterResolver``), several GPUs (or logical CPU devices, as
the tests configure), else the default (one device).

``fit_epoch``: one epoch of ``model.fit``; under several workers, where Keras 3's ``fit`` fails
(keras-team/keras#20585, "Attempt to convert a value (PerReplica ...)"), the same Keras
``train_step`` run by ``strategy.run`` over the distributed dataset, which reaches the weights one
process reaches with the same global batch (tests/test_embed_distributed.py). An epoch of a fixed
number of steps over a repeated dataset, one compiled step a call, runs that same step over one
iterator kept from epoch to epoch: ``fit`` builds an iterator per call and drops it as it returns,
and freeing a dropped one stalled the trainer: ~9.6 s at the end of a third of one world's
embedder epochs, ~17-20 s in a few of a detector's garbage collections (docs/history.md, "Seconds
lost between epochs", "Iterators freed late"). Both stages' epochs are of that kind.

Shared by both trainers (the lowest package they both import)."""

from __future__ import annotations

import json
import os
import weakref

import tensorflow as tf


def _tf_config() -> dict:
    return json.loads(os.environ.get("TF_CONFIG") or "{}")


def workers_in_tf_config() -> int:
    """How many workers (and chief) ``TF_CONFIG`` names (0 when unset)."""
    cluster = _tf_config().get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def is_chief() -> bool:
    """Whether this process writes the run's files (checkpoints, models, MLflow): the ``chief``
    task, or worker 0 where there is none; always true on one machine. The other workers train
    their share of each step and write nothing."""
    cfg = _tf_config()
    task = cfg.get("task", {})
    if workers_in_tf_config() < 2 or not task:
        return True
    if "chief" in cfg.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def choose_strategy() -> tf.distribute.Strategy:
    if workers_in_tf_config() > 1:  # must come first: it connects to the other workers
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:  # Kaggle / Colab / GCP TPU: the resolver finds it from the environment
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.NotFoundError):
        pass
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    cpus = tf.config.list_logical_devices("CPU")
    if not gpus and len(cpus) > 1:  # only where someone split the CPU into logical devices on purpose
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.get_strategy()


def multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and workers_in_tf_config() > 1


def shard_by_file(ds: tf.data.Dataset, files: int, strategy: tf.distribute.Strategy) -> tf.data.Dataset:
    """Each worker reads its own record files when there are at least as many files as workers
    (no worker decodes images it then drops); else every worker reads all and keeps its share."""
    policy = tf.data.experimental.AutoShardPolicy
    opts = tf.data.Options()
    workers = workers_in_tf_config() if multi_worker(strategy) else 1
    opts.experimental_distribute.auto_shard_policy = policy.FILE if files >= workers else policy.DATA
    return ds.with_options(opts)


_STEP: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its distributed train step


def prebuild(model, ds: tf.data.Dataset) -> None:
    """Create the optimizer's and the loss trackers' variables before ``fit`` traces its step.
    Otherwise ``fit`` creates the per-output loss trackers inside that first trace, and
    ``tf.function`` then traces the whole step a second time (TensorFlow retraces a function that
    created variables): 52 s -> 24 s to the first step of a B0 embedder on 2 cores. Keras'
    ``_symbolic_build`` is what ``fit`` itself calls when the model is not built yet."""
    if not getattr(model, "_happywhale_prebuilt", False):
        model._symbolic_build(data_batch=next(iter(ds)))
        model._happywhale_prebuilt = True


_ITERATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # repeated dataset -> its iterator


def retrace(model) -> None:
    """Forget ``model``'s traced train steps (``fit``'s and ``fit_epoch``'s loop's): the next epoch
    traces again, taking in what changed outside the graph (a new learning-rate schedule)."""
    model.train_function = None
    _STEP.pop(model, None)


def fit_epoch(model, ds: tf.data.Dataset, steps: int | None, strategy: tf.distribute.Strategy,
              progress: bool = True, loop: bool = False, timing: dict | None = None) -> dict[str, float]:
    """One epoch of training (``steps`` batches, or the whole of ``ds`` when None): the metrics
    ``fit`` reports for it, averaged over the epoch and over the replicas. ``loop``: Keras' own
    ``train_step`` through ``strategy.run`` in a loop instead of ``fit`` (always so under several
    workers, where ``fit`` fails, and for ``steps`` of a repeated dataset at one step a call,
    whose iterator then lives on into the next epoch). ``timing`` receives ``first_step`` (seconds
    to the end of the first step: a trace, when there is one) and ``steps`` (taken)."""
    import time

    t0 = time.perf_counter()
    keep = steps is not None and getattr(model, "steps_per_execution", 1) == 1
    if not multi_worker(strategy):
        prebuild(model, ds)  # else the first step's trace creates variables and traces again
    if not multi_worker(strategy) and not loop and not keep:
        import keras

        def on_batch_end(batch, logs=None):
            timing.setdefault("first_step", time.perf_counter() - t0)
            timing["steps"] = batch + 1

        timed = [] if timing is None else [keras.callbacks.LambdaCallback(on_train_batch_end=on_batch_end)]
        h = model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=2 if progress else 0, callbacks=timed)
        return {k: float(v[-1]) for k, v in h.history.items()}
    from tqdm import tqdm

    step = _STEP.get(model)
    if step is None:
        def run(batch):
            out = strategy.run(model.train_step, args=(batch,))
            return {k: strategy.reduce("MEAN", v, axis=None) for k, v in out.items()}

        step = _STEP[model] = tf.function(run)
    model.reset_metrics()
    logs: dict = {}
    it = _ITERATORS.get(ds) if keep else None
    if it is None:
        it = iter(strategy.experimental_distribute_dataset(ds))
        if keep:
            _ITERATORS[ds] = it
    for n, _ in enumerate(tqdm(range(steps) if steps else iter(int, 1), desc="train", unit="step",
                               disable=not (progress and is_chief()))):
        batch = it.get_next_as_optional()
        if not batch.has_value():
            break
        logs = step(batch.get_value())
        if timing is not None:
            timing.setdefault("first_step", time.perf_counter() - t0)
            timing["steps"] = n + 1
    return {k: float(v) for k, v in logs.items()}
