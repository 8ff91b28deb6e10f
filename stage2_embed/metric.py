"""A metric learned on the training-free descriptors: shrunk linear discriminant analysis (LDA).

Nearest neighbours on raw 16 x 16 pixels or HOG edges weigh every direction of the descriptor
alike, the ones light, pose and water change within one individual as much as the ones that tell
individuals apart. Linear discriminant analysis (Fisher's; "Fisherfaces" for face identification,
Belhumeur et al. 1997) fitted on the catalog's photos keeps the directions along which individuals
differ more than one individual's photos do. With the within-individual covariance shrunk towards
the identity (``SHRINKAGE``), it fits in a second on a few dozen photos and generalises to photos
it was not fitted on.

Measured on the photos of individuals it was fitted on (test photos of known individuals against
the training photos; ``work/dev/lda``, docs/history.md "A metric on the descriptors"): HOG
0.699 -> 0.783 and pixels 0.471 -> 0.493 on the demo's crops, HOG 0.190 -> 0.234 and pixels
0.132 -> 0.183 on the committed real shark fins (hand boxes). ``stage2_embed.fusion`` (with
``train.py --descriptor-metric``, default ``auto``) keeps the projection of a descriptor only where
it validates better than the raw descriptor on at least 100 queries and, by default, only where the
learned embedding does not beat both raw descriptors (beside a strong one it told new individuals
worse on the demo; beside an untrained one the demo's pipeline went from test MAP@5 0.6951 to
0.7331: RESULTS.md, ``weak_embedder``).

The projection is a plain ``Dense`` layer without bias (``sklearn``'s transform for the ``eigen``
solver), so the saved embedder stays a stock Keras model that loads with ``safe_mode=True`` and
exports to ONNX.
"""

from __future__ import annotations

import numpy as np

# the within-individual covariance is (1 - s) * its estimate + s * (its mean variance) * identity:
# on a few photos an individual (2.7 on the demo's crops, 1.7 on the shark fins) the estimate is
# mostly noise. Shrinkage 0.5 / 0.8 / 0.9 / 0.95 / 0.99, HOG on the demo's test photos: 0.758,
# 0.776, 0.783, 0.783, 0.784; on the shark fins 0.206, 0.224, 0.234, 0.221, 0.211
SHRINKAGE = 0.9
MIN_INDIVIDUALS = 3  # fewer give at most one discriminant direction


def fit_projection(x: np.ndarray, ids: np.ndarray, shrinkage: float = SHRINKAGE) -> np.ndarray | None:
    """The LDA projection [dim, k] of descriptors ``x`` [N, dim] labelled ``ids`` (k <= individuals
    - 1), or None where fewer than ``MIN_INDIVIDUALS`` individuals leave nothing to fit."""
    import warnings

    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    if len(np.unique(ids)) < MIN_INDIVIDUALS:
        return None
    with warnings.catch_warnings():  # an individual with one photo ("only one sample") adds no
        warnings.simplefilter("ignore", UserWarning)  # within-individual scatter: right, not a fault
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage).fit(np.asarray(x, np.float64), ids)
    return lda.scalings_[:, : lda._max_components].astype(np.float32)


def project(x: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    """``x`` projected by ``kernel`` and L2-normalised (``kernel`` None: ``x`` as it is)."""
    if kernel is None:
        return x
    y = x @ kernel
    return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)


def projection_layers(tensor, kernel: np.ndarray, name: str):
    """``tensor`` -> ``Dense(kernel)`` (no bias, frozen) -> unit norm: ``project`` as Keras layers."""
    import keras

    dense = keras.layers.Dense(kernel.shape[1], use_bias=False, trainable=False, name=f"{name}_metric")
    out = dense(tensor)
    dense.set_weights([kernel])
    return keras.layers.UnitNormalization(name=f"{name}_metric_norm")(out)
