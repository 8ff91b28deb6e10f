"""Stage 1's training augmentation: the ``wide`` colour randomisation for synthetic-to-real transfer."""

import numpy as np
import pytest
import tensorflow as tf

from stage1_detect.data import augmenter, photometric_layers


def _fin_photos(n: int = 48, size: int = 64) -> np.ndarray:
    """``n`` copies of one photo: blue water, a dark grey triangle with a white mark on it."""
    img = np.zeros((size, size, 3), np.float32) + np.array([40, 90, 160], np.float32)
    for y in range(16, 56):
        half = (y - 16) // 3
        img[y, 32 - half:32 + half + 1] = (70, 70, 75)
    img[40:44, 30:34] = 250
    return np.repeat(img[None], n, axis=0)


def _apply(kind: str, images: np.ndarray) -> np.ndarray:
    x = tf.constant(images)
    for layer in photometric_layers(kind, seed=3):
        x = layer(x, training=True)
    return x.numpy()


def _edge_energy(images: np.ndarray) -> np.ndarray:
    """Mean absolute horizontal gradient of each image's grey level: what blur takes away."""
    grey = images.mean(axis=-1)
    return np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2))


def test_wide_jitter_spreads_colour_and_softens_edges_where_mild_does_not():
    photos = _fin_photos()
    mild, wide = _apply("mild", photos), _apply("wide", photos)
    for out in (mild, wide):
        assert out.shape == photos.shape and out.min() >= 0 and out.max() <= 255
    # the water's colour: the spread of each photo's mean blue-minus-red over the batch
    cast = lambda x: (x[..., 2] - x[..., 0]).mean(axis=(1, 2))  # noqa: E731
    assert cast(wide).std() > 2.5 * cast(mild).std()  # measured 3.5-5.4x
    # blur and haze: under wide some photos lose over half of their edges, under mild none
    e0 = _edge_energy(photos)[0]
    assert _edge_energy(wide).min() < 0.5 * e0
    assert (_edge_energy(mild) > 0.7 * e0).all()
    with pytest.raises(ValueError, match="mild or wide"):
        photometric_layers("vivid")


def test_augmenter_keeps_the_boxes_eagerly_and_inside_a_dataset_map():
    photos = _fin_photos(8)
    boxes = tf.ragged.constant([[[20.0, 16.0, 44.0, 56.0]]] * 8, ragged_rank=1, inner_shape=(4,))
    classes = tf.ragged.constant([[1.0]] * 8)
    batch = {"images": tf.constant(photos), "bounding_boxes": {"boxes": boxes, "classes": classes},
             "filename": tf.constant(["a.jpg"] * 8)}
    eager = augmenter(64, seed=1, photometric="wide")(batch)
    mapped = next(iter(tf.data.Dataset.from_tensors(batch).map(augmenter(64, seed=1, photometric="wide"))))
    for out in (eager, mapped):
        assert out["images"].shape == (8, 64, 64, 3)
        b = out["bounding_boxes"]["boxes"].to_tensor().numpy()
        assert b.shape == (8, 1, 4) and (b[..., 2] > b[..., 0]).all() and (b[..., 3] > b[..., 1]).all()
        assert b.min() >= 0 and b.max() <= 64  # moved with the image (flip, resize), never off it
        # the fin stays a fin: its box is 24x40 px scaled by the jittered resize (0.7-1.3)
        w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
        np.testing.assert_allclose(h / w, 40 / 24, rtol=0.15)
        assert out["filename"].shape == (8,)
