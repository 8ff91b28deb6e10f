"""kNN similarity blended with the ArcFace head's class cosines (the 1st-place Happywhale recipe).

The sub-center ArcFace head holds, per trained individual, ``k`` centres that every training photo
of it pulled on, augmented; a query's cosine to the nearest of them is a second opinion beside its
cosine to the individual's closest catalog photo. Each candidate's score becomes
``(1 - w) * knn + w * head`` and the candidates are re-ordered; ``w`` is the weight with the best
known-individual MAP@5 on validation (0: no blend, kept when nothing beats it). Individuals the head
never trained on (holdout individuals, photos enrolled later) keep their kNN score. The centres
come from the run folder's ``head.npz`` (``stage2_embed.head``); the scores compared are those of
the embedder part of a pixel-fused embedding (``stage2_embed.fusion``).

    head = load_head(run_dir)
    cands = apply(cands, query_emb, head, weight)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from stage2_embed.head import Head, load_head  # noqa: F401 - load_head is this module's entry too

WEIGHTS = (0.0, 0.25, 0.5, 0.75)  # the head's weight; 1 would drop the kNN score altogether


def apply(cands, query_emb: np.ndarray, head: Head | None, weight: float):
    """``cands`` with each known candidate's score blended, re-ordered by the blended score."""
    if head is None or weight <= 0:
        return cands
    h = head.cosines(query_emb, cands.ids)
    scores = np.where(np.isnan(h), cands.scores, (1 - weight) * cands.scores + weight * np.nan_to_num(h))
    order = np.argsort(-scores, axis=1, kind="stable")
    take = np.take_along_axis
    return replace(cands, ids=take(cands.ids, order, 1), species=take(cands.species, order, 1),
                   scores=take(scores, order, 1))


def choose(cands, query_emb: np.ndarray, head: Head | None, truths: np.ndarray) -> tuple[float, dict[float, float]]:
    """(the head weight with the best known-individual MAP@5 of the validation ``cands``, the curve);
    ties go to the smaller weight, so no blend unless it helps."""
    from pipeline.search import NEW, map_at_5, predict

    if head is None:
        return 0.0, {}
    known = np.asarray(truths) != NEW
    if not known.any():
        return 0.0, {}
    curve = {w: map_at_5([p for p, k in zip(predict(apply(cands, query_emb, head, w), -1.0), known, strict=True)
                          if k], list(np.asarray(truths)[known])) for w in WEIGHTS}
    best = max(curve.values())
    return min(w for w, m in curve.items() if m >= best - 1e-9), curve
