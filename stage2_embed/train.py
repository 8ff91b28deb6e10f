"""Train the stage-2 embedder on crop records (or image records with ``--crop``).

    python stage2_embed/train.py --records CROPS --out RUN_DIR [--backbone b0] [--weights none]
        [--image-size 96] [--head subcenter|arcface|softmax] [--epochs E] [--batch-size B] [--lr LR]
        [--val-fold K] [--val-every N] [--balance none|class_weight|resample] [--dynamic-margin] [--flip]
        [--mixed-precision] [--resume]

The strategy is chosen from the environment (several workers in ``TF_CONFIG``, a TPU, several
GPUs, one device) and the batch is per replica (BatchNorm synchronised across replicas). AdamW with
warmup + cosine decay; augmentation in tf.data; every ``--val-every`` epochs and after the last,
validation MAP@5 by nearest neighbours: the validation fold's images against the training folds'
(known individuals only); a checkpoint per epoch and ``--resume``; everything logged to MLflow.
Ends with ``RUN_DIR/embedder.keras`` (image -> L2-normalised embedding), ``RUN_DIR/train_model.keras``,
``RUN_DIR/embedder_config.json`` and ``RUN_DIR/confusion/`` (species confusion matrix CSV + PNG,
most-confused individual pairs). Under several workers the chief writes all of it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np

from tfrecords import atomic, cli

CACHE_BYTES = 2 << 30  # decoded training images are kept in memory below this size


@dataclass(frozen=True)
class TrainConfig:
    records: str
    out: str
    backbone: str = "b0"
    weights: str = "none"
    image_size: int = 96  # the CPU budget; marks need >= 96 px (64 px: val MAP@5 0.75 where 96 px: 0.83)
    embedding_dim: int = 256
    head: str = "subcenter"
    k: int = 3
    scale: float = 16.0  # from scratch, s = 30 trains slowly (0.59 vs 0.74 after 30 epochs at 64 px)
    margin: float = 0.3
    dynamic_margin: bool = False
    species_weight: float = 0.1
    epochs: int = 30
    batch_size: int = 32  # per replica
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    val_fold: int = 0
    val_every: int = 5  # epochs between validation MAP@5 passes (and always after the last)
    balance: str = "none"
    flip: bool = False
    crop: bool = False  # the records are image records: cut them to their boxes first
    mixed_precision: bool = False
    # after training, mix the 16x16 pixel descriptor into the saved embedding at the weight that
    # validation prefers (stage2_embed.fusion): never worse than the pixels on validation
    pixel_fusion: bool = True
    steps_per_execution: int = 1  # TPU: 32 or more, so the host is not the bottleneck
    seed: int = 0

    def __post_init__(self) -> None:
        if self.balance not in ("none", "class_weight", "resample"):
            raise ValueError("--balance must be none, class_weight or resample")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("--epochs, --batch-size and --lr must be positive")


def smoke(records: str, out: str, **kw) -> TrainConfig:
    return TrainConfig(**{"records": records, "out": out, "image_size": 64, "embedding_dim": 32, "epochs": 2,
                          "batch_size": 8, "warmup_epochs": 0.5, **kw})


def validation_map5(embed_model, records: str, cfg: TrainConfig) -> float:
    """Validation fold (queries) against the training folds (gallery), known individuals only."""
    from stage2_embed.data import image_dataset
    from stage2_embed.forward import embed_all
    from stage2_embed.retrieval import known_individual_map5

    emb, ids, _, _, folds, holdout = embed_all(embed_model, image_dataset(records, "train", cfg.image_size, 64,
                                                                         crop=cfg.crop))
    q = folds == cfg.val_fold
    g = (folds != cfg.val_fold) & (holdout == 0)
    return known_individual_map5(emb[q], ids[q].tolist(), emb[g], ids[g].tolist())


def compiled_models(cfg: TrainConfig, ecfg, steps_per_epoch: int):
    """(training model compiled with AdamW, warmup + cosine decay and both losses; embedding model).
    Call inside the strategy's scope."""
    import keras

    from stage2_embed.model import build_models

    train_model, embed_model = build_models(ecfg)
    warm = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    schedule = keras.optimizers.schedules.CosineDecay(
        cfg.lr * 0.05, max(1, steps_per_epoch * cfg.epochs - warm), alpha=0.01, warmup_target=cfg.lr,
        warmup_steps=warm)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    train_model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay),
                        loss={"individual": ce, "species": ce},
                        loss_weights={"individual": 1.0, "species": cfg.species_weight},
                        steps_per_execution=cfg.steps_per_execution)
    return train_model, embed_model


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          on_validation: Callable[[int, float], None] | None = None) -> dict:
    """Train, checkpointing every epoch; returns the last epoch's metrics and the confusion summary.
    ``on_validation(epoch, val_map5)`` is called after each validation (a tuner prunes from it).
    Under several workers (``TF_CONFIG``) the chief writes everything; the others only train."""
    from tfrecords.reader import read_manifest
    from tfrecords.strategy import choose_strategy, is_chief

    strategy = choose_strategy()  # first: under several workers it waits for the others to connect
    chief = is_chief()
    manifest = read_manifest(cfg.records)
    with atomic.folder_lock(cfg.out) if chief else contextlib.nullcontext():
        return _train(cfg, strategy, chief, manifest, resume, progress, on_validation)


def _train(cfg: TrainConfig, strategy, chief: bool, manifest: dict, resume: bool, progress: bool,
           on_validation: Callable[[int, float], None] | None) -> dict:
    import keras
    import mlflow

    from stage2_embed import confusion
    from stage2_embed.data import train_dataset
    from stage2_embed.layers import dynamic_margins
    from stage2_embed.model import EmbedderConfig
    from tfrecords.checkpoint import Checkpoint, save_model
    from tfrecords.layout import join
    from tfrecords.reader import list_shards
    from tfrecords.strategy import fit_epoch, shard_by_file
    from tfrecords.tracking import log_artifact, start_run

    ckpt = Checkpoint(cfg.out)
    if ckpt.state() and not resume:
        raise ValueError(f"{cfg.out} holds a run already: pass --resume to continue it, or choose another --out")
    state = ckpt.state() if resume else None
    individuals = manifest["individuals"]
    counts = _train_counts(cfg, individuals)
    n_train = int(counts.sum())
    if mixed := cfg.mixed_precision:  # bfloat16 on TPU (and CPU), float16 (with loss scaling) on GPU
        gpu = _has_gpu() and "TPU" not in type(strategy).__name__
        keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
    global_batch = cfg.batch_size * strategy.num_replicas_in_sync
    steps = max(1, n_train // global_batch)
    ecfg = EmbedderConfig(
        num_classes=len(individuals), num_species=len(manifest["species"]), backbone=cfg.backbone,
        weights=cfg.weights, image_size=cfg.image_size, embedding_dim=cfg.embedding_dim, head=cfg.head, k=cfg.k,
        scale=cfg.scale, margin=cfg.margin, sync_bn=strategy.num_replicas_in_sync > 1,
        margins=tuple(dynamic_margins(np.maximum(counts, 1))) if cfg.dynamic_margin else None)
    keras.utils.set_random_seed(cfg.seed)
    cache = n_train * (cfg.image_size * 5 // 4) ** 2 * 3 < CACHE_BYTES
    ds = train_dataset(cfg.records, cfg.image_size, global_batch, cfg.val_fold, counts, cfg.balance, cfg.flip,
                       cfg.seed, cfg.crop, cache)
    ds = shard_by_file(ds, len(list_shards(cfg.records, "train")), strategy)
    with strategy.scope():
        train_model, embed_model = compiled_models(cfg, ecfg, steps)
    history, start, run_id = [], 0, None
    if state:
        ckpt.restore(train_model, state)
        start, history, run_id = state["epoch"] + 1, state["history"], state.get("mlflow_run_id")
        print(f"resuming {cfg.out} after epoch {start}/{cfg.epochs}", flush=True)
    if not chief:  # the other workers train their share of each step and write nothing
        for _ in range(start, cfg.epochs):
            fit_epoch(train_model, ds, steps, strategy, progress=False)
        return {}
    atomic.write_json(join(cfg.out, "embedder_config.json"), asdict(ecfg))
    atomic.write_json(join(cfg.out, "train_config.json"), asdict(cfg))
    with start_run("stage2-embed", cfg, run_name=f"{cfg.backbone}-{cfg.head}-{cfg.image_size}", run_id=run_id,
                   nested=mlflow.active_run() is not None) as run:  # a sweep's trials are child runs
        if not run_id:  # a resumed run logged these when it started
            mlflow.log_params({"replicas": strategy.num_replicas_in_sync, "global_batch": global_batch,
                               "mixed": str(mixed)})
        for epoch in range(start, cfg.epochs):
            t = time.perf_counter()
            metrics = fit_epoch(train_model, ds, steps, strategy, progress)
            if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
                metrics["val_map5"] = validation_map5(embed_model, cfg.records, cfg)
                if on_validation:
                    on_validation(epoch, metrics["val_map5"])
            metrics["epoch_seconds"] = time.perf_counter() - t
            ckpt.end_epoch(train_model, epoch, cfg.epochs, metrics, history, run.info.run_id)
        fused, fusion = finish_embedding(embed_model, cfg, ecfg)
        for name, model in (("embedder.keras", fused), ("train_model.keras", train_model)):
            save_model(model, join(cfg.out, name))
        atomic.write_json(join(cfg.out, "history.json"), history)
        conf = confusion.report(train_model, cfg.records, join(cfg.out, "confusion"), cfg.image_size,
                                cfg.val_fold, cfg.head, cfg.crop)
        confusion.log_summary(conf)
        log_artifact(join(cfg.out, "embedder.keras"))
        log_artifact(join(cfg.out, "embedder_config.json"))
    return {**(history[-1] if history else {}), **fusion, **conf}


def finish_embedding(embed_model, cfg: TrainConfig, ecfg) -> tuple:
    """(the embedding model to save, its metrics): with ``pixel_fusion``, mixed with the pixel
    descriptor at the weight validation prefers (``stage2_embed.fusion``), recorded in
    ``embedder_config.json`` and MLflow; a one-line warning when the embedder alone loses."""
    import mlflow

    from stage2_embed.fusion import fuse, warning
    from tfrecords.layout import join

    if not cfg.pixel_fusion:
        return embed_model, {}
    fused, metrics = fuse(embed_model, cfg.records, cfg.image_size, cfg.val_fold, cfg.crop)
    saved = replace(ecfg, pixel_weight=metrics["pixel_weight"])
    atomic.write_json(join(cfg.out, "embedder_config.json"), asdict(saved))
    atomic.write_json(join(cfg.out, "fusion.json"), metrics)  # evaluate and infer repeat the warning
    mlflow.log_metrics(metrics)
    if msg := warning(metrics):
        print(msg, file=sys.stderr)
    return fused, metrics


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def _train_counts(cfg: TrainConfig, individuals: list[str]) -> np.ndarray:
    """Training images per individual (folds != val, holdouts out), from the records themselves."""
    from tfrecords.reader import parsed_records

    counts = np.zeros(len(individuals), np.int64)
    ds = parsed_records(cfg.records, "train", exclude_folds=[cfg.val_fold], include_holdout=False)
    for i in ds.map(lambda e: e["image/individual_index"]).batch(4096):
        np.add.at(counts, i.numpy(), 1)
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = TrainConfig(records="", out="")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", required=True, help="crop records (stage1_detect/crop.py output)")
    p.add_argument("--out", required=True, help="run folder")
    for name in ("backbone", "weights", "head", "balance"):
        p.add_argument(f"--{name}", default=getattr(d, name))
    for name, typ in (("image_size", int), ("embedding_dim", int), ("k", int), ("scale", float), ("margin", float),
                      ("species_weight", float), ("epochs", int), ("batch_size", int), ("lr", float),
                      ("val_fold", int), ("val_every", int),
                      ("steps_per_execution", int), ("seed", int)):
        p.add_argument(f"--{name.replace('_', '-')}", type=typ, default=getattr(d, name))
    p.add_argument("--dynamic-margin", action="store_true", help="per-individual margins from image counts")
    p.add_argument("--flip", action="store_true", help="random horizontal flips (moves a fin's marks)")
    p.add_argument("--crop", action="store_true", help="records are image records: cut to their boxes")
    p.add_argument("--mixed-precision", action="store_true", help="mixed_bfloat16 on TPU, mixed_float16 on GPU")
    p.add_argument("--pixel-fusion", action=argparse.BooleanOptionalAction, default=d.pixel_fusion,
                   help="mix the 16x16 pixel descriptor into the saved embedding at the weight validation prefers "
                        "(default: %(default)s)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--smoke", action="store_true", help="tiny settings for smoke tests")
    p.add_argument("--quiet", action="store_true")
    cli.add_debug_flag(p)
    return p.parse_args(argv)


def _main(a: argparse.Namespace) -> int:
    fields = {k: getattr(a, k) for k in TrainConfig.__dataclass_fields__ if hasattr(a, k)}
    cfg = TrainConfig(**fields)
    if a.smoke:
        cfg = replace(smoke(a.records, a.out), head=a.head, balance=a.balance, crop=a.crop, val_fold=a.val_fold)
    final = train(cfg, resume=a.resume, progress=not a.quiet)
    print(json.dumps({"run_dir": a.out, **final}))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
