"""Kaggle TPU notebook script: train the embedder on crop records in a GCS bucket under
``TPUStrategy`` with bfloat16, then export catalog and test embeddings.

    python pipeline/kaggle_tpu.py --records gs://BUCKET/crops --out /kaggle/working/embedder
        [--backbone b5] [--image-size 384] [--epochs 20] [--batch-size 16] [--weights imagenet]

TPUs read only from GCS: build the records and crops on a CPU session (or locally) into a bucket,
attach it to the notebook, and run this cell by cell or as a script. The batch is per replica
(x8 on a v3-8); ``steps_per_execution`` keeps the host out of the way; mixed precision is
``mixed_bfloat16``. Checkpoints and the run folder are local (``/kaggle/working``); MLflow writes
to ``/kaggle/working/mlflow.db``. Afterwards, ``pipeline/infer.py --catalog RUN/catalog.npz`` makes
the submission (on the TPU host's CPU or a GPU session).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import cli, flags

# Kaggle's defaults: pretrained ImageNet weights (attach them as a dataset), a larger backbone and
# input, the logit scale that pretrained features train well with, and TPU-sized compiled steps
KAGGLE = {"backbone": "b5", "weights": "imagenet", "image_size": 384, "epochs": 20, "batch_size": 16, "lr": 1e-3,
          "scale": 30.0, "steps_per_execution": 32, "mixed_precision": True, "val_every": 4}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from stage2_embed.training import TrainConfig

    p = flags.parser(__doc__)
    p.add_argument("--out", default="/kaggle/working/embedder", help="local run folder")
    flags.add_config(p, TrainConfig, skip=("out",))  # every training option, at Kaggle's defaults
    p.set_defaults(**KAGGLE)
    cli.add_training_flags(p)
    return flags.parse(p, argv)


def _main(a: argparse.Namespace) -> None:
    from pipeline.catalog import Catalog, save_npz
    from stage2_embed.embedder import embed_records, load_embedder
    from stage2_embed.training import TrainConfig, smoke, train

    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.dirname(os.path.abspath(a.out))}/mlflow.db")
    cfg = flags.config_from(TrainConfig, a, smoke(a.records, a.out) if a.smoke else None)
    final = train(cfg, resume=a.resume, progress=not a.quiet)
    model, ecfg = load_embedder(a.out)
    arr = embed_records(model, ecfg["image_size"], a.records, ("train",), batch_size=128)
    save_npz(Catalog(arr["embeddings"], arr["filenames"], arr["individual_ids"], arr["species"],
                     json.dumps(ecfg, sort_keys=True)), os.path.join(a.out, "catalog.npz"))
    print(json.dumps({"run_dir": a.out, "catalog": os.path.join(a.out, "catalog.npz"),
                      "val_map5": final.get("val_map5")}))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
