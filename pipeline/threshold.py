"""The ``new_individual`` threshold: learned on validation, adapted at inference to the query set's
own share of new individuals.

MAP@5 at a threshold is a mean over queries, so for a query set in which new individuals are a
share ``p`` it is ``p * new(t) + (1 - p) * known(t)``, where ``new`` and ``known`` are the mean AP of
validation queries of each kind at threshold ``t``. ``pipeline/evaluate.py`` stores both curves and
the validation queries' best-match scores by kind in ``EMB_DIR/threshold.json``.

Nobody knows ``p`` for a real query set (Kaggle's test: the winners estimated ~16.5 %), and a
wrong prior moves MAP@5 a lot. ``estimate_share`` estimates it from the queries' own, unlabelled
best-match scores: the score distributions of known and of new queries are taken from validation
(the same embedder, so only their mixing weight changes between validation and the queries: label
shift) and the weight is fitted by EM (Saerens et al. 2002, "Adjusting the outputs of a classifier
to new a priori probabilities"). A free two-component mixture would instead have to guess which
component is which and what shape each has; validation knows both. One covariate does shift
between validation and inference: a known individual's best score grows with its number of catalog
photos, and validation catalogs hold fewer of them (a fold is left out; individuals with one photo
are never known queries there). So both densities are conditioned on the number of catalog photos
of the query's best candidate (1, 2, 3+), which is observed at inference too. On the demo this
halves the estimate's bias; the rest of it (known test photos score lower than known validation
photos of individuals with as many catalog photos) is reported by ``bench/new_share.py``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.0, 1.0001, 0.025), 3))
DEFAULT_THRESHOLD = 0.5  # used, with a warning, when the embedder has no threshold.json yet
MAX_SCORES = 2000  # validation scores kept per kind and group in threshold.json (evenly spaced quantiles)
GROUP_CAP = 3  # catalog photos of the best candidate: 1, 2, 3+ (6 groups changed nothing on the demo)
MIN_GROUP = 10  # fewer validation scores than this in a group: the kind's pooled scores stand in
# fewer validation queries of either kind than this: no estimate (the small demo's fold has 13 known
# and 5 new ones, and the estimate then said 74 % new for a true 21 %); threshold.json's stands
MIN_VALIDATION = 30


@dataclass(frozen=True)
class ThresholdModel:
    """Per threshold, the validation MAP@5 of known and of new queries; their best-match scores by
    the catalog photos of the best candidate (``group``: 1, 2, 3)."""
    thresholds: tuple[float, ...]
    known: np.ndarray
    new: np.ndarray
    known_scores: dict[int, np.ndarray]
    new_scores: dict[int, np.ndarray]

    def curve(self, share: float) -> np.ndarray:
        """MAP@5 at each threshold for a query set with this share of new individuals."""
        return share * self.new + (1.0 - share) * self.known

    def best(self, share: float) -> tuple[float, float]:
        """(threshold, MAP@5) of the curve's maximum at ``share`` (the lowest threshold on ties)."""
        curve = self.curve(share)
        i = int(np.argmax(curve))
        return self.thresholds[i], float(curve[i])

    def to_json(self) -> dict:
        return {"thresholds": list(self.thresholds), "known_map5": self.known.round(6).tolist(),
                "new_map5": self.new.round(6).tolist(),
                **{f"{k}_scores": {str(g): _quantiles(v) for g, v in getattr(self, f"{k}_scores").items()}
                   for k in ("known", "new")}}

    @classmethod
    def from_json(cls, d: dict) -> ThresholdModel:
        scores = [d[f"{k}_scores"] for k in ("known", "new")]  # a list: saved before the groups (all pooled)
        scores = [{int(g): np.asarray(v, float) for g, v in (v.items() if isinstance(v, dict) else [(0, v)])}
                  for v in scores]
        return cls(tuple(d["thresholds"]), np.asarray(d["known_map5"], float), np.asarray(d["new_map5"], float),
                   *scores)


def _quantiles(scores: np.ndarray) -> list[float]:
    s = np.sort(np.asarray(scores, float))
    if len(s) > MAX_SCORES:
        s = np.quantile(s, np.linspace(0.0, 1.0, MAX_SCORES))
    return s.round(6).tolist()


def group(cands, catalog_ids) -> np.ndarray:
    """Per query, the catalog photos of its best candidate individual, capped at 3 (0: none)."""
    counts = pd.Series(np.asarray(catalog_ids)).value_counts()
    top = cands.ids[:, 0] if cands.ids.size else np.full(len(cands.ids), "", dtype=object)
    return np.minimum(pd.Series(top).map(counts).fillna(0).to_numpy(int), GROUP_CAP)


def by_group(scores: np.ndarray, groups: np.ndarray) -> dict[int, np.ndarray]:
    return {int(g): scores[groups == g] for g in np.unique(groups)}


def fit(cands, truths, catalog_ids, species_consistency: bool = False, thresholds=THRESHOLDS) -> ThresholdModel:
    """The curves and grouped scores of validation ``cands`` (``pipeline.search.Candidates``, searched
    in a catalog of ``catalog_ids``) with ``truths``."""
    from pipeline.search import NEW, predict
    from stage2_embed.retrieval import map_at_5

    truths = list(truths)
    is_new = np.array([t == NEW for t in truths], bool)
    ap = np.array([[map_at_5([p], [t]) for p, t in zip(predict(cands, th, species_consistency), truths, strict=True)]
                   for th in thresholds]).reshape(len(thresholds), len(truths))
    best, groups = best_scores(cands), group(cands, catalog_ids)

    def mean(cols: np.ndarray) -> np.ndarray:
        return ap[:, cols].mean(axis=1) if cols.any() else np.zeros(len(thresholds))

    return ThresholdModel(tuple(thresholds), mean(~is_new), mean(is_new), by_group(best[~is_new], groups[~is_new]),
                          by_group(best[is_new], groups[is_new]))


def best_scores(cands) -> np.ndarray:
    """Each query's best candidate score (-1 where it has none)."""
    s = cands.scores[:, 0] if cands.scores.size else np.zeros(len(cands.scores))
    return np.where(np.isfinite(s), s, -1.0).astype(float)


def estimate_share(best: np.ndarray, groups: np.ndarray, known: dict[int, np.ndarray],
                   new: dict[int, np.ndarray], iters: int = 1000) -> float:
    """The share of new individuals among queries with best-match scores ``best`` (in ``groups``),
    given validation scores of known and of new queries by group: EM on the mixing weight of the
    two fixed score densities, each a Gaussian kernel density (Silverman's bandwidth) of the query's
    group (of all groups where it has < ``MIN_GROUP`` scores). NaN when either kind has fewer than
    ``MIN_VALIDATION`` scores."""
    best, groups = np.asarray(best, float), np.asarray(groups)
    pooled = [np.concatenate(list(d.values())) if d else np.zeros(0) for d in (known, new)]
    if min(len(p) for p in pooled) < MIN_VALIDATION or not len(best):
        return float("nan")
    dens = np.zeros((2, len(best)))
    for g in np.unique(groups):
        at = groups == g
        for k, (d, all_) in enumerate(zip((known, new), pooled, strict=True)):
            ref = d.get(int(g), np.zeros(0))
            dens[k, at] = kde(ref if len(ref) >= MIN_GROUP else all_, best[at])
    share = 0.5
    for _ in range(iters):
        post = share * dens[1] / (share * dens[1] + (1.0 - share) * dens[0])
        share, old = float(post.mean()), share
        if abs(share - old) < 1e-7:
            break
    return share


def kde(sample: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Gaussian kernel density of ``sample`` at ``at`` (floored: EM must never divide by zero)."""
    from sklearn.neighbors import KernelDensity

    fit = KernelDensity(bandwidth=silverman(sample)).fit(np.asarray(sample, float)[:, None])
    return np.exp(fit.score_samples(np.asarray(at, float)[:, None])) + 1e-12


def silverman(v: np.ndarray) -> float:
    """Silverman's rule-of-thumb bandwidth (scikit-learn's ``bandwidth="silverman"`` assumes unit
    variance, far too wide for cosine scores)."""
    v = np.asarray(v, float)
    iqr = np.subtract(*np.percentile(v, [75, 25]))
    spread = min(v.std(), iqr / 1.34) if iqr > 0 else v.std()
    return max(0.9 * spread * len(v) ** -0.2, 1e-3)


def load(embedder: str) -> tuple[dict | None, ThresholdModel | None]:
    """(``EMB_DIR/threshold.json`` or None, its curves where it has them)."""
    from runtime.storage import exists, join, read_bytes

    path = join(embedder, "threshold.json")
    if not exists(path):
        return None, None
    saved = json.loads(read_bytes(path))
    return saved, ThresholdModel.from_json(saved["curves"]) if "curves" in saved else None


def choose(embedder: str, best: np.ndarray, groups: np.ndarray, threshold: float | None = None,
           new_share: float | None = None) -> tuple[float, dict]:
    """The threshold for queries with best-match scores ``best`` (in ``groups``): ``threshold`` if given; else the
    validation curve's best at ``new_share``, or at the share estimated from ``best`` when None;
    else the stored one. Returns (threshold, how it was chosen) for run.json."""
    if threshold is not None:
        return threshold, {"threshold_from": "--threshold"}
    saved, model = load(embedder)
    if saved is None:
        print(f"warning: no threshold.json in {embedder} (run pipeline/evaluate.py); new_individual threshold "
              f"{DEFAULT_THRESHOLD}", file=sys.stderr)
        return DEFAULT_THRESHOLD, {"threshold_from": "default"}
    if model is not None and new_share is not None:
        return model.best(new_share)[0], {"threshold_from": "--new-share", "new_share": new_share}
    share = float("nan") if model is None else estimate_share(best, groups, model.known_scores, model.new_scores)
    if np.isfinite(share):
        return model.best(share)[0], {"threshold_from": "estimated share", "new_share_estimate": round(share, 4)}
    return float(saved["threshold"]), {"threshold_from": "threshold.json"}
