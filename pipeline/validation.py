"""Open-set evaluation on the validation fold: MAP@5 curves over thresholds, the threshold infer
uses, re-ranking fitted on validation pairs, the report (the library behind
``pipeline/evaluate.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np

from runtime.flags import check, option
from runtime.storage import join

RERANK = ("auto", "sift", "none")
RERANK_DEPTH = ("auto", "10", "20", "30")


@dataclass(frozen=True)
class EvalConfig:
    embedder: str = option(help="embedder run folder (threshold.json is written there)")
    records: str | None = option(None, help="crop records the embedder was trained on (or --catalog)")
    catalog: str | None = option(None, help="or an enrolled catalog .npz (pipeline/enroll.py), dealt into 5 folds "
                                            "and a tenth of its individuals held out here: fits the threshold and the "
                                            "re-ranking for an embedder that never trained (stage2_embed/pixels.py)")
    images: str | None = option(None, help="with --catalog: its photos' folder, for the report's match gallery")
    val_fold: int | None = option(None, help="validation fold (None: the embedder's; 0 with --catalog)", lo=0)
    species_consistency: bool = option(False, help="demote candidates of another species than the query's "
                                                   "neighbours vote for")
    gallery: int = option(24, help="queries shown in the report's match gallery", lo=0)
    # A validation fold has its own share of new individuals (often 50 %+: singletons and holdouts),
    # and a threshold tuned on that puts new_individual first far too often; infer estimates the
    # share of its own queries and uses the stored curves, not this weighting.
    new_share: float | None = option(0.2, help="share of new individuals the report's MAP@5 and the fallback "
                                               "threshold are weighted to (negative or None: the fold's own)",
                                     hi=1.0)
    # sift by default: on the demo re-ranking took test MAP@5 from 0.72 to 0.80. auto (SIFT only where
    # validation queries the fusion was not fitted on gain) left it off in every shark-fin run, where the
    # 19 validation queries judged it far worse than the test photos did (at test +0.004 on average over
    # four configurations); on the held-back whale heads SIFT took the pixels from 0.18 to 0.27
    rerank: str = option("sift", help="re-rank the best candidates by SIFT inliers fused with the score "
                                      "(pipeline/rerank.py); auto: only where that raises known MAP@5 on "
                                      "validation queries the fusion was not fitted on (rerank.cross_fitted); "
                                      "infer.py follows what threshold.json says", choices=RERANK)
    rerank_depth: str = option("auto", help="candidates re-ranked per query; auto: 10, 20 or 30, the depth that "
                                            "ranks known validation queries best with a fusion not fitted on "
                                            "them (10 below 100 such queries; rerank.choose_depth)",
                               choices=RERANK_DEPTH)
    # Off by default: on the demo validation chose a weight of 0.25 for +0.008 known MAP@5, and the test
    # photos lost 0.04-0.08 (bench/ablation.py); a head centre fitted to a few photos does not transfer
    blend: bool = option(False, help="blend kNN scores with the ArcFace head's class cosines at the weight best on "
                                     "this validation (pipeline/blend.py; 0 when nothing beats kNN alone)")
    out: str | None = option(None, help="report folder (None: EMBEDDER/evaluation)")

    def __post_init__(self) -> None:
        check(self)
        if (self.records is None) == (self.catalog is None):
            raise ValueError("give exactly one of --records CROPS and --catalog CAT.npz")


def split_queries(folds: np.ndarray, holdout: np.ndarray, ids: np.ndarray, fold: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(catalog mask, query mask, query truths): unknown individuals' truth is new_individual."""
    from pipeline.search import NEW

    catalog = (folds != fold) & (holdout == 0)
    query = (folds == fold) | (holdout == 1)
    known = set(ids[catalog].tolist())
    truths = np.array([i if i in known else NEW for i in ids[query]], dtype=object)
    return catalog, query, truths


def _record(cfg: EvalConfig, result: dict, model, fusion, curve) -> None:
    """evaluation.json, the embedder's threshold.json (what infer reads) and the MLflow run."""
    import mlflow

    from pipeline import threshold as thr
    from runtime import atomic
    from runtime.tracking import log_folder, start_run

    atomic.write_json(join(cfg.out, "evaluation.json"), result)
    atomic.write_json(join(cfg.embedder, "threshold.json"),
                      {"threshold": result["threshold"], "map5": result["map5"], "fold": result["fold"],
                       "records": cfg.records or cfg.catalog, "species_consistency": cfg.species_consistency,
                       "curves": model.to_json(), "rerank": fusion.to_json() if fusion else None,
                       "blend": {"weight": result["blend_weight"]}, "pseudo": result["pseudo"]})
    with start_run("pipeline-evaluate", cfg, run_name=f"evaluate-fold{result['fold']}"):
        mlflow.log_metrics({k: v for k, v in result.items() if isinstance(v, float) and np.isfinite(v)})
        mlflow.log_metrics({f"map5_{s}": v for s, v in result["per_species_map5"].items()})
        for t, m in zip(thr.THRESHOLDS, curve, strict=True):
            mlflow.log_metric("map5_at_threshold", float(m), step=int(round(t * 1000)))
        log_folder(cfg.out, "evaluation")


def evaluate(cfg: EvalConfig, progress: bool = True) -> dict:
    from pipeline import blend, final, pseudo
    from pipeline import threshold as thr
    from pipeline.search import (
        NEW,
        known_closed_map5,
        map_at_5,
        per_species_map5,
        predict,
        search,
        single_catalog_photo,
        top1,
    )
    from pipeline.single_photo import single_photo_search
    from stage2_embed.embedder import load_embedder
    from stage2_embed.fusion import warn_if_weak

    cfg = replace(cfg, out=cfg.out or join(cfg.embedder, "evaluation"))
    if cv := final.cv_run(cfg.embedder):  # trained on every fold: nothing to validate on
        return final.carry_over(cfg, cv)
    model, ecfg = load_embedder(cfg.embedder)
    arr, fold = photo_arrays(cfg, model, ecfg)
    cat_mask, q_mask, truths = split_queries(arr["folds"], arr["holdout"], arr["individual_ids"], fold)
    if not q_mask.any() or not cat_mask.any():
        raise ValueError(f"{cfg.records or cfg.catalog}: fold {fold} leaves no queries or no catalog; choose "
                         "another --val-fold")
    warn_if_weak(cfg.embedder)  # after the inputs were found good: bad input stays one line
    cands = search(arr["embeddings"][q_mask], arr["embeddings"][cat_mask], arr["individual_ids"][cat_mask],
                   arr["species"][cat_mask], k=max(depths(cfg)))
    head = blend.load_head(cfg.embedder) if cfg.blend else None
    weight, blend_curve = blend.choose(cands, arr["embeddings"][q_mask], head, truths)
    cands = blend.apply(cands, arr["embeddings"][q_mask], head, weight)
    new = truths == NEW
    pairs: dict = {}  # SIFT inliers per (query, catalog photo): the single-photo pass meets most again
    cands, fusion, before, crossfit, by_depth = rerank_validation(cfg, cands, arr, q_mask, cat_mask, truths, pairs)
    single = single_photo_search(arr, q_mask, cat_mask, truths, fusion, pairs, (head, weight))
    model = thr.fit(cands, truths, arr["individual_ids"][cat_mask], cfg.species_consistency,
                    single=single and single[:3])
    weighted = cfg.new_share is not None and cfg.new_share >= 0 and new.any() and not new.all()
    share = cfg.new_share if weighted else float(new.mean())
    curve = model.curve(share)
    threshold, best_map5 = model.best(share)
    preds = predict(cands, threshold, cfg.species_consistency)
    result = {
        "fold": fold, "threshold": threshold, "map5": best_map5, "rerank": "sift" if fusion else "none",
        "rerank_asked": cfg.rerank, "blend_weight": weight, "map5_known_by_blend_weight": blend_curve,
        "map5_known_before_rerank": before, "map5_known_rerank_cross_fitted": crossfit,
        "rerank_depth": fusion.k if fusion else None, "map5_known_by_rerank_depth": by_depth,
        "map5_unweighted": map_at_5(preds, list(truths)), "new_share_weighted_to": cfg.new_share,
        "map5_known": map_at_5([p for p, n in zip(preds, new, strict=True) if not n], list(truths[~new])),
        "map5_known_closed": known_closed_map5(cands, truths),
        "new_individual_found": float(np.mean([p[0] == NEW for p, n in zip(preds, new, strict=True) if n]))
        if new.any() else float("nan"),
        "queries": int(q_mask.sum()), "new_queries": int(new.sum()), "catalog_images": int(cat_mask.sum()),
        "single_photo_queries": len(single[2]) if single else 0, "single_photo_source": single and single[3],
        "single_photo_top1": top1(single[0], single[2]) if single else float("nan"),
        "single_photo_top1_fold": top1(cands, truths, single_catalog_photo(truths, arr["individual_ids"][cat_mask])),
        "per_species_map5": per_species_map5(preds, truths, arr["species"][q_mask]),
        "pseudo": pseudo.rule(cands, truths)}  # which test photos pipeline/pseudo_label.py may train on
    result["report"] = _report(cfg, result, curve, cands, preds, truths, arr, q_mask, cat_mask)
    _record(cfg, result, model, fusion, curve)
    return result


def photo_arrays(cfg: EvalConfig, model, ecfg: dict) -> tuple[dict, int]:
    """(every photo's arrays, the validation fold): the crop records embedded now, or the enrolled
    catalog's rows dealt into folds (``catalog.validation_arrays``)."""
    import sys

    from pipeline import catalog as catalog_lib
    from runtime.storage import exists, read_bytes

    if cfg.catalog is not None:
        cat = catalog_lib.load(cfg.catalog, model, ecfg, local=cfg.rerank != "none")
        if cfg.rerank != "none" and cat.local is None:
            raise ValueError(f"--catalog {cfg.catalog} has no local features to fit the re-ranking on: enroll its "
                             "photos again (pipeline/enroll.py) or pass --rerank none")
        if ecfg.get("kind", "trained") in ("trained", "fitted"):
            print(f"warning: {cfg.embedder} is a {ecfg.get('kind', 'trained')} embedder: if it was fitted on these "
                  "catalog photos, validation on them over-rates it; --records with its crop records validates on "
                  "its own validation fold", file=sys.stderr)
        return catalog_lib.validation_arrays(cat), cfg.val_fold or 0
    tcfg_path = join(cfg.embedder, "train_config.json")
    fold = cfg.val_fold if cfg.val_fold is not None else (  # a fitted descriptor embedder names its fold
        json.loads(read_bytes(tcfg_path))["val_fold"] if exists(tcfg_path) else ecfg.get("val_fold", 0))
    return catalog_lib.from_records(model, ecfg, cfg.records, local=cfg.rerank != "none")[1], fold


def _report(cfg: EvalConfig, result: dict, curve, cands, preds, truths, arr: dict, q_mask, cat_mask) -> str:
    """``report.html`` with the species confusion of the queries' neighbour votes; its path."""
    from pipeline import threshold as thr
    from pipeline.report import write_report
    from runtime.storage import makedirs
    from stage2_embed.confusion_matrix import species_confusion
    from tfrecords.reader import read_manifest

    species = read_manifest(cfg.records)["species"] if cfg.records else sorted(set(arr["species"].tolist()))
    index = {s: i for i, s in enumerate(species)}
    cm = species_confusion(np.array([index[s] for s in arr["species"][q_mask]]),
                           np.array([index.get(s, 0) for s in cands.query_species]), species)
    makedirs(cfg.out)
    return write_report(cfg, result, thr.THRESHOLDS, curve, cm, cands, preds, truths, arr, q_mask, cat_mask)


def depths(cfg: EvalConfig) -> tuple[int, ...]:
    """The re-ranking depths ``cfg`` lets validation choose among (``K`` alone without re-ranking)."""
    from pipeline import rerank

    if cfg.rerank == "none":
        return (rerank.K,)
    return rerank.DEPTHS if cfg.rerank_depth == "auto" else (int(cfg.rerank_depth),)


def rerank_validation(cfg: EvalConfig, cands, arr: dict, q_mask, cat_mask, truths, pairs: dict) -> tuple:
    """(candidates, the fusion fitted on these validation pairs or None, known-individual MAP@5 before
    re-ranking, and after it cross-fitted, and that by depth): ``--rerank sift`` re-ranks; ``auto`` only
    when the cross-fitted MAP@5 beats the one before (else one line says so); ``none`` never. The
    depth: ``--rerank-depth`` (``rerank.choose_depth`` among ``depths(cfg)``)."""
    import sys

    if cfg.rerank == "none":
        return cands, None, None, None, {}
    from pipeline import rerank
    from pipeline.search import known_closed_map5

    before = known_closed_map5(cands, truths)
    inl = rerank.cached_inliers(cands, arr, q_mask, cat_mask, pairs)
    depth, by_depth = rerank.choose_depth(cands, inl, truths, depths(cfg))
    crossfit = by_depth[depth]
    if cfg.rerank == "auto" and not crossfit > before:  # nan (no known queries): nothing says it helps
        if np.isfinite(before):
            print(f"SIFT re-ranking left off: on validation queries it was not fitted on, known MAP@5 "
                  f"{crossfit:.3f} with it against {before:.3f} without (--rerank sift keeps it)", file=sys.stderr)
        return cands, None, before, crossfit, by_depth
    fusion = rerank.fit_fusion(rerank.shallow(cands, depth), inl[:, :depth], truths)
    return rerank.apply(cands, inl[:, :depth], fusion), fusion, before, crossfit, by_depth
