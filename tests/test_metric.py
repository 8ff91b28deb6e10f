"""The metric learned on the descriptors (stage2_embed.metric): on hand-made descriptors whose
identity hides under a larger nuisance, the LDA projection finds the individuals the raw cosine
misses; the fusion keeps a projection only where it validates better, and by default only beside a
learned embedding that does not beat the raw descriptors; the Keras layers equal the
NumPy projection and survive a safe-mode round trip."""

import keras
import numpy as np
import pytest

from stage2_embed.fusion import choose_metrics, fused_model
from stage2_embed.metric import fit_projection, project, projection_layers
from stage2_embed.retrieval import known_individual_map5_from_sim


def nuisance_set(rng, n_ids=40, photos=4, dim=32, nuisance=2):
    """Identity spread over dims 2-31 (spread 1 between individuals, 0.3 within), a per-photo
    nuisance of spread 8 in dims 0-1 (light, pose: few directions, large): the raw cosine sees
    mostly the nuisance."""
    ids = np.repeat([f"i{k}" for k in range(n_ids)], photos)
    x = np.zeros((n_ids * photos, dim))
    x[:, nuisance:] = (np.repeat(rng.normal(size=(n_ids, dim - nuisance)), photos, axis=0)
                       + 0.3 * rng.normal(size=(n_ids * photos, dim - nuisance)))
    x[:, :nuisance] = 8.0 * rng.normal(size=(n_ids * photos, nuisance))
    return x / np.linalg.norm(x, axis=1, keepdims=True), ids


def map5(x, ids, q, g):
    return known_individual_map5_from_sim(x[q] @ x[g].T, ids[q].tolist(), ids[g].tolist())


def test_the_projection_finds_what_the_nuisance_hides():
    x, ids = nuisance_set(np.random.default_rng(1))
    q = np.tile([True, False, False, False], 40)  # one photo of each individual asks, fitted on the rest
    kernel = fit_projection(x[~q], ids[~q])
    raw, learned = map5(x, ids, q, ~q), map5(project(x, kernel), ids, q, ~q)
    assert raw < 0.55 and learned > raw + 0.2, (raw, learned)  # 0.506 -> 0.747
    assert kernel.shape == (32, 32) and kernel.dtype == np.float32  # min(dim, individuals - 1) directions
    np.testing.assert_allclose(np.linalg.norm(project(x, kernel), axis=1), 1.0, atol=1e-6)


def test_too_few_individuals_fit_nothing():
    x, ids = nuisance_set(np.random.default_rng(1), n_ids=2)
    assert fit_projection(x, ids) is None
    np.testing.assert_array_equal(project(x, None), x)


def test_the_fusion_keeps_a_projection_only_where_enough_queries_rate_it_better():
    rng = np.random.default_rng(2)
    x, ids = nuisance_set(rng, n_ids=120)
    plain = np.repeat(rng.normal(size=(120, 16)), 4, axis=0) + 0.05 * rng.normal(size=(480, 16))
    plain /= np.linalg.norm(plain, axis=1, keepdims=True)  # raw already perfect: nothing to gain
    q = np.tile([True, False, False, False], 120)  # 120 known validation queries
    kernels, figures = choose_metrics({"pixels": x, "hog": plain}, ids, q, ~q)
    assert set(kernels) == {"pixels"} and figures["pixel_metric"] == 1.0 and figures["hog_metric"] == 0.0
    assert figures["val_map5_pixels_metric"] > figures["val_map5_pixels"] + 0.1
    assert figures["val_map5_hog"] == 1.0
    kernels, off = choose_metrics({"pixels": x, "hog": plain}, ids, q, ~q, "off")
    assert kernels == {} and off["pixel_metric"] == 0.0
    assert off["val_map5_pixels_metric"] == figures["val_map5_pixels_metric"]  # still measured and recorded
    few = np.isin(ids, ids[:80 * 4])  # 80 individuals: 80 queries, too few to choose on
    kernels, small = choose_metrics({"pixels": x[few], "hog": plain[few]}, ids[few], q[few], ~q[few])
    assert kernels == {} and small["pixel_metric"] == 0.0
    assert small["val_map5_pixels_metric"] > small["val_map5_pixels"] + 0.1  # though it validates better


def test_auto_projects_only_beside_a_learned_embedding_weaker_than_a_raw_descriptor():
    rng = np.random.default_rng(4)
    x, ids = nuisance_set(rng, n_ids=120)
    q = np.tile([True, False, False, False], 120)
    noise = rng.normal(size=x.shape)
    weak = noise / np.linalg.norm(noise, axis=1, keepdims=True)  # an embedder that learned nothing
    strong = np.repeat(rng.normal(size=(120, 16)), 4, axis=0) + 0.05 * rng.normal(size=(480, 16))
    strong /= np.linalg.norm(strong, axis=1, keepdims=True)
    for embedder, kept in ((weak, {"pixels", "hog"}), (strong, set())):
        parts = {"embedder": embedder, "pixels": x, "hog": x}
        kernels, figures = choose_metrics(parts, ids, q, ~q)  # auto
        assert set(kernels) == kept, (set(kernels), figures)
        assert set(choose_metrics(parts, ids, q, ~q, "on")[0]) == {"pixels", "hog"}
    with pytest.raises(ValueError, match="expected one of auto, on, off"):
        choose_metrics(parts, ids, q, ~q, "yes")


def test_the_layers_equal_the_numpy_projection_and_round_trip(tmp_path):
    x, ids = nuisance_set(np.random.default_rng(3))
    kernel = fit_projection(x, ids)
    inp = keras.Input((32,))
    model = keras.Model(inp, projection_layers(inp, kernel, "hog"))
    np.testing.assert_allclose(np.asarray(model(x.astype(np.float32))), project(x, kernel), atol=1e-5)
    assert not model.get_layer("hog_metric").trainable and kernel.shape == (32, 32)


def test_a_fused_model_with_projections_saves_and_reloads(tmp_path):
    rng = np.random.default_rng(4)
    image = keras.Input((32, 32, 3))
    embed = keras.Model(image, keras.layers.UnitNormalization()(keras.layers.Dense(8)(keras.layers.Flatten()(image))))
    kernels = {k: rng.normal(size=(d, n)).astype(np.float32) for k, d, n in (("pixels", 256, 5), ("hog", 324, 7))}
    fused = fused_model(embed, 0.3, 0.4, kernels)
    x = rng.uniform(0, 255, size=(3, 32, 32, 3)).astype(np.float32)
    a = np.asarray(fused(x))
    assert a.shape == (3, 8 + 5 + 7)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    fused.save(tmp_path / "f.keras")
    again = keras.saving.load_model(tmp_path / "f.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(again(x)), a, atol=1e-5)
    np.testing.assert_array_equal(again.get_layer("hog_metric").get_weights()[0], kernels["hog"])
