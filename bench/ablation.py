"""What each addition to the pipeline is worth, on one finished demo (``make demo``): test MAP@5 of

- ``baseline``: the trained embedder alone (no pixel fusion, no re-ranking, no head blend);
- ``blend``: + kNN scores blended with the ArcFace head's class cosines (weight from validation);
- ``fusion``: + the 16x16 pixel descriptor mixed in at the weight validation prefers;
- ``rerank``: + SIFT re-ranking of the 10 best candidates, fused on validation;
- ``both``: fusion and re-ranking,

each with one validation threshold at the estimated new-individual share; and

- ``full``: both, with one threshold per group of the best candidate's catalog photos (1, 2, 3+;
  what ``make demo`` runs);
- ``full_blend``: full + the head blend (off by default: see ``blend`` against ``baseline``);
- ``pseudo1``, ``pseudo2``: full, with the embedder of pseudo-label round 1 and 2
  (``pipeline/pseudo_label.py``: confident test photos added, ``--pseudo-epochs`` more epochs from
  the previous embedder; the added count and the precision of the added labels are printed);
- ``all_folds``: full, with the demo's final embedder (``WORKDIR/embedder_final``: the cross-validated
  one fine-tuned on every fold, its threshold carried over); a demo without one gets an embedder
  trained from scratch on every fold as long as the demo's (``stage2_embed/train.py --all-folds``),
  its threshold carried over from ``full``

on the same test photos and the same detector crops; and the share of test photos of known individuals that have a
single catalog photo found first (the weak spot). Prints a table and one JSON line with
``baseline_map5``, ``full_map5``, ``single_photo_top1_baseline`` and ``single_photo_top1_full``.

    python bench/ablation.py [--workdir work/demo] [--pseudo-epochs 10] [--no-training]

``--no-training`` leaves out the variants that train or reuse training: pseudo-labels and all folds.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import flags


def plain_embedder(emb: str):
    """The trained embedding without pixel fusion, rebuilt from ``train_model.keras``'s neck."""
    import keras

    from stage2_embed import layers  # noqa: F401 - registers the custom layers

    train = keras.saving.load_model(os.path.join(emb, "train_model.keras"), safe_mode=True, compile=False)
    image = train.get_layer("image").output
    out = keras.layers.UnitNormalization(name="embedding")(train.get_layer("neck_bn").output)
    return keras.Model(image, out, name="embedder")


def single_photo_top1(submission: str, truth_csv: str, train_csv: str) -> float:
    import pandas as pd

    truth = pd.read_csv(truth_csv, dtype=str).set_index("image")["individual_id"]
    counts = pd.read_csv(train_csv, dtype=str)["individual_id"].value_counts()
    sub = pd.read_csv(submission, dtype=str).set_index("image")["predictions"]
    single = [i for i, t in truth.items() if counts.get(t, 0) == 1]
    return sum(sub[i].split()[0] == truth[i] for i in single) / max(len(single), 1)


def trained_variants(full: str, crops: str, root: str, pseudo_epochs: int, truth: str,
                     final: str | None = None) -> list[tuple]:
    """(name, embedder folder, extra figures) of two pseudo-label rounds from ``full`` and of an
    embedder trained on every fold: a copy of ``final`` (the demo's, already trained) where given,
    else one trained from scratch with ``full``'s choices."""
    import shutil

    from pipeline.pseudo import PseudoConfig, run_rounds
    from stage2_embed.training import TrainConfig, train

    pl = run_rounds(PseudoConfig(embedder=full, records=crops, out=os.path.join(root, "pseudo"), rounds=2,
                                 epochs=pseudo_epochs, truth=truth), progress=False)
    out = [(f"pseudo{r['round']}", r["embedder"], {"added": r["added"], "added_precision": r["added_precision"]})
           for r in pl["rounds"]]
    if final:  # a copy: through_pipeline writes its evaluation and submission into the folder
        shutil.copytree(final, os.path.join(root, "all_folds"), dirs_exist_ok=True)
        return [*out, ("all_folds", os.path.join(root, "all_folds"), {})]
    base = json.loads(open(os.path.join(full, "train_config.json")).read())
    cfg = TrainConfig(**{**{k: v for k, v in base.items() if k in TrainConfig.__dataclass_fields__},
                         "records": crops, "out": os.path.join(root, "all_folds"), "all_folds": full, "init": None})
    if not os.path.exists(os.path.join(cfg.out, "embedder.keras")):
        train(cfg, resume=os.path.exists(os.path.join(cfg.out, "ckpt", "state.json")), progress=False)
    return [*out, ("all_folds", cfg.out, {})]


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--workdir", default="work/demo", help="a finished demo")
    p.add_argument("--pseudo-epochs", type=int, default=10, help="epochs per pseudo-label round")
    p.add_argument("--no-training", action="store_true", help="leave out pseudo1, pseudo2 and all_folds")
    a = p.parse_args(argv)

    import pandas as pd

    from pipeline.baselines import score, through_pipeline, write_variant
    from pipeline.final import cv_run, identifying_embedder
    from stage2_embed.fusion import fuse

    w = a.workdir
    emb, crops, records, det = (os.path.join(w, d) for d in ("embedder", "crops", "records", "detector"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.abspath(w)}/mlflow.db")
    cfg = json.loads(open(os.path.join(emb, "embedder_config.json")).read())
    val_fold = json.loads(open(os.path.join(emb, "train_config.json")).read())["val_fold"]
    plain = plain_embedder(emb)
    fused, metrics = fuse(plain, crops, cfg["image_size"], val_fold)
    root = os.path.join(w, "ablation")
    none = {"pixel_weight": 0.0, "hog_weight": 0.0, "pixel_metric": False, "hog_metric": False}
    mix = {**{k: metrics[k] for k in ("pixel_weight", "hog_weight")},
           **{k: bool(metrics[k]) for k in ("pixel_metric", "hog_metric")}}
    variants = {"baseline": (plain, none, "none", False, False), "blend": (plain, none, "none", False, True),
                "fusion": (fused, mix, "none", False, False), "rerank": (plain, none, "sift", False, False),
                "both": (fused, mix, "sift", False, False), "full": (fused, mix, "sift", True, False),
                "full_blend": (fused, mix, "sift", True, True)}
    truth, train = os.path.join(w, "data", "test_truth.csv"), os.path.join(w, "data", "train.csv")
    rows = []
    for name, (model, weights, rerank, by_group, blend) in variants.items():
        folder = write_variant(os.path.join(root, name), model, {**cfg, **weights},
                               head_from=emb)  # every variant can be a pseudo-label or all-folds start
        sub = through_pipeline(folder, det, crops, records, rerank=rerank, group_thresholds=by_group, blend=blend)
        rows.append({"variant": name, **weights, "rerank": rerank, "group_thresholds": by_group,
                     "blend_weight": json.loads(open(os.path.join(folder, "threshold.json")).read())["blend"]["weight"],
                     "test_map5": score(sub, truth),
                     "single_photo_top1": single_photo_top1(sub, truth, train)})
        print(rows[-1], flush=True)
    if not a.no_training:
        final = identifying_embedder(w)
        for name, folder, more in trained_variants(os.path.join(root, "full"), crops, root, a.pseudo_epochs, truth,
                                                   final if cv_run(final) else None):
            sub = through_pipeline(folder, det, crops, records, rerank="sift", group_thresholds=True)
            rows.append({"variant": name, "test_map5": score(sub, truth),
                         "single_photo_top1": single_photo_top1(sub, truth, train), **more})
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows).set_index("variant")
    print(df.round(4).to_string())
    out = {f"{v}_map5": round(float(df.loc[v, "test_map5"]), 4) for v in df.index}
    out.update({f"single_photo_top1_{v}": round(float(df.loc[v, "single_photo_top1"]), 4) for v in df.index})
    out.update({f"{k}_{v}": round(float(df.loc[v, k]), 4) for k in ("added", "added_precision") if k in df
                for v in df.index if pd.notna(df.loc[v, k])})
    out.update({k: round(float(v), 4) for k, v in metrics.items()})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
