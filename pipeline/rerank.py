"""Re-ranking each query's best candidates by local features, fused with the global score into one
calibrated probability.

For the ``K`` best candidate individuals of a query (proposed by the embedder, or by 16x16 pixels
where no trained embedder exists: ``stage2_embed/pixels.py``), the query's SIFT keypoints are
matched against that individual's catalog photos (the ``PHOTOS`` most similar ones) and the best
inlier count is kept (``pipeline.local``). A logistic regression fitted on validation pairs
(query, candidate; is it the query's individual?) turns (global score, log inliers) into the
probability that the candidate is right: that probability re-orders the candidates and replaces
the score that the ``new_individual`` threshold is compared with, so the threshold is chosen on
the fused scores too (``pipeline/evaluate.py --rerank auto|sift``, read back by ``infer.py``; ``auto``
keeps it only where it gains on validation queries it was not fitted on, ``cross_fitted``; the depth
``K`` likewise: ``choose_depth``). This is
the WildFusion recipe (global + local, each calibrated, then fused), strongest where a catalog holds
one photo of an individual.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

K = 10  # candidates re-ranked per query, unless validation chose another depth (choose_depth)
# Depths validation chooses among: a weak proposer (16x16 pixels, a few thousand real photos) leaves
# the right individual below the 10th candidate often, where local features could still find it (the
# issue's training-free reference re-ranked 30); where inliers are noise, depth only adds chances to
# promote a wrong one. Demo crops, pixels proposing, cross-fitted known MAP@5 at 10/20/30: 0.774,
# 0.809, 0.823; shark fins (inliers barely tell sharks apart): 0.225, 0.192, 0.186.
DEPTHS = (10, 20, 30)
DEPTH_QUERIES = 100  # known validation queries below this: too few to choose a depth on, K it is
PHOTOS = 8  # catalog photos of a candidate matched, the most similar to the query first
CAP = 50  # inlier counts above this add nothing


@dataclass(frozen=True)
class Fusion:
    """``p = sigmoid(score_coef * score + inlier_coef * log1p(min(inliers, CAP)) + bias)`` for each of
    a query's ``k`` best candidates."""
    score_coef: float
    inlier_coef: float
    bias: float
    k: int = K

    def prob(self, score: np.ndarray, inliers: np.ndarray) -> np.ndarray:
        z = self.score_coef * score + self.inlier_coef * np.log1p(np.minimum(inliers, CAP)) + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def to_json(self) -> dict:
        return {"method": "sift", "photos": PHOTOS, **asdict(self)}

    @classmethod
    def from_json(cls, d: dict) -> Fusion:
        return cls(float(d["score_coef"]), float(d["inlier_coef"]), float(d["bias"]), int(d.get("k", K)))


def inlier_matrix(cands, query_emb: np.ndarray, query_local, cat_emb: np.ndarray, cat_ids: np.ndarray,
                  cat_local, k: int = K, photos: int = PHOTOS, match=None) -> np.ndarray:
    """[Q, k]: per query and candidate individual, the best inlier count over its catalog photos.
    ``match(i, c)``: the inlier count of query ``i`` and catalog photo ``c`` (default: computed here;
    a caller that meets the same pairs again may remember them)."""
    import pandas as pd

    from pipeline.local import inliers

    match = match or (lambda i, c: inliers(query_local.of(i), cat_local.of(c)))
    rows = pd.Series(np.arange(len(cat_ids))).groupby(np.asarray(cat_ids)).indices
    k = min(k, cands.ids.shape[1])
    out = np.zeros((len(cands.ids), k))
    for i in range(len(cands.ids)):
        q = query_local.of(i)
        if not len(q[1]):
            continue
        for j in range(k):
            r = rows.get(cands.ids[i, j])
            if r is None:
                continue
            best = r[np.argsort(-(cat_emb[r] @ query_emb[i]), kind="stable")[:photos]]
            out[i, j] = max(match(i, int(c)) for c in best)
    return out


def fit_fusion(cands, inl: np.ndarray, truths) -> Fusion:
    """Logistic regression on validation (query, candidate) pairs of the first ``inl.shape[1]``
    candidates: is the candidate the query's individual? Monotone: a higher cosine or more inliers
    never lowers the probability. A feature that the fit weighs negatively (noise, with a weak
    embedder or few validation queries) is dropped and the other refitted alone; otherwise a photo
    enrolled in the catalog could lose to another individual against itself. Its ``k``: ``inl``'s."""
    from sklearn.linear_model import LogisticRegression

    k = inl.shape[1]
    valid = cands.ids[:, :k] != ""
    y = (cands.ids[:, :k] == np.asarray(truths, dtype=object)[:, None])[valid]
    x = np.stack([cands.scores[:, :k][valid], np.log1p(np.minimum(inl[valid], CAP))], axis=1)
    if y.all() or not y.any():  # nothing to learn from: keep the global order
        return Fusion(1.0, 0.0, 0.0, k)
    keep = [0, 1]
    while True:
        model = LogisticRegression(C=1.0).fit(x[:, keep], y)
        coef = dict(zip(keep, model.coef_[0], strict=True))
        if min(coef.values()) >= 0 or len(keep) == 1:
            break
        keep.remove(min(coef, key=coef.get))
    if coef[keep[0]] < 0:  # neither feature says anything: the global order, unchanged
        return Fusion(1.0, 0.0, 0.0, k)
    return Fusion(float(coef.get(0, 0.0)), float(coef.get(1, 0.0)), float(model.intercept_[0]), k)


def apply(cands, inl: np.ndarray, fusion: Fusion):
    """The candidates re-ordered by the fused probability, which replaces their scores; only the
    first ``inl.shape[1]`` are kept."""
    k = inl.shape[1]
    ids, species = cands.ids[:, :k], cands.species[:, :k]
    p = np.where(ids != "", fusion.prob(np.where(ids != "", cands.scores[:, :k], 0.0), inl), -np.inf)
    order = np.argsort(-p, axis=1, kind="stable")
    take = np.take_along_axis
    return replace(cands, ids=take(ids, order, 1), species=take(species, order, 1), scores=take(p, order, 1))


def cross_fitted(cands, inl: np.ndarray, truths, folds: int = 5, seed: int = 0):
    """``apply`` with each query re-ranked by a fusion fitted on the other queries alone (``folds``
    groups, drawn with ``seed``): what the re-ranking does on pairs it was not fitted on. A fit on the
    same pairs may rank worse than the global score and still be kept by its likelihood (19 shark-fin
    validation queries: known MAP@5 0.329 before, 0.239 after)."""
    truths = np.asarray(truths, dtype=object)
    group = np.random.default_rng(seed).permutation(len(truths)) % folds
    k = inl.shape[1]
    ids, species = cands.ids[:, :k].copy(), cands.species[:, :k].copy()
    scores = np.array(cands.scores[:, :k], dtype=float)
    for g in range(folds):
        part, rest = group == g, group != g
        if not part.any():
            continue
        fused = apply(_rows(cands, part), inl[part], fit_fusion(_rows(cands, rest), inl[rest], truths[rest]))
        ids[part], species[part], scores[part] = fused.ids, fused.species, fused.scores
    return replace(cands, ids=ids, species=species, scores=scores)


def choose_depth(cands, inl: np.ndarray, truths, depths: tuple[int, ...] = DEPTHS) -> tuple[int, dict[int, float]]:
    """(depth, {depth: known MAP@5}): each depth's known-individual MAP@5 when the first ``depth``
    candidates are re-ranked by a fusion not fitted on the query (``cross_fitted``); the best depth,
    a deeper one only where it ranks strictly better. With fewer than ``DEPTH_QUERIES`` known queries
    the shallowest (``K`` where offered) is kept, its figure still reported."""
    from pipeline.search import NEW, known_closed_map5

    depths = tuple(d for d in depths if d <= inl.shape[1]) or (inl.shape[1],)
    curve = {d: known_closed_map5(cross_fitted(shallow(cands, d), inl[:, :d], truths), truths) for d in depths}
    if (np.asarray(truths, dtype=object) != NEW).sum() < DEPTH_QUERIES:
        return (K if K in curve else depths[0]), curve
    return max(depths, key=curve.get), curve  # the first best: deeper only where strictly better


def shallow(cands, k: int):
    """The first ``k`` candidates of each query."""
    return replace(cands, ids=cands.ids[:, :k], species=cands.species[:, :k], scores=cands.scores[:, :k])


def _rows(cands, mask: np.ndarray):
    return replace(cands, ids=cands.ids[mask], species=cands.species[mask], scores=cands.scores[mask],
                   query_species=np.asarray(cands.query_species)[mask])


def rerank(cands, query_emb, query_local, catalog, fusion: Fusion):
    """``apply`` with the inlier counts against ``catalog`` (a ``pipeline.catalog.Catalog`` with
    local features)."""
    inl = inlier_matrix(cands, query_emb, query_local, catalog.embeddings, catalog.individual_ids, catalog.local,
                        k=fusion.k)
    return apply(cands, inl, fusion)


def cached_inliers(cands, arr: dict, q_mask, cat_mask, pairs: dict) -> np.ndarray:
    """``inlier_matrix`` of ``cands`` (``arr``'s ``q_mask`` rows searched in its ``cat_mask``
    rows), each (query, catalog photo) pair matched once per evaluation: ``pairs`` keeps the counts
    by ``arr`` row."""
    from pipeline.local import inliers as count

    local, q_rows, c_rows = arr["local"], np.flatnonzero(q_mask), np.flatnonzero(cat_mask)

    def match(i: int, c: int) -> int:
        key = (int(q_rows[i]), int(c_rows[c]))
        if key not in pairs:
            pairs[key] = count(local.of(key[0]), local.of(key[1]))
        return pairs[key]

    return inlier_matrix(cands, arr["embeddings"][q_mask], local.take(q_mask), arr["embeddings"][cat_mask],
                         arr["individual_ids"][cat_mask], local.take(cat_mask), k=cands.ids.shape[1], match=match)
