"""Build sharded TFRecords from the Kaggle layout: validated, cleaned, resumable.

    python tfrecords/build.py --data DIR --out OUT [--boxes FILE] [--folds 5]
        [--holdout-individuals F] [--max-side 1024] [--shards N] [--workers W] [--seed S]

Writes ``OUT/train-XXXXX-of-YYYYY.tfrec``, ``OUT/test-…``, ``OUT/manifest.json`` (schema version,
counts, label maps, per-shard counts and SHA-256), ``OUT/index.csv`` (where each image went) and
``OUT/rejected.csv`` (``split,image,reason``: every row, image or box left out, and why).
Images are decoded and re-encoded in worker processes; each shard is written under a temporary
name and renamed when whole, so a killed build leaves no shard that looks complete, and running the
same command again resumes, ending with the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])


from runtime import cli, flags
from runtime.storage import join
from tfrecords.builder import build
from tfrecords.plan import BuildConfig


def _main(a: argparse.Namespace) -> None:
    m = build(flags.config_from(BuildConfig, a), progress=not a.quiet)
    c = m["counts"]
    print(f"wrote {a.out}: {c['train']} train and {c['test']} test records in {len(m['shards'])} shards; "
          f"{c['rejected']} rejections in {join(a.out, 'rejected.csv')}")


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, cli.parse_config(__doc__, BuildConfig, argv), tensorflow=False)


if __name__ == "__main__":
    sys.exit(main())
