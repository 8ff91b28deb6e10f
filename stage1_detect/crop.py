"""Cut the animal part out of every image record: crop records for stage 2.

    python stage1_detect/crop.py --detector RUN_DIR --records OUT --out CROPS [--margin 0.1]
        [--min-score 0.2] [--crop-size 384] [--source detector|boxes] [--batch-size 16]

``--source detector``: batched tf.data inference (one ``predict`` over each shard), the best box
per image; below ``--min-score`` the full image is kept (source ``full``: counted and reported,
never dropped). ``--source boxes``: the records' own boxes (no model needed), so stage 2 can run
without a trained detector. Each box is grown by ``--margin`` of its size, clamped to the image,
cut from the full-resolution record image and scaled so its longer side is ``--crop-size``.
Crop records keep the image schema (boxes moved into the crop's frame) plus ``crop/box``,
``crop/score``, ``crop/source``; shards are written atomically and a rerun resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import cli, flags
from stage1_detect.cropping import CropConfig, crop_records


def _main(a: argparse.Namespace) -> None:
    cfg = flags.config_from(CropConfig, a)
    m = crop_records(cfg, progress=not a.quiet)
    print(f"wrote {a.out}: {m['counts']['train']} train and {m['counts']['test']} test crops; by source: "
          + ", ".join(f"{k}={v}" for k, v in m["sources"].items()))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, cli.parse_config(__doc__, CropConfig, argv))


if __name__ == "__main__":
    sys.exit(main())
