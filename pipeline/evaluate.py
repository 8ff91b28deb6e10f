"""Open-set evaluation on a validation fold, the ``new_individual`` threshold, and an HTML report.

    python pipeline/evaluate.py --embedder EMB_DIR --records CROPS [--val-fold K] [--out DIR]
        [--species-consistency]

The catalog is the training folds (holdout individuals left out); the queries are the validation
fold plus every image of the holdout individuals, which play ``new_individual``. Scores Kaggle's
MAP@5 over a sweep of thresholds, for known and for new queries apart (``pipeline.threshold``), and
keeps both curves and the queries' best-match scores in ``EMB_DIR/threshold.json``: ``infer``
picks its threshold from them at the new-individual share it estimates for its own queries. The
report's curve and the stored fallback threshold are at ``--new-share`` (negative: the fold's own
share). It writes ``DIR/report.html``: a self-contained page with the threshold curve, MAP@5 per
species, the species confusion matrix and a match gallery (each query beside its top five).
Everything is logged to MLflow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])


from pipeline.validation import EvalConfig, evaluate
from runtime import cli, flags


def _main(a: argparse.Namespace) -> None:
    r = evaluate(flags.config_from(EvalConfig, a), progress=not a.quiet)
    print(json.dumps({k: v for k, v in r.items() if k != "per_species_map5"}))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, cli.parse_config(__doc__, EvalConfig, argv))


if __name__ == "__main__":
    sys.exit(main())

