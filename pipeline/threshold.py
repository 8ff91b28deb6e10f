"""The ``new_individual`` threshold: learned on validation, adapted at inference to the query set's
own share of new individuals.

MAP@5 at a threshold is a mean over queries, so for a query set in which new individuals are a
share ``p`` it is ``p * new(t) + (1 - p) * known(t)``, where ``new`` and ``known`` are the mean AP of
validation queries of each kind at threshold ``t``. ``pipeline/evaluate.py`` stores both curves and
the validation queries' best-match scores by kind in ``EMB_DIR/threshold.json``.

Nobody knows ``p`` for a real query set (Kaggle's test: the winners estimated ~16.5 %), and a
wrong prior moves MAP@5 a lot. ``estimate_share`` estimates it from the queries' own, unlabelled
best-match scores: the score distributions of known and of new queries are taken from validation
(the same embedder, so only their mixing weights change between validation and the queries: label
shift) and the weights are fitted by EM (Saerens et al. 2002, "Adjusting the outputs of a classifier
to new a priori probabilities"). A free two-component mixture would instead have to guess which
component is which and what shape each has; validation knows both.

Two things shift between validation and inference, and each is modelled:
- **Known individuals with one catalog photo.** They score far lower than the others (often like a
  new individual), a real catalog is full of them, and cross-validation hardly sees them: an
  individual with one photo is never a known validation query. So validation also searches its
  known queries in a catalog thinned to one photo of their individual (``single_scores``), and the
  known queries are a mixture of the two known kinds with weights fitted on the queries. Without
  this third kind the demo's estimate was 0.26-0.36 for a true 0.1.
- **The catalog photos of the best candidate** (1, 2, 3+, ``group``), observed at inference too:
  each kind's density is that of (group, score), P(group | kind) times the score density in the group.

Scores are densities in a scale-free space (the normal quantile of their rank among the validation
scores): fused re-ranking probabilities pile up near 0, where a kernel density of the raw scores
smears the known queries' misses into the new ones' peak (that alone gave +0.14 on the demo, even
with the test set's own densities). ``bench/new_share.py`` reports what is left of the bias.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

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


KINDS = ("known", "new", "single")


@dataclass(frozen=True)
class ThresholdModel:
    """Per threshold, the validation MAP@5 of known and of new queries; their best-match scores by
    the catalog photos of the best candidate (``group``: 1, 2, 3), and those of the known queries
    searched in a catalog thinned to one photo of their individual (``single_scores``); ``counts``:
    per kind and group, how many validation queries (the scores kept are capped at ``MAX_SCORES``)."""
    thresholds: tuple[float, ...]
    known: np.ndarray
    new: np.ndarray
    known_scores: dict[int, np.ndarray]
    new_scores: dict[int, np.ndarray]
    single_scores: dict[int, np.ndarray] = field(default_factory=dict)
    counts: dict[str, dict[int, int]] = field(default_factory=dict)

    def curve(self, share: float) -> np.ndarray:
        """MAP@5 at each threshold for a query set with this share of new individuals."""
        return share * self.new + (1.0 - share) * self.known

    def best(self, share: float) -> tuple[float, float]:
        """(threshold, MAP@5) of the curve's maximum at ``share`` (the lowest threshold on ties)."""
        curve = self.curve(share)
        i = int(np.argmax(curve))
        return self.thresholds[i], float(curve[i])

    def scores(self, kind: str) -> dict[int, np.ndarray]:
        return getattr(self, f"{kind}_scores")

    def count(self, kind: str) -> dict[int, int]:
        """Validation queries of ``kind`` per group (the kept scores' lengths for an older file)."""
        return self.counts.get(kind) or {g: len(v) for g, v in self.scores(kind).items()}

    def to_json(self) -> dict:
        return {"thresholds": list(self.thresholds), "known_map5": self.known.round(6).tolist(),
                "new_map5": self.new.round(6).tolist(),
                **{f"{k}_scores": {str(g): _quantiles(v) for g, v in self.scores(k).items()} for k in KINDS},
                "counts": {k: {str(g): int(n) for g, n in self.count(k).items()} for k in KINDS}}

    @classmethod
    def from_json(cls, d: dict) -> ThresholdModel:
        # a list: saved before the groups (all pooled); no single_scores: saved before them
        scores = [d.get(f"{k}_scores", {}) for k in KINDS]
        scores = [{int(g): np.asarray(v, float) for g, v in (v.items() if isinstance(v, dict) else [(0, v)])}
                  for v in scores]
        counts = {k: {int(g): int(n) for g, n in c.items()} for k, c in d.get("counts", {}).items()}
        return cls(tuple(d["thresholds"]), np.asarray(d["known_map5"], float), np.asarray(d["new_map5"], float),
                   *scores, counts)


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


def fit(cands, truths, catalog_ids, species_consistency: bool = False, thresholds=THRESHOLDS,
        single=None) -> ThresholdModel:
    """The curves and grouped scores of validation ``cands`` (``pipeline.search.Candidates``, searched
    in a catalog of ``catalog_ids``) with ``truths``; ``single``: (candidates, catalog ids) of the
    known queries searched in a catalog thinned to one photo of their individual."""
    from pipeline.search import NEW, predict
    from stage2_embed.retrieval import map_at_5

    truths = list(truths)
    is_new = np.array([t == NEW for t in truths], bool)
    ap = np.array([[map_at_5([p], [t]) for p, t in zip(predict(cands, th, species_consistency), truths, strict=True)]
                   for th in thresholds]).reshape(len(thresholds), len(truths))
    best, groups = best_scores(cands), group(cands, catalog_ids)

    def mean(cols: np.ndarray) -> np.ndarray:
        return ap[:, cols].mean(axis=1) if cols.any() else np.zeros(len(thresholds))

    kinds = {"known": by_group(best[~is_new], groups[~is_new]), "new": by_group(best[is_new], groups[is_new]),
             "single": by_group(best_scores(single[0]), group(*single)) if single is not None else {}}
    counts = {k: {g: len(v) for g, v in d.items()} for k, d in kinds.items()}
    return ThresholdModel(tuple(thresholds), mean(~is_new), mean(is_new), *kinds.values(), counts)


def best_scores(cands) -> np.ndarray:
    """Each query's best candidate score (-1 where it has none)."""
    s = cands.scores[:, 0] if cands.scores.size else np.zeros(len(cands.scores))
    return np.where(np.isfinite(s), s, -1.0).astype(float)


def estimate_share(best: np.ndarray, groups: np.ndarray, model: ThresholdModel, iters: int = 2000) -> float:
    """The share of new individuals among queries with best-match scores ``best`` (in ``groups``):
    EM on the mixing weights of the fixed (group, score) densities of the validation kinds (known,
    new, and known with one catalog photo where ``model`` has them); the new kind's weight. NaN when
    known or new has fewer than ``MIN_VALIDATION`` validation scores."""
    best, groups = np.asarray(best, float), np.asarray(groups)
    kinds = [k for k in KINDS if sum(model.count(k).values()) >= MIN_VALIDATION]
    if not {"known", "new"} <= set(kinds) or not len(best):
        return float("nan")
    z = gaussianize(np.concatenate([v for k in kinds for v in model.scores(k).values()]))
    dens = np.stack([joint_density(model.scores(k), model.count(k), z, best, groups) for k in kinds])
    weights = np.full(len(kinds), 1.0 / len(kinds))
    for _ in range(iters):
        post = weights[:, None] * dens
        post /= post.sum(axis=0)
        weights, old = post.mean(axis=1), weights
        if np.abs(weights - old).max() < 1e-7:
            break
    return float(weights[kinds.index("new")])


def gaussianize(reference: np.ndarray):
    """The map score -> normal quantile of its rank among ``reference`` (monotone, any score scale)."""
    from scipy.stats import norm

    ref = np.sort(np.asarray(reference, float))
    ranks = (np.arange(len(ref)) + 0.5) / len(ref)
    return lambda s: norm.ppf(np.interp(np.asarray(s, float), ref, ranks))


def joint_density(scores: dict[int, np.ndarray], counts: dict[int, int], z, best: np.ndarray,
                  groups: np.ndarray) -> np.ndarray:
    """P(group) x the score density in the group (a Gaussian kernel density in ``z``'s space, of
    all groups pooled where a group has < ``MIN_GROUP`` scores) at each query."""
    pooled = np.concatenate(list(scores.values()))
    total = sum(counts.values())
    out = np.zeros(len(best))
    for g in np.unique(groups):
        at, ref = groups == g, scores.get(int(g), np.zeros(0))
        p_group = (counts.get(int(g), 0) + 0.5) / (total + 0.5 * (GROUP_CAP + 1))
        out[at] = p_group * kde(z(ref if len(ref) >= MIN_GROUP else pooled), z(best[at]))
    return out


def kde(sample: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Gaussian kernel density of ``sample`` at ``at`` (floored: EM must never divide by zero)."""
    from sklearn.neighbors import KernelDensity

    fit = KernelDensity(bandwidth=silverman(sample)).fit(np.asarray(sample, float)[:, None])
    return np.exp(fit.score_samples(np.asarray(at, float)[:, None])) + 1e-12


def silverman(v: np.ndarray) -> float:
    """Silverman's rule-of-thumb bandwidth (scikit-learn's ``bandwidth="silverman"`` assumes unit
    variance, far too wide for these scores)."""
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
    share = float("nan") if model is None else estimate_share(best, groups, model)
    if np.isfinite(share):
        return model.best(share)[0], {"threshold_from": "estimated share", "new_share_estimate": round(share, 4)}
    return float(saved["threshold"]), {"threshold_from": "threshold.json"}
