"""Add photos of known or newly named individuals to a catalog, without retraining.

    python pipeline/enroll.py --embedder EMB_DIR --catalog CAT.npz --images DIR --labels labels.csv
        [--detector DET_DIR|none] [--tta flip]

``labels.csv`` has ``image,individual_id,species`` (a byte-order mark and extra columns are fine;
species names are normalised as in the data stage). The photos go through ``infer``'s path
(detect, crop, embed) and their rows join the catalog, replacing rows of the same file name.
The catalog is rewritten atomically under a lock; it is created if absent; the FAISS index beside
a large catalog (``pipeline/index.py``) is updated with it. Refused with one line:
an individual given two species (in the file or against the catalog), an unsafe image name, a
catalog embedded by another model. Unreadable photos are listed and skipped; the others enroll.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])


from pipeline.enrolment import EnrollConfig, enroll
from runtime import cli


def _main(a: argparse.Namespace) -> None:
    print(json.dumps(enroll(a.embedder, a.catalog, a.images, a.labels, a.detector, a.tta)))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, cli.parse_config(__doc__, EnrollConfig, argv))


if __name__ == "__main__":
    sys.exit(main())
