"""Building validated, sharded TFRecords from a Kaggle-layout folder: the plan is carried out by
image workers, shards are written atomically and the manifest last (the library behind
``tfrecords/build.py``).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from runtime import atomic
from runtime.storage import exists, gfile, is_url, join, listdir, makedirs, read_bytes
from tfrecords import SCHEMA_VERSION
from tfrecords.boxes import normalise
from tfrecords.cleaning import Rejection, rejections_frame
from tfrecords.images import PreparedImage, load_and_prepare, worker_init
from tfrecords.plan import BuildConfig, BuildPlan, Shard, index_frame, make_plan

SHARD_RE = re.compile(r"^(train|test)-\d{5}-of-\d{5}\.tfrec$")


STATE = ".state"  # per-shard results of this build, kept until the manifest is written


def _remove(path: str) -> None:
    if is_url(path):
        gfile().remove(path)
    else:
        Path(path).unlink(missing_ok=True)


def _up_to_date(plan: BuildPlan) -> dict | None:
    """The manifest of a finished build of the same inputs and config whose shards are all there."""
    path = join(plan.config.out, "manifest.json")
    if not exists(path):
        return None
    m = json.loads(read_bytes(path))
    if m.get("signature") != plan.signature or not all(exists(join(plan.config.out, s["file"])) for s in m["shards"]):
        return None
    return m


def _prepare_out(plan: BuildPlan) -> dict[str, dict]:
    """Clear what an earlier, different build left; return the states of shards already done."""
    out = plan.config.out
    state_dir = join(out, STATE)
    makedirs(state_dir)
    sig_path = join(state_dir, "signature")
    same = exists(sig_path) and read_bytes(sig_path).decode() == plan.signature
    wanted = {s.name for s in plan.shards}
    for name in listdir(out):
        if ".tmp-" in name or (SHARD_RE.match(name) and (not same or name not in wanted)):
            _remove(join(out, name))
    if not same:
        for name in listdir(state_dir):
            _remove(join(state_dir, name))
    atomic.write_text(sig_path, plan.signature)
    done = {}
    for s in plan.shards:
        st = join(state_dir, s.name + ".json")
        if s.name not in done and exists(st) and exists(join(out, s.name)):
            done[s.name] = json.loads(read_bytes(st))
    return done


def _write_shard(plan: BuildPlan, shard: Shard, results, maps: dict[str, dict[str, int]]) -> dict:
    """Consume this shard's prepared images (in order), write the shard atomically, return its state."""
    import tensorflow as tf

    from tfrecords.schema import ImageRecord, serialize

    out = plan.config.out
    final = join(out, shard.name)
    tmp = atomic.tmp_name(final)
    rejected: list[list[str]] = []
    written = 0
    with tf.io.TFRecordWriter(tmp) as w:
        for row in shard.rows:
            prep = next(results)
            if not isinstance(prep, PreparedImage):
                rejected.append([row.split, row.image, prep])
                continue
            boxes, box_rej = normalise(list(row.boxes), prep.source_width, prep.source_height, row.split, row.image)
            rejected += [[r.split, r.image, r.reason] for r in box_rej]
            w.write(serialize(ImageRecord(
                encoded=prep.encoded, filename=row.image, height=prep.height, width=prep.width,
                species=row.species, species_index=maps["species"].get(row.species, -1),
                individual_id=row.individual_id, individual_index=maps["individuals"].get(row.individual_id, -1),
                fold=row.fold, holdout=row.holdout, boxes=tuple(boxes),
                box_labels=tuple(maps["parts"][b.label] for b in boxes),
            )))
            written += 1
    state = {"file": shard.name, "split": shard.split, "records": written, "sha256": atomic.sha256_file(tmp),
             "rejected": rejected}
    atomic.write_json(join(out, STATE, shard.name + ".json"), state)
    atomic.commit(tmp, final)  # after the state: a final shard always has its state beside it
    return state


def _pool(workers: int) -> ProcessPoolExecutor:
    """Image worker processes, forked from a fresh server that preloads only ``tfrecords.images``,
    so no thread of this process is ever forked: TensorFlow's, or OpenCV's pool once SIFT or a resize
    has run here (a worker forked after that hung in its first ``cv2.resize``: ``tests/test_build.py``).
    A worker that dies breaks the build with an error rather than a hang (as ``mp.Pool`` would);
    rerunning resumes."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["tfrecords.images"])
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=worker_init)


def _counted(it, bar):
    """Yield ``it``'s items, ticking the progress bar for each."""
    for r in it:
        bar.update(1)
        yield r


def build(cfg: BuildConfig, progress: bool = True) -> dict:
    """Run a build (or resume one); returns the manifest."""
    makedirs(cfg.out)
    with atomic.folder_lock(cfg.out):
        plan = make_plan(cfg)
        finished = _up_to_date(plan)
        if finished:
            return finished
        done = _prepare_out(plan)
        pending = [s for s in plan.shards if s.name not in done]
        maps = {k: {v: i for i, v in enumerate(getattr(plan, k))} for k in ("species", "individuals", "parts")}
        jobs = [(r.path, cfg.max_side, cfg.max_pixels, cfg.min_side) for s in pending for r in s.rows]
        total = sum(len(s.rows) for s in plan.shards)
        workers = cfg.workers or mp.cpu_count()
        bar = tqdm(total=total, initial=total - len(jobs), desc="build", unit="img", disable=not progress)
        pool = _pool(workers) if workers > 1 and len(jobs) > 1 else None
        try:
            it = pool.map(load_and_prepare, jobs, chunksize=16) if pool else map(load_and_prepare, jobs)
            results = _counted(it, bar)
            for s in pending:
                done[s.name] = _write_shard(plan, s, results, maps)
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)
            bar.close()
        return _finish(plan, done)


def individual_counts(index: pd.DataFrame, folds: int) -> dict:
    """``individual_species`` (id -> species) and ``fold_counts`` (id -> training images per fold,
    holdout individuals out): what the trainers need, so that nothing rescans the records."""
    train = index[index["split"] == "train"]
    kept = train[train["holdout"].astype(int) == 0]
    table = pd.crosstab(kept["individual_id"], kept["fold"].astype(int)).reindex(columns=range(folds), fill_value=0)
    return {"individual_species": dict(zip(train["individual_id"], train["species"], strict=True)),
            "fold_counts": {str(k): [int(n) for n in row] for k, row in table.iterrows()}}


def _finish(plan: BuildPlan, done: dict[str, dict]) -> dict:
    out = plan.config.out
    states = [done[s.name] for s in plan.shards]
    image_rej = [Rejection(*r) for st in states for r in st["rejected"]]
    rej = rejections_frame(plan.rejections + image_rej).sort_values(["split", "image", "reason"], kind="stable")
    dropped = {(r.split, r.image) for r in image_rej if not r.reason.startswith("box ")}
    index = index_frame(plan)
    index = index[[(s, i) not in dropped for s, i in zip(index["split"], index["image"], strict=True)]]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "kind": "images",
        "signature": plan.signature,
        "config": {k: v for k, v in vars(plan.config).items() if k not in ("workers", "out")},
        "counts": {"train": int(sum(st["records"] for st in states if st["split"] == "train")),
                   "test": int(sum(st["records"] for st in states if st["split"] == "test")),
                   "rejected": len(rej)},
        "species": plan.species,
        "individuals": plan.individuals,
        "parts": plan.parts,
        "folds": plan.config.folds,
        "holdout_individuals": plan.holdout,
        **individual_counts(index, plan.config.folds),
        "shards": [{k: st[k] for k in ("file", "split", "records", "sha256")} for st in states],
    }
    atomic.write_text(join(out, "rejected.csv"), rej.to_csv(index=False))
    atomic.write_text(join(out, "index.csv"), index.to_csv(index=False))
    atomic.write_json(join(out, "manifest.json"), manifest)
    state_dir = join(out, STATE)
    if is_url(state_dir):
        gfile().rmtree(state_dir)
    else:
        shutil.rmtree(state_dir, ignore_errors=True)
    return manifest
