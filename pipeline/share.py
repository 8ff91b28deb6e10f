"""The share of new individuals in a query set, estimated from its own unlabelled best-match scores
(the library behind the ``new_individual`` threshold, ``pipeline.threshold``).

Nobody knows ``p`` for a real query set (Kaggle's test: the winners estimated ~16.5 %), and a
wrong prior moves MAP@5 a lot. ``estimate_share`` estimates it from the queries' own, unlabelled
best-match scores: the score distributions of known and of new queries are taken from validation
(the same embedder, so only their mixing weights change between validation and the queries: label
shift) and the weights are fitted by EM (Saerens et al. 2002, "Adjusting the outputs of a classifier
to new a priori probabilities"). A free two-component mixture would instead have to guess which
component is which and what shape each has; validation knows both.

Three things shift between validation and inference, and each is modelled:
- **Known individuals with one catalog photo.** They score far lower than the others (often like a
  new individual), a real catalog is full of them, and cross-validation hardly sees them: an
  individual with one photo is never a known validation query. So validation also searches photos
  of holdout individuals in the catalog with one other photo of theirs added, or, with too few of
  them, its known queries in a catalog thinned to one photo of their individual (``single_scores``,
  ``pipeline.single_photo.single_photo_search``), and the
  known queries are a mixture of the two known kinds with weights fitted on the queries. Without
  this third kind the demo's estimate was 0.26-0.36 for a true 0.1.
- **The catalog photos of the best candidate** (1, 2, 3+, ``group``), observed at inference too:
  each kind's density is that of (group, score), P(group | kind) times the score density in the group.
- **Single-photo validation scores higher than a later encounter.** The third kind is built on
  validation (two photos of one holdout individual, usually much alike), and a test photo of a
  one-photo individual matches it less well: on the demo their median best score in group 1 was
  0.18 on the test photos against 0.40 on validation, and EM read the difference as new
  individuals (0.33 estimated for a true 0.2). So that kind's density may move down by ``SHIFTS``
  (in the normal-quantile space below), the move chosen with the weights by maximum likelihood on
  the queries: 0.28 there, and MAP@5 +0.003 to +0.016 at every true share of 5-50 %
  (docs/history.md, "The single-photo kind, shifted"). The other kinds stay put: the known
  queries with several catalog photos scored as on validation, and new ones are defined by
  matching nobody.

Scores are densities in a scale-free space (the normal quantile of their rank among the validation
scores): fused re-ranking probabilities pile up near 0, where a kernel density of the raw scores
smears the known queries' misses into the new ones' peak (that alone gave +0.14 on the demo, even
with the test set's own densities). ``bench/new_share.py`` reports what is left of the bias.
"""

from __future__ import annotations

import numpy as np

from pipeline.threshold import GROUP_CAP, KINDS, MIN_GROUP, ThresholdModel

# fewer validation queries of known or new than this: no estimate (the small demo's fold has 13 known
# and 5 new ones, and the estimate then said 74 % new for a true 21 %); threshold.json's stands
MIN_VALIDATION = 30
# moves of the single-photo kind's density (normal-quantile units), tried by maximum likelihood
SHIFTS = tuple(-i / 10 for i in range(16))


def estimate_weights(best: np.ndarray, groups: np.ndarray, model: ThresholdModel,
                     iters: int = 2000) -> dict[str, float] | None:
    """The mix of kinds among queries with best-match scores ``best`` (in ``groups``): EM on the
    mixing weights of the validation kinds' fixed (group, score) densities (known, new, and known
    with one catalog photo where ``model`` has them, that one moved down by the most likely of
    ``SHIFTS``). None when known or new has fewer than ``MIN_VALIDATION`` validation queries."""
    best, groups = np.asarray(best, float), np.asarray(groups)
    kinds = [k for k in KINDS if sum(model.count(k).values()) >= MIN_VALIDATION]
    if not {"known", "new"} <= set(kinds) or not len(best):
        return None
    z = gaussianize(np.concatenate([v for k in kinds for v in model.scores(k).values()]))
    fixed = {k: joint_density(model.scores(k), model.count(k), z, best, groups) for k in kinds if k != "single"}
    fits = []
    for shift in SHIFTS if "single" in kinds else (0.0,):
        dens = np.stack([fixed[k] if k in fixed else
                         joint_density(model.scores(k), model.count(k), z, best, groups, shift) for k in kinds])
        weights = mixing_weights(dens, iters)
        fits.append((float(np.log(weights @ dens).sum()), weights))
    weights = max(fits, key=lambda f: f[0])[1]  # the first (least moved) among equals
    return {k: float(w) for k, w in zip(kinds, weights, strict=True)}


def mixing_weights(dens: np.ndarray, iters: int = 2000) -> np.ndarray:
    """EM for the weights of a mixture of fixed densities (``dens``: [kinds, queries])."""
    weights = np.full(len(dens), 1.0 / len(dens))
    for _ in range(iters):
        post = weights[:, None] * dens
        post /= post.sum(axis=0)
        weights, old = post.mean(axis=1), weights
        if np.abs(weights - old).max() < 1e-7:
            break
    return weights


def estimate_share(best: np.ndarray, groups: np.ndarray, model: ThresholdModel) -> float:
    """The share of new individuals among the queries (``estimate_weights``'s new kind; NaN without one)."""
    weights = estimate_weights(best, groups, model)
    return float("nan") if weights is None else weights["new"]


def gaussianize(reference: np.ndarray):
    """The map score -> normal quantile of its mid-rank among ``reference`` (monotone, any score
    scale; tied scores, such as many exact zeros, share one rank)."""
    from scipy.stats import norm

    ref = np.sort(np.asarray(reference, float))
    values, first, counts = np.unique(ref, return_index=True, return_counts=True)
    ranks = (first + counts / 2) / len(ref)
    return lambda s: norm.ppf(np.interp(np.asarray(s, float), values, ranks))


def joint_density(scores: dict[int, np.ndarray], counts: dict[int, int], z, best: np.ndarray,
                  groups: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """P(group) x the score density in the group (a Gaussian kernel density in ``z``'s space, of
    all groups pooled where a group has < ``MIN_GROUP`` scores, moved by ``shift``) at each query."""
    pooled = np.concatenate(list(scores.values()))
    total = sum(counts.values())
    out = np.zeros(len(best))
    for g in np.unique(groups):
        at, ref = groups == g, scores.get(int(g), np.zeros(0))
        p_group = (counts.get(int(g), 0) + 0.5) / (total + 0.5 * (GROUP_CAP + 1))
        out[at] = p_group * kde(z(ref if len(ref) >= MIN_GROUP else pooled) + shift, z(best[at]))
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
