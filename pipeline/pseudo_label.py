"""Pseudo-label rounds: confident test identifications added to training, the embedder trained
again, the test photos identified again (``pipeline/pseudo.py``).

    python pipeline/pseudo_label.py --embedder EMB_DIR --records CROPS --out DIR [--rounds 2]
        [--epochs N] [--no-init] [--truth test_truth.csv]

EMB_DIR must have been evaluated (``pipeline/evaluate.py``): its ``threshold.json`` holds the
confidence rule chosen on validation (best score and margin to the second candidate, precision
0.9). Each round writes ``DIR/roundN/``: ``identify/`` (that round's matches), ``labels.csv`` (the
added photos), ``records/`` (the crop records with them) and ``embedder/`` (trained and evaluated
again). Identify with the last round's embedder and the original catalog:
``pipeline/infer.py --embedder DIR/roundN/embedder --catalog CROPS ...``. MLflow: one
``pipeline-pseudo-label`` run, a child run per round with the count and, given ``--truth``, the
precision of the added labels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from pipeline.pseudo import PseudoConfig, run_rounds
from runtime import cli, flags


def _main(a: argparse.Namespace) -> None:
    print(json.dumps(run_rounds(flags.config_from(PseudoConfig, a), progress=not a.quiet)))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, cli.parse_config(__doc__, PseudoConfig, argv))


if __name__ == "__main__":
    sys.exit(main())
