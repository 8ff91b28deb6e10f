"""Nearest catalog images at any catalog size: exact search (scikit-learn) for small catalogs, a
FAISS inverted-file index above ``APPROX_FROM`` images, saved beside the catalog.

Embeddings are L2-normalised, so inner product = cosine. The IVF index clusters the catalog into
~4 sqrt(N) lists (k-means on a sample) and scans the ``nprobe`` lists nearest each query: at 1M
images, ~1 % of the catalog per query. ``bench/search.py`` measures speed and recall@5 against
exact search.
"""

from __future__ import annotations

import os

import numpy as np

APPROX_FROM = 200_000  # catalog images; below, exact search is fast enough and has recall 1
NPROBE = 32


def index_path(catalog_path: str) -> str:
    """``cat.npz`` -> ``cat.faiss``: the index lives beside its catalog."""
    return os.path.splitext(catalog_path)[0] + ".faiss"


def build_ivf(emb: np.ndarray, nlist: int | None = None, train_size: int = 100_000, seed: int = 0):
    """A trained ``IndexIVFFlat`` (inner product) holding ``emb``."""
    import faiss

    n, d = emb.shape
    nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))  # faiss wants >= 39 points per list
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = emb[rng.choice(n, min(n, max(train_size, 39 * nlist)), replace=False)]
    index.train(np.ascontiguousarray(sample, np.float32))
    index.add(np.ascontiguousarray(emb, np.float32))
    index.nprobe = min(NPROBE, nlist)
    return index


def save(index, path: str) -> None:
    """Atomically, like the catalog it belongs to."""
    import faiss

    from tfrecords import atomic

    tmp = atomic.tmp_name(path)
    faiss.write_index(index, tmp)
    atomic.commit(tmp, path)


def load(path: str, expected: int):
    """The saved index, or None when absent or stale (its size differs from the catalog's)."""
    import faiss

    if not os.path.exists(path):
        return None
    index = faiss.read_index(path)
    return index if index.ntotal == expected else None


def knn(query: np.ndarray, catalog: np.ndarray, k: int, index=None) -> tuple[np.ndarray, np.ndarray]:
    """(scores [Q, k] cosine, catalog row indices [Q, k]), best first. ``index`` (FAISS) when given,
    else exact (scikit-learn's brute-force cosine search)."""
    if index is not None:
        scores, idx = index.search(np.ascontiguousarray(query, np.float32), k)
        return scores.astype(np.float64), idx
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(catalog)
    dist, idx = nn.kneighbors(query)
    return 1.0 - dist, idx


def for_catalog(catalog_path: str | None, embeddings: np.ndarray):
    """The index to search a catalog with: None (exact) below ``APPROX_FROM`` images; else the
    saved index when it matches the catalog, or a new one (saved beside an ``.npz`` catalog)."""
    if len(embeddings) < APPROX_FROM:
        return None
    path = index_path(catalog_path) if catalog_path and catalog_path.endswith(".npz") else None
    index = load(path, len(embeddings)) if path else None
    if index is None:
        index = build_ivf(embeddings)
        if path:
            save(index, path)
    return index
