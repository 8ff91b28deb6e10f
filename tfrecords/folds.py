"""Fold assignment and held-out individuals.

Folds are stratified by individual (scikit-learn's ``StratifiedKFold``), so an individual with
several images has them spread over several folds and validation on fold k finds known
individuals; singletons are spread evenly. A small catalog where every individual has fewer
images than folds (scikit-learn refuses it) is dealt round-robin instead, individuals in seeded
order: each one's images land in distinct folds and fold sizes differ by at most one.
Held-out individuals are a seeded random fraction that training never sees: on a validation fold
they play ``new_individual``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd


def assign_folds(individual_ids: pd.Series, k: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) per row. Deterministic for the same rows in any order."""
    if k < 2:
        return np.zeros(len(individual_ids), dtype=np.int64)
    if len(individual_ids) < k:
        raise ValueError(f"--folds {k}: only {len(individual_ids)} images to split; give --folds "
                         f"{max(len(individual_ids), 1)} or fewer")
    # sort first so the answer does not depend on the CSV's row order
    order = np.argsort(individual_ids.to_numpy().astype(str), kind="stable")
    y = pd.factorize(individual_ids.to_numpy()[order], sort=True)[0]
    counts = np.bincount(y)
    folds_sorted = _dealt(y, counts, k, seed) if counts.max() < k else _stratified(y, k, seed)
    folds = np.empty_like(folds_sorted)
    folds[order] = folds_sorted
    return folds


def _dealt(y: np.ndarray, counts: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Round-robin over the images grouped by individual, individuals in seeded order: every
    individual has fewer than ``k`` images, so its (consecutive) images get distinct folds."""
    groups = np.split(np.argsort(y, kind="stable"), np.cumsum(counts)[:-1])
    seq = np.concatenate([groups[c] for c in np.random.default_rng(seed).permutation(len(counts))])
    folds = np.empty(len(y), dtype=np.int64)
    folds[seq] = np.arange(len(y)) % k
    return folds


def _stratified(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold  # imported here: worker start-up stays light

    folds_sorted = np.empty(len(y), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has 1 member": expected
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        for f, (_, idx) in enumerate(skf.split(np.zeros(len(y)), y)):
            folds_sorted[idx] = f
    return folds_sorted


def holdout_individuals(individual_ids: pd.Series, fraction: float, seed: int) -> set[str]:
    """A seeded random ``fraction`` of the distinct individuals."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--holdout-individuals must be in [0, 1), got {fraction}")
    uniq = np.array(sorted(set(individual_ids)))
    n = int(round(fraction * len(uniq)))
    rng = np.random.default_rng(seed)
    return set(rng.choice(uniq, size=n, replace=False).tolist()) if n else set()
