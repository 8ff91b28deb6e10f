"""What each addition to the pipeline is worth, on one finished demo (``make demo``): test MAP@5 of

- ``baseline``: the trained embedder alone (no pixel fusion, no re-ranking);
- ``fusion``: + the 16x16 pixel descriptor mixed in at the weight validation prefers;
- ``rerank``: + SIFT re-ranking of the 10 best candidates, fused on validation;
- ``both``: both,

each with one validation threshold at the estimated new-individual share; and

- ``full``: both, with one threshold per group of the best candidate's catalog photos (1, 2, 3+;
  what ``make demo`` runs),

on the same test photos and the same detector crops; and the share of test photos of known individuals that have a
single catalog photo found first (the weak spot). Prints a table and one JSON line with
``baseline_map5``, ``full_map5``, ``single_photo_top1_baseline`` and ``single_photo_top1_full``.

    python bench/ablation.py [--workdir work/demo]
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


def write_variant(out: str, model, cfg: dict) -> str:
    from runtime import atomic
    from runtime.checkpoint import save_model

    os.makedirs(out, exist_ok=True)
    save_model(model, os.path.join(out, "embedder.keras"))
    atomic.write_json(os.path.join(out, "embedder_config.json"), cfg)
    return out


def single_photo_top1(submission: str, truth_csv: str, train_csv: str) -> float:
    import pandas as pd

    truth = pd.read_csv(truth_csv, dtype=str).set_index("image")["individual_id"]
    counts = pd.read_csv(train_csv, dtype=str)["individual_id"].value_counts()
    sub = pd.read_csv(submission, dtype=str).set_index("image")["predictions"]
    single = [i for i, t in truth.items() if counts.get(t, 0) == 1]
    return sum(sub[i].split()[0] == truth[i] for i in single) / max(len(single), 1)


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--workdir", default="work/demo", help="a finished demo")
    a = p.parse_args(argv)

    import pandas as pd

    from pipeline.baselines import score, through_pipeline
    from stage2_embed.fusion import fuse

    w = a.workdir
    emb, crops, records, det = (os.path.join(w, d) for d in ("embedder", "crops", "records", "detector"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.abspath(w)}/mlflow.db")
    cfg = json.loads(open(os.path.join(emb, "embedder_config.json")).read())
    val_fold = json.loads(open(os.path.join(emb, "train_config.json")).read())["val_fold"]
    plain = plain_embedder(emb)
    fused, metrics = fuse(plain, crops, cfg["image_size"], val_fold)
    root = os.path.join(w, "ablation")
    weight = metrics["pixel_weight"]
    variants = {"baseline": (plain, 0.0, "none", False), "fusion": (fused, weight, "none", False),
                "rerank": (plain, 0.0, "sift", False), "both": (fused, weight, "sift", False),
                "full": (fused, weight, "sift", True)}
    truth, train = os.path.join(w, "data", "test_truth.csv"), os.path.join(w, "data", "train.csv")
    rows = []
    for name, (model, weight, rerank, by_group) in variants.items():
        folder = write_variant(os.path.join(root, name), model, {**cfg, "pixel_weight": weight})
        sub = through_pipeline(folder, det, crops, records, rerank=rerank, group_thresholds=by_group)
        rows.append({"variant": name, "pixel_weight": weight, "rerank": rerank, "group_thresholds": by_group,
                     "test_map5": score(sub, truth),
                     "single_photo_top1": single_photo_top1(sub, truth, train)})
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows).set_index("variant")
    print(df.round(4).to_string())
    out = {f"{v}_map5": round(float(df.loc[v, "test_map5"]), 4) for v in variants}
    out.update({f"single_photo_top1_{v}": round(float(df.loc[v, "single_photo_top1"]), 4) for v in variants})
    out.update({k: round(float(v), 4) for k, v in metrics.items()})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
