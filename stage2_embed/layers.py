"""Custom layers of the embedder: GeM pooling, (sub-center) ArcFace margin logits, and the
training-free descriptors fused with the embedding (16 x 16 grey pixels, HOG edges).

All follow the keras-hub contract: ``**kwargs`` forwarded to ``Layer``, one attribute per
constructor argument, ``get_config``, and registration for ``.keras`` files loaded with
``safe_mode=True``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from runtime import optimizer  # noqa: F401 - registers the trainers' AdamW: a saved train_model.keras names it


@keras.saving.register_keras_serializable(package="happywhale")
class GeMPooling2D(keras.layers.Layer):
    """Generalised-mean pooling over height and width, with a learnable exponent ``p``.

    ``p = 1`` is average pooling; ``p -> inf`` tends to max pooling. Used by most top Happywhale
    and landmark-retrieval solutions because it weighs the few strongly activated places (a notch,
    a scar) more than the mean does.

    Args:
        p: initial exponent (learnable when ``trainable_p``).
        eps: floor applied before the power, so gradients stay finite.
        trainable_p: learn ``p`` with the rest of the model.
        **kwargs: passed to ``keras.layers.Layer``.

    Example:
    >>> x = keras.random.uniform((2, 7, 7, 16))
    >>> GeMPooling2D(p=3.0)(x).shape
    (2, 16)
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, trainable_p: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.p = p
        self.eps = eps
        self.trainable_p = trainable_p

    def build(self, input_shape):
        self.p_var = self.add_weight(name="p", shape=(), initializer=keras.initializers.Constant(self.p),
                                     trainable=self.trainable_p)

    def call(self, x):
        p = ops.cast(self.p_var, x.dtype)
        x = ops.power(ops.maximum(x, ops.cast(self.eps, x.dtype)), p)
        return ops.power(ops.mean(x, axis=(1, 2)), 1.0 / p)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "p": self.p, "eps": self.eps, "trainable_p": self.trainable_p}


@keras.saving.register_keras_serializable(package="happywhale")
class ArcMarginLogits(keras.layers.Layer):
    """(Sub-center) ArcFace logits: ``s * cos(theta + m)`` for the target class, ``s * cos(theta)``
    for the others, where ``theta`` is the angle between the L2-normalised embedding and the
    nearest of the class's ``k`` normalised centres (``k = 1``: plain ArcFace).

    Called as ``layer([embeddings, labels])`` in training (margin on the target class only) or
    ``layer(embeddings)`` (scaled cosines, no margin). When ``theta + m > pi`` the margin would
    make the target logit grow again; as in InsightFace, the logit then becomes
    ``cos(theta) - m * sin(m)`` (monotone), or with ``easy_margin`` the margin applies only where
    ``cos(theta) > 0``. ``margins`` gives a per-class margin (the dynamic margins of the
    Happywhale and landmark winners: larger for rare classes), overriding ``margin``.

    Args:
        num_classes: number of classes (individuals).
        k: sub-centres per class.
        scale: the logit scale ``s``.
        margin: the additive angular margin ``m`` (radians).
        margins: optional per-class margins, length ``num_classes``.
        easy_margin: apply the margin only where ``cos(theta) > 0``.
        **kwargs: passed to ``keras.layers.Layer``.

    Example:
    >>> head = ArcMarginLogits(num_classes=10, k=3, scale=30.0, margin=0.3)
    >>> emb = keras.random.normal((4, 8))
    >>> head([emb, keras.ops.array([0, 1, 2, 3])]).shape
    (4, 10)
    """

    def __init__(self, num_classes: int, k: int = 1, scale: float = 30.0, margin: float = 0.3,
                 margins: Sequence[float] | None = None, easy_margin: bool = False, **kwargs):
        super().__init__(**kwargs)
        if margins is not None and len(margins) != num_classes:
            raise ValueError(f"margins has {len(margins)} values for {num_classes} classes")
        self.num_classes = num_classes
        self.k = k
        self.scale = scale
        self.margin = margin
        self.margins = None if margins is None else [float(m) for m in margins]
        self.easy_margin = easy_margin

    def build(self, input_shape):
        dim = (input_shape[0] if isinstance(input_shape[0], (list, tuple)) else input_shape)[-1]
        self.centres = self.add_weight(name="centres", shape=(dim, self.num_classes * self.k),
                                       initializer="glorot_uniform")
        m = self.margins if self.margins is not None else [self.margin] * self.num_classes
        self.m_table = self.add_weight(name="margins", shape=(self.num_classes,), trainable=False,
                                       initializer=keras.initializers.Constant(m))

    def cosines(self, emb):
        """Cosine to the nearest sub-centre of each class, [batch, num_classes]."""
        emb = ops.normalize(emb, axis=-1)
        w = ops.normalize(ops.cast(self.centres, emb.dtype), axis=0)
        cos = ops.reshape(ops.matmul(emb, w), (-1, self.num_classes, self.k))
        return ops.clip(ops.max(cos, axis=-1), -1.0, 1.0)

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            return self.scale * self.cosines(inputs)
        emb, labels = inputs
        cos = self.cosines(emb)
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        m = ops.cast(ops.take(self.m_table, labels), cos.dtype)[:, None]
        sin = ops.sqrt(ops.clip(1.0 - ops.square(cos), 0.0, 1.0))
        phi = cos * ops.cos(m) - sin * ops.sin(m)  # cos(theta + m)
        if self.easy_margin:
            phi = ops.where(cos > 0, phi, cos)
        else:  # past theta = pi - m, cos(theta + m) would rise again: keep the logit monotone in theta
            phi = ops.where(cos > ops.cos(math.pi - m), phi, cos - ops.sin(math.pi - m) * m)
        onehot = ops.one_hot(labels, self.num_classes, dtype=cos.dtype)
        return self.scale * (onehot * phi + (1.0 - onehot) * cos)

    def compute_output_shape(self, input_shape):
        first = input_shape[0] if isinstance(input_shape[0], (list, tuple)) else input_shape
        return (first[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "k": self.k, "scale": self.scale,
                "margin": self.margin, "margins": self.margins, "easy_margin": self.easy_margin}


def dynamic_margins(counts: Sequence[int], low: float = 0.2, high: float = 0.5, power: float = 0.25) -> list[float]:
    """Per-class margins from class frequency: ``m_c = a * n_c^-power + b`` scaled to [low, high]
    (rare individuals get the larger margin)."""
    import numpy as np

    x = np.asarray(counts, float) ** -power
    span = x.max() - x.min()
    x = (x - x.min()) / span if span > 0 else np.ones_like(x)
    return (low + (high - low) * x).tolist()


def area_weights(n: int, side: int) -> np.ndarray:
    """[side, n]: row ``i`` averages the inputs that ``[i, i + 1) * n / side`` covers, each weighted by
    the share of it covered (``tf.image.resize(method="area")`` along one axis)."""
    edges = np.arange(side + 1) * (n / side)
    lo, hi = edges[:-1, None], edges[1:, None]
    cells = np.arange(n)[None, :]
    cover = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0.0, None)
    return (cover * side / n).astype(np.float32)


@keras.saving.register_keras_serializable(package="happywhale")
class PixelDescriptor(keras.layers.Layer):
    """A training-free global descriptor: the image in grey, area-averaged to ``side`` x ``side``
    pixels, centred and L2-normalised, so the dot product of two descriptors is the correlation of
    their thumbnails.

    The reference every learned embedder must beat: on a few thousand real photos of hundreds of
    individuals, nearest neighbours on 16 x 16 grey thumbnails found more individuals than an
    EfficientNet trained from scratch on them.

    Args:
        side: thumbnail side in pixels (descriptor dimension ``side**2``).
        **kwargs: passed to ``keras.layers.Layer``.

    Example:
    >>> x = keras.random.uniform((2, 96, 96, 3), maxval=255.0)
    >>> PixelDescriptor(side=16)(x).shape
    (2, 256)
    """

    def __init__(self, side: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.side = side

    def call(self, images):
        grey = ops.image.rgb_to_grayscale(images) if images.shape[-1] == 3 else images
        h, w = images.shape[1], images.shape[2]
        if h is None or w is None:
            small = ops.image.resize(grey, (self.side, self.side), interpolation="area")
        else:  # the same area average as two matmuls: exported to ONNX as it is (ResizeArea is not)
            rows, cols = (ops.convert_to_tensor(area_weights(n, self.side)) for n in (h, w))
            small = ops.einsum("ih,nhw,jw->nij", rows, grey[..., 0], cols)
        flat = ops.reshape(small, (-1, self.side * self.side))
        flat = flat - ops.mean(flat, axis=1, keepdims=True)  # brightness out: light varies, marks do not
        return flat / ops.maximum(ops.norm(flat, axis=1, keepdims=True), 1e-6)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.side * self.side)

    def get_config(self):
        return {**super().get_config(), "side": self.side}


@keras.saving.register_keras_serializable(package="happywhale")
class HOGDescriptor(keras.layers.Layer):
    """A training-free global descriptor of edges: a histogram of oriented gradients (HOG, Dalal and
    Triggs 2005) of the image in grey, area-averaged to ``size`` x ``size``, in ``cell`` x ``cell``
    cells, each 2 x 2 block of cells L2-normalised, clipped at 0.2 and normalised again (L2-Hys),
    the whole L2-normalised.

    Why: a mark (a notch, a scar, a pigment edge) moves a few edges, which the thumbnail's grey
    levels barely show and lighting changes swamp. Leave-one-out on the committed real shark fins
    (hand boxes), MAP@5 0.21 against 0.15 for 16 x 16 grey pixels; on the demo's crops 0.80 against
    0.58 (docs/history.md, "Edges as a training-free descriptor").

    Orientations are unsigned (a dark fin on bright water and a bright fin on dark water give the
    same edges) and spread softly over ``bins`` bins by ``max(0, cos 2(angle - bin))**sharpness``,
    computed from the gradient's components without an arctangent, so the layer exports to ONNX
    as it is.

    Args:
        size: side the grey image is area-averaged to first (a multiple of ``cell``).
        cell: cell side in pixels of that image.
        bins: orientation bins over 180 degrees.
        sharpness: exponent of the soft binning (higher: closer to hard bins).
        **kwargs: passed to ``keras.layers.Layer``.

    Example:
    >>> x = keras.random.uniform((2, 96, 96, 3), maxval=255.0)
    >>> HOGDescriptor(size=64, cell=16)(x).shape
    (2, 324)
    """

    def __init__(self, size: int = 64, cell: int = 16, bins: int = 9, sharpness: float = 16.0, **kwargs):
        super().__init__(**kwargs)
        if size % cell or size // cell < 2:
            raise ValueError(f"HOGDescriptor: size {size} must be a multiple of cell {cell}, at least 2 cells")
        self.size, self.cell, self.bins, self.sharpness = size, cell, bins, sharpness

    def _histograms(self, images):
        grey = ops.image.rgb_to_grayscale(images)[..., 0] if images.shape[-1] == 3 else images[..., 0]
        rows, cols = (ops.convert_to_tensor(area_weights(int(n), self.size)) for n in images.shape[1:3])
        x = ops.einsum("ih,nhw,jw->nij", rows, grey, cols)
        gx = ops.pad(x[:, :, 2:] - x[:, :, :-2], ((0, 0), (0, 0), (1, 1)))
        gy = ops.pad(x[:, 2:, :] - x[:, :-2, :], ((0, 0), (1, 1), (0, 0)))
        m2 = gx * gx + gy * gy + 1e-6
        cos2, sin2 = (gx * gx - gy * gy) / m2, 2.0 * gx * gy / m2  # the doubled angle: unsigned orientation
        doubled = np.arange(self.bins) * (2.0 * math.pi / self.bins)
        near = ops.relu(cos2[..., None] * np.cos(doubled).astype("float32")
                        + sin2[..., None] * np.sin(doubled).astype("float32"))
        votes = ops.sqrt(m2)[..., None] * near ** self.sharpness
        n = self.size // self.cell
        return ops.sum(ops.reshape(votes, (-1, n, self.cell, n, self.cell, self.bins)), axis=(2, 4))

    def call(self, images):
        h = self._histograms(images)
        blocks = ops.concatenate([h[:, :-1, :-1], h[:, :-1, 1:], h[:, 1:, :-1], h[:, 1:, 1:]], axis=-1)
        blocks = blocks / (ops.norm(blocks, axis=-1, keepdims=True) + 1e-6)
        blocks = ops.minimum(blocks, 0.2)  # L2-Hys: one strong edge does not own the block
        blocks = blocks / (ops.norm(blocks, axis=-1, keepdims=True) + 1e-6)
        flat = ops.reshape(blocks, (-1, self.output_dim))
        return flat / ops.maximum(ops.norm(flat, axis=1, keepdims=True), 1e-6)

    @property
    def output_dim(self) -> int:
        return (self.size // self.cell - 1) ** 2 * 4 * self.bins

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "cell": self.cell, "bins": self.bins,
                "sharpness": self.sharpness}
