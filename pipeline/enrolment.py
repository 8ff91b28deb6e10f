"""Growing a catalog with labelled photos: embed, keep keypoints for the re-ranking, write the npz
atomically (the library behind ``pipeline/enroll.py``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from runtime.flags import option
from runtime.storage import dirname, exists, isdir, listdir, makedirs, remove


@dataclass(frozen=True, kw_only=True)
class EnrollConfig:
    """``pipeline/enroll.py``'s options."""

    embedder: str = option(help="embedder run folder")
    detector: str = option("none", help="detector run folder, or none (the photos are crops)")
    catalog: str = option(help="catalog .npz to grow (created if absent)")
    images: str = option(help="folder of the new photos")
    labels: str = option(help="CSV: image,individual_id,species")
    tta: str = option("none", help="flip: average with the mirrored crop", choices=("none", "flip"))


def read_labels(path: str) -> pd.DataFrame:
    """The labels, checked: safe names, one species per individual, no duplicate images."""
    from runtime.cli import DataError
    from tfrecords.cleaning import normalize_species, unsafe_name_reason
    from tfrecords.layout import read_csv

    df = read_csv(path, ("image", "individual_id", "species"), "labels file")
    if df.empty:
        raise DataError(f"{path}: no rows under the header")
    for name in df["image"]:
        if reason := unsafe_name_reason(name):
            raise DataError(f"{path}: image {name!r}: {reason}")
    empty = df[(df["individual_id"] == "") | (df["species"] == "")]
    if len(empty):
        raise DataError(f"{path}: {len(empty)} row(s) without individual_id or species, e.g. {empty['image'].iloc[0]}")
    df["species"] = df["species"].map(normalize_species)
    if df["image"].duplicated().any():
        raise DataError(f"{path}: image {df['image'][df['image'].duplicated()].iloc[0]} is listed twice")
    per = df.groupby("individual_id")["species"].nunique()
    if (per > 1).any():
        raise DataError(f"{path}: individual {per[per > 1].index[0]} is given two species; one individual is "
                        "one species")
    return df


def enroll(embedder: str, catalog: str, images: str, labels: str, detector: str = "none", tta: str = "none",
           progress: bool = True) -> dict:
    from pipeline import catalog as catalog_lib
    from pipeline import local
    from pipeline.identify import InferConfig, embed_chunk
    from pipeline.photos import chunks, inputs
    from runtime import atomic
    from stage2_embed.embedder import load_embedder

    df = read_labels(labels)
    model, ecfg = load_embedder(embedder)
    cfg_json = json.dumps(ecfg, sort_keys=True)
    det, det_size = None, 0
    if detector != "none":
        from stage1_detect.model import load_detector

        det, dcfg = load_detector(detector)
        det_size = dcfg.image_size
    folder = dirname(catalog)
    makedirs(folder)
    with atomic.folder_lock(folder):
        old = catalog_lib.load_npz(catalog) if exists(catalog) else catalog_lib.Catalog(
            np.zeros((0, 0), np.float32), *(np.zeros(0, str) for _ in range(3)), embedder=cfg_json)
        why = catalog_lib.embedder_mismatch(old.embedder, cfg_json)
        if why:
            raise ValueError(f"{catalog} was embedded by {why}, not by {embedder}")
        known = dict(zip(old.individual_ids, old.species, strict=True))
        clash = [(i, s) for i, s in zip(df["individual_id"], df["species"], strict=True) if known.get(i, s) != s]
        if clash:
            raise ValueError(f"{labels}: individual {clash[0][0]} is {known[clash[0][0]]} in the catalog, not "
                             f"{clash[0][1]}")
        if not isdir(images):
            raise FileNotFoundError(f"--images {images}: no such folder")
        missing = sorted(set(df["image"]) - set(listdir(images)))
        if missing:
            raise FileNotFoundError(f"{images}: {len(missing)} labelled image(s) not found, e.g. {missing[0]}")
        icfg = InferConfig(detector=detector, embedder=embedder, catalog=catalog, out="", images=images, tta=tta)
        failures: dict[str, str] = {}
        wanted = set(df["image"])
        names, embs, boxes, feats = [], [], [], []
        stream = ((n, b) for n, b in inputs(icfg, failures) if n in wanted)
        for chunk_names, encoded in chunks(stream, icfg.chunk):
            names += chunk_names
            e, _, b = embed_chunk(encoded, det, det_size, model, ecfg, icfg)
            embs.append(e)
            boxes.append(b)
            feats.append(local.of_crops(encoded, b))  # keypoints for the re-ranking (pipeline/rerank.py)
        rows = df.set_index("image").loc[names]
        new = catalog_lib.Catalog(np.concatenate(embs) if embs else np.zeros((0, 1), np.float32), np.array(names),
                                  rows["individual_id"].to_numpy(str), rows["species"].to_numpy(str), cfg_json,
                                  np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32),
                                  local.from_list([f.of(i) for f in feats for i in range(len(f))]))
        merged = old.add(new) if len(old) else new
        catalog_lib.save_npz(merged, catalog)
        _update_index(catalog, old, new, merged)
    failed = {n: r for n, r in failures.items() if n in wanted}
    if failed:
        print(f"warning: {len(failed)} photo(s) not enrolled: " + "; ".join(f"{n}: {r}" for n, r in failed.items()),
              file=sys.stderr)
    return {"catalog": catalog, "enrolled": len(names), "failed": len(failed), "catalog_images": len(merged),
            "individuals": int(pd.Series(merged.individual_ids).nunique())}


def _update_index(catalog: str, old, new, merged) -> None:
    """Keep the approximate index beside a large catalog in step: new rows are added to it; when
    rows were replaced it is rebuilt; below the size that needs one, a stale one is removed."""
    from pipeline import index as approx

    path = approx.index_path(catalog)
    if len(merged) < approx.APPROX_FROM:
        if exists(path):
            remove(path)
        return
    appended = len(merged) == len(old) + len(new)
    index = approx.load(path, len(old)) if appended else None
    if index is not None:
        index.add(np.ascontiguousarray(new.embeddings, np.float32))
    else:
        index = approx.build_index(merged.embeddings)
    approx.save(index, path)
