"""How much MAP@5 the estimated new-individual share costs against knowing the true share.

    python bench/new_share.py [--workdir work/demo] [--draws 20]

The demo's embedder is evaluated again first, so the curves are this code's (``REEVALUATE=0``
keeps the demo's own ``threshold.json``).

On a finished demo (``make demo``): the test photos are identified once against the demo's
catalog; then, for each true share of new individuals (5-50 %), query sets with exactly that share
are drawn from the test photos (every new one kept, known ones subsampled, or the reverse), the
share is estimated from their unlabelled best-match scores (``pipeline.share``), and MAP@5 at
the threshold for the estimated share is compared with MAP@5 at the threshold for the true share
(both from the validation curves in ``EMB_DIR/threshold.json``). The last line is JSON with, per
share, the mean estimate and the mean MAP@5 loss; ``loss_at_0.1`` and ``loss_at_0.4`` are the
targets (<= 0.03). ``group_*``: the same for one threshold per group of the best candidate's
catalog photos (infer's default), at the estimated mix against the true share of new individuals.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import flags

SHARES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)


def draw(rng, is_new, share: float):
    """Indices of a query set with exactly ``share`` new individuals, as large as the photos allow."""
    import numpy as np

    new, known = np.flatnonzero(is_new), np.flatnonzero(~is_new)
    n_new = min(len(new), int(len(known) * share / (1 - share)))
    n_known = min(len(known), int(round(n_new * (1 - share) / share)))
    return np.concatenate([rng.choice(new, n_new, replace=False), rng.choice(known, n_known, replace=False)])


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--workdir", default="work/demo", help="a finished demo")
    p.add_argument("--draws", type=int, default=20, help="query sets drawn per share")
    a = p.parse_args(argv)

    from pipeline import threshold as thr
    from pipeline.search import single_catalog_photo, top1
    from pipeline.share import estimate_weights

    w = a.workdir
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.abspath(w)}/mlflow.db")
    cands, truths, is_new, catalog_ids, model, emb = identified(w)
    best, groups = thr.best_scores(cands), thr.group(cands, catalog_ids)
    if estimate_weights(best, groups, model) is None:
        raise SystemExit(f"{emb}/threshold.json: too few validation queries of a kind for an estimate")
    df = draws(cands, best, groups, truths, is_new, model, a.draws)
    out = summary(df, a.draws)
    # how often the best candidate is right for single-catalog-photo queries: the fold's own, the
    # single kind's (evaluate.py's source), and the test photos': the single kind should look like the last
    ev = json.loads(open(os.path.join(w, "embedder", "evaluation", "evaluation.json")).read())  # the CV run
    single_test = ~is_new & single_catalog_photo(truths, catalog_ids)
    out.update({"val_single_source": ev["single_photo_source"], "val_single_queries": ev["single_photo_queries"],
                "val_single_top1_kind": round(ev["single_photo_top1"], 4),
                "val_single_top1_fold": round(ev["single_photo_top1_fold"], 4),
                "test_single_top1": round(top1(cands, truths, single_test), 4)})
    print(json.dumps(out))
    return 0


def identified(w: str) -> tuple:
    """The demo's test photos identified once against its catalog (its embedders evaluated again
    first unless ``REEVALUATE=0``): their candidates, true ids, which are new, the catalog's ids, the
    threshold model and the identifying embedder's run folder."""
    import numpy as np
    import pandas as pd

    from pipeline import threshold as thr
    from pipeline.final import identifying_embedder
    from pipeline.identify import InferConfig, identify, load
    from pipeline.photos import inputs
    from pipeline.search import NEW
    from pipeline.validation import EvalConfig, evaluate

    cv, crops, records = (os.path.join(w, d) for d in ("embedder", "crops", "records"))
    emb = identifying_embedder(w)
    if os.environ.get("REEVALUATE", "1") == "1":  # the curves of this code's evaluate (the final model: carried over)
        for e in dict.fromkeys([cv, emb]):
            evaluate(EvalConfig(embedder=e, records=crops, out=os.path.join(e, "evaluation")), progress=False)
    cfg = InferConfig(detector=os.path.join(w, "detector"), embedder=emb, catalog=os.path.join(w, "catalog.npz"),
                      records=records, out=os.path.join(w, "bench_share"), new_share=0.2)
    m = load(cfg)
    names, _, _, _, cands, _, _ = identify(m, [tuple(zip(*inputs(cfg, {}), strict=True))], cfg)
    truth = pd.read_csv(os.path.join(w, "data", "test_truth.csv"), dtype=str).set_index("image")["individual_id"]
    truths = np.array([truth[n] for n in names], dtype=object)
    return cands, truths, truths == NEW, m.catalog.individual_ids, thr.load(emb)[1], emb


def draws(cands, best, groups, truths, is_new, model, n: int):
    """MAP@5 of ``n`` query sets drawn per share in ``SHARES``: at the threshold for the true share
    and for the estimated one, and with one threshold per group (infer's default) at each; ``best``
    and ``groups``: ``pipeline.threshold``'s best scores and groups of ``cands``."""
    import numpy as np
    import pandas as pd

    from pipeline import threshold as thr
    from pipeline.search import Candidates, map_at_5, predict
    from pipeline.share import estimate_weights

    rng = np.random.default_rng(0)
    rows = []
    for share in SHARES:
        for _ in range(n):
            idx = draw(rng, is_new, share)
            sub = Candidates(cands.ids[idx], cands.species[idx], cands.scores[idx], cands.query_species[idx])
            weights = estimate_weights(best[idx], groups[idx], model)
            est = weights["new"]
            scores = {k: map_at_5(predict(sub, model.best(s)[0]), list(truths[idx]))
                      for k, s in (("true", share), ("estimated", est))}
            for k, w in (("group_true", thr.given_share(weights, share)), ("group_estimated", weights)):
                th = thr.per_query(0.0, {"thresholds_by_group": thr.by_group_thresholds(model, w)}, groups[idx])
                scores[k] = map_at_5(predict(sub, th), list(truths[idx]))
            rows.append({"share": share, "estimate": est, "queries": len(idx), **scores})
    df = pd.DataFrame(rows)
    df["loss"] = df["true"] - df["estimated"]
    df["group_loss"] = df["group_true"] - df["group_estimated"]
    return df


def summary(df, n: int) -> dict:
    """The per-share table (printed) and the JSON line's keys."""
    g = df.groupby("share").agg(estimate=("estimate", "mean"), estimate_sd=("estimate", "std"),
                                map5_true=("true", "mean"), map5_estimated=("estimated", "mean"),
                                loss=("loss", "mean"), map5_group=("group_estimated", "mean"),
                                group_loss=("group_loss", "mean"), queries=("queries", "mean"))
    print(g.round(4).to_string())
    return {"draws": n, "shares": list(SHARES), "estimate_mean": g["estimate"].round(4).tolist(),
            "estimate_sd": g["estimate_sd"].round(4).tolist(), "loss_mean": g["loss"].round(4).tolist(),
            "map5_true_share": g["map5_true"].round(4).tolist(),
            "map5_estimated_share": g["map5_estimated"].round(4).tolist(),
            "loss_at_0.1": round(float(g.loc[0.1, "loss"]), 4), "loss_at_0.4": round(float(g.loc[0.4, "loss"]), 4),
            "max_abs_error": round(float((df["estimate"] - df["share"]).abs().max()), 4),
            "map5_group_thresholds": g["map5_group"].round(4).tolist(),
            "group_loss_mean": g["group_loss"].round(4).tolist(),
            "group_loss_at_0.1": round(float(g.loc[0.1, "group_loss"]), 4),
            "group_loss_at_0.4": round(float(g.loc[0.4, "group_loss"]), 4)}


if __name__ == "__main__":
    sys.exit(main())
