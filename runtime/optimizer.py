"""The optimizer both stages train with: Keras' AdamW, with the learning-rate schedule evaluated
once per step instead of once per variable.

Keras 3 reads ``optimizer.learning_rate`` for every variable in ``update_step`` and again in the
weight decay, and a schedule is a small graph (``CosineDecay``'s warmup is a ``cond``): for an
EfficientNet-B0 (438 variables) that is ~880 schedule graphs in the traced train step. The first
``fit`` of a B0 embedder at 64 px (mostly that trace) took 88 s on 2 CPU cores, longer than a
small run's training; with the rate computed once per ``apply``, 49 s (and 24 s with
``runtime.strategy.prebuild``). The arithmetic is the same: every variable of a step saw the same
rate before too (the step counter moves after the updates).
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="happywhale")
class AdamW(keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` that evaluates its learning-rate schedule once per step.

    Example:
    >>> from runtime.trainer import warmup_cosine
    >>> opt = AdamW(warmup_cosine(1e-3, steps_per_epoch=10, epochs=2, warmup_epochs=0.5), weight_decay=1e-4)
    >>> round(float(opt.learning_rate), 6)  # outside a step: the schedule at the current step
    5e-05
    """

    _step_rate = None  # the rate of the step being applied (a tensor of that step's trace)

    def apply(self, grads, trainable_variables=None):
        import tensorflow as tf

        if tf.distribute.get_strategy().num_replicas_in_sync > 1:  # a replica's tensor must not cross
            return super().apply(grads, trainable_variables)
        self._step_rate = super()._get_current_learning_rate()
        try:
            return super().apply(grads, trainable_variables)
        finally:
            self._step_rate = None

    def _get_current_learning_rate(self):
        return self._step_rate if self._step_rate is not None else super()._get_current_learning_rate()
