"""The learned embedding fused with two training-free descriptors, weighted on validation.

On a few thousand real photos of hundreds of individuals, an EfficientNet trained from scratch
found fewer individuals than nearest neighbours on 16 x 16 grey thumbnails (known-individual MAP@5
0.011 against 0.184): training can destroy what the pixels hold. And a histogram of oriented
gradients (``HOGDescriptor``) finds more than the thumbnails on real fins and on the demo's
crops, and adds to a trained embedder (docs/history.md, "Edges as a training-free descriptor").
So after training, validation scores every mix of the three parts' cosines, weights ``(w_e, w_p,
w_h)`` summing to 1 in steps of 0.1: with unit-norm parts, the concatenation ``[sqrt(w_e) *
embedding, sqrt(w_p) * pixels, sqrt(w_h) * hog]`` is unit-norm and its cosine is exactly the
weighted mix, so one nearest-neighbour search (catalog, FAISS, threshold, review) serves any mix
unchanged. The mix with the best validation MAP@5 is kept (on a large validation fold where the
embedder alone validates best, among those giving it at least ``LEARNED_FLOOR``); the saved
embedder is never worse than the pixels, or the edges, on validation.

With a projection allowed (``train.py --descriptor-metric``: ``auto``, the default, where the
learned embedding alone does not beat both raw descriptors on validation; ``on``; ``off``), each
descriptor enters the mix raw or through a linear discriminant projection fitted on the training
folds (``stage2_embed.metric``), whichever validates better alone. It ranks known individuals
better; where the learned embedding is strong (the demo) the mix it joins told new individuals
worse (docs/history.md, "A metric on the descriptors"), hence ``auto``.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np

PARTS = ("embedder", "pixels", "hog")
STEPS = 10  # weights in steps of 1 / STEPS
# Validation rates the descriptors above what they give on new photos: its queries come from the
# catalog's own folds, where a photo resembles its individual's other photos more than a later
# encounter does. On the demo (seed 2) validation -> test closed-set MAP@5: embedder 0.89 -> 0.84,
# HOG 0.86 -> 0.71, pixels 0.64 -> 0.49; validation chose 80 % HOG, which gave the whole pipeline
# 0.7958 against 0.8286 at 50 % and 0.7981 for the embedder alone (seed 1: 0.7868, 0.8242, 0.7916;
# docs/history.md, "Edges as a training-free descriptor"). So where the embedder alone validates
# best, it keeps at least this share; where a descriptor beats it, the weights are free. So too on
# fewer than FLOOR_QUERIES validation queries: an embedder trained on so few photos over-rates itself
# there (its epoch was chosen on them), and on the real shark fins (19 queries) the floor turned a
# run that validated the embedder 0.31 against HOG's 0.28 from 90 % HOG (test 0.27) to the embedder
# alone (test 0.10).
LEARNED_FLOOR = 0.5
FLOOR_QUERIES = 100
# Among mixes that validate equally (on a small fold every mix can score 1.0: the small demo's 13
# known queries), validation says nothing, so the mix nearest this one is kept: the best fixed mix
# of the pipeline on both demo seeds above, where an embedder trained on a few dozen photos alone
# (the old tie-break) is the least trustworthy part.
PRIOR = (0.5, 0.0, 0.5)
# when the fusion may project the descriptors (``choose_metrics``)
METRIC_MODES = ("auto", "on", "off")
# (embedder, pixels, hog) weights summing to 1
MIXES = tuple((round(1 - (p + h) / STEPS, 2), round(p / STEPS, 2), round(h / STEPS, 2))
              for p, h in itertools.product(range(STEPS + 1), repeat=2) if p + h <= STEPS)


def descriptors(image, kernels: dict | None = None):
    """The training-free parts' layers applied to ``image``: {part: unit-norm output}, each part
    named in ``kernels`` projected by its learned metric (``stage2_embed.metric``)."""
    from stage2_embed.layers import HOGDescriptor, PixelDescriptor
    from stage2_embed.metric import projection_layers
    from stage2_embed.pixel_embedder import SIDE

    raw = {"pixels": PixelDescriptor(SIDE, name="pixels")(image), "hog": HOGDescriptor(name="hog")(image)}
    return {k: projection_layers(v, kernels[k], k) if (kernels or {}).get(k) is not None else v
            for k, v in raw.items()}


def split_embeddings(embed_model, records: str, image_size: int, crop: bool = False):
    """({part: descriptors}, ids, folds, holdout) of every training-split record, in one pass
    (``embed_model`` None: the raw descriptors alone, no backbone run)."""
    import keras

    from stage2_embed.data import image_dataset
    from stage2_embed.forward import embed_all

    image = keras.Input((image_size, image_size, 3), name="image") if embed_model is None else embed_model.input
    outs = {**({} if embed_model is None else {"embedder": embed_model(image)}), **descriptors(image)}
    both = keras.Model(image, keras.layers.Concatenate()(list(outs.values())))
    out, ids, _, _, folds, holdout = embed_all(both, image_dataset(records, "train", image_size, 64, crop=crop))
    ends = np.cumsum([int(v.shape[-1]) for v in outs.values()])
    return dict(zip(outs, np.split(out, ends[:-1], axis=1), strict=True)), ids, folds, holdout


def choose_metrics(parts: dict[str, np.ndarray], ids: np.ndarray, q: np.ndarray, g: np.ndarray,
                   mode: str = "auto") -> tuple[dict, dict]:
    """({descriptor: projection kept}, figures): each descriptor's LDA projection fitted on the
    gallery ``g``, kept where at least ``FLOOR_QUERIES`` known validation queries ``q`` rate it above
    the raw descriptor alone, and where ``mode`` allows one: ``on``; ``auto`` where the learned
    embedding (``parts["embedder"]``, absent: none) alone does not beat both raw descriptors; ``off``
    never. On fewer queries validation cannot tell them apart, and the projected parts reshuffle
    which mixes tie: on the shark fins' 12 queries all three runs then kept the learned embedding
    (test 0.14) where the raw parts had given 90 % HOG (0.27; docs/history.md).
    The figures: each one's validation MAP@5 raw (``val_map5_pixels``) and projected
    (``val_map5_pixels_metric``), and whether it was kept (``pixel_metric``, ``hog_metric``: 1.0 /
    0.0)."""
    from stage2_embed.metric import fit_projection, project
    from stage2_embed.retrieval import known_individual_map5_from_sim

    if mode not in METRIC_MODES:
        raise ValueError(f"descriptor metric mode {mode!r}: expected one of {', '.join(METRIC_MODES)}")

    def alone(x: np.ndarray) -> float:
        return known_individual_map5_from_sim(x[q] @ x[g].T, ids[q].tolist(), ids[g].tolist())

    kernels, figures = {}, {}
    fitted = {k: fit_projection(parts[k][g], ids[g]) for k in ("pixels", "hog")}
    for k in fitted:
        figures[f"val_map5_{k}"] = alone(parts[k])
        figures[f"val_map5_{k}_metric"] = alone(project(parts[k], fitted[k])) if fitted[k] is not None else 0.0
    # a strong learned embedding joined by projected descriptors told new individuals worse on the demo
    weak = "embedder" not in parts or alone(parts["embedder"]) <= max(figures["val_map5_pixels"],
                                                                      figures["val_map5_hog"])
    enough = (mode == "on" or (mode == "auto" and weak)) and np.isin(ids[q], ids[g]).sum() >= FLOOR_QUERIES
    for k, flag in (("pixels", "pixel_metric"), ("hog", "hog_metric")):
        keep = enough and fitted[k] is not None and figures[f"val_map5_{k}_metric"] > figures[f"val_map5_{k}"]
        figures[flag] = float(keep)
        if keep:
            kernels[k] = fitted[k]
    return kernels, figures


def refit_metrics(records: str, image_size: int, crop: bool, which: list[str]) -> dict:
    """{descriptor: projection} fitted on every training photo (holdouts out) for the descriptors in
    ``which``: the final model of ``--all-folds``, where the cross-validation run chose them."""
    from stage2_embed.metric import fit_projection

    if not which:
        return {}
    parts, ids, _, holdout = split_embeddings(None, records, image_size, crop)
    fitted = {k: fit_projection(parts[k][holdout == 0], ids[holdout == 0]) for k in which}
    return {k: v for k, v in fitted.items() if v is not None}


def split(folds: np.ndarray, holdout: np.ndarray, val_fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation queries, gallery) masks: the validation fold against the other folds' individuals
    that are not held out."""
    return folds == val_fold, (folds != val_fold) & (holdout == 0)


def weight_curve(parts: dict[str, np.ndarray], ids: np.ndarray, folds: np.ndarray, holdout: np.ndarray,
                 val_fold: int) -> dict[tuple[float, float, float], float]:
    """Known-individual validation MAP@5 (the validation fold against the training folds) of each
    ``MIXES`` weighting of the ``PARTS`` (a part absent from ``parts`` only at weight 0)."""
    from stage2_embed.retrieval import known_individual_map5_from_sim

    q, g = split(folds, holdout, val_fold)
    sims = {k: parts[k][q] @ parts[k][g].T for k in PARTS if k in parts}
    curve = {}
    for mix in MIXES:
        if any(w > 0 and k not in sims for k, w in zip(PARTS, mix, strict=True)):
            continue
        sim = sum(w * sims[k] for k, w in zip(PARTS, mix, strict=True) if w > 0)
        curve[mix] = known_individual_map5_from_sim(sim, ids[q].tolist(), ids[g].tolist())
    return curve


def choose_weight(curve: dict[tuple[float, float, float], float], queries: int = 0,
                  raw: dict[int, float] | None = None) -> tuple[float, float, float]:
    """The mix with the best MAP@5 (where ``queries`` >= ``FLOOR_QUERIES`` validated it and the
    embedder alone beats each descriptor alone, raw (``raw``: {part index: MAP@5} where a part is
    projected), among the mixes giving it at least ``LEARNED_FLOOR``); among equals the one nearest
    ``PRIOR``, then the one weighing the learned embedding most."""
    # a projection is fitted on the validation individuals' other photos, as the embedder is trained
    # on them: its lead at validation is no evidence (on the demo projected HOG validated 0.92 against
    # the embedder's 0.92 and 90 % of it scored test 0.80; held to half, projected, 0.83 against raw 0.81)
    alone = {i: curve.get(tuple(float(j == i) for j in range(3))) for i in range(3)} | (raw or {})
    leads = (queries >= FLOOR_QUERIES and alone[0] is not None
             and all(v is None or alone[0] > v for i, v in alone.items() if i))
    allowed = {mix: m for mix, m in curve.items() if not leads or mix[0] >= LEARNED_FLOOR - 1e-9}
    best = max(allowed.values())
    ties = [mix for mix, m in allowed.items() if m >= best - 1e-9]
    return min(ties, key=lambda mix: (round(math.dist(mix, PRIOR), 9), -mix[0]))


def fused_model(embed_model, pixel_weight: float = 0.0, hog_weight: float = 0.0, kernels: dict | None = None,
                image_size: int | None = None):
    """image -> ``[sqrt(w_e) * embedding, sqrt(w_p) * pixels, sqrt(w_h) * hog]`` (unit norm, parts
    of weight 0 left out, ``w_e = 1 - w_p - w_h``; a descriptor in ``kernels`` through its learned
    projection); no descriptor weighed: the embedder itself; the embedder weighed 0: its backbone
    is not run at all. ``embed_model`` None (no learned part, ``image_size`` square inputs): the
    descriptors' weights must sum to 1."""
    import keras

    weights = {"embedder": round(1.0 - pixel_weight - hog_weight, 6), "pixels": pixel_weight, "hog": hog_weight}
    if embed_model is None and weights["embedder"] > 1e-6:
        raise ValueError(f"without a learned embedding the descriptors' weights must sum to 1; got pixels "
                         f"{pixel_weight}, hog {hog_weight}")
    if weights["embedder"] >= 1.0:
        return embed_model
    shape = (image_size, image_size, 3) if embed_model is None else embed_model.input_shape[1:]
    image = keras.Input(shape, name="image")
    fixed = descriptors(image, kernels)
    parts = [keras.layers.Rescaling(math.sqrt(w), name=f"{k}_part")(embed_model(image) if k == "embedder" else fixed[k])
             for k, w in weights.items() if w > 0]
    out = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="fused")(parts)
    return keras.Model(image, out, name="embedder_fused" if embed_model is not None else "descriptors_fitted")


def fuse(embed_model, records: str, image_size: int, val_fold: int, crop: bool = False, metric: str = "auto"):
    """(the model to save as ``embedder.keras``, metrics): the validation MAP@5 of the embedder, of
    the pixels, of the edges (each raw and projected) and of the chosen mix, the descriptors' weights
    in it and whether each is projected (where ``metric``, a ``METRIC_MODES`` value, allows).
    ``embed_model`` None: the descriptors alone are mixed (``stage2_embed/pixels.py --descriptor
    fitted``), and no ``val_map5_embedder`` is reported."""
    from stage2_embed.metric import project

    parts, ids, folds, holdout = split_embeddings(embed_model, records, image_size, crop)
    q, g = split(folds, holdout, val_fold)
    kernels, figures = choose_metrics(parts, ids, q, g, metric)
    parts = {k: project(v, kernels.get(k)) for k, v in parts.items()}
    curve = weight_curve(parts, ids, folds, holdout, val_fold)
    raw = {i: figures[f"val_map5_{k}"] for i, k in ((1, "pixels"), (2, "hog")) if k in kernels}
    mix = choose_weight(curve, queries=int(np.isin(ids[q], ids[g]).sum()), raw=raw)  # the known queries
    learned = {"val_map5_embedder": curve[(1.0, 0.0, 0.0)]} if embed_model is not None else {}
    metrics = {**learned, **figures, "val_map5_fused": curve[mix], "pixel_weight": mix[1], "hog_weight": mix[2]}
    return fused_model(embed_model, mix[1], mix[2], kernels, image_size), metrics


def saved_choice(metrics: dict) -> dict:
    """What an embedder config keeps of a fusion's ``metrics``: the descriptors' weights and whether
    each is projected (``pixel_metric``, ``hog_metric`` as booleans)."""
    return {"pixel_weight": metrics["pixel_weight"], "hog_weight": metrics["hog_weight"],
            "pixel_metric": bool(metrics["pixel_metric"]), "hog_metric": bool(metrics["hog_metric"])}


def warning(metrics: dict) -> str | None:
    """One line when the embedder alone does not beat the pixels on validation (None without those
    figures: a final model trained on every fold whose cross-validation run recorded none)."""
    if "val_map5_embedder" not in metrics or metrics["val_map5_embedder"] > metrics["val_map5_pixels"]:
        return None
    learned = 1.0 - metrics["pixel_weight"] - metrics.get("hog_weight", 0.0)
    projected = lambda flag: " (LDA-projected)" if metrics.get(flag) else ""  # noqa: E731
    return (f"warning: the embedder (validation MAP@5 {metrics['val_map5_embedder']:.3f}) does not beat 16x16 "
            f"pixel nearest neighbours ({metrics['val_map5_pixels']:.3f}); the saved embedding is "
            f"{metrics['pixel_weight']:.0%} pixels{projected('pixel_metric')}, {metrics.get('hog_weight', 0.0):.0%} "
            f"edges (HOG){projected('hog_metric')} and {max(learned, 0.0):.0%} learned. Try --weights imagenet, "
            "a lower --image-size, more --epochs, or no network: stage2_embed/pixels.py --descriptor fitted")


def warn_if_weak(run_dir: str) -> None:
    """Print ``warning`` for a run folder whose trainer recorded its validation (``fusion.json``)."""
    import sys

    from runtime.storage import exists, join, read_bytes

    path = join(run_dir, "fusion.json")
    if exists(path) and (msg := warning(json.loads(read_bytes(path)))):
        print(msg, file=sys.stderr)
