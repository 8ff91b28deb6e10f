"""GeM and (sub-center) ArcFace against NumPy references; serialization round trips."""

import math

import keras
import numpy as np
import pytest

from stage2_embed.layers import ArcMarginLogits, GeMPooling2D, HOGDescriptor, PixelDescriptor, dynamic_margins


def np_arcface(emb, w, labels, num_classes, k, s, m, easy=False):
    """The reference: normalise, nearest sub-centre, margin on the target class only."""
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    c = w / np.linalg.norm(w, axis=0, keepdims=True)
    cos = np.clip((e @ c).reshape(len(e), num_classes, k).max(-1), -1, 1)
    out = cos.copy()
    for i, y in enumerate(labels):
        mi = m[y] if np.ndim(m) else m
        theta = math.acos(cos[i, y])
        if easy:
            out[i, y] = math.cos(theta + mi) if cos[i, y] > 0 else cos[i, y]
        else:
            out[i, y] = math.cos(theta + mi) if theta + mi <= math.pi else cos[i, y] - math.sin(math.pi - mi) * mi
    return s * out


@pytest.mark.parametrize(("k", "easy"), [(1, False), (3, False), (3, True)])
def test_arcface_logits_match_numpy(k, easy):
    rng = np.random.default_rng(k)
    layer = ArcMarginLogits(num_classes=5, k=k, scale=16.0, margin=0.4, easy_margin=easy)
    emb = rng.normal(size=(6, 8)).astype("float32")
    labels = np.array([0, 1, 2, 3, 4, 0])
    got = keras.ops.convert_to_numpy(layer([emb, labels]))
    w = keras.ops.convert_to_numpy(layer.centres)
    np.testing.assert_allclose(got, np_arcface(emb, w, labels, 5, k, 16.0, 0.4, easy), rtol=1e-4, atol=1e-4)
    # without labels: plain scaled cosines, margin nowhere
    plain = keras.ops.convert_to_numpy(layer(emb))
    np.testing.assert_allclose(plain, np_arcface(emb, w, labels, 5, k, 16.0, 0.0), rtol=1e-4, atol=1e-4)
    off_target = np.ones_like(got, bool)
    off_target[np.arange(6), labels] = False
    np.testing.assert_allclose(got[off_target], plain[off_target], rtol=1e-5)


def test_theta_plus_m_past_pi_stays_monotone():
    layer = ArcMarginLogits(num_classes=2, k=1, scale=1.0, margin=0.5)
    layer.build((None, 2))
    layer.centres.assign(np.array([[1.0, 0.0], [0.0, 1.0]], "float32"))
    angles = np.linspace(2.4, math.pi - 1e-3, 20)  # theta + m crosses pi at theta = 2.64
    emb = np.stack([np.cos(angles), np.sin(angles)], 1).astype("float32")
    logit = keras.ops.convert_to_numpy(layer([emb, np.zeros(20, int)]))[:, 0]
    assert np.all(np.diff(logit) < 0)  # falls as theta grows, never rises again
    theta = 2.9
    expected = math.cos(theta) - math.sin(math.pi - 0.5) * 0.5
    e = np.array([[math.cos(theta), math.sin(theta)]], "float32")
    assert keras.ops.convert_to_numpy(layer([e, np.array([0])]))[0, 0] == pytest.approx(expected, abs=1e-5)


def test_per_class_dynamic_margins():
    m = dynamic_margins([1, 4, 100])
    assert m[0] == pytest.approx(0.5) and m[2] == pytest.approx(0.2) and m[0] > m[1] > m[2]
    layer = ArcMarginLogits(num_classes=3, k=2, scale=10.0, margins=m)
    rng = np.random.default_rng(0)
    emb, labels = rng.normal(size=(3, 4)).astype("float32"), np.array([0, 1, 2])
    got = keras.ops.convert_to_numpy(layer([emb, labels]))
    w = keras.ops.convert_to_numpy(layer.centres)
    np.testing.assert_allclose(got, np_arcface(emb, w, labels, 3, 2, 10.0, np.array(m)), rtol=1e-4, atol=1e-4)


def test_gem_with_p_1_is_average_pooling_and_large_p_nears_max():
    x = np.random.default_rng(0).uniform(0.1, 1.0, (2, 5, 5, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(GeMPooling2D(p=1.0)(x)), x.mean((1, 2)), rtol=1e-5)
    big = keras.ops.convert_to_numpy(GeMPooling2D(p=60.0)(x))
    # max * n^(-1/p) <= GeM_p <= max over n = 25 places: the bounds tighten to max as p grows
    assert np.all(big <= x.max((1, 2)) + 1e-5) and np.all(big >= x.max((1, 2)) * 25 ** (-1 / 60) - 1e-5)


@pytest.mark.parametrize("layer", [GeMPooling2D(p=2.5, trainable_p=False, name="g"),
                                   ArcMarginLogits(7, k=2, scale=20.0, margin=0.25, easy_margin=True, name="a"),
                                   PixelDescriptor(side=8, name="p"),
                                   HOGDescriptor(size=32, cell=8, bins=6, sharpness=2.0, name="h")])
def test_config_round_trip(layer):
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_keras_file_round_trip_with_safe_mode(tmp_path):
    inp = keras.Input((6, 6, 4))
    lab = keras.Input((), dtype="int32")
    emb = keras.layers.Dense(8)(GeMPooling2D()(inp))
    model = keras.Model([inp, lab], ArcMarginLogits(5, k=2)([emb, lab]))
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(1).uniform(size=(3, 6, 6, 4)).astype("float32")
    y = np.array([0, 1, 4])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model([x, y])), keras.ops.convert_to_numpy(again([x, y])),
                               rtol=1e-6)


def test_pixel_descriptor_is_the_centred_grey_thumbnail_and_ignores_brightness():
    x = np.random.default_rng(2).uniform(0, 200, size=(2, 96, 96, 3)).astype("float32")
    grey = x @ np.array([0.2989, 0.587, 0.114], np.float32)  # tf.image.rgb_to_grayscale's weights
    thumb = grey.reshape(2, 16, 6, 16, 6).mean(axis=(2, 4)).reshape(2, 256)  # area resize 96 -> 16
    thumb -= thumb.mean(axis=1, keepdims=True)
    ref = thumb / np.linalg.norm(thumb, axis=1, keepdims=True)
    out = keras.ops.convert_to_numpy(PixelDescriptor(16)(x))
    np.testing.assert_allclose(out, ref, atol=1e-5)
    brighter = keras.ops.convert_to_numpy(PixelDescriptor(16)(x + 40.0))
    np.testing.assert_allclose(brighter, out, atol=1e-5)


def np_hog(x, size=64, cell=16, bins=9, sharpness=16.0):
    """The reference, written the textbook way: the angle from an arctangent, each pixel's magnitude
    voted to every bin by ``max(0, cos 2(angle - bin))**sharpness``, 2 x 2 blocks, L2-Hys."""
    grey = x @ np.array([0.2989, 0.587, 0.114], np.float32)
    n0 = x.shape[1] // size
    img = grey.reshape(len(x), size, n0, size, n0).mean(axis=(2, 4))
    gx, gy = np.zeros_like(img), np.zeros_like(img)
    gx[:, :, 1:-1], gy[:, 1:-1, :] = img[:, :, 2:] - img[:, :, :-2], img[:, 2:, :] - img[:, :-2, :]
    mag, angle = np.hypot(gx, gy), np.arctan2(gy, gx)
    centres = np.arange(bins) * np.pi / bins
    votes = mag[..., None] * np.maximum(np.cos(2 * (angle[..., None] - centres)), 0) ** sharpness
    n = size // cell
    h = votes.reshape(len(x), n, cell, n, cell, bins).sum(axis=(2, 4))
    out = []
    for b in range(len(x)):
        blocks = []
        for i in range(n - 1):
            for j in range(n - 1):
                v = np.concatenate([h[b, i, j], h[b, i, j + 1], h[b, i + 1, j], h[b, i + 1, j + 1]])
                v = np.minimum(v / np.linalg.norm(v), 0.2)
                blocks.append(v / np.linalg.norm(v))
        v = np.stack(blocks).reshape(-1)  # [block, 4 * bins], block-major as the layer lays it out
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


def test_hog_descriptor_matches_the_textbook_histogram():
    x = np.random.default_rng(4).uniform(0, 255, size=(2, 128, 128, 3)).astype("float32")
    got = keras.ops.convert_to_numpy(HOGDescriptor(size=64, cell=16)(x))
    want = np_hog(x)
    # the layer orders a block's four cells along the last axis: [tl, tr, bl, br] x bins, as np_hog
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_hog_descriptor_ignores_light_and_polarity_but_sees_an_edge_move():
    x = np.zeros((1, 64, 64, 3), np.float32) + 60.0
    x[:, 16:48, 20:40] = 180.0  # a bright block: four edges
    hog = HOGDescriptor(size=64, cell=16)
    base = keras.ops.convert_to_numpy(hog(x))
    for same in (x * 0.5 + 30.0, 255.0 - x):  # dimmer, lower contrast; a dark block on bright water
        np.testing.assert_allclose(keras.ops.convert_to_numpy(hog(same)), base, atol=1e-4)
    moved = x.copy()
    moved[:, 16:48, 40:52] = 180.0  # the right edge moves 12 px
    assert float((base * keras.ops.convert_to_numpy(hog(moved))).sum()) < 0.95
    with pytest.raises(ValueError, match="multiple of cell"):
        HOGDescriptor(size=60, cell=16)


def test_hog_descriptor_round_trips_through_a_keras_file(tmp_path):
    image = keras.Input((48, 48, 3))
    model = keras.Model(image, HOGDescriptor(size=32, cell=8)(image))
    model.save(tmp_path / "h.keras")
    again = keras.saving.load_model(tmp_path / "h.keras", safe_mode=True)
    x = np.random.default_rng(5).uniform(0, 255, size=(2, 48, 48, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)
    assert again.output_shape == (None, 9 * 4 * 9)


@pytest.mark.parametrize("h,w", [(64, 64), (100, 70), (37, 50)])
def test_area_weights_are_tensorflows_area_resize_also_where_sides_do_not_divide(h, w):
    """The matmul form (exportable to ONNX) gives ``tf.image.resize(method="area")``'s thumbnail."""
    import tensorflow as tf

    from stage2_embed.layers import area_weights

    x = np.random.default_rng(3).uniform(0, 255, size=(2, h, w)).astype("float32")
    want = tf.image.resize(x[..., None], (16, 16), method="area").numpy()[..., 0]
    got = np.einsum("ih,nhw,jw->nij", area_weights(h, 16), x, area_weights(w, 16))
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert np.abs(got - x.mean()).max() > 1.0  # not a flat average: the thumbnail keeps structure


def test_pixel_embedder_folder_loads_like_a_trained_one(tmp_path):
    from stage2_embed.embedder import WEIGHTS_KEY, load_embedder
    from stage2_embed.pixel_embedder import write_pixel_embedder

    model, cfg = load_embedder(write_pixel_embedder(str(tmp_path / "px"), image_size=32, side=8))
    digest = cfg.pop(WEIGHTS_KEY)  # of its embedder.keras: what a catalog records beside the config
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert cfg == {"kind": "pixels", "image_size": 32, "side": 8, "embedding_dim": 64}
    x = np.random.default_rng(3).uniform(0, 255, size=(3, 32, 32, 3)).astype("float32")
    sim = keras.ops.convert_to_numpy(model(x)) @ keras.ops.convert_to_numpy(model(x)).T
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-5)
    assert model.output_shape == (None, 64) and not model.weights
