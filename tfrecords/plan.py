"""What a build will write, decided before any image is touched: the cleaned rows of each split,
their boxes, folds, label maps and shard assignment, plus every rejection found on the way.

Pure apart from reading the input CSVs and folder listings; the same inputs and config give the
same plan, so a resumed build writes the same shards as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from runtime.cli import DataError
from runtime.flags import check, option
from runtime.storage import exists, is_url, join, read_bytes
from tfrecords import SCHEMA_VERSION
from tfrecords.boxes import DEFAULT_PART, PixelBox, load_boxes
from tfrecords.cleaning import Rejection, clean_test_names, clean_train_rows
from tfrecords.folds import assign_folds, holdout_individuals
from tfrecords.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
from tfrecords.layout import (
    BOXES_CSV,
    SAMPLE_SUBMISSION,
    TEST_DIR,
    TRAIN_COLUMNS,
    TRAIN_CSV,
    TRAIN_DIR,
    list_images,
    read_csv,
)

RECORDS_PER_SHARD = 512  # ~75 MB shards on Kaggle-sized images: enough files for interleave and sharding


@dataclass(frozen=True)
class BuildConfig:
    data: str = option(help="Kaggle-layout folder (local or gs://)")
    out: str = option(help="records folder to write")
    boxes: str | None = option(None, help="boxes CSV or COCO JSON (None: DATA/boxes.csv when present); CSV "
                                          "columns as public box files spell them (tfrecords/boxes.py)")
    part: str = option(DEFAULT_PART, help="the label of every box when the boxes CSV has no label column")
    folds: int = option(5, help="cross-validation folds (fewer where individuals have fewer photos)", lo=1)
    holdout_individuals: float = option(0.0, help="share of individuals never used for training (they play "
                                                  "new_individual in validation)", lo=0.0, hi=0.9)
    seed: int = option(0, help="seed of the folds, held-out individuals and shard order")
    max_side: int = option(1024, help="longer image side in the records (larger images are scaled down)", lo=32)
    shards: int = option(0, help=f"shards per split (0: ~{RECORDS_PER_SHARD} images each, at least 2)", lo=0)
    workers: int = option(0, help="image processes (0: one per core)", lo=0)
    max_pixels: int = option(DEFAULT_MAX_PIXELS, help="refuse larger images (read from the header)", lo=1)
    min_side: int = option(DEFAULT_MIN_SIDE, help="refuse images with a shorter side", lo=1)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class Row:
    split: str
    image: str
    path: str
    species: str = ""
    individual_id: str = ""
    fold: int = -1
    holdout: int = 0
    boxes: tuple[PixelBox, ...] = ()


@dataclass(frozen=True)
class Shard:
    name: str  # e.g. train-00000-of-00003.tfrec
    split: str
    rows: tuple[Row, ...]


@dataclass
class BuildPlan:
    config: BuildConfig
    shards: list[Shard]
    species: list[str]
    individuals: list[str]
    parts: list[str]
    holdout: list[str]
    rejections: list[Rejection] = field(default_factory=list)
    signature: str = ""


def n_shards(n: int, asked: int) -> int:
    if asked:
        return max(1, min(asked, n)) if n else 1
    return max(min(2, n), math.ceil(n / RECORDS_PER_SHARD), 1)


def _split_into_shards(split: str, rows: list[Row], asked: int) -> list[Shard]:
    k = n_shards(len(rows), asked)
    parts = np.array_split(np.arange(len(rows)), k)
    return [Shard(f"{split}-{i:05d}-of-{k:05d}.tfrec", split, tuple(rows[j] for j in idx))
            for i, idx in enumerate(parts)]


def _signature(cfg: BuildConfig, files: dict[str, list[str]], inputs: list[str]) -> str:
    """Fingerprint of everything the output depends on: config (less workers), input CSV bytes,
    the image listings (with sizes on local disks)."""
    h = hashlib.sha256()
    c = asdict(cfg)
    c.pop("workers")
    c.pop("out")
    h.update(json.dumps({"schema": SCHEMA_VERSION, "config": c}, sort_keys=True).encode())
    for p in inputs:
        h.update(p.encode() + (read_bytes(p) if exists(p) else b"<absent>"))
    for folder, names in sorted(files.items()):
        for n in names:
            size = os.path.getsize(join(folder, n)) if not is_url(folder) else -1
            h.update(f"{folder}/{n}:{size}\n".encode())
    return h.hexdigest()


def make_plan(cfg: BuildConfig) -> BuildPlan:
    train_dir, test_dir = join(cfg.data, TRAIN_DIR), join(cfg.data, TEST_DIR)
    if not exists(cfg.data):
        raise DataError(f"{cfg.data}: data folder not found (expected train.csv, train_images/, test_images/)")
    df = read_csv(join(cfg.data, TRAIN_CSV), TRAIN_COLUMNS, "train.csv")
    train_files, test_files = list_images(train_dir), list_images(test_dir)
    kept, rej = clean_train_rows(df, set(train_files))
    listed_in_csv = set(df["image"])
    rej += [Rejection("train", n, "in train_images but not in train.csv") for n in train_files
            if n not in listed_in_csv]

    sample_path = join(cfg.data, SAMPLE_SUBMISSION)
    listed = None
    if exists(sample_path):
        listed = read_csv(sample_path, ("image",), "sample_submission.csv")["image"].tolist()
    test_names, test_rej = clean_test_names(test_files, listed)
    rej += test_rej

    boxes_path = cfg.boxes or (join(cfg.data, BOXES_CSV) if exists(join(cfg.data, BOXES_CSV)) else None)
    boxes, box_rej = load_boxes(boxes_path, cfg.part) if boxes_path else ({}, [])
    rej += box_rej
    known = set(kept["image"]) | set(test_names)
    rej += [Rejection("boxes", n, "box for an image that is in neither split") for n in sorted(boxes) if n not in known]

    kept = kept.assign(fold=assign_folds(kept["individual_id"], cfg.folds, cfg.seed))
    held = holdout_individuals(kept["individual_id"], cfg.holdout_individuals, cfg.seed)
    order = np.random.default_rng(cfg.seed).permutation(len(kept))  # mix species within shards
    train_rows = [
        Row("train", r.image, join(train_dir, r.image), r.species, r.individual_id, int(r.fold),
            int(r.individual_id in held), tuple(boxes.get(r.image, ())))
        for r in kept.iloc[order].itertuples(index=False)
    ]
    test_rows = [Row("test", n, join(test_dir, n), boxes=tuple(boxes.get(n, ()))) for n in test_names]

    inputs = [join(cfg.data, TRAIN_CSV), sample_path] + ([boxes_path] if boxes_path else [])
    return BuildPlan(
        config=cfg,
        shards=_split_into_shards("train", train_rows, cfg.shards) + _split_into_shards("test", test_rows, cfg.shards),
        species=sorted(set(kept["species"])),
        individuals=sorted(set(kept["individual_id"])),
        parts=sorted({b[4] for r in train_rows + test_rows for b in r.boxes}),
        holdout=sorted(held),
        rejections=rej,
        signature=_signature(cfg, {train_dir: train_files, test_dir: test_files}, inputs),
    )


def index_frame(plan: BuildPlan) -> pd.DataFrame:
    """One row per planned image: where it went (before image-level rejections)."""
    return pd.DataFrame(
        [(r.image, r.split, r.species, r.individual_id, r.fold, r.holdout, s.name)
         for s in plan.shards for r in s.rows],
        columns=["image", "split", "species", "individual_id", "fold", "holdout", "shard"],
    )
