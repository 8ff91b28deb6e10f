"""Photos in, ``submission.csv`` out: detect the fin / fluke / body, crop, embed, search the catalog.

    python pipeline/infer.py --detector DET_DIR --embedder EMB_DIR --catalog RECORDS_OR_NPZ
        (--images DIR | --records RECORDS [--split test]) --out OUT_DIR [--threshold T]
        [--species-consistency] [--tta flip] [--batch-size 32]

One batched ``tf.data`` path per chunk of images: decode -> detector (best box, grown by
the crop margin; the whole image where no box scores 0.2) -> crop at the embedder's size -> embed
(``--tta flip`` averages with the mirrored crop) -> cosine search over the catalog (exact with
scikit-learn; a FAISS IVF index above 200k catalog images) -> best score per individual -> five
distinct ids, ``new_individual`` inserted where the score falls below the threshold: the best of
the validation curves in ``EMB_DIR/threshold.json`` (``pipeline/evaluate.py``) at the share of new
individuals estimated from these queries' own scores (``pipeline.threshold``), or at
``--new-share``, or ``--threshold`` as given.
``--detector none`` takes the images as crops.

Writes ``submission.csv`` (every input image exactly once; an undecodable one still gets a row
and is listed in ``failures.csv``), ``matches.csv`` (top candidates with scores, the crop box and the
best-scoring catalog photo of each candidate) and ``run.json`` (this run's settings and threshold,
read by ``pipeline/review.py``) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])


from pipeline.identify import InferConfig, run
from runtime import cli, flags


def _main(a: argparse.Namespace) -> None:
    print(json.dumps(run(flags.config_from(InferConfig, a), progress=not a.quiet)))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, cli.parse_config(__doc__, InferConfig, argv))


if __name__ == "__main__":
    sys.exit(main())
