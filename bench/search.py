"""Catalog search at scale: the FAISS index of ``pipeline/index.py`` beside exact search, on
1,000,000 random 512-d catalog embeddings and 10,000 queries.

    python bench/search.py [--catalog 1000000] [--queries 10000] [--dim 512] [--per-individual 5]
        [--noise trained|power|isotropic] [--nlist N] [--nprobe P[,P...]]

The embeddings are random, drawn to have the statistics of our trained embedder's (measured on the
demo's crops with the 96 px sub-center B0: cosine 0.84 between photos of one individual, 0.16 to
other individuals of its species, ~0 across species; 95 % of the variance in 14 of 256 dimensions,
as deep face embeddings have an intrinsic dimension of 10-20 in 512). Each photo is a species
centre (30 species) + an individual offset + photo noise, each Gaussian with a power-law spectrum
(variance of dimension j ~ 1/j: participation ratio ~28, more spread out than the measured ~10),
shares of the squared norm 0.16 / 0.68 / 0.16, then L2-normalised. ``--noise isotropic``: the worst
case, each individual a uniformly random direction and isotropic photo noise (cosine ~0.64 between
an individual's photos), which no index can exploit (recall@5 0.61 at 10x; see the README).
``--per-individual`` photos per individual (200,000 individuals at the default); queries are
further photos of random catalog individuals.

Exact search is FAISS's brute-force ``knn`` (BLAS inner products over the whole catalog, no copy of
it), the same library's fastest exact path. Reports queries/s of both (the index's build time
apart), recall@5 of the index against exact top-5, and peak RSS. Last line JSON.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import flags


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


SPECIES = 30
SHARES = (0.16, 0.68, 0.16)  # species centre, individual offset, photo noise: shares of |x|^2
TAU = 16.0  # variance of dimension j ~ exp(-j / TAU): participation ratio ~2 TAU = 32, 95 % in ~48 dims


def photos(ind: np.ndarray, species: np.ndarray, offsets: np.ndarray, noise_std: float, scale: np.ndarray,
           rng, chunk: int = 100_000) -> np.ndarray:
    """Unit vectors, row i a photo of individual ``ind[i]``: (its species centre + its offset +
    Gaussian noise) x the per-dimension ``scale``, normalised; built in chunks (bounded memory)."""
    out = np.empty((len(ind), len(scale)), np.float32)
    for s in range(0, len(ind), chunk):
        rows = ind[s:s + chunk]
        noise = rng.standard_normal((len(rows), len(scale)), np.float32) * np.float32(noise_std)
        x = (species[rows % len(species)] + offsets[rows] + noise) * scale
        out[s:s + len(rows)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def embeddings(kind: str, catalog: int, queries: int, dim: int, per_individual: int,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(catalog, queries) unit embeddings; photo i of the catalog shows individual i % individuals."""
    rng = np.random.default_rng(seed)
    individuals = catalog // per_individual
    if kind == "isotropic":  # unit centres, |noise| 0.75: cosine ~0.8 to the centre, ~0.64 between photos
        offsets = rng.standard_normal((individuals, dim), np.float32)
        offsets /= np.linalg.norm(offsets, axis=1, keepdims=True)
        species, noise_std, scale = np.zeros((1, dim), np.float32), 0.75 / np.sqrt(dim), np.ones(dim, np.float32)
    else:
        species = rng.standard_normal((SPECIES, dim), np.float32) * np.float32(np.sqrt(SHARES[0]))
        offsets = rng.standard_normal((individuals, dim), np.float32) * np.float32(np.sqrt(SHARES[1]))
        j = np.arange(dim)
        variance = np.exp(-j / TAU) if kind == "trained" else 1.0 / (j + 1)  # "power": a heavier tail
        noise_std, scale = np.sqrt(SHARES[2]), np.sqrt(variance / variance.sum()).astype(np.float32)
    who = np.arange(catalog) % individuals, rng.integers(0, individuals, queries)
    return tuple(photos(w, species, offsets, noise_std, scale, rng) for w in who)


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--catalog", type=int, default=1_000_000, help="catalog vectors")
    p.add_argument("--queries", type=int, default=10_000, help="query vectors")
    p.add_argument("--dim", type=int, default=512, help="embedding size")
    p.add_argument("--per-individual", type=int, default=5, help="catalog vectors per individual")
    p.add_argument("--noise", choices=("trained", "power", "isotropic"), default="trained",
                   help="how vectors scatter around their individual's centre")
    p.add_argument("--nlist", type=int, help="IVF lists (None: pipeline.index's ~4 sqrt(N))")
    p.add_argument("--nprobe", help="lists probed; a comma list sweeps them (None: pipeline.index.NPROBE); "
                   "the JSON line reports the first")
    a = p.parse_args(argv)

    import faiss

    from pipeline.index import NPROBE, build_index, configure

    catalog, queries = embeddings(a.noise, a.catalog, a.queries, a.dim, a.per_individual)
    t = time.perf_counter()
    _, exact = faiss.knn(queries, catalog, 5, metric=faiss.METRIC_INNER_PRODUCT)
    exact_s = time.perf_counter() - t
    t = time.perf_counter()
    index = build_index(catalog, nlist=a.nlist)
    nlist = faiss.extract_index_ivf(index.base_index).nlist
    build_s = time.perf_counter() - t
    print(f"{a.noise} embeddings, {a.catalog:,} x {a.dim} catalog, {a.queries:,} queries: exact "
          f"{a.queries / exact_s:.0f} q/s; IVF{nlist},PQ{a.dim // 2}x4fs + exact re-rank built in {build_s:.0f} s")
    runs = []
    for nprobe in [int(v) for v in (a.nprobe or str(NPROBE)).split(",")]:
        configure(index, nprobe)
        index.search(queries[:100], 5)  # warm-up
        t = time.perf_counter()
        _, approx = index.search(queries, 5)
        approx_s = time.perf_counter() - t
        recall = float(np.mean([len(set(e) & set(r)) / 5 for e, r in zip(exact, approx, strict=True)]))
        runs.append({"nprobe": nprobe, "index_qps": round(a.queries / approx_s, 1),
                     "speedup": round(exact_s / approx_s, 2), "recall_at_5": round(recall, 4)})
        print(f"  nprobe {nprobe:4d}: {a.queries / approx_s:6.0f} q/s, {exact_s / approx_s:5.1f}x exact, "
              f"recall@5 {recall:.3f}", flush=True)
    print(f"peak RSS {peak_rss_gb():.2f} GB")
    print(json.dumps({"noise": a.noise, "catalog": a.catalog, "queries": a.queries, "dim": a.dim,
                      "nlist": nlist, "exact_qps": round(a.queries / exact_s, 1), **runs[0],
                      "build_seconds": round(build_s, 1), "peak_rss_gb": round(peak_rss_gb(), 2),
                      "threads": faiss.omp_get_max_threads(), "sweep": runs[1:]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
