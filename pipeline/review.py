"""Review proposed matches in the browser; confirmed photos and new individuals join the catalog.

    python pipeline/review.py --matches RUN/matches.csv --catalog CATALOG.npz --images PHOTOS
        --db review.sqlite [--catalog-images DIR ...] [--embedder EMB_DIR] [--detector DET_DIR|none]
        [--host 127.0.0.1 --port 8765] [--token T]

Serves a queue of the query photos of ``matches.csv`` (from ``pipeline/infer.py``), most uncertain
first: each photo with its detected crop beside the closest catalog photo of each of its top
candidates. Keys: 1-5 accept a candidate, N new individual, X not identifiable, S skip, U undo,
M more candidates, Z zoom. ``Apply`` enrolls every confirmed photo into ``--catalog`` (the code of
``pipeline/enroll.py``: atomic and locked), applies merges and writes ``decisions.csv`` beside
``--db``. Answers are stored in ``--db`` at each key press: a restarted server resumes the queue.
``--embedder``, ``--detector``, ``--images`` and the threshold default to those in ``run.json``
beside ``matches.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import cli, flags

LOCAL = ("127.0.0.1", "localhost", "::1")


def setup_from_args(a: argparse.Namespace):
    """The store (queue loaded from matches.csv) and the app's setup, checked before serving."""
    import pandas as pd

    from pipeline.review_app import ReviewSetup
    from pipeline.review_store import Store

    if not os.path.isfile(a.matches):
        raise FileNotFoundError(f"--matches {a.matches}: no such file (pipeline/infer.py writes it)")
    run_json = os.path.join(os.path.dirname(a.matches), "run.json")
    run = json.loads(Path(run_json).read_text()) if os.path.isfile(run_json) else {}
    images = a.images or run.get("images")
    if not images or not os.path.isdir(images):
        raise FileNotFoundError(f"--images {images}: no such folder of query photos")
    if a.host not in LOCAL and not a.token:
        raise ValueError(f"--host {a.host} is reachable from other machines: give --token so that only "
                         "reviewers with it can answer")
    known, boxes = _catalog_rows(a.catalog)
    store = Store(a.db, id_pattern=a.id_pattern, known_ids=known)
    matches = pd.read_csv(a.matches, dtype={"individual_id": str, "image": str, "box": str,
                                            "catalog_image": str}, keep_default_na=False)
    threshold = a.threshold if a.threshold is not None else float(run.get("threshold", 0.5))
    store.load_matches(matches, threshold)
    return ReviewSetup(store=store, images=images, catalog=a.catalog, catalog_images=tuple(a.catalog_images),
                       catalog_boxes=boxes, embedder=a.embedder or run.get("embedder", ""),
                       detector=a.detector or run.get("detector", "none"),
                       decisions_csv=os.path.join(os.path.dirname(os.path.abspath(a.db)), "decisions.csv"),
                       token=a.token)


def _catalog_rows(catalog: str) -> tuple[dict[str, str], dict[str, str]]:
    """(individual -> species, file name -> crop box) of the catalog; empty for one not created yet."""
    if not catalog.endswith(".npz"):
        raise ValueError(f"--catalog {catalog}: give a catalog .npz (stage2_embed/embed.py or enroll.py writes "
                         "one); Apply grows it")
    if not os.path.exists(catalog):
        return {}, []
    from pipeline.catalog import load_npz

    cat = load_npz(catalog)
    boxes = {f: " ".join(f"{v:.4f}" for v in b) for f, b in zip(cat.filenames, cat.box_array(), strict=True)}
    return dict(zip(cat.individual_ids, cat.species, strict=True)), boxes


def serve(setup, host: str, port: int, threads: int = 8) -> None:
    import logging

    from waitress import serve as waitress_serve

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "queue depth 1" under load is normal
    from pipeline.review_app import create_app

    suffix = f"/?token={setup.token}" if setup.token else "/"
    print(f"review: http://{host if ':' not in host else f'[{host}]'}:{port}{suffix}", flush=True)
    waitress_serve(create_app(setup), host=host, port=port, threads=threads, max_request_body_size=1 << 20,
                   ident="happywhale-review")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = flags.parser(__doc__)
    p.add_argument("--matches", required=True, help="matches.csv written by pipeline/infer.py")
    p.add_argument("--catalog", required=True, help="catalog .npz that Apply grows (created if absent)")
    p.add_argument("--images", help="folder of the query photos (None: run.json's --images)")
    p.add_argument("--db", required=True, help="SQLite file of the review's answers (created if absent)")
    p.add_argument("--catalog-images", nargs="*", default=[], help="folders with the catalog's photos")
    p.add_argument("--embedder", help="embedder run folder for Apply (None: run.json's)")
    p.add_argument("--detector", help="detector run folder or none, for Apply (None: run.json's)")
    p.add_argument("--threshold", type=float, help="new_individual threshold (None: run.json's)")
    p.add_argument("--id-pattern", default="new_{date}_{n:03d}",
                   help="new individuals' ids; fields {n}, {species}, {date}")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; non-local needs --token")
    p.add_argument("--port", type=int, default=8765, help="port")
    p.add_argument("--token", default=os.environ.get("REVIEW_TOKEN", ""),
                   help="secret every request must carry (from $REVIEW_TOKEN when set)")
    p.add_argument("--threads", type=int, default=8, help="server threads")
    cli.add_common_flags(p)
    return p.parse_args(argv)


def _main(a: argparse.Namespace) -> None:
    serve(setup_from_args(a), a.host, a.port, a.threads)


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv), tensorflow=False)


if __name__ == "__main__":
    sys.exit(main())
