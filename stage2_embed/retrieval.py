"""Ranking individuals by embedding similarity, and Kaggle's MAP@5.

Small and exact (one matrix product): what validation during training needs. The pipeline's
catalog search at scale uses a nearest-neighbour library on top of the same ranking rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def map_at_5(predictions: Sequence[Sequence[str]], truths: Sequence[str]) -> float:
    """Kaggle's MAP@5 with one true label per image: 1/rank of the first correct prediction within
    the first five (later repeats of it count for nothing), 0 if absent; averaged over images."""
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions for {len(truths)} images")
    if not truths:
        return 0.0
    total = 0.0
    for pred, truth in zip(predictions, truths, strict=True):
        for rank, p in enumerate(list(pred)[:5], start=1):
            if p == truth:
                total += 1.0 / rank
                break
    return total / len(truths)


def rank_individuals(sim: np.ndarray, gallery_ids: Sequence[str], k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per query row of ``sim`` [Q, G], the ``k`` individuals with the highest best-image score:
    (ids [Q, k] as object array, scores [Q, k]); fewer individuals than ``k`` pads with "" / -inf."""
    codes, uniq = _factorize(gallery_ids)
    best = np.full((sim.shape[0], len(uniq)), -np.inf, dtype=np.float64)
    for j in range(len(uniq)):  # best score per individual: a max over its gallery columns
        best[:, j] = sim[:, codes == j].max(axis=1)
    order = np.argsort(-best, axis=1, kind="stable")[:, :k]
    ids = np.asarray(uniq, dtype=object)[order]
    scores = np.take_along_axis(best, order, axis=1)
    if order.shape[1] < k:
        pad = k - order.shape[1]
        ids = np.hstack([ids, np.full((len(ids), pad), "", dtype=object)])
        scores = np.hstack([scores, np.full((len(scores), pad), -np.inf)])
    return ids, scores


def _factorize(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    uniq = sorted(set(values))
    index = {v: i for i, v in enumerate(uniq)}
    return np.array([index[v] for v in values], dtype=np.int64), uniq


def known_individual_map5(query_emb: np.ndarray, query_ids: Sequence[str], gallery_emb: np.ndarray,
                          gallery_ids: Sequence[str]) -> float:
    """MAP@5 of queries whose individual is in the gallery (closed-set: no new_individual)."""
    return known_individual_map5_from_sim(query_emb @ gallery_emb.T, query_ids, gallery_ids)


def known_individual_map5_from_sim(sim: np.ndarray, query_ids: Sequence[str], gallery_ids: Sequence[str]) -> float:
    """``known_individual_map5`` from a query x gallery similarity matrix."""
    gallery = set(gallery_ids)
    known = np.array([q in gallery for q in query_ids], bool)
    if not known.any():
        return 0.0
    ids, _ = rank_individuals(sim[known], gallery_ids)
    return map_at_5(ids.tolist(), [q for q, k in zip(query_ids, known, strict=True) if k])
