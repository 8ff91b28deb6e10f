"""The pixel embedder: a run folder like a trained embedder's, whose model is a ``PixelDescriptor``
(16 x 16 grey thumbnails, no weights) or, with ``--descriptor hog``, a ``HOGDescriptor`` (edges).
Everything that takes ``--embedder RUN_DIR`` (evaluation, the threshold, ``infer``, catalogs) runs
on it unchanged: the honest baseline, and a proposer that works where no trained model exists.
``--descriptor fitted --records CROPS``: both, mixed and projected as the records' validation fold
prefers, in seconds and with no network (``stage2_embed.pixel_embedder.write_fitted_embedder``).

    python stage2_embed/pixels.py --out RUN_DIR [--image-size 96] [--side 16] [--descriptor pixels|hog]
    python stage2_embed/pixels.py --out RUN_DIR --descriptor fitted --records CROPS [--val-fold 0]
        [--crop] [--descriptor-metric auto|on|off]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import cli, flags
from runtime.storage import join, read_bytes
from stage2_embed.pixel_embedder import PixelConfig, write_fitted_embedder, write_pixel_embedder


def _main(a: argparse.Namespace) -> None:
    c = flags.config_from(PixelConfig, a)  # its checks: --descriptor fitted with --records, and only then
    if c.descriptor == "fitted":
        out = write_fitted_embedder(c.out, c.records, c.image_size, c.val_fold, c.crop, c.descriptor_metric)
        print(json.dumps({"run_dir": out, **json.loads(read_bytes(join(out, "fusion.json")))}))
    else:
        print(json.dumps({"run_dir": write_pixel_embedder(c.out, c.image_size, c.side, c.descriptor)}))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, cli.parse_config(__doc__, PixelConfig, argv))


if __name__ == "__main__":
    sys.exit(main())
