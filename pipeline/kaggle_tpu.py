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

from tfrecords import cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", required=True, help="crop records, gs://... on a TPU")
    p.add_argument("--out", default="/kaggle/working/embedder", help="local run folder")
    p.add_argument("--backbone", default="b5")
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--image-size", type=int, default=384)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16, help="per replica")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps-per-execution", type=int, default=32)
    p.add_argument("--resume", action="store_true")
    cli.add_debug_flag(p)
    return p.parse_args(argv)


def _main(a: argparse.Namespace) -> int:
    from pipeline.catalog import Catalog, save_npz
    from stage2_embed.embed import embed_records, load_embedder
    from stage2_embed.train import TrainConfig, train

    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.dirname(os.path.abspath(a.out))}/mlflow.db")
    cfg = TrainConfig(records=a.records, out=a.out, backbone=a.backbone, weights=a.weights, image_size=a.image_size,
                      epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, mixed_precision=True,
                      steps_per_execution=a.steps_per_execution, val_every=max(1, a.epochs // 5))
    final = train(cfg, resume=a.resume)
    model, ecfg = load_embedder(a.out)
    arr = embed_records(model, ecfg["image_size"], a.records, ("train",), batch_size=128)
    save_npz(Catalog(arr["embeddings"], arr["filenames"], arr["individual_ids"], arr["species"],
                     json.dumps(ecfg, sort_keys=True)), os.path.join(a.out, "catalog.npz"))
    print(json.dumps({"run_dir": a.out, "catalog": os.path.join(a.out, "catalog.npz"),
                      "val_map5": final.get("val_map5")}))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
