"""The README's Quickstart with no trained model, measured: a training-free embedder (16x16 pixels
or HOG edges), the catalog enrolled from labelled photos, and the new photos identified, first
as the catalog stands, then after ``pipeline/evaluate.py --catalog`` fitted the threshold and the
SIFT re-ranking on the catalog itself.

    python bench/quickstart.py --data DIR [--workdir work/quickstart]

``DIR`` is a Kaggle-layout folder with ``test_truth.csv`` (the catalog: ``train.csv`` and
``train_images/``; the new photos: ``test_images/``), photos taken as they are (``--detector
none``). Prints one JSON line, for each descriptor D (``pixels``, ``hog``):

- ``D_known_map5_unfitted`` / ``D_known_map5_fitted``: closed-set MAP@5 of the test photos of known
  individuals (``bench/real.py``'s ``known_map5``, ``pipeline.search.matches_known_map5``) before and after the fit;
- ``D_open_set_map5_unfitted`` / ``D_open_set_map5_fitted``: Kaggle's MAP@5 of ``submission.csv``;
- ``D_rerank_depth``: how deep the fitted re-ranking goes (``--rerank-depth auto``), and
  ``D_validation_queries``: the catalog photos it was fitted on as queries.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import flags


def measure(data: str, w: str, descriptor: str) -> dict:
    """One descriptor through the Quickstart, unfitted then fitted."""
    import pandas as pd

    from pipeline.baselines import score
    from pipeline.enrolment import enroll
    from pipeline.identify import InferConfig, run
    from pipeline.search import matches_known_map5
    from pipeline.validation import EvalConfig, evaluate
    from stage2_embed.pixel_embedder import write_pixel_embedder

    emb = write_pixel_embedder(os.path.join(w, descriptor), 96, descriptor=descriptor)
    catalog = os.path.join(w, f"{descriptor}_catalog.npz")
    enroll(emb, catalog, os.path.join(data, "train_images"), os.path.join(data, "train.csv"), progress=False)
    truth_csv = os.path.join(data, "test_truth.csv")
    truth = pd.read_csv(truth_csv, dtype=str).set_index("image")["individual_id"].to_dict()
    known = set(pd.read_csv(os.path.join(data, "train.csv"), dtype=str)["individual_id"])
    out: dict = {}

    def identify(tag: str) -> None:
        cfg = InferConfig(detector="none", embedder=emb, catalog=catalog, images=os.path.join(data, "test_images"),
                          out=os.path.join(w, f"{descriptor}_{tag}"))
        run(cfg, progress=False)
        out[f"{descriptor}_known_map5_{tag}"] = matches_known_map5(os.path.join(cfg.out, "matches.csv"), truth,
                                                                   known)
        out[f"{descriptor}_open_set_map5_{tag}"] = score(os.path.join(cfg.out, "submission.csv"), truth_csv)

    identify("unfitted")
    ev = evaluate(EvalConfig(embedder=emb, catalog=catalog, images=os.path.join(data, "train_images")),
                  progress=False)
    identify("fitted")
    out[f"{descriptor}_rerank_depth"] = ev["rerank_depth"]
    out[f"{descriptor}_validation_queries"] = ev["queries"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--data", default="tests/data/finid_sharks", help="Kaggle-layout folder with test_truth.csv")
    p.add_argument("--workdir", default="work/quickstart", help="outputs (emptied first)")
    a = p.parse_args(argv)
    import shutil

    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.abspath(a.workdir)}/mlflow.db")
    out = {"data": a.data}
    for descriptor in ("pixels", "hog"):
        out.update(measure(a.data, a.workdir, descriptor))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
