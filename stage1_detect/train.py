"""Train the stage-1 detector on image records with boxes.

    python stage1_detect/train.py --records OUT --out RUN_DIR [--image-size 256] [--backbone xs]
        [--epochs E] [--batch-size B] [--lr LR] [--val-fold K] [--weights none|PATH] [--resume]

Trains on folds != ``--val-fold``; after each epoch evaluates COCO mAP@0.5 and mAP@0.5:0.95 on the
validation fold (keras-cv's ``BoxCOCOMetrics``, i.e. pycocotools), checkpoints (weights, optimizer
state, history), and logs to MLflow. ``--resume`` continues a killed run from its last epoch.
The strategy comes from the environment (runtime/strategy.py); ``--batch-size`` is per replica.
Ends with ``RUN_DIR/detector.keras`` and ``RUN_DIR/detector_config.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import cli
from stage1_detect.training import TrainConfig, smoke, train


def main(argv: list[str] | None = None) -> int:
    return cli.train_main(__doc__, TrainConfig, smoke, train, argv)


if __name__ == "__main__":
    sys.exit(main())
