"""Fitting the threshold and the re-ranking on an enrolled catalog (``evaluate.py --catalog``): the
catalog dealt into folds and held-out individuals as the data stage deals records."""

from __future__ import annotations

import numpy as np
import pytest


def _catalog(ids: list[str]):
    from pipeline.catalog import Catalog

    n = len(ids)
    emb = np.eye(n, dtype=np.float32)
    return Catalog(emb, np.array([f"p{i}.jpg" for i in range(n)]), np.array(ids), np.array(["orca"] * n),
                   boxes=np.tile(np.array([[0.1, 0.2, 0.9, 0.8]], np.float32), (n, 1)))


def test_a_catalog_is_dealt_into_folds_by_individual_and_a_tenth_of_its_individuals_held_out():
    from pipeline.catalog import validation_arrays
    from pipeline.validation import split_queries

    ids = [f"a{i}" for i in range(10) for _ in range(3)] + [f"s{i}" for i in range(10)]  # 20 individuals
    arr = validation_arrays(_catalog(ids))
    ids_arr = arr["individual_ids"]
    held = sorted(set(ids_arr[arr["holdout"] == 1]))
    assert len(held) == 2  # round(0.1 * 20)
    assert (arr["holdout"] == np.isin(ids_arr, held)).all()  # every photo of a held-out individual
    for i in (f"a{k}" for k in range(10)):  # three photos, three different folds: each can be a query
        assert len(set(arr["folds"][ids_arr == i])) == 3
    assert sorted(np.bincount(arr["folds"])) == [8, 8, 8, 8, 8]  # 40 photos dealt evenly
    np.testing.assert_allclose(arr["boxes"][0], [0.1, 0.2, 0.9, 0.8], rtol=1e-6)
    cat, q, truths = split_queries(arr["folds"], arr["holdout"], ids_arr, 0)
    known_q = truths != "new_individual"
    assert known_q.any() and (~known_q).any()  # fold 0 has known queries and new ones
    assert set(truths[known_q]) <= set(ids_arr[cat])
    again = validation_arrays(_catalog(ids))  # deterministic
    np.testing.assert_array_equal(again["folds"], arr["folds"])


def test_evaluate_takes_records_or_a_catalog_not_both():
    from pipeline.validation import EvalConfig

    assert EvalConfig(embedder="e", catalog="c.npz").records is None
    for kw in ({}, {"records": "r", "catalog": "c.npz"}):
        with pytest.raises(ValueError, match="exactly one of --records"):
            EvalConfig(embedder="e", **kw)
