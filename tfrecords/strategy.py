"""Choose the ``tf.distribute`` strategy from the environment: a TPU, then several GPUs (or logical
CPU devices, as the tests configure), then the default (one device). Several workers in
``TF_CONFIG`` are refused with a clear error: Keras 3's ``fit`` fails under
MultiWorkerMirroredStrategy (keras-team/keras#20585).

Shared by both trainers (the lowest package they both import)."""

from __future__ import annotations

import tensorflow as tf


def workers_in_tf_config() -> int:
    """How many workers ``TF_CONFIG`` names (0 when unset)."""
    import json
    import os

    cfg = json.loads(os.environ.get("TF_CONFIG") or "{}")
    return len(cfg.get("cluster", {}).get("worker", []))


def choose_strategy() -> tf.distribute.Strategy:
    if (n := workers_in_tf_config()) > 1:  # refuse rather than train N independent models
        raise ValueError(f"TF_CONFIG names {n} workers, but Keras 3's fit does not run under "
                           "MultiWorkerMirroredStrategy yet (keras-team/keras#20585); unset TF_CONFIG or use "
                           "one machine's GPUs/TPU")
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
