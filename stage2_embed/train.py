"""Train the stage-2 embedder on crop records (or image records with ``--crop``).

    python stage2_embed/train.py --records CROPS --out RUN_DIR [--backbone b0] [--weights none]
        [--image-size 96] [--head subcenter|arcface|softmax] [--epochs E] [--batch-size B] [--lr LR]
        [--val-fold K] [--val-every N] [--balance none|class_weight|resample] [--dynamic-margin] [--flip]
        [--mixed-precision] [--resume]

The strategy is chosen from the environment (several workers in ``TF_CONFIG``, a TPU, several
GPUs, one device) and the batch is per replica (BatchNorm synchronised across replicas). AdamW with
warmup + cosine decay; augmentation in tf.data; every ``--val-every`` epochs and after the last,
validation MAP@5 by nearest neighbours: the validation fold's images against the training folds'
(known individuals only); a checkpoint per epoch and ``--resume``; everything logged to MLflow.
Ends with ``RUN_DIR/embedder.keras`` (image -> L2-normalised embedding), ``RUN_DIR/train_model.keras``,
``RUN_DIR/embedder_config.json`` and ``RUN_DIR/confusion/`` (species confusion matrix CSV + PNG,
most-confused individual pairs). Under several workers the chief writes all of it.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import cli
from stage2_embed import training


def main(argv: list[str] | None = None) -> int:
    return cli.train_main(__doc__, training.TrainConfig, training.smoke, training.train, argv)


if __name__ == "__main__":
    sys.exit(main())
