"""From query embeddings to five predicted individuals: nearest catalog images (scikit-learn, or
FAISS for large catalogs), the best score per individual, species consistency and the
``new_individual`` threshold.

The pure functions here take small arrays and are tested on hand-made score tables; ``search``
does the nearest-neighbour step over a ``Catalog``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stage2_embed.retrieval import map_at_5  # one MAP@5 for the project, re-exported

NEW = "new_individual"


@dataclass(frozen=True)
class Candidates:
    """Per query, the catalog individuals found, best score first: ids/species [Q, K] (object),
    scores [Q, K] (cosine; -inf pads), and the query's species as predicted from its neighbours."""
    ids: np.ndarray
    species: np.ndarray
    scores: np.ndarray
    query_species: np.ndarray


def best_per_individual(nbr_ids: np.ndarray, nbr_species: np.ndarray, nbr_scores: np.ndarray,
                        k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Collapse each query's neighbour list (sorted by score, best first) to distinct individuals,
    keeping each one's best score: (ids, species, scores), each [Q, k], padded with "" / -inf."""
    q = nbr_ids.shape[0]
    ids = np.full((q, k), "", dtype=object)
    species = np.full((q, k), "", dtype=object)
    scores = np.full((q, k), -np.inf)
    for i in range(q):
        seen: set[str] = set()
        j = 0
        for ind, sp, s in zip(nbr_ids[i], nbr_species[i], nbr_scores[i], strict=True):
            if ind in seen or ind == "":
                continue
            seen.add(ind)
            ids[i, j], species[i, j], scores[i, j] = ind, sp, s
            j += 1
            if j == k:
                break
    return ids, species, scores


def vote_species(nbr_species: np.ndarray, nbr_scores: np.ndarray, top: int = 5) -> np.ndarray:
    """Each query's species: a score-weighted vote of its ``top`` nearest catalog images."""
    out = np.empty(nbr_species.shape[0], dtype=object)
    for i in range(nbr_species.shape[0]):
        votes: Counter[str] = Counter()
        for sp, s in zip(nbr_species[i, :top], nbr_scores[i, :top], strict=True):
            if np.isfinite(s) and sp:
                votes[sp] += max(float(s), 0.0) + 1e-6
        out[i] = votes.most_common(1)[0][0] if votes else ""
    return out


def predict(cands: Candidates, threshold: float | np.ndarray, species_consistency: bool = False) -> list[list[str]]:
    """Five distinct ids per query. Candidates whose species differs from the query's predicted one
    go after all others (``species_consistency``: two species are never one individual);
    ``new_individual`` enters just before the first candidate scoring below ``threshold`` (first of
    all when even the best is below), or last if every candidate clears it. ``threshold``: one for
    all, or one per query."""
    thresholds = np.broadcast_to(np.asarray(threshold, float), (cands.ids.shape[0],))
    out = []
    for i in range(cands.ids.shape[0]):
        order = [j for j in range(cands.ids.shape[1]) if cands.ids[i, j] != ""]
        if species_consistency and cands.query_species[i]:
            order.sort(key=lambda j: cands.species[i, j] != cands.query_species[i])  # stable: keeps score order
        preds: list[str] = []
        for j in order:
            if NEW not in preds and cands.scores[i, j] < thresholds[i]:
                preds.append(NEW)
            preds.append(str(cands.ids[i, j]))
        if NEW not in preds:
            preds.append(NEW)
        out.append(preds[:5])
    return out


def known_closed_map5(cands: Candidates, truths: np.ndarray) -> float:
    """MAP@5 of the known individuals' queries over the candidates alone (no new_individual)."""
    truths = np.asarray(truths, dtype=object)
    known = truths != NEW
    return map_at_5([p for p, k in zip(predict(cands, -1.0), known, strict=True) if k], list(truths[known]))


def search(query_emb: np.ndarray, catalog_emb: np.ndarray, catalog_ids: Sequence[str],
           catalog_species: Sequence[str], neighbours: int | None = None, k: int = 10, index=None) -> Candidates:
    """Cosine nearest neighbours (embeddings are L2-normalised): exact with scikit-learn, or through
    a FAISS ``index`` for large catalogs (``pipeline.index``); then the best score per individual,
    ``k`` of them from ``neighbours`` photos (None: 5 per individual wanted)."""
    from pipeline.index import knn

    n = min(neighbours or 5 * k, len(catalog_emb))
    if n == 0 or len(query_emb) == 0:
        empty = np.full((len(query_emb), k), "", dtype=object)
        return Candidates(empty, empty.copy(), np.full((len(query_emb), k), -np.inf),
                          np.full(len(query_emb), "", dtype=object))
    scores, idx = knn(query_emb, catalog_emb, n, index)
    valid = idx >= 0  # an approximate index may return fewer than n
    idx = np.where(valid, idx, 0)
    scores = np.where(valid, scores, -np.inf)
    cat_ids = np.where(valid, np.asarray(catalog_ids, dtype=object)[idx], "")
    cat_species = np.where(valid, np.asarray(catalog_species, dtype=object)[idx], "")
    ids, species, best = best_per_individual(cat_ids, cat_species, scores, k)
    return Candidates(ids, species, best, vote_species(cat_species, scores))


def best_catalog_images(query_emb: np.ndarray, catalog, cand_ids: np.ndarray) -> np.ndarray:
    """For each query and candidate individual, the catalog photo of that individual closest to the
    query (what a reviewer compares against): filenames [Q, K], "" where no candidate."""
    import pandas as pd

    rows = pd.Series(np.arange(len(catalog))).groupby(np.asarray(catalog.individual_ids)).indices
    out = np.full(cand_ids.shape, "", dtype=object)
    for i, j in zip(*np.nonzero(cand_ids != ""), strict=True):
        r = rows.get(cand_ids[i, j])
        if r is not None:
            out[i, j] = catalog.filenames[r[np.argmax(catalog.embeddings[r] @ query_emb[i])]]
    return out


def matches_table(names: Sequence[str], query_emb: np.ndarray, det_scores: np.ndarray, boxes: np.ndarray,
                  cands: Candidates, catalog):
    """``matches.csv``: one row per query and candidate, best first, with the crop box the query was
    embedded from (rel ``ymin xmin ymax xmax``) and the candidate's closest catalog photo."""
    import pandas as pd

    photos = best_catalog_images(query_emb, catalog, cands.ids)
    return pd.DataFrame([
        {"image": n, "rank": r + 1, "individual_id": cands.ids[i, r], "species": cands.species[i, r],
         "score": round(float(cands.scores[i, r]), 5), "predicted_species": cands.query_species[i],
         "detection_score": round(float(det_scores[i]), 4), "box": " ".join(f"{v:.4f}" for v in boxes[i]),
         "catalog_image": photos[i, r]}
        for i, n in enumerate(names) for r in range(cands.ids.shape[1]) if cands.ids[i, r]])


def matches_known_map5(matches_csv: str, truth: dict[str, str], known: set[str]) -> float:
    """MAP@5 of the test photos of known individuals from ``matches.csv``'s ranked candidates."""
    import pandas as pd

    m = pd.read_csv(matches_csv, dtype={"individual_id": str}).sort_values(["image", "rank"])
    ranked = m.groupby("image")["individual_id"].apply(list).to_dict()
    images = [i for i, t in truth.items() if t in known]
    return map_at_5([ranked.get(i, [])[:5] for i in images], [truth[i] for i in images])


def per_species_map5(preds: list[list[str]], truths: np.ndarray, species: np.ndarray) -> dict[str, float]:
    """MAP@5 of each species' queries."""
    return {s: map_at_5([p for p, k in zip(preds, species == s, strict=True) if k], list(truths[species == s]))
            for s in sorted(set(species.tolist()))}


def single_catalog_photo(truths: np.ndarray, catalog_ids: np.ndarray) -> np.ndarray:
    """Which queries show an individual with exactly one photo in ``catalog_ids``."""
    ids, counts = np.unique(catalog_ids, return_counts=True)
    return np.isin(truths, ids[counts == 1])


def top1(cands, truths: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Share of the (``mask``ed) queries whose best candidate is their individual."""
    right = cands.ids[:, 0].astype(str) == np.asarray(truths).astype(str)
    right = right if mask is None else right[mask]
    return float(right.mean()) if len(right) else float("nan")
