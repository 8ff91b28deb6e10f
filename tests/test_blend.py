"""The kNN + ArcFace-head blend (pipeline/blend.py) on hand-made embeddings with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import blend
from pipeline.search import NEW, Candidates


def unit(*v):
    """Unit rows of one array, or of several stacked (``unit(a, b)``: shape [2, ...])."""
    v = np.asarray(v[0] if len(v) == 1 else v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_head_cosines_take_each_candidates_nearest_centre_and_nan_for_unknown_individuals():
    # two individuals, two centres each, in 2-D
    head = blend.Head(np.stack([unit([1, 0], [0, 1]), unit([-1, 0], [0, -1])]), np.array(["a", "b"], dtype=object))
    q = unit([[1, 0.0], [0, -1.0]])
    h = head.cosines(q, np.array([["a", "b", "z"], ["b", "a", ""]], dtype=object))
    assert h[0, :2] == pytest.approx([1.0, 0.0]) and h[1, :2] == pytest.approx([1.0, 0.0])
    assert np.isnan(h[0, 2]) and np.isnan(h[1, 2])
    # a pixel-fused embedding [sqrt(w) e, sqrt(1-w) p]: only the embedder part is compared
    fused = np.concatenate([np.sqrt(0.2) * q, np.sqrt(0.8) * unit([[1, 1.0], [1, -1.0]])], axis=1)
    assert head.cosines(fused, np.array([["a"], ["b"]], dtype=object)) == pytest.approx(np.array([[1.0], [1.0]]))


def test_apply_blends_known_candidates_reorders_them_and_leaves_unknown_ones_their_knn_score():
    head = blend.Head(unit([[1, 0]], [[0, 1]]), np.array(["a", "b"], dtype=object))
    cands = Candidates(np.array([["b", "a", "x"]], dtype=object), np.array([["s"] * 3], dtype=object),
                       np.array([[0.9, 0.8, 0.7]]), np.array(["s"], dtype=object))
    out = blend.apply(cands, unit([[1, 0.0]]), head, 0.5)  # head: a 1.0, b 0.0
    assert out.ids[0].tolist() == ["a", "x", "b"]
    assert out.scores[0] == pytest.approx([0.9, 0.7, 0.45])
    assert blend.apply(cands, unit([[1, 0.0]]), head, 0.0) is cands and blend.apply(cands, None, None, 0.5) is cands


def test_choose_takes_the_weight_that_finds_more_known_individuals_and_none_when_it_does_not_help():
    head = blend.Head(unit([[1, 0]], [[0, 1]]), np.array(["a", "b"], dtype=object))
    ids = np.array([["b", "a"], ["b", "a"], ["a", "b"]], dtype=object)
    scores = np.array([[0.9, 0.8], [0.9, 0.85], [0.5, 0.4]])
    cands = Candidates(ids, ids.copy(), scores, np.array(["s"] * 3, dtype=object))
    q = unit([[1, 0.0], [1, 0.0], [0, 1.0]])
    w, curve = blend.choose(cands, q, head, np.array(["a", "a", NEW], dtype=object))
    # kNN alone ranks b first for both known queries (MAP@5 0.5); the head (a) lifts them to 1.0 at 0.25
    assert curve[0.0] == pytest.approx(0.5) and curve[0.25] == pytest.approx(1.0) and w == 0.25
    w, curve = blend.choose(cands, q, head, np.array(["b", "b", NEW], dtype=object))
    assert w == 0.0 and curve[0.0] == 1.0  # the head would demote the right answer: no blend
    assert blend.choose(cands, q, None, np.array(["a", "a", NEW], dtype=object)) == (0.0, {})


def test_the_head_holds_the_trained_arcface_centres_of_the_trained_individuals_only(tiny_embedder, tmp_path):
    import json
    import shutil

    import keras

    from stage2_embed import head as head_lib
    from tfrecords.reader import read_manifest

    assert (tiny_embedder / "head.npz").exists()  # written by training
    run = tmp_path / "run"
    shutil.copytree(tiny_embedder, run)
    (run / "head.npz").unlink()  # a run folder from before head.npz: made on first use, the same
    cfg = json.loads((run / "train_config.json").read_text())
    head = blend.load_head(str(run))
    trained = head_lib.trained_individuals(cfg["records"], cfg["val_fold"])
    everyone = read_manifest(cfg["records"])["individuals"]
    assert head.ids.tolist() == list(trained) and 0 < len(trained) < len(everyone)  # val-only and holdouts out
    saved = np.load(tiny_embedder / "head.npz")
    assert (saved["centres"] == head.centres).all() and saved["ids"].tolist() == head.ids.tolist()
    layer = keras.saving.load_model(run / "train_model.keras", safe_mode=True, compile=False).get_layer("individual")
    w, k = keras.ops.convert_to_numpy(layer.centres), layer.k
    c = everyone.index(trained[2])
    assert head.centres.shape == (len(trained), k, w.shape[0])
    assert head.centres[2, 1] == pytest.approx(w[:, c * k + 1] / np.linalg.norm(w[:, c * k + 1]), abs=1e-6)
