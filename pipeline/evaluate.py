"""Open-set evaluation on a validation fold, the ``new_individual`` threshold, and an HTML report.

    python pipeline/evaluate.py --embedder EMB_DIR --records CROPS [--fold K] [--out DIR]
        [--species-consistency]

The catalog is the training folds (holdout individuals left out); the queries are the validation
fold plus every image of the holdout individuals, which play ``new_individual``. Scores Kaggle's
MAP@5 over a sweep of thresholds, for known and for new queries apart (``pipeline.threshold``), and
keeps both curves and the queries' best-match scores in ``EMB_DIR/threshold.json``: ``infer``
picks its threshold from them at the new-individual share it estimates for its own queries. The
report's curve and the stored fallback threshold are at ``--new-share`` (negative: the fold's own
share). It writes ``DIR/report.html``: a self-contained page with the threshold curve, MAP@5 per
species, the species confusion matrix and a match gallery (each query beside its top five).
Everything is logged to MLflow.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np

from tfrecords import cli
from tfrecords.layout import join

RERANK = ("sift", "none")

@dataclass(frozen=True)
class EvalConfig:
    embedder: str
    records: str
    out: str
    fold: int | None = None  # default: the embedder's validation fold
    species_consistency: bool = False
    gallery: int = 24  # queries shown in the report
    # The share of new individuals the report's curve and the fallback threshold are weighted to. A
    # validation fold has its own (often 50 %+: singletons and holdouts), and a threshold tuned on
    # that puts new_individual first far too often. infer estimates the share of its own queries.
    new_share: float | None = 0.2
    # re-rank each query's best candidates by SIFT inliers fused with the score (pipeline/rerank.py);
    # infer.py follows what threshold.json says. none: the global score alone
    rerank: str = "sift"

    def __post_init__(self) -> None:
        if self.rerank not in RERANK:
            raise ValueError(f"--rerank must be one of {', '.join(RERANK)}")


def split_queries(folds: np.ndarray, holdout: np.ndarray, ids: np.ndarray, fold: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(catalog mask, query mask, query truths): unknown individuals' truth is new_individual."""
    from pipeline.search import NEW

    catalog = (folds != fold) & (holdout == 0)
    query = (folds == fold) | (holdout == 1)
    known = set(ids[catalog].tolist())
    truths = np.array([i if i in known else NEW for i in ids[query]], dtype=object)
    return catalog, query, truths


def per_species_map5(preds: list[list[str]], truths: np.ndarray, species: np.ndarray) -> dict[str, float]:
    from pipeline.search import map_at_5

    return {s: map_at_5([p for p, k in zip(preds, species == s, strict=True) if k], list(truths[species == s]))
            for s in sorted(set(species.tolist()))}


def evaluate(cfg: EvalConfig, progress: bool = True) -> dict:
    import mlflow

    from pipeline import threshold as thr
    from pipeline.catalog import from_records
    from pipeline.search import NEW, map_at_5, predict, search
    from stage2_embed.confusion import species_confusion
    from stage2_embed.embed import load_embedder
    from stage2_embed.fusion import warn_if_weak
    from tfrecords import atomic
    from tfrecords.layout import exists, join, makedirs, read_bytes
    from tfrecords.reader import read_manifest
    from tfrecords.tracking import log_folder, start_run

    model, ecfg = load_embedder(cfg.embedder)
    tcfg_path = join(cfg.embedder, "train_config.json")
    fold = cfg.fold if cfg.fold is not None else (
        json.loads(read_bytes(tcfg_path))["val_fold"] if exists(tcfg_path) else 0)
    _, arr = from_records(model, ecfg, cfg.records, local=cfg.rerank == "sift")
    cat_mask, q_mask, truths = split_queries(arr["folds"], arr["holdout"], arr["individual_ids"], fold)
    if not q_mask.any() or not cat_mask.any():
        raise ValueError(f"{cfg.records}: fold {fold} leaves no queries or no catalog; choose another --fold")
    warn_if_weak(cfg.embedder)  # after the inputs were found good: bad input stays one line
    cands = search(arr["embeddings"][q_mask], arr["embeddings"][cat_mask], arr["individual_ids"][cat_mask],
                   arr["species"][cat_mask])
    new = truths == NEW
    cands, fusion, before = rerank_validation(cfg, cands, arr, q_mask, cat_mask, truths)
    model = thr.fit(cands, truths, arr["individual_ids"][cat_mask], cfg.species_consistency)
    share = cfg.new_share if cfg.new_share is not None and new.any() and not new.all() else float(new.mean())
    curve = model.curve(share)
    threshold, best_map5 = model.best(share)
    preds = predict(cands, threshold, cfg.species_consistency)
    q_species = arr["species"][q_mask]
    result = {
        "fold": fold, "threshold": threshold, "map5": best_map5, "rerank": cfg.rerank,
        "map5_known_before_rerank": before,
        "map5_unweighted": map_at_5(preds, list(truths)), "new_share_weighted_to": cfg.new_share,
        "map5_known": map_at_5([p for p, n in zip(preds, new, strict=True) if not n], list(truths[~new])),
        "map5_known_closed": known_closed_map5(cands, truths),
        "new_individual_found": float(np.mean([p[0] == NEW for p, n in zip(preds, new, strict=True) if n]))
        if new.any() else float("nan"),
        "queries": int(q_mask.sum()), "new_queries": int(new.sum()), "catalog_images": int(cat_mask.sum()),
        "per_species_map5": per_species_map5(preds, truths, q_species)}
    species = read_manifest(cfg.records)["species"]
    index = {s: i for i, s in enumerate(species)}
    cm = species_confusion(np.array([index[s] for s in q_species]),
                           np.array([index.get(s, 0) for s in cands.query_species]), species)
    makedirs(cfg.out)
    from pipeline.report import write_report

    result["report"] = write_report(cfg, result, thr.THRESHOLDS, curve, cm, cands, preds, truths, arr, q_mask, cat_mask)
    atomic.write_json(join(cfg.out, "evaluation.json"), result)
    atomic.write_json(join(cfg.embedder, "threshold.json"),
                      {"threshold": threshold, "map5": result["map5"], "fold": fold, "records": cfg.records,
                       "species_consistency": cfg.species_consistency, "curves": model.to_json(),
                       "rerank": fusion.to_json() if fusion else None})
    with start_run("pipeline-evaluate", cfg, run_name=f"evaluate-fold{fold}"):
        mlflow.log_metrics({k: v for k, v in result.items() if isinstance(v, float) and np.isfinite(v)})
        mlflow.log_metrics({f"map5_{s}": v for s, v in result["per_species_map5"].items()})
        for t, m in zip(thr.THRESHOLDS, curve, strict=True):
            mlflow.log_metric("map5_at_threshold", float(m), step=int(round(t * 1000)))
        log_folder(cfg.out, "evaluation")
    return result


def known_closed_map5(cands, truths: np.ndarray) -> float:
    """MAP@5 of the known individuals' queries over the candidates alone (no new_individual)."""
    from pipeline.search import NEW, map_at_5, predict

    known = truths != NEW
    return map_at_5([p for p, k in zip(predict(cands, -1.0), known, strict=True) if k], list(truths[known]))


def rerank_validation(cfg: EvalConfig, cands, arr: dict, q_mask, cat_mask, truths) -> tuple:
    """With ``--rerank sift``: (re-ranked candidates, the fusion fitted on these validation pairs,
    known-individual MAP@5 before re-ranking); else (cands, None, None)."""
    if cfg.rerank == "none":
        return cands, None, None
    from pipeline import rerank

    before = known_closed_map5(cands, truths)
    inl = rerank.inlier_matrix(cands, arr["embeddings"][q_mask], arr["local"].take(q_mask),
                               arr["embeddings"][cat_mask], arr["individual_ids"][cat_mask],
                               arr["local"].take(cat_mask))
    fusion = rerank.fit_fusion(cands, inl, truths)
    return rerank.apply(cands, inl, fusion), fusion, before


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embedder", required=True, help="embedder run folder (threshold.json is written there)")
    p.add_argument("--records", required=True, help="crop records the embedder was trained on")
    p.add_argument("--fold", type=int, help="validation fold (default: the embedder's)")
    p.add_argument("--out", help="report folder (default EMB_DIR/evaluation)")
    p.add_argument("--species-consistency", action="store_true",
                   help="demote candidates of another species than the query's neighbours vote for")
    p.add_argument("--rerank", choices=RERANK, default="sift",
                   help="re-rank the best candidates by SIFT inliers fused with the score (default: %(default)s)")
    p.add_argument("--gallery", type=int, default=24, help="queries in the match gallery")
    p.add_argument("--new-share", type=float, default=0.2,
                   help="share of new individuals expected at inference; the MAP@5 and threshold are weighted to it "
                        "(negative: the fold's own share)")
    cli.add_debug_flag(p)
    return p.parse_args(argv)


def _main(a: argparse.Namespace) -> int:
    cfg = EvalConfig(embedder=a.embedder, records=a.records, out=a.out or join(a.embedder, "evaluation"),
                     fold=a.fold, species_consistency=a.species_consistency, gallery=a.gallery,
                     new_share=None if a.new_share < 0 else a.new_share, rerank=a.rerank)
    r = evaluate(cfg)
    print(json.dumps({k: v for k, v in r.items() if k != "per_species_map5"}))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

