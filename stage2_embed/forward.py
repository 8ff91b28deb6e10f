"""The embedder's forward pass, traced once per model, and embeddings of a whole dataset: the one
way every stage-2 and pipeline caller runs an embedder."""

from __future__ import annotations

import weakref

import numpy as np

_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its compiled forward


def forward_fn(model):
    """``model``'s inference call as a ``tf.function``, traced once per model (not once per
    validation pass or inference chunk: tracing an EfficientNet costs ~10 s; eager calls are ~3x
    slower). A model that is not Keras (an ONNX ``runtime.onnx.Session``) is its own function."""
    import keras
    import tensorflow as tf

    if not isinstance(model, keras.Model):
        return model

    forward = _FORWARD.get(model)
    if forward is None:
        forward = _FORWARD[model] = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return forward


def embed_all(model, ds) -> tuple:
    """Embeddings and labels of every batch of ``ds`` (``stage2_embed.data.image_dataset``)."""

    forward = forward_fn(model)
    embs, ids, species, names, folds, holdout = [], [], [], [], [], []
    for b in ds:
        embs.append(np.asarray(forward(b["image"])))
        ids += [v.decode() for v in b["image/individual_id"].numpy()]
        species += [v.decode() for v in b["image/species"].numpy()]
        names += [v.decode() for v in b["image/filename"].numpy()]
        folds.append(b["image/fold"].numpy())
        holdout.append(b["image/holdout"].numpy())
    dim = model.output_shape[-1] if hasattr(model, "output_shape") else 0
    return (np.concatenate(embs) if embs else np.zeros((0, dim), np.float32), np.array(ids), np.array(species),
            np.array(names), np.concatenate(folds) if folds else np.zeros(0, int),
            np.concatenate(holdout) if holdout else np.zeros(0, int))
