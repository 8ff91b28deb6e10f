"""``runtime.optimizer.AdamW``: Keras' AdamW with the schedule evaluated once per step. The same
updates, a traced step with fewer ops, a serialization round trip."""

import keras
import numpy as np
import tensorflow as tf

from runtime.optimizer import AdamW
from runtime.trainer import warmup_cosine


def traced_steps(opt, n_vars: int = 30, steps: int = 3):
    """(the variables after ``steps`` traced updates, the op count of the traced update)."""
    variables = [keras.Variable(np.full((4,), i + 1.0, np.float32)) for i in range(n_vars)]
    opt.build(variables)

    @tf.function
    def step():
        opt.apply([v * 0.1 + 0.01 for v in variables], variables)

    for _ in range(steps):
        step()
    ops = len(step.get_concrete_function().graph.get_operations())
    return [v.numpy() for v in variables], ops


def test_same_updates_as_keras_adamw_from_a_smaller_traced_step():
    def schedule():
        return warmup_cosine(1e-2, steps_per_epoch=4, epochs=2, warmup_epochs=0.5)

    ours, ours_ops = traced_steps(AdamW(schedule(), weight_decay=1e-2))
    theirs, their_ops = traced_steps(keras.optimizers.AdamW(schedule(), weight_decay=1e-2))
    np.testing.assert_allclose(np.stack(ours), np.stack(theirs), rtol=1e-6)
    assert not np.allclose(np.stack(ours)[:, 0], np.arange(1, 31))  # the steps did move the weights
    assert their_ops - ours_ops >= 10 * 30  # one schedule graph per step instead of two per variable


def test_serialization_round_trip():
    opt = AdamW(warmup_cosine(1e-3, 10, 2, 0.5), weight_decay=1e-4, global_clipnorm=10.0)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(again) is AdamW and again.get_config() == opt.get_config()
    assert float(again.learning_rate) == float(opt.learning_rate) == np.float32(1e-3 * 0.05)
