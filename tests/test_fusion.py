"""The embedder fused with the pixel descriptor: the weight chosen on hand-made validation sets
whose answer is known, and the fused cosine equal to the weighted mix of the two."""

import keras
import numpy as np

from stage2_embed.fusion import choose_weight, fused_model, warning, weight_curve


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def validation(rng, informative: str):
    """20 individuals, 3 photos each (fold 0 is the query): one descriptor carries the identity, the
    other is noise."""
    ids = np.repeat([f"i{k}" for k in range(20)], 3)
    centres = rng.normal(size=(20, 16))
    good = unit(np.repeat(centres, 3, axis=0) + 0.2 * rng.normal(size=(60, 16)))
    noise = unit(rng.normal(size=(60, 16)))
    folds, holdout = np.tile([0, 1, 2], 20), np.zeros(60, int)
    emb, pix = (good, noise) if informative == "embedder" else (noise, good)
    return emb, pix, ids, folds, holdout


def test_the_weight_follows_whichever_descriptor_knows_the_individuals():
    rng = np.random.default_rng(0)
    curve = weight_curve(*validation(rng, "embedder"), val_fold=0)
    assert choose_weight(curve) >= 0.5 and curve[1.0] > 0.9 and curve[0.0] < 0.4
    curve = weight_curve(*validation(rng, "pixels"), val_fold=0)
    assert choose_weight(curve) <= 0.5 and curve[0.0] > 0.9 and curve[1.0] < 0.4


def test_ties_go_to_the_learned_embedding():
    assert choose_weight({0.0: 0.5, 0.5: 0.7, 1.0: 0.7}) == 1.0


def test_the_fused_cosine_is_the_weighted_mix_and_unit_norm():
    image = keras.Input((32, 32, 3))
    embed = keras.Model(image, keras.layers.UnitNormalization()(keras.layers.Dense(8)(keras.layers.Flatten()(image))))
    x = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    e, p = np.asarray(embed(x)), np.asarray(fused_model(embed, 0.0)(x))
    f = np.asarray(fused_model(embed, 0.3)(x))
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(f @ f.T, 0.3 * (e @ e.T) + 0.7 * (p @ p.T), atol=1e-5)
    assert fused_model(embed, 1.0) is embed and p.shape == (4, 256)


def test_a_warning_only_when_the_embedder_loses_to_the_pixels():
    assert warning({"val_map5_embedder": 0.5, "val_map5_pixels": 0.4, "pixel_weight": 0.2}) is None
    msg = warning({"val_map5_embedder": 0.01, "val_map5_pixels": 0.18, "pixel_weight": 1.0})
    assert msg.startswith("warning:") and "0.010" in msg and "100% pixels" in msg and "\n" not in msg


def test_evaluate_and_infer_repeat_the_trainers_warning(tmp_path, capsys):
    from stage2_embed.fusion import warn_if_weak

    warn_if_weak(str(tmp_path))  # a run folder from before fusion.json: silent
    (tmp_path / "fusion.json").write_text('{"val_map5_embedder": 0.011, "val_map5_pixels": 0.184, '
                                          '"val_map5_fused": 0.19, "pixel_weight": 0.9}')
    warn_if_weak(str(tmp_path))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0.011" in err and "0.184" in err and "90% pixels" in err
