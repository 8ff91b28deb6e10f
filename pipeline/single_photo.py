"""Known individuals with one catalog photo, as validation sees them: which queries stand for them
(holdout pairs, or the fold's queries against a thinned catalog) and how they are searched (the
library behind ``pipeline.validation.evaluate``'s single-photo figures and ``pipeline.threshold``'s
single-photo curve).
"""

from __future__ import annotations

import numpy as np


def thin_catalog(cat_mask: np.ndarray, ids: np.ndarray, individuals, seed: int = 0) -> np.ndarray:
    """``cat_mask`` with one photo (drawn with ``seed``) left of each of ``individuals``."""
    import pandas as pd

    rows = np.flatnonzero(cat_mask)
    rows = np.random.default_rng(seed).permutation(rows[np.isin(ids[rows], np.unique(np.asarray(individuals)))])
    keep = cat_mask.copy()
    keep[rows[pd.Series(ids[rows]).duplicated().to_numpy()]] = False  # all but each one's first (random) photo
    return keep


PER_HOLDOUT = 5  # queries per holdout individual at most: a few individuals must not fill the kind
MIN_PAIRS = 30  # holdout queries below this: the thinned validation fold stands in


def holdout_pairs(arr: dict, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(catalog rows, query rows): one photo of each holdout individual with two or more, and up to
    ``PER_HOLDOUT`` of its other photos as queries. The embedder never trained on these individuals."""
    import pandas as pd

    ids, rows = arr["individual_ids"], np.random.default_rng(seed).permutation(np.flatnonzero(arr["holdout"] == 1))
    rank = pd.Series(ids[rows]).groupby(ids[rows]).cumcount().to_numpy()
    multi = pd.Series(ids[rows]).map(pd.Series(ids[rows]).value_counts()).to_numpy() >= 2
    return rows[multi & (rank == 0)], rows[multi & (rank >= 1) & (rank <= PER_HOLDOUT)]


def single_photo_search(arr: dict, q_mask, cat_mask, truths: np.ndarray, fusion, pairs: dict,
                        blended: tuple = (None, 0.0)) -> tuple | None:
    """(candidates, catalog ids, truths, source) of known queries whose individual has one catalog
    photo, blended by ``blended`` (head, weight) and re-ranked by ``fusion`` where given: how a known
    individual with a single catalog photo scores, which cross-validation otherwise hardly sees
    (``pipeline.threshold``). None without such queries.

    source "holdout": photos of holdout individuals searched in the catalog with one other photo of
    theirs added (``holdout_pairs``), when there are ``MIN_PAIRS`` of them; else "thinned": the
    validation fold's known queries searched in the catalog thinned to one photo of their
    individual. Holdout pairs come first because a test photo of a single-photo individual meets an
    embedder that trained on one photo of it, not on several: on the default demo's validation, the
    fold's own single-photo queries were found first 57 %, holdout pairs 62 %, thinned queries 79 %
    (after re-ranking), and the thinned ones pushed the share estimate up by ~0.1."""
    from pipeline import rerank
    from pipeline.search import NEW, search

    known = truths != NEW
    ids, emb = arr["individual_ids"], arr["embeddings"]
    added, queries = holdout_pairs(arr)
    if len(queries) >= MIN_PAIRS:
        source, cat, q = "holdout", cat_mask.copy(), np.zeros_like(q_mask)
        cat[added], q[queries] = True, True
    elif known.any():
        source, cat, q = "thinned", thin_catalog(cat_mask, ids, truths[known]), np.zeros_like(q_mask)
        q[np.flatnonzero(q_mask)[known]] = True
    else:
        return None
    from pipeline import blend

    k = fusion.k if fusion is not None else rerank.K
    cands = blend.apply(search(emb[q], emb[cat], ids[cat], arr["species"][cat], k=k), emb[q], *blended)
    if fusion is not None:
        cands = rerank.apply(cands, rerank.cached_inliers(cands, arr, q, cat, pairs), fusion)
    return cands, ids[cat], ids[q], source
