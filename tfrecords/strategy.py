"""Choose the ``tf.distribute`` strategy for this machine: TPU, then several GPUs, then one device.

Shared by both trainers (the lowest package they both import)."""

from __future__ import annotations

import tensorflow as tf


def choose_strategy() -> tf.distribute.Strategy:
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
    return tf.distribute.get_strategy()
