"""The pixel embedder: a run folder like a trained embedder's, whose model is a ``PixelDescriptor``
(16 x 16 grey thumbnails, no weights). Everything that takes ``--embedder RUN_DIR`` (evaluation,
the threshold, ``infer``, catalogs) runs on it unchanged: the honest baseline, and a proposer that
works where no trained model exists.

    python stage2_embed/pixels.py --out RUN_DIR [--image-size 96] [--side 16]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from tfrecords import cli

SIDE = 16


def build_pixel_embedder(image_size: int, side: int = SIDE):
    """image [B, S, S, 3] float 0..255 -> L2-normalised ``side**2`` thumbnail descriptor."""
    import keras

    from stage2_embed.layers import PixelDescriptor

    image = keras.Input((image_size, image_size, 3), name="image")
    return keras.Model(image, PixelDescriptor(side, name="embedding")(image), name="pixel_embedder")


def write_pixel_embedder(out: str, image_size: int, side: int = SIDE) -> str:
    """``out/embedder.keras`` and ``out/embedder_config.json`` (``kind: pixels``); returns ``out``."""
    from tfrecords import atomic
    from tfrecords.checkpoint import save_model
    from tfrecords.layout import join, makedirs

    makedirs(out)
    save_model(build_pixel_embedder(image_size, side), join(out, "embedder.keras"))
    atomic.write_json(join(out, "embedder_config.json"),
                      {"kind": "pixels", "image_size": image_size, "side": side, "embedding_dim": side * side})
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder to write (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=96, help="crop side the images are resized to first "
                   "(default: %(default)s)")
    p.add_argument("--side", type=int, default=SIDE, help="thumbnail side (default: %(default)s)")
    cli.add_debug_flag(p)
    return p.parse_args(argv)


def _main(a: argparse.Namespace) -> int:
    print(json.dumps({"run_dir": write_pixel_embedder(a.out, a.image_size, a.side)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
