"""Kaggle notebook script: from crop records to ``submission.csv`` in one run. Trains the embedder
(every option of ``stage2_embed/train.py``, at Kaggle's defaults), evaluates it on the validation
fold (the ``new_individual`` threshold and its curves in ``OUT/threshold.json``), embeds the catalog
(``OUT/catalog.npz``, with keypoints for the re-ranking) and identifies the records' test split
(``OUT/submission/submission.csv``, ``matches.csv``).

    python pipeline/kaggle_tpu.py --records /kaggle/working/crops --out /kaggle/working/embedder
        [--backbone b5] [--image-size 384] [--epochs 20] [--batch-size 16] [--weights imagenet]

The strategy comes from the machine: a TPU VM (``TPUStrategy``, ``mixed_bfloat16``, the batch per
replica: x8 on a v3-8, ``steps_per_execution`` 32 so the host keeps up), several GPUs, or one
device. TPU VMs read ``/kaggle/input`` and ``/kaggle/working`` directly; ``gs://`` paths work too.
MLflow writes beside ``--out`` (``mlflow.db``) unless ``MLFLOW_TRACKING_URI`` says otherwise.
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
    from pipeline.catalog import export
    from pipeline.identify import InferConfig, run
    from pipeline.validation import EvalConfig, evaluate
    from runtime.storage import join
    from stage2_embed.training import TrainConfig, smoke, train
    from tfrecords.reader import read_manifest

    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.dirname(os.path.abspath(a.out))}/mlflow.db")
    cfg = flags.config_from(TrainConfig, a, smoke(a.records, a.out) if a.smoke else None)
    final = train(cfg, resume=a.resume, progress=not a.quiet)
    ev = evaluate(EvalConfig(embedder=a.out, records=a.records), progress=not a.quiet)
    catalog = join(a.out, "catalog.npz")
    export(a.out, a.records, catalog)
    summary = {"run_dir": a.out, "val_map5": final.get("val_map5"), "threshold": ev["threshold"],
               "catalog": catalog}
    if read_manifest(a.records)["counts"]["test"]:
        sub = run(InferConfig(detector="none", embedder=a.out, catalog=catalog, records=a.records, split="test",
                              out=join(a.out, "submission")), progress=not a.quiet)
        summary.update(submission=sub["submission"], images=sub["images"])
    print(json.dumps(summary))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
