"""Catalog search at scale: the FAISS IVF index of ``pipeline/index.py`` beside exact search, on
1,000,000 random 512-d catalog embeddings and 10,000 queries.

    python bench/search.py [--catalog 1000000] [--queries 10000] [--dim 512] [--per-individual 5]

The embeddings are random but shaped like a trained embedder's: each individual has a random unit
centre, each of its catalog images (``--per-individual``, so 200,000 individuals at the default)
and each query (another photo of one of them) is that centre plus Gaussian noise (cosine ~0.8 to
the centre). Exact search is FAISS's brute-force ``knn`` (BLAS inner products over the whole
catalog, no copy of it), the same library's fastest exact path. Reports queries/s of both (the
index's build time apart), recall@5 of the index against exact top-5, and peak RSS. Last line JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def clustered(n: int, centres, noise: float, rng, chunk: int = 100_000):
    """``n`` unit vectors, row i near centre ``i % len(centres)``; built in chunks (bounded memory)."""
    import numpy as np

    out = np.empty((n, centres.shape[1]), np.float32)
    for s in range(0, n, chunk):
        rows = np.arange(s, min(n, s + chunk))
        x = centres[rows % len(centres)] + noise * rng.standard_normal((len(rows), centres.shape[1]), np.float32)
        out[rows] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--catalog", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--per-individual", type=int, default=5)
    p.add_argument("--nlist", type=int, help="IVF lists (default: pipeline.index's ~4 sqrt(N))")
    p.add_argument("--nprobe", type=int, help="lists probed (default: pipeline.index.NPROBE)")
    a = p.parse_args(argv)

    import faiss
    import numpy as np

    from pipeline.index import build_ivf

    rng = np.random.default_rng(0)
    individuals = a.catalog // a.per_individual
    centres = rng.standard_normal((individuals, a.dim), np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = 0.75 / np.sqrt(a.dim)  # |noise| ~0.75: cosine ~0.8 to the centre, ~0.64 between photos
    catalog = clustered(a.catalog, centres, noise, rng)
    queries = clustered(a.queries, centres[rng.choice(individuals, a.queries)], noise, rng)
    del centres

    t = time.perf_counter()
    _, exact = faiss.knn(queries, catalog, 5, metric=faiss.METRIC_INNER_PRODUCT)
    exact_s = time.perf_counter() - t
    t = time.perf_counter()
    index = build_ivf(catalog, nlist=a.nlist)
    build_s = time.perf_counter() - t
    if a.nprobe:
        index.nprobe = a.nprobe
    index.search(queries[:100], 5)  # warm-up
    t = time.perf_counter()
    _, approx = index.search(queries, 5)
    approx_s = time.perf_counter() - t
    recall = float(np.mean([len(set(e) & set(r)) / 5 for e, r in zip(exact, approx, strict=True)]))
    print(f"exact {a.queries / exact_s:.0f} q/s, IVF{index.nlist} nprobe {index.nprobe}: "
          f"{a.queries / approx_s:.0f} q/s (build {build_s:.0f} s), recall@5 {recall:.3f}, "
          f"peak RSS {peak_rss_gb():.2f} GB")
    print(json.dumps({"catalog": a.catalog, "queries": a.queries, "dim": a.dim, "nlist": index.nlist,
                      "nprobe": index.nprobe, "exact_qps": round(a.queries / exact_s, 1),
                      "index_qps": round(a.queries / approx_s, 1), "speedup": round(exact_s / approx_s, 2),
                      "recall_at_5": round(recall, 4), "build_seconds": round(build_s, 1),
                      "peak_rss_gb": round(peak_rss_gb(), 2), "threads": faiss.omp_get_max_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
