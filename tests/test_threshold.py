"""The new_individual threshold on hand-made score tables (known argmax), and the new-individual
share estimated from unlabelled scores on synthetic mixtures with known shares."""

import json

import numpy as np
import pytest

from pipeline import share
from pipeline import threshold as thr
from pipeline.search import NEW, Candidates, predict
from pipeline.share import estimate_share

CATALOG = ["a", "a", "b"]  # "a" has two photos, "b" one


def table(best: list[float], second: float = 0.1) -> Candidates:
    """One row per query: its best candidate is "a" (score ``best``), then "b"."""
    q = len(best)
    ids = np.array([["a", "b"]] * q, dtype=object)
    return Candidates(ids, np.full((q, 2), "s", dtype=object), np.array([[s, second] for s in best]),
                      np.full(q, "s", dtype=object))


def test_curves_and_the_argmax_threshold_on_a_hand_made_table():
    # known queries (truth "a") score 0.8 and 0.7; new ones 0.5 and 0.3: any threshold in (0.5, 0.7]
    # is perfect, lower ones miss the new queries, higher ones demote "a" to rank 2
    model = thr.fit(table([0.8, 0.7, 0.5, 0.3]), ["a", "a", NEW, NEW], CATALOG, thresholds=(0.0, 0.4, 0.6, 0.75, 0.9))
    np.testing.assert_allclose(model.known, [1, 1, 1, 0.75, 0.5])
    np.testing.assert_allclose(model.new, [1 / 3, 0.75, 1, 1, 1])  # at 0: new_individual comes last
    assert model.best(0.2) == (0.6, 1.0) and model.best(0.9) == (0.6, 1.0)
    # with 0.7 gone from the knowns, a mostly-known set prefers a low threshold, a mostly-new one a high one
    model = thr.fit(table([0.8, 0.45, 0.5, 0.3]), ["a", "a", NEW, NEW], CATALOG, thresholds=(0.0, 0.4, 0.6, 0.75, 0.9))
    assert model.best(0.1)[0] == 0.4 and model.best(0.9)[0] == 0.6
    np.testing.assert_allclose(model.curve(0.5), 0.5 * model.new + 0.5 * model.known)
    np.testing.assert_allclose(model.known_scores[2], [0.8, 0.45])  # "a" has two catalog photos
    np.testing.assert_allclose(model.new_scores[2], [0.5, 0.3])


def test_model_survives_its_json_round_trip():
    model = thr.fit(table([0.8, 0.7, 0.5, 0.3]), ["a", "a", NEW, NEW], CATALOG)
    again = thr.ThresholdModel.from_json(json.loads(json.dumps(model.to_json())))
    assert again.thresholds == model.thresholds and again.best(0.3) == model.best(0.3)
    np.testing.assert_allclose(again.new_scores[2], np.sort(model.new_scores[2]))  # kept sorted


def scores(rng, n, new):
    """Best-match scores shaped like an embedder's: known queries high and skewed, new ones lower."""
    return np.clip(rng.normal(0.42, 0.09, n) if new else 0.85 - rng.gamma(2.0, 0.08, n), -1, 1)


def model_of(known: dict, new: dict, single: dict | None = None) -> thr.ThresholdModel:
    """Validation scores only (the curves play no part in the estimate)."""
    return thr.ThresholdModel((0.5,), np.ones(1), np.ones(1), known, new, single or {})


@pytest.mark.parametrize("share", [0.05, 0.1, 0.2, 0.3, 0.4, 0.5])
def test_the_share_of_new_individuals_is_estimated_from_unlabelled_scores(share):
    rng = np.random.default_rng(int(share * 100))
    model = model_of({1: scores(rng, 300, False)}, {1: scores(rng, 150, True)})
    n_new = int(round(400 * share))
    query = np.concatenate([scores(rng, 400 - n_new, False), scores(rng, n_new, True)])
    assert estimate_share(query, np.ones(400), model) == pytest.approx(share, abs=0.05)


def test_known_individuals_with_one_catalog_photo_are_not_taken_for_new_ones():
    # a known individual with one catalog photo scores between the others and a new one; validation
    # holds few of them (an individual with one photo is never a known validation query) and the
    # queries hold many; the validation search in a thinned catalog ("single") shows how they score
    rng = np.random.default_rng(5)
    single = lambda n: np.clip(rng.normal(0.55, 0.1, n), -1, 1)  # noqa: E731
    known, new = {1: single(10), 3: scores(rng, 300, False)}, {1: scores(rng, 60, True), 3: scores(rng, 240, True)}
    groups = np.repeat([1, 3, 1, 3], [360, 360, 16, 64])
    best = np.concatenate([single(360), scores(rng, 360, False), scores(rng, 80, True)])
    with_single = estimate_share(best, groups, model_of(known, new, {1: single(300)}))
    without = estimate_share(best, groups, model_of(known, new))
    assert with_single == pytest.approx(0.1, abs=0.03) and without > with_single + 0.1


def test_single_photo_queries_scoring_below_their_validation_are_not_taken_for_new_ones(monkeypatch):
    # validation's one-photo pairs are two photos of one encounter; a later photo of a one-photo
    # individual matches less well (1 sd lower here): the single kind's density moves down with it
    rng = np.random.default_rng(5)
    single = lambda n, mean: np.clip(rng.normal(mean, 0.1, n), -1, 1)  # noqa: E731
    known = {1: single(10, 0.55), 3: scores(rng, 300, False)}
    new = {1: scores(rng, 60, True), 3: scores(rng, 240, True)}
    groups = np.repeat([1, 3, 1, 3], [360, 360, 16, 64])
    best = np.concatenate([single(360, 0.45), scores(rng, 360, False), scores(rng, 80, True)])
    model = model_of(known, new, {1: single(300, 0.55)})
    moved = estimate_share(best, groups, model)
    monkeypatch.setattr(share, "SHIFTS", (0.0,))
    assert moved == pytest.approx(0.1, abs=0.04) and estimate_share(best, groups, model) > moved + 0.03


def test_scores_piled_near_zero_are_estimated_as_well_as_spread_ones():
    # fused re-ranking probabilities: most new and many known scores within 0.05 of zero; a kernel
    # density of the raw scores smears the known misses into the new peak
    rng = np.random.default_rng(2)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    known = lambda n: sig(np.where(rng.random(n) < 0.3, rng.normal(-4, 1, n), rng.normal(0.5, 1, n)))  # noqa: E731
    new = lambda n: sig(rng.normal(-4.5, 0.8, n))  # noqa: E731
    model = model_of({3: known(400)}, {3: new(300)})
    best = np.concatenate([known(720), new(80)])
    assert estimate_share(best, np.full(800, 3), model) == pytest.approx(0.1, abs=0.04)


def test_no_estimate_without_validation_scores_of_both_kinds():
    model = model_of({1: np.array([0.9] * 10)}, {1: np.array([0.3, 0.2])})
    assert np.isnan(estimate_share(np.array([0.5, 0.6]), np.ones(2), model))


def test_choose_uses_the_estimated_share_and_honours_overrides(tmp_path):
    rng = np.random.default_rng(0)
    # validation: known scores ~0.75, new ~0.42; knowns below 0.55 are rare
    model = thr.ThresholdModel((0.3, 0.55, 0.7), np.array([1.0, 0.99, 0.6]), np.array([0.0, 0.9, 1.0]),
                               {1: scores(rng, 300, False)}, {1: scores(rng, 300, True)})
    (tmp_path / "threshold.json").write_text(json.dumps({"threshold": 0.3, "curves": model.to_json()}))
    mostly_known = np.concatenate([scores(rng, 190, False), scores(rng, 10, True)])
    one = np.ones(200, int)
    t, how = thr.choose(str(tmp_path), mostly_known, one)
    assert how["threshold_from"] == "estimated share" and how["new_share_estimate"] < 0.15 and t == 0.55
    mostly_new = np.concatenate([scores(rng, 20, False), scores(rng, 180, True)])
    t, how = thr.choose(str(tmp_path), mostly_new, one)
    assert how["new_share_estimate"] > 0.8 and t == 0.7  # 0.9 * 1.0 + 0.1 * 0.6 beats 0.9 * 0.9 + 0.1 * 0.99
    assert thr.choose(str(tmp_path), mostly_new, one, new_share=0.0)[0] == 0.3
    assert thr.choose(str(tmp_path), mostly_new, one, threshold=0.42) == (0.42, {"threshold_from": "--threshold"})
    (tmp_path / "threshold.json").write_text(json.dumps({"threshold": 0.35}))  # written before the curves
    assert thr.choose(str(tmp_path), mostly_new, one) == (0.35, {"threshold_from": "threshold.json"})


def rows(*best: tuple[float, str]) -> Candidates:
    """One query per (score, first candidate) pair; the other of "a"/"b" second, far below."""
    ids = np.array([[first, "b" if first == "a" else "a"] for _, first in best], dtype=object)
    return Candidates(ids, np.full(ids.shape, "s", dtype=object), np.array([[s, 0.01] for s, _ in best]),
                      np.full(len(best), "s", dtype=object))


def test_one_threshold_per_group_when_single_photo_individuals_score_low():
    # catalog: "a" has 3 photos (group 3), "b" one (group 1). Known "a" queries score 0.8/0.7 and new
    # ones next to "a" 0.5/0.45; known "b" queries (one catalog photo: the thinned validation search)
    # score 0.3/0.25 and new ones next to "b" 0.1/0.05. Group 3 wants a threshold in (0.5, 0.7],
    # group 1 one in (0.1, 0.25]: no single threshold serves both
    catalog = ["a", "a", "a", "b"]
    val = rows((0.8, "a"), (0.7, "a"), (0.5, "a"), (0.45, "a"), (0.1, "b"), (0.05, "b"))
    model = thr.fit(val, ["a", "a", NEW, NEW, NEW, NEW], catalog, thresholds=(0.0, 0.2, 0.4, 0.6, 0.9),
                    single=(rows((0.3, "b"), (0.25, "b")), np.array(catalog), np.array(["b", "b"])))
    table = thr.by_group_thresholds(model, {"known": 0.4, "single": 0.3, "new": 0.3})
    assert table == {1: 0.2, 3: 0.6}
    queries = rows((0.8, "a"), (0.3, "b"), (0.1, "b"))
    groups = thr.group(queries, catalog)
    assert groups.tolist() == [3, 1, 1]
    th = thr.per_query(0.6, {"thresholds_by_group": {str(g): t for g, t in table.items()}}, groups)
    assert th.tolist() == [0.6, 0.2, 0.2]
    assert [p[0] for p in predict(queries, th)] == ["a", "b", NEW]
    assert [p[0] for p in predict(queries, 0.6)] == ["a", NEW, NEW]  # one threshold loses the single-photo "b"
    assert [p[0] for p in predict(queries, 0.2)] == ["a", "b", NEW]  # (and a low one lets new ones next to "a" in)
    assert predict(rows((0.5, "a")), 0.2)[0][0] == "a" and predict(rows((0.5, "a")), 0.6)[0][0] == NEW


def test_choose_gives_group_thresholds_at_the_estimated_and_at_a_given_share(tmp_path):
    rng = np.random.default_rng(1)
    curves = {"known": {1: np.array([1.0, 0.2]), 3: np.array([1.0, 0.9])},
              "new": {1: np.array([0.0, 1.0]), 3: np.array([0.0, 1.0])}}
    model = thr.ThresholdModel((0.3, 0.6), np.array([1.0, 0.7]), np.array([0.0, 1.0]),
                               {1: scores(rng, 100, False) - 0.2, 3: scores(rng, 200, False)},
                               {1: scores(rng, 100, True), 3: scores(rng, 100, True)}, group_curves=curves)
    (tmp_path / "threshold.json").write_text(json.dumps({"threshold": 0.3, "curves": model.to_json()}))
    best = np.concatenate([scores(rng, 150, False) - 0.2, scores(rng, 150, False), scores(rng, 50, True)])
    groups = np.repeat([1, 3, 3], [150, 150, 50])
    t, how = thr.choose(str(tmp_path), best, groups, group_thresholds=True)
    # group 1: known 1.0 vs 0.2 at 0.3 vs 0.6, few new there -> 0.3; group 3: known loses only 0.1 -> 0.6
    assert how["thresholds_by_group"] == {"1": 0.3, "3": 0.6} and how["threshold_from"] == "estimated share"
    assert "thresholds_by_group" not in thr.choose(str(tmp_path), best, groups)[1]
    t, how = thr.choose(str(tmp_path), best, groups, new_share=0.9, group_thresholds=True)
    assert how["thresholds_by_group"] == {"1": 0.6, "3": 0.6} and t == 0.6  # mostly new: high everywhere


def test_the_rank_normal_map_is_monotone_and_gives_tied_scores_one_value():
    from pipeline.share import gaussianize

    z = gaussianize(np.array([0.0, 0.0, 0.0, 0.0, 0.2, 0.5, 0.9]))
    out = z(np.array([-1.0, 0.0, 0.1, 0.2, 0.5, 0.9, 2.0]))
    assert np.all(np.isfinite(out)) and np.all(np.diff(out) >= 0)
    from scipy.stats import norm

    assert out[0] == out[1] == pytest.approx(norm.ppf(2 / 7))  # four zeros of seven: their mid-rank
    assert out[-1] == out[-2] == pytest.approx(norm.ppf(6.5 / 7))  # beyond the last: clamped to its rank
