"""``Apply`` in the match review: the confirmed photos join the catalog through ``enroll`` (the same
detect -> crop -> embed path, atomic and locked), merges relabel the catalog, and ``decisions.csv``
is exported. Decisions are marked applied only after the catalog is written, so an Apply killed
half-way is simply run again (enroll replaces rows of the same file name; relabelling twice is a
no-op)."""

from __future__ import annotations

import os
import tempfile

import pandas as pd


def final_id(individual: str, merges: dict[str, str]) -> str:
    """Where a chain of merges leads (a -> b, b -> c: a ends as c)."""
    seen = {individual}
    while individual in merges:
        individual = merges[individual]
        if individual in seen:
            raise ValueError(f"merges form a cycle through {individual}")
        seen.add(individual)
    return individual


def apply_decisions(setup) -> dict:
    """Enroll every confirmed, unapplied photo and apply the merges (``setup``: a ``ReviewSetup``)."""
    from pipeline.catalog import relabel
    from pipeline.enrolment import enroll
    from runtime import atomic
    from runtime.storage import exists

    store = setup.store
    dec, merges = store.pending()
    if len(dec) and not setup.embedder:
        raise ValueError("Apply needs the embedder run folder: start review.py with --embedder")
    result = {"enrolled": 0, "failed": 0, "relabelled": 0, "merges": len(merges)}
    if len(dec):
        labels = pd.DataFrame({"image": dec["image"], "species": dec["species"],
                               "individual_id": [final_id(i, merges) for i in dec["individual_id"]]})
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "labels.csv")
            labels.to_csv(path, index=False)
            out = enroll(setup.embedder, setup.catalog, setup.images, path, setup.detector, progress=False)
        result.update(enrolled=out["enrolled"], failed=out["failed"], catalog_images=out["catalog_images"],
                      individuals=out["individuals"])
    if merges and exists(setup.catalog):
        result["relabelled"] = relabel(setup.catalog, {s: final_id(s, merges) for s in merges})
    store.mark_applied(dec["id"].tolist(), list(merges))
    atomic.write_bytes(setup.decisions_csv, store.decisions().to_csv(index=False).encode())
    result["decisions_csv"] = setup.decisions_csv
    return result
