"""Retrieval on hand-made tables: best score per individual, threshold insertion of new_individual,
species demotion, Kaggle's MAP@5, submission validation, and the catalog file."""

import numpy as np
import pytest

from pipeline.catalog import Catalog, load_npz, save_npz
from pipeline.search import NEW, Candidates, best_per_individual, map_at_5, predict, search, vote_species
from pipeline.submission import validate_submission


def cands(ids, scores, species=None, query_species=None):
    ids = np.array(ids, dtype=object)
    species = np.array(species if species is not None else [["a"] * ids.shape[1]] * ids.shape[0], dtype=object)
    qs = np.array(query_species if query_species is not None else [""] * ids.shape[0], dtype=object)
    return Candidates(ids, species, np.array(scores, dtype=float), qs)


def test_best_per_individual_keeps_each_individuals_best_score_in_order():
    nbr = np.array([["x", "y", "x", "z", "y"]], dtype=object)
    sp = np.array([["a", "a", "a", "b", "a"]], dtype=object)
    sc = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    ids, species, scores = best_per_individual(nbr, sp, sc, k=4)
    assert ids[0].tolist() == ["x", "y", "z", ""]
    assert species[0].tolist() == ["a", "a", "b", ""]
    assert scores[0, :3].tolist() == [0.9, 0.8, 0.6] and scores[0, 3] == -np.inf


def test_new_individual_goes_before_the_first_score_below_the_threshold():
    c = cands([["p", "q", "r", "s", "t"]], [[0.9, 0.7, 0.4, 0.3, 0.2]])
    assert predict(c, 0.5) == [["p", "q", NEW, "r", "s"]]
    assert predict(c, 0.95) == [[NEW, "p", "q", "r", "s"]]  # even the best is below
    assert predict(c, 0.1) == [["p", "q", "r", "s", "t"]]  # all clear it: five known ids...
    assert predict(cands([["p", "q"]], [[0.9, 0.8]]), 0.1) == [["p", "q", NEW]]  # ...or new last when room


def test_species_consistency_demotes_other_species_but_keeps_score_order():
    c = cands([["p", "q", "r", "s"]], [[0.9, 0.85, 0.8, 0.7]], species=[["b", "a", "b", "a"]], query_species=["a"])
    assert predict(c, 0.0, species_consistency=True) == [["q", "s", "p", "r", NEW]]
    assert predict(c, 0.0) == [["p", "q", "r", "s", NEW]]


def test_vote_species_weighs_neighbours_by_score():
    sp = np.array([["a", "b", "b", "a"]], dtype=object)
    assert vote_species(sp, np.array([[0.9, 0.3, 0.3, 0.1]])).tolist() == ["a"]
    assert vote_species(sp, np.array([[0.4, 0.5, 0.5, 0.1]])).tolist() == ["b"]


def test_map_at_5_by_the_definition():
    preds = [["a", "b", "c", "d", "e"], ["b", "a", "c", "d", "e"], ["x", "y", "z", "a", "w"],
             ["q", "r", "s", "t", "u"], ["a", "a", "b", "c", "d"]]
    truths = ["a", "a", "a", "a", "b"]
    assert map_at_5(preds, truths) == pytest.approx((1 + 1 / 2 + 1 / 4 + 0 + 1 / 3) / 5)


def test_search_finds_the_nearest_individual_with_cosine_scores():
    cat = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    q = np.array([[0.6, 0.8, 0]], np.float32)
    c = search(q, cat, ["A", "B", "C", "D"], ["s", "s", "t", "u"], k=4)
    assert c.ids[0].tolist() == ["B", "C", "A", "D"]
    np.testing.assert_allclose(c.scores[0], [0.96, 0.8, 0.6, 0.0], atol=1e-6)
    assert c.query_species[0] == "s"  # B (0.96) + A (0.6) outvote C (0.8)


def test_validate_submission(tmp_path):
    ok = tmp_path / "ok.csv"
    ok.write_text("image,predictions\na.jpg,x y new_individual z w\nb.jpg,new_individual x y z w\n")
    assert len(validate_submission(str(ok), ["a.jpg", "b.jpg"])) == 2
    for body, what in [("image,predictions\na.jpg,x x y z w\nb.jpg,x y z w v\n", "distinct"),
                       ("image,predictions\na.jpg,x y z w v\n", "missing"),
                       ("image,predictions\na.jpg,x\na.jpg,y\nb.jpg,z\n", "duplicated"),
                       ("image,pred\na.jpg,x\nb.jpg,y\n", "columns")]:
        bad = tmp_path / "bad.csv"
        bad.write_text(body)
        with pytest.raises(ValueError, match=what):
            validate_submission(str(bad), ["a.jpg", "b.jpg"])


def test_catalog_round_trip_without_pickle_and_add_replaces_same_file(tmp_path):
    a = Catalog(np.eye(3, dtype=np.float32), np.array(["1.jpg", "2.jpg", "3.jpg"]), np.array(["x", "y", "x"]),
                np.array(["s", "t", "s"]), embedder='{"d": 3}')
    path = str(tmp_path / "cat.npz")
    save_npz(a, path)
    with np.load(path, allow_pickle=False) as z:
        assert z["filenames"].dtype.kind == "U"
    b = load_npz(path)
    assert b.filenames.tolist() == ["1.jpg", "2.jpg", "3.jpg"] and b.embedder == '{"d": 3}'
    c = b.add(Catalog(np.ones((1, 3), np.float32), np.array(["2.jpg"]), np.array(["z"]), np.array(["u"])))
    assert c.filenames.tolist() == ["1.jpg", "3.jpg", "2.jpg"] and c.individual_ids.tolist() == ["x", "x", "z"]
    with pytest.raises(ValueError, match="dimension"):
        b.add(Catalog(np.ones((1, 4), np.float32), np.array(["9.jpg"]), np.array(["z"]), np.array(["u"])))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        load_npz(str(tmp_path / "junk.npz"))


def test_approximate_index_finds_the_exact_neighbours_and_survives_a_round_trip(tmp_path):
    from pipeline import index as approx

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((400, 32)).astype("float32")
    cat = centres[np.arange(4000) % 400] + 0.3 * rng.standard_normal((4000, 32)).astype("float32")
    cat /= np.linalg.norm(cat, axis=1, keepdims=True)
    q = cat[:200] + 0.05 * rng.standard_normal((200, 32)).astype("float32")
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index = approx.build_index(cat, nlist=16)
    _, exact = approx.knn(q, cat, 5)
    scores, found = approx.knn(q, cat, 5, index=index)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact, found, strict=True)])
    assert recall >= 0.95
    np.testing.assert_allclose(scores[:, 0], np.sum(q * cat[found[:, 0]], axis=1), atol=1e-5)  # re-ranked exactly
    path = str(tmp_path / "cat.faiss")
    approx.save(index, path)
    assert approx.load(path, expected=4001) is None  # stale: the catalog grew
    again = approx.load(path, expected=4000)
    assert np.array_equal(approx.knn(q, cat, 5, index=again)[1], found)
