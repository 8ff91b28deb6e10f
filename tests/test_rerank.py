"""Local features and the re-ranking: SIFT inliers find the same marks under a similarity
transform and not other marks; the fusion moves a candidate with geometric evidence up, on
hand-made score tables; catalogs keep the keypoints through save, load and add."""

from dataclasses import replace

import cv2
import numpy as np
import pytest

from pipeline import local, rerank
from pipeline.catalog import Catalog, load_npz, save_npz
from pipeline.search import Candidates


def marks(seed: int, size: int = 200) -> np.ndarray:
    """A grey crop with random dark and bright blobs and edges: one individual's marks."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 120, np.uint8)
    for _ in range(40):
        c = tuple(int(v) for v in rng.integers(10, size - 10, 2))
        cv2.circle(img, c, int(rng.integers(2, 9)), int(rng.integers(0, 255)), -1)
        cv2.line(img, c, tuple(int(v) for v in rng.integers(0, size, 2)), int(rng.integers(0, 255)), 1)
    return img


def moved(img: np.ndarray, angle: float, scale: float) -> np.ndarray:
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    return cv2.warpAffine(img, m, (w, h), borderValue=120)


def test_inliers_find_the_same_marks_rotated_and_scaled_but_not_others():
    a = local.describe(marks(1))
    same = local.inliers(local.describe(moved(marks(1), 12, 0.8)), a)
    other = max(local.inliers(local.describe(marks(s)), a) for s in (2, 3, 4))
    assert same >= 50 and other <= same / 3  # random blobs share some generic matches, never as many


def test_features_of_jpegs_cut_to_boxes_and_survive_a_catalog_round_trip(tmp_path):
    img = np.full((300, 400), 120, np.uint8)
    img[50:250, 100:300] = marks(5)
    jpeg = cv2.imencode(".png", img)[1].tobytes()
    feats = local.of_crops([jpeg, b"not an image"], np.array([[50 / 300, 100 / 400, 250 / 300, 300 / 400]] * 2))
    assert len(feats) == 2 and len(feats.of(0)[0]) > 20 and len(feats.of(1)[0]) == 0
    assert local.inliers(feats.of(0), local.describe(marks(5))) >= 15  # the box cut the marks out
    cat = Catalog(np.eye(2, dtype=np.float32), np.array(["a.jpg", "b.jpg"]), np.array(["x", "y"]),
                  np.array(["s", "s"]), local=feats)
    save_npz(cat, str(tmp_path / "c.npz"))
    back = load_npz(str(tmp_path / "c.npz"))
    np.testing.assert_array_equal(back.local.of(0)[1], feats.of(0)[1])
    grown = back.add(Catalog(np.eye(2, dtype=np.float32)[:1], np.array(["a.jpg"]), np.array(["x"]),
                             np.array(["s"]), local=local.from_list([feats.of(1)])))  # a.jpg replaced
    assert list(grown.filenames) == ["b.jpg", "a.jpg"] and len(grown.local.of(1)[0]) == 0
    assert back.add(Catalog(np.eye(2, dtype=np.float32)[:1], np.array(["c.jpg"]), np.array(["z"]),
                            np.array(["s"]))).local is None  # never half of the keypoints


def table():
    """Two queries, three candidates each, best global score first; truth is the second candidate."""
    ids = np.array([["a", "b", "c"], ["d", "e", "f"]], dtype=object)
    return Candidates(ids, np.full((2, 3), "s", dtype=object), np.array([[0.9, 0.85, 0.5], [0.7, 0.68, 0.2]]),
                      np.full(2, "s", dtype=object))


def test_the_fusion_learns_that_inliers_mark_the_right_candidate_and_reorders():
    rng = np.random.default_rng(0)
    n = 200  # validation pairs: the right candidate has many inliers, wrong ones few, scores overlap
    ids = np.array([[f"t{i}", f"w{i}"] for i in range(n)], dtype=object)
    scores = np.stack([rng.uniform(0.5, 0.9, n), rng.uniform(0.5, 0.9, n)], 1)
    order = np.argsort(-scores, axis=1)
    cands = Candidates(np.take_along_axis(ids, order, 1), np.full((n, 2), "s", dtype=object),
                       np.take_along_axis(scores, order, 1), np.full(n, "s", dtype=object))
    inl = np.where(cands.ids == ids[:, :1], rng.integers(12, 40, (n, 2)), rng.integers(0, 4, (n, 2)))
    fusion = rerank.fit_fusion(cands, inl, ids[:, 0])
    assert fusion.inlier_coef > 1.0
    out = rerank.apply(table(), np.array([[0, 30, 0], [2, 1, 0]]), fusion)
    assert list(out.ids[0]) == ["b", "a", "c"] and list(out.ids[1]) == ["d", "e", "f"]
    assert (np.diff(out.scores, axis=1) <= 0).all() and out.scores[0, 0] > 0.9 > out.scores[1, 0]


def test_inlier_matrix_takes_each_candidates_best_photo():
    a, b = local.describe(marks(1)), local.describe(marks(2))
    cat_local = local.from_list([b, a, b])  # "a" has photos 0 (other marks) and 1 (the query's marks)
    q_local = local.from_list([local.describe(moved(marks(1), -8, 1.1))])
    cands = Candidates(np.array([["a", "b"]], dtype=object), np.full((1, 2), "s", dtype=object),
                       np.array([[0.8, 0.7]]), np.full(1, "s", dtype=object))
    emb = np.eye(3, dtype=np.float32)
    inl = rerank.inlier_matrix(cands, emb[:1], q_local, emb, np.array(["a", "a", "b"]), cat_local)
    assert inl.shape == (1, 2) and inl[0, 0] >= 50 and inl[0, 1] <= inl[0, 0] / 3


def test_the_fusion_never_weighs_a_feature_negatively_so_a_photo_finds_itself():
    rng = np.random.default_rng(1)
    n = 200  # a weak embedder's validation pairs: the right candidate scores LOWER, inliers still tell
    ids = np.array([[f"w{i}", f"t{i}"] for i in range(n)], dtype=object)
    scores = np.stack([rng.uniform(0.8, 0.9, n), rng.uniform(0.5, 0.8, n)], 1)  # wrong first, truth second
    cands = Candidates(ids, np.full((n, 2), "s", dtype=object), scores, np.full(n, "s", dtype=object))
    inl = np.stack([rng.integers(0, 6, n), rng.integers(4, 30, n)], 1)
    from sklearn.linear_model import LogisticRegression

    x = np.stack([scores.ravel(), np.log1p(inl.ravel())], 1)
    assert LogisticRegression().fit(x, (ids == ids[:, 1:]).ravel()).coef_[0, 0] < 0  # what a plain fit does
    fusion = rerank.fit_fusion(cands, inl, ids[:, 1])
    assert fusion.score_coef == 0.0 and fusion.inlier_coef > 0.5
    # a photo enrolled in the catalog: cosine 1 and every keypoint matched, against a look-alike
    # scoring lower with as many inliers: itself stays first (a negative cosine weight would flip it)
    me = Candidates(np.array([["me", "other"]], dtype=object), np.full((1, 2), "s", dtype=object),
                    np.array([[1.0, 0.6]]), np.full(1, "s", dtype=object))
    assert list(rerank.apply(me, np.array([[50, 50]]), fusion).ids[0]) == ["me", "other"]


def _second_best_truth(n: int = 40) -> tuple[Candidates, np.ndarray]:
    """``n`` validation queries whose truth ``t{i}`` the global score ranks second of three."""
    ids = np.array([[f"w{i}", f"t{i}", f"v{i}"] for i in range(n)], dtype=object)
    scores = np.tile([0.8, 0.7, 0.6], (n, 1))
    return Candidates(ids, np.full((n, 3), "s", dtype=object), scores, np.full(n, "s", dtype=object)), ids[:, 1]


def test_cross_fitted_re_ranking_moves_each_query_by_a_fusion_fitted_without_it():
    cands, truths = _second_best_truth()
    inl = np.where(cands.ids == truths[:, None], 30, 0)  # the truth's marks match, the others' do not
    out = rerank.cross_fitted(cands, inl, truths)
    assert (out.ids[:, 0] == truths).all()  # every fold's fusion learnt from the others: inliers mark the truth
    assert (np.diff(out.scores, axis=1) <= 0).all()
    # one query whose inliers alone mislead is left where its own fold's fit puts it, not rescued by itself
    inl[0] = [30, 0, 0]
    assert rerank.cross_fitted(cands, inl, truths).ids[0, 0] == "w0"


def test_auto_re_ranks_only_when_queries_it_was_not_fitted_on_gain(monkeypatch):
    from pipeline.validation import EvalConfig, rerank_validation

    second, truths = _second_best_truth()
    first = replace(second, ids=second.ids[:, [1, 0, 2]])  # an embedder that ranks every truth first
    informative = np.where(second.ids == truths[:, None], 30, 0)
    noise = np.random.default_rng(0).integers(0, 40, second.ids.shape)
    cfg = EvalConfig(embedder="e", records="r", rerank="auto")
    # inliers that mark the truth under an embedder that ranks it second: kept; noise under a perfect
    # embedder: a fit on noise can only lose, left off and the global order kept
    for cands, inl, kept, known_map5 in ((second, informative, True, 0.5), (first, noise, False, 1.0)):
        monkeypatch.setattr(rerank, "cached_inliers", lambda *a, inl=inl: inl)
        out, fusion, before, crossfit, _ = rerank_validation(cfg, cands, {}, None, None, truths, {})
        assert before == known_map5 and (crossfit > before) == kept and (fusion is not None) == kept
        assert (out.ids[:, 0] == truths).all() and (out is cands) != kept
        forced = rerank_validation(EvalConfig(embedder="e", records="r", rerank="sift"), cands, {}, None, None,
                                   truths, {})
        assert forced[1] is not None  # --rerank sift keeps it whatever validation says
    assert rerank_validation(EvalConfig(embedder="e", records="r", rerank="none"), second, {}, None, None, truths,
                             {}) == (second, None, None, None, {})


def _truth_at(position: np.ndarray, width: int = 30) -> tuple[Candidates, np.ndarray]:
    """Queries whose truth ``t{i}`` the global score ranks at ``position[i]`` of ``width``."""
    n = len(position)
    ids = np.array([[f"w{i}_{j}" for j in range(width)] for i in range(n)], dtype=object)
    ids[np.arange(n), position] = [f"t{i}" for i in range(n)]
    scores = np.tile(np.linspace(0.9, 0.3, width), (n, 1))
    return Candidates(ids, np.full((n, width), "s", dtype=object), scores, np.full(n, "s", dtype=object)), \
        np.array([f"t{i}" for i in range(n)], dtype=object)


def test_validation_re_ranks_deeper_only_where_deeper_candidates_are_found_and_enough_queries_say_so():
    # half the truths lie 15th (the proposer is weak), half 2nd; their marks match, the others' do not
    cands, truths = _truth_at(np.where(np.arange(120) % 2 == 0, 15, 1))
    marked = np.where(cands.ids == truths[:, None], 30, 0)
    depth, curve = rerank.choose_depth(cands, marked, truths)
    assert depth == 20 and curve[10] == pytest.approx(0.5) and curve[20] == curve[30] == 1.0  # 30 adds nothing
    assert rerank.fit_fusion(rerank.shallow(cands, depth), marked[:, :depth], truths).k == 20
    # inliers that say nothing, truths second: deeper only adds wrong candidates to promote
    second, _ = _truth_at(np.ones(120, int))
    noise = np.random.default_rng(0).integers(0, 40, marked.shape)
    depth, curve = rerank.choose_depth(second, noise, truths)
    assert depth == 10, curve
    # below DEPTH_QUERIES known queries the default depth stays, whatever they say
    few = np.arange(len(truths)) < rerank.DEPTH_QUERIES - 2
    assert rerank.choose_depth(rerank._rows(cands, few), marked[few], truths[few])[0] == rerank.K
    fitted = rerank.Fusion(2.0, 1.0, -3.0, 20)
    assert rerank.Fusion.from_json(fitted.to_json()) == fitted
    assert rerank.Fusion.from_json({"score_coef": 1, "inlier_coef": 0, "bias": 0}).k == rerank.K  # older files


def test_a_crop_folders_local_features_are_described_once_until_its_shards_change(tiny_crops, tmp_path, monkeypatch):
    import shutil

    from pipeline import catalog
    from tfrecords.reader import parsed_records

    folder = tmp_path / "crops"
    shutil.copytree(tiny_crops, folder)
    names = [e["image/filename"].numpy().decode() for e in parsed_records(str(folder), "train")]
    calls = []
    real = local.of_crops
    monkeypatch.setattr(local, "of_crops", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = catalog.records_local(str(folder), names)
    assert len(calls) == len(names)
    again = catalog.records_local(str(folder), names[::-1])  # from the memo, in the order asked
    assert len(calls) == len(names)
    assert np.array_equal(again.desc, first.take(np.arange(len(names))[::-1]).desc)
    shard = sorted(folder.glob("train-*.tfrec"))[0]
    shard.write_bytes(shard.read_bytes())  # rewritten: a new mtime, so described anew
    catalog.records_local(str(folder), names)
    assert len(calls) == 2 * len(names)
