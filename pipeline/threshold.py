"""The ``new_individual`` threshold: learned on validation, adapted at inference to the query set's
own share of new individuals.

MAP@5 at a threshold is a mean over queries, so for a query set in which new individuals are a
share ``p`` it is ``p * new(t) + (1 - p) * known(t)``, where ``new`` and ``known`` are the mean AP of
validation queries of each kind at threshold ``t``. ``pipeline/evaluate.py`` stores both curves and
the validation queries' best-match scores by kind in ``EMB_DIR/threshold.json``.

Nobody knows ``p`` for a real query set (Kaggle's test: the winners estimated ~16.5 %), and a
wrong prior moves MAP@5 a lot: ``pipeline.share`` estimates it from the queries' own, unlabelled
best-match scores, with the share of known individuals that have a single catalog photo.

One threshold per group (the catalog photos of the best candidate: 1, 2, 3+): a known individual
with a single catalog photo scores far lower than one with several, so one threshold for all puts
``new_individual`` first for most of them. Each group's threshold maximises that group's part of
the MAP@5 at the estimated mix of kinds (``by_group_thresholds``; group curves with few validation queries
are shrunk toward the kind's pooled curve). ``infer.py --no-group-thresholds`` keeps one.
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
MIN_GROUP = 10  # fewer validation queries than this in a group: the kind's pooled figures stand in (or weigh in)


KINDS = ("known", "new", "single")


@dataclass(frozen=True)
class ThresholdModel:
    """Per threshold, the validation MAP@5 of known and of new queries; their best-match scores by
    the catalog photos of the best candidate (``group``: 1, 2, 3), and those of the known queries
    of one catalog photo (``single_scores``, ``pipeline.single_photo.single_photo_search``); ``counts``:
    per kind and group, how many validation queries (the scores kept are capped at ``MAX_SCORES``);
    ``group_curves``: per kind and group, the mean AP at each threshold."""
    thresholds: tuple[float, ...]
    known: np.ndarray
    new: np.ndarray
    known_scores: dict[int, np.ndarray]
    new_scores: dict[int, np.ndarray]
    single_scores: dict[int, np.ndarray] = field(default_factory=dict)
    counts: dict[str, dict[int, int]] = field(default_factory=dict)
    group_curves: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)

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
                "counts": {k: {str(g): int(n) for g, n in self.count(k).items()} for k in KINDS},
                "group_curves": {k: {str(g): c.round(6).tolist() for g, c in d.items()}
                                 for k, d in self.group_curves.items()}}

    @classmethod
    def from_json(cls, d: dict) -> ThresholdModel:
        # a list: saved before the groups (all pooled); no single_scores: saved before them
        scores = [d.get(f"{k}_scores", {}) for k in KINDS]
        scores = [{int(g): np.asarray(v, float) for g, v in (v.items() if isinstance(v, dict) else [(0, v)])}
                  for v in scores]
        counts = {k: {int(g): int(n) for g, n in c.items()} for k, c in d.get("counts", {}).items()}
        curves = {k: {int(g): np.asarray(c, float) for g, c in v.items()} for k, v in d.get("group_curves", {}).items()}
        return cls(tuple(d["thresholds"]), np.asarray(d["known_map5"], float), np.asarray(d["new_map5"], float),
                   *scores, counts, curves)


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
    in a catalog of ``catalog_ids``) with ``truths``; ``single``: (candidates, catalog ids, truths) of
    known queries whose individual has one catalog photo (``pipeline.single_photo.single_photo_search``)."""
    from pipeline.search import NEW

    ap = _ap(cands, truths, thresholds, species_consistency)
    best, groups = best_scores(cands), group(cands, catalog_ids)
    is_new = np.array([t == NEW for t in truths], bool)
    parts = {"known": ~is_new, "new": is_new}
    kinds = {k: (ap[:, m], best[m], groups[m]) for k, m in parts.items()}
    if single is not None:
        s_cands, s_ids, s_truths = single
        kinds["single"] = (_ap(s_cands, s_truths, thresholds, species_consistency), best_scores(s_cands),
                           group(s_cands, s_ids))
    scores = {k: by_group(b, g) for k, (_, b, g) in kinds.items()}
    curves = {k: {int(g): a[:, gs == g].mean(axis=1) for g in np.unique(gs)} for k, (a, _, gs) in kinds.items()}

    def mean(a: np.ndarray) -> np.ndarray:
        return a.mean(axis=1) if a.shape[1] else np.zeros(len(thresholds))

    return ThresholdModel(tuple(thresholds), mean(kinds["known"][0]), mean(kinds["new"][0]), scores["known"],
                          scores["new"], scores.get("single", {}),
                          {k: {g: len(v) for g, v in d.items()} for k, d in scores.items()}, curves)


def _ap(cands, truths, thresholds, species_consistency: bool) -> np.ndarray:
    """[thresholds, queries]: each query's AP@5 at each threshold."""
    from pipeline.search import predict
    from stage2_embed.retrieval import map_at_5

    truths = list(truths)
    return np.array([[map_at_5([p], [t]) for p, t in zip(predict(cands, th, species_consistency), truths, strict=True)]
                     for th in thresholds]).reshape(len(thresholds), len(truths))


def by_group_thresholds(model: ThresholdModel, weights: dict[str, float]) -> dict[int, float]:
    """Per group, the threshold that maximises the group's part of the MAP@5 for queries mixed as
    ``weights`` (kind -> share): sum over kinds of weight x P(group | kind) x the kind's AP curve in
    the group, that curve shrunk toward the kind's pooled curve by ``MIN_GROUP`` pseudo-queries (a
    group of a few validation queries must not swing its threshold). Empty without group curves."""
    if not model.group_curves:
        return {}
    out = {}
    for g in sorted({g for k in weights for g in model.group_curves.get(k, {})}):
        curve = np.zeros(len(model.thresholds))
        for k, w in weights.items():
            counts, curves = model.count(k), model.group_curves.get(k, {})
            total = sum(counts.values())
            if not total or not curves:
                continue
            pooled = sum(counts[h] * c for h, c in curves.items()) / total
            n = counts.get(g, 0)
            shrunk = (n * curves.get(g, pooled) + MIN_GROUP * pooled) / (n + MIN_GROUP)
            curve += w * n / total * shrunk
        out[g] = model.thresholds[int(np.argmax(curve))]
    return out


def per_query(threshold: float, how: dict, groups: np.ndarray) -> np.ndarray:
    """Each query's threshold: its group's from ``how["thresholds_by_group"]``, else ``threshold``."""
    table = {int(g): t for g, t in how.get("thresholds_by_group", {}).items()}
    return np.array([table.get(int(g), threshold) for g in groups], float)


def best_scores(cands) -> np.ndarray:
    """Each query's best candidate score (-1 where it has none)."""
    s = cands.scores[:, 0] if cands.scores.size else np.zeros(len(cands.scores))
    return np.where(np.isfinite(s), s, -1.0).astype(float)


def load(embedder: str) -> tuple[dict | None, ThresholdModel | None]:
    """(``EMB_DIR/threshold.json`` or None, its curves where it has them)."""
    from runtime.storage import exists, join, read_bytes

    path = join(embedder, "threshold.json")
    if not exists(path):
        return None, None
    saved = json.loads(read_bytes(path))
    return saved, ThresholdModel.from_json(saved["curves"]) if "curves" in saved else None


def choose(embedder: str, best: np.ndarray, groups: np.ndarray, threshold: float | None = None,
           new_share: float | None = None, group_thresholds: bool = False) -> tuple[float, dict]:
    """The threshold for queries with best-match scores ``best`` (in ``groups``): ``threshold`` if given; else the
    validation curve's best at ``new_share``, or at the share estimated from ``best`` when None;
    else the stored one. With ``group_thresholds``, also one per group (``thresholds_by_group``;
    ``per_query`` reads it) where the mix of kinds could be estimated. Returns (threshold, how it
    was chosen) for run.json."""
    from pipeline.share import estimate_weights

    if threshold is not None:
        return threshold, {"threshold_from": "--threshold"}
    saved, model = load(embedder)
    if saved is None:
        print(f"warning: no threshold.json in {embedder} (run pipeline/evaluate.py); new_individual threshold "
              f"{DEFAULT_THRESHOLD}", file=sys.stderr)
        return DEFAULT_THRESHOLD, {"threshold_from": "default"}
    # the estimated mix; with a given share it only splits the known kinds for the group thresholds
    wanted = model is not None and (new_share is None or group_thresholds)
    weights = estimate_weights(best, groups, model) if wanted else None
    if model is not None and new_share is not None:
        how = {"threshold_from": "--new-share", "new_share": new_share}
        weights = given_share(weights, new_share)
    elif weights is not None:
        how = {"threshold_from": "estimated share", "new_share_estimate": round(weights["new"], 4)}
    else:
        return float(saved["threshold"]), {"threshold_from": "threshold.json"}
    if group_thresholds and (table := by_group_thresholds(model, weights)):
        how["thresholds_by_group"] = {str(g): t for g, t in table.items()}
    return model.best(weights["new"])[0], how


def given_share(weights: dict[str, float] | None, share: float) -> dict[str, float]:
    """``share`` new individuals; the known ones split between the known kinds as ``weights`` has them."""
    known = {k: w for k, w in (weights or {"known": 1.0}).items() if k != "new"}
    total = sum(known.values()) or 1.0
    return {"new": share, **{k: (1.0 - share) * w / total for k, w in known.items()}}
