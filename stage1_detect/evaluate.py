"""Evaluate a trained detector on the validation fold, or on every record of a folder (``--all``).

    python stage1_detect/evaluate.py --detector RUN_DIR --records OUT [--val-fold K | --all] [--tile K]
        [--zoom Z] [--[no-]mirror] [--slices K] [--input-size PX] [--out REPORT_DIR]

COCO mAP@0.5 and mAP@0.5:0.95 (pycocotools through keras-cv), the mean IoU of the chosen crop box
(best box per image) with the nearest true box, the share of images where that IoU >= 0.5, the share
of true boxes that any box of any confidence covers (``boxed_share``: what no ranking of the boxes can
exceed), and a PNG grid of predictions (red, with score) over the truth (green). ``--tile K`` scores
K x K grids of the photos instead (COCO mAP only): the same animals small and several to a frame. The
last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])


from runtime import cli
from stage1_detect.scoring import DetectorEvalConfig, evaluate


def _main(a: argparse.Namespace) -> None:
    r = evaluate(a.detector, a.records, a.val_fold, a.out or os.path.join(a.detector, "eval"), a.batch_size,
                 every=a.all, tile=a.tile, zoom=a.zoom, mirror=a.mirror, slices=a.slices,
                 input_size=a.input_size)
    print(json.dumps(r))
    print(f"predictions drawn: {r.get('grid')}")


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, cli.parse_config(__doc__, DetectorEvalConfig, argv))


if __name__ == "__main__":
    sys.exit(main())
