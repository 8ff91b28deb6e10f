"""The descriptor metric beside an embedder that learned nothing: raw descriptors against the default.

    python bench/weak_embedder.py [--workdir work/demo]

On a finished demo, the demo's embedder with untrained weights (the held-back whale heads' case:
an embedder that does not beat 16x16 pixels) is fused with the pixels and the HOG edges twice on
the demo's validation fold: with the descriptors raw (``--descriptor-metric off``) and as the
trainer's default does (``auto``: each projected by its LDA where that validates better, since this
embedder does not beat them). Each fused embedder then goes through the whole pipeline (its
threshold and SIFT re-ranking fitted on validation, one threshold per group) against the demo's
test photos. The last line is JSON: ``raw_map5``, ``auto_map5`` and ``ratio`` (auto / raw, the
test MAP@5 with ``new_individual``); ``raw_known_map5``, ``auto_known_map5`` (closed set: the test
photos of known individuals, catalog = training photos); ``raw_new_first``, ``auto_new_first`` (the
share of new individuals' photos put first as new); each fusion's weights, projections and
validation MAP@5. ``fitted_*``: the same for the descriptors alone, no network at all, mixed and
projected on the same fold (``stage2_embed/pixels.py --descriptor fitted``), with ``fitted_ratio``
against ``raw_map5``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import flags


def val_fold(w: str) -> int:
    """The demo embedder's validation fold."""
    return json.loads(open(os.path.join(w, "embedder", "train_config.json")).read())["val_fold"]


def fused_variant(model, cfg: dict, w: str, mode: str, out: str) -> tuple[str, dict]:
    """(an embedder folder of ``model`` fused at ``mode``, the fusion's figures)."""
    from pipeline.baselines import write_variant
    from stage2_embed.fusion import fuse, saved_choice

    fused, metrics = fuse(model, os.path.join(w, "crops"), cfg["image_size"], val_fold(w), metric=mode)
    return write_variant(out, fused, {**cfg, **saved_choice(metrics)}), metrics


def scored(folder: str, w: str) -> dict[str, float]:
    """Test MAP@5, closed-set MAP@5 of the known individuals, and new individuals put first."""
    import pandas as pd

    from pipeline.baselines import score, through_pipeline
    from pipeline.search import NEW, matches_known_map5
    from pipeline.validation import EvalConfig

    sub = through_pipeline(folder, os.path.join(w, "detector"), os.path.join(w, "crops"),
                           os.path.join(w, "records"), rerank=EvalConfig.rerank)
    truth_csv = os.path.join(w, "data", "test_truth.csv")
    truth = pd.read_csv(truth_csv, dtype=str).set_index("image")["individual_id"].to_dict()
    known = set(pd.read_csv(os.path.join(w, "data", "train.csv"), dtype=str)["individual_id"])
    first = pd.read_csv(sub, dtype=str).set_index("image")["predictions"].str.split().str[0]
    new = [i for i in first.index if truth[i] not in known]
    return {"map5": round(score(sub, truth_csv), 4),
            "known_map5": round(matches_known_map5(os.path.join(folder, "matches.csv"), truth, known), 4),
            "new_first": round(float((first[new] == NEW).mean()), 4)}


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--workdir", default="work/demo", help="a finished demo")
    a = p.parse_args(argv)

    import keras

    from pipeline.baselines import untrained_embedder
    from stage2_embed.pixel_embedder import write_fitted_embedder

    w = a.workdir
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.abspath(w)}/mlflow.db")
    root = os.path.join(w, "weak_embedder")
    plain = untrained_embedder(os.path.join(w, "embedder"), os.path.join(root, "untrained"))
    cfg = json.loads(open(os.path.join(plain, "embedder_config.json")).read())
    model = keras.saving.load_model(os.path.join(plain, "embedder.keras"), safe_mode=True, compile=False)
    out = {}
    for mode, key in (("off", "raw"), ("auto", "auto")):
        folder, metrics = fused_variant(model, cfg, w, mode, os.path.join(root, key))
        out.update({f"{key}_{k}": v for k, v in scored(folder, w).items()})
        out.update({f"{key}_{k}": round(float(metrics[k]), 4) for k in
                    ("pixel_weight", "hog_weight", "pixel_metric", "hog_metric", "val_map5_fused")})
        # each part alone on validation (the same for both modes), raw and projected
        out.update({k: round(float(v), 4) for k, v in metrics.items()
                    if k.startswith("val_map5_") and k != "val_map5_fused"})
        print(f"{key}: {json.dumps({k: v for k, v in out.items() if k.startswith(key)})}", flush=True)
    out["ratio"] = round(out["auto_map5"] / out["raw_map5"], 4)
    # no network at all: the descriptors alone, mixed and projected on the same fold (pixels.py --descriptor fitted)
    fitted = write_fitted_embedder(os.path.join(root, "fitted"), os.path.join(w, "crops"), cfg["image_size"],
                                   val_fold(w))
    out.update({f"fitted_{k}": v for k, v in scored(fitted, w).items()})
    figures = json.loads(open(os.path.join(fitted, "fusion.json")).read())
    out.update({f"fitted_{k}": round(float(figures[k]), 4) for k in ("pixel_weight", "hog_weight", "val_map5_fused")})
    out["fitted_ratio"] = round(out["fitted_map5"] / out["raw_map5"], 4)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
