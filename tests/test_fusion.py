"""The embedder fused with the pixel and edge descriptors: the weights chosen on hand-made
validation sets whose answer is known, and the fused cosine equal to the weighted mix of the parts."""

import keras
import numpy as np

from stage2_embed.fusion import MIXES, choose_weight, fused_model, warning, weight_curve


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def validation(rng, informative: str):
    """20 individuals, 3 photos each (fold 0 is the query): one part carries the identity, the
    others are noise."""
    ids = np.repeat([f"i{k}" for k in range(20)], 3)
    centres = rng.normal(size=(20, 16))
    parts = {k: unit(rng.normal(size=(60, 16))) for k in ("embedder", "pixels", "hog")}
    parts[informative] = unit(np.repeat(centres, 3, axis=0) + 0.6 * rng.normal(size=(60, 16)))
    folds, holdout = np.tile([0, 1, 2], 20), np.zeros(60, int)
    return parts, ids, folds, holdout


def test_the_mixes_cover_the_simplex_in_tenths():
    assert len(MIXES) == 66 and all(abs(sum(m) - 1.0) < 1e-9 and min(m) >= 0 for m in MIXES)
    assert {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.5, 0.2, 0.3)} <= set(MIXES)


def test_the_weights_follow_whichever_part_knows_the_individuals():
    rng = np.random.default_rng(0)
    for part, at in (("embedder", 0), ("pixels", 1), ("hog", 2)):
        curve = weight_curve(*validation(rng, part), val_fold=0)
        alone = tuple(float(i == at) for i in range(3))
        mix = choose_weight(curve)
        assert mix[at] >= 0.5 and curve[alone] > 0.9, (part, mix)
        assert all(curve[tuple(float(i == j) for i in range(3))] < 0.4 for j in range(3) if j != at)


def test_a_part_left_out_is_never_weighed():
    parts, ids, folds, holdout = validation(np.random.default_rng(2), "hog")
    del parts["hog"]
    curve = weight_curve(parts, ids, folds, holdout, val_fold=0)
    assert len(curve) == 11 and all(m[2] == 0.0 for m in curve)


def test_an_embedder_that_validates_best_alone_keeps_at_least_half():
    curve = {(1.0, 0.0, 0.0): 0.89, (0.0, 1.0, 0.0): 0.64, (0.0, 0.0, 1.0): 0.86, (0.5, 0.0, 0.5): 0.93,
             (0.2, 0.0, 0.8): 0.95, (0.4, 0.1, 0.5): 0.94}
    assert choose_weight(curve, queries=200) == (0.5, 0.0, 0.5)
    assert choose_weight(curve, queries=19) == (0.2, 0.0, 0.8)  # too few queries to trust its lead
    curve[(0.0, 0.0, 1.0)] = 0.90  # the edges alone beat it: the weights are free
    assert choose_weight(curve, queries=200) == (0.2, 0.0, 0.8)
    # projected edges beat it only as projected: raw, they do not, so the floor holds
    assert choose_weight(curve, queries=200, raw={2: 0.86}) == (0.5, 0.0, 0.5)


def test_ties_go_to_the_mix_nearest_half_learned_half_edges_then_to_the_learned_embedding():
    assert choose_weight(dict.fromkeys(MIXES, 1.0)) == (0.5, 0.0, 0.5)  # a tiny fold: every mix perfect
    assert choose_weight({(1.0, 0.0, 0.0): 0.7, (0.3, 0.0, 0.7): 0.7, (0.0, 0.0, 1.0): 0.6}) == (0.3, 0.0, 0.7)
    # equally far from (0.5, 0, 0.5): the more learned one
    assert choose_weight({(0.0, 1.0, 0.0): 0.5, (0.5, 0.5, 0.0): 0.7, (1.0, 0.0, 0.0): 0.7}) == (1.0, 0.0, 0.0)
    assert choose_weight({(0.5, 0.5, 0.0): 0.7, (0.5, 0.0, 0.5): 0.7, (0.0, 0.0, 1.0): 0.6}) == (0.5, 0.0, 0.5)


def test_the_fused_cosine_is_the_weighted_mix_and_unit_norm():
    image = keras.Input((32, 32, 3))
    embed = keras.Model(image, keras.layers.UnitNormalization()(keras.layers.Dense(8)(keras.layers.Flatten()(image))))
    x = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    e, p, h = np.asarray(embed(x)), np.asarray(fused_model(embed, 1.0)(x)), np.asarray(fused_model(embed, 0.0, 1.0)(x))
    f = np.asarray(fused_model(embed, 0.3, 0.2)(x))
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(f @ f.T, 0.5 * (e @ e.T) + 0.3 * (p @ p.T) + 0.2 * (h @ h.T), atol=1e-5)
    assert fused_model(embed, 0.0, 0.0) is embed and p.shape == (4, 256) and h.shape == (4, 324)
    assert f.shape == (4, 8 + 256 + 324) and fused_model(embed, 0.0, 0.4)(x).shape == (4, 8 + 324)


def test_a_warning_only_when_the_embedder_loses_to_the_pixels():
    assert warning({"val_map5_embedder": 0.5, "val_map5_pixels": 0.4, "pixel_weight": 0.2}) is None
    msg = warning({"val_map5_embedder": 0.01, "val_map5_pixels": 0.18, "pixel_weight": 0.3, "hog_weight": 0.7})
    assert msg.startswith("warning:") and "0.010" in msg and "30% pixels, 70% edges" in msg and "\n" not in msg
    assert "0% learned" in msg and msg.endswith("no network: stage2_embed/pixels.py --descriptor fitted")
    msg = warning({"val_map5_embedder": 0.01, "val_map5_pixels": 0.18, "pixel_weight": 0.3, "hog_weight": 0.7,
                   "pixel_metric": 0.0, "hog_metric": 1.0})
    assert "30% pixels, 70% edges (HOG) (LDA-projected) and 0% learned" in msg


def test_evaluate_and_infer_repeat_the_trainers_warning(tmp_path, capsys):
    from stage2_embed.fusion import warn_if_weak

    warn_if_weak(str(tmp_path))  # a run folder from before fusion.json: silent
    (tmp_path / "fusion.json").write_text('{"val_map5_embedder": 0.011, "val_map5_pixels": 0.184, '
                                          '"val_map5_fused": 0.19, "pixel_weight": 0.9}')
    warn_if_weak(str(tmp_path))  # and one from before the edges: no hog_weight
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0.011" in err and "0.184" in err and "90% pixels, 0% edges" in err
