"""Kaggle's submission format, checked."""

from __future__ import annotations

import pandas as pd


def validate_submission(path: str, expected: list[str]) -> pd.DataFrame:
    """A Kaggle submission: columns image,predictions; every expected image exactly once; five
    distinct space-separated ids per row (fewer only when the catalog is that small)."""
    sub = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(sub.columns) != ["image", "predictions"]:
        raise ValueError(f"{path}: columns {list(sub.columns)}, expected image,predictions")
    if sub["image"].duplicated().any():
        raise ValueError(f"{path}: duplicated images {sub['image'][sub['image'].duplicated()].tolist()[:3]}")
    if set(sub["image"]) != set(expected):
        missing, extra = set(expected) - set(sub["image"]), set(sub["image"]) - set(expected)
        raise ValueError(f"{path}: {len(missing)} images missing, {len(extra)} unexpected")
    for p in sub["predictions"]:
        ids = p.split()
        if not 1 <= len(ids) <= 5 or len(set(ids)) != len(ids):
            raise ValueError(f"{path}: bad predictions {p!r} (five distinct ids expected)")
    return sub
