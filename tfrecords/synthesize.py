"""Synthetic Happywhale-like dataset in Kaggle's exact layout, for demos and tests.

    python tfrecords/synthesize.py --out DIR [--seed S] [--individuals N] [--train-images M]
        [--test-images T] [--species K] [--new-share F] [--max-side PX] [--workers W]

Writes ``train.csv`` (image,species,individual_id), ``train_images/``, ``test_images/``,
``sample_submission.csv``, plus ``boxes.csv`` (pixel boxes of the fin/fluke/body for train and
test) and ``test_truth.csv`` (``new_individual`` for individuals absent from train). Like
Happywhale: a long tail of images per individual, species of different frequency and part, some
species strings misspelt as on Kaggle (``kiler_whale``), varied sizes, and identity in the marks.
Deterministic per seed, whatever the number of workers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])


from runtime import cli, flags
from tfrecords.synthetic.world import SMOKE, SynthConfig, synthesize


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = flags.parser(__doc__)
    p.add_argument("--out", required=True, help="dataset folder to write (local or gs://)")
    flags.add_config(p, SynthConfig)
    p.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")
    p.add_argument("--smoke", action="store_true",
                   help="a tiny dataset for smoke tests; options typed on the command line still apply")
    cli.add_common_flags(p)
    return flags.parse(p, argv)


def _main(a: argparse.Namespace) -> None:
    cfg = flags.config_from(SynthConfig, a, SMOKE if a.smoke else None)
    counts = synthesize(cfg, a.out, a.workers, progress=not a.quiet)
    print(f"wrote {a.out}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv), tensorflow=False)


if __name__ == "__main__":
    sys.exit(main())
