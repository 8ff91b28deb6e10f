"""Exploratory report of a Kaggle-layout dataset: species counts, images per individual, image
sizes, box sizes and positions, as PNG plots and one self-contained HTML page.

    python tfrecords/eda.py --data DIR --out REPORT_DIR

The last line printed is JSON with the headline numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])



from runtime import cli
from runtime.storage import join
from tfrecords.eda_report import EdaConfig, report


def _main(a: argparse.Namespace) -> None:
    summary = report(a.data, a.out, progress=not a.quiet)
    print(f"report: {join(a.out, 'index.html')}")
    print(json.dumps(summary))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, cli.parse_config(__doc__, EdaConfig, argv), tensorflow=False)


if __name__ == "__main__":
    sys.exit(main())
