"""What stage 2 brings to the one training loop (``runtime.trainer``): its config, the ArcFace
training and embedding models, crop datasets, validation MAP@5 and the pixel fusion after training
(the library behind ``stage2_embed/train.py``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from runtime import atomic
from runtime.flags import check, option
from runtime.trainer import BUDGET_HELP
from stage2_embed.backbones import BACKBONES, HEADS
from stage2_embed.fusion import METRIC_MODES

CACHE_BYTES = 2 << 30  # decoded training images are kept in memory below this size


# The last validation and ``_finish`` (every photo embedded again, the descriptors fitted and fused, the
# confusion report, saving) take about this many epochs: 1.3 minutes after 65-s epochs on 4,031 whale-head-
# sized photos (docs/history.md, "A rehearsal at the whale heads' scale"); a budget keeps it back.
FINISH_EPOCHS = 1.5


@dataclass(frozen=True)
class TrainConfig:
    records: str = option(help="crop records (stage1_detect/crop.py output), or image records with --crop")
    out: str = option(help="run folder: checkpoints, embedder.keras, embedder_config.json, confusion/")
    backbone: str = option("b0", help="EfficientNet size (B0 on real photos: on the committed shark fins it beat "
                                      "v2b0, 0.17 vs 0.12 MAP@5; v2b0 trains ~1.2x faster and won on the synthetic "
                                      "world, so the demo trains it)", choices=tuple(BACKBONES))
    weights: str = option("none", help="backbone weights: none, imagenet (from Keras' local cache) or a "
                                       "local .h5/.weights.h5 file")
    init: str | None = option(None, help="start from another run's embedder (a stage2_embed/train.py run folder, "
                                         "e.g. one trained on the synthetic world): its backbone and embedding, "
                                         "a new head for these individuals")
    image_size: int = option(96, help="square input in pixels (the CPU budget; marks need >= 96: 64 px gave "
                                      "val MAP@5 0.75 where 96 px gave 0.83)", lo=32)
    embedding_dim: int = option(256, help="embedding size", lo=2)
    head: str = option("subcenter", help="training head", choices=HEADS)
    k: int = option(3, help="sub-centres per individual (subcenter head)", lo=1)
    scale: float = option(16.0, help="ArcFace logit scale s (from scratch s = 30 trains slowly: 0.59 vs 0.74 "
                                     "after 30 epochs at 64 px)", lo=1.0)
    arc_margin: float = option(0.3, help="ArcFace additive angular margin m in radians", lo=0.0, hi=1.5)
    dynamic_margin: bool = option(False, help="per-individual margins from image counts (rarer: larger)")
    species_weight: float = option(0.1, help="weight of the auxiliary species loss", lo=0.0)
    epochs: int = option(30, help="passes over the training folds", lo=1)
    budget_minutes: float = option(0.0, help=BUDGET_HELP, lo=0.0)
    batch_size: int = option(32, help="images per replica per step", lo=1)
    lr: float = option(3e-3, help="peak learning rate (AdamW, warmup then cosine decay)", lo=1e-8)
    weight_decay: float = option(1e-4, help="AdamW weight decay", lo=0.0)
    warmup_epochs: float = option(1.0, help="epochs of linear warmup", lo=0.0)
    val_fold: int = option(0, help="the fold held out for validation", lo=0)
    val_every: int = option(5, help="epochs between validation MAP@5 passes (and always after the last)", lo=1)
    all_folds: str | None = option(None, help="the final model: train on every fold (the validation fold too), "
                                              "with no validation; the pixel weight is this cross-validation "
                                              "run folder's, and pipeline/evaluate.py carries its threshold, "
                                              "re-ranking and blend over")
    balance: str = option("none", help="rare individuals: as they come, class weights, or resampled",
                          choices=("none", "class_weight", "resample"))
    flip: bool = option(False, help="random horizontal flips (moves a fin's marks)")
    crop: bool = option(False, help="the records are image records: cut them to their boxes first")
    mixed_precision: bool = option(False, help="mixed_bfloat16 on TPU and CPU, mixed_float16 on GPU")
    pixel_fusion: bool = option(True, help="mix the 16x16 pixel and HOG edge descriptors into the saved embedding "
                                           "at the weights validation prefers (never worse than either there)")
    descriptor_metric: str = option("auto", help="when the fusion may project each descriptor by an LDA fitted on "
                                                 "the training folds (kept where it validates better on >= 100 "
                                                 "queries): auto where the learned embedding alone does not beat "
                                                 "both raw descriptors (stage2_embed/metric.py; it ranks known "
                                                 "individuals better, and beside a strong embedder told new ones "
                                                 "worse on the demo)", choices=METRIC_MODES)
    steps_per_execution: int = option(1, help="steps per compiled call (TPU: 32 or more, so the host keeps up)",
                                      lo=1)
    seed: int = option(0, help="random seed for weights, shuffling and augmentation")

    def __post_init__(self) -> None:
        check(self)

    @property
    def held_out(self) -> int | None:
        """The fold kept out of training: ``val_fold``, or None with ``all_folds``."""
        return None if self.all_folds else self.val_fold


def smoke(records: str, out: str, **kw) -> TrainConfig:
    """A tiny run for tests and the small demo."""
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

    from runtime.optimizer import AdamW
    from runtime.trainer import schedule_of
    from stage2_embed.model import build_models

    train_model, embed_model = build_models(ecfg)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    schedule = schedule_of(cfg, steps_per_epoch)(cfg.epochs)
    train_model.compile(optimizer=AdamW(schedule, weight_decay=cfg.weight_decay),
                        loss={"individual": ce, "species": ce},
                        loss_weights={"individual": 1.0, "species": cfg.species_weight},
                        steps_per_execution=cfg.steps_per_execution)
    return train_model, embed_model


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          on_validation: Callable[[int, float], None] | None = None) -> dict:
    """Train, checkpointing every epoch; returns the last epoch's metrics and the confusion summary.
    ``on_validation(epoch, val_map5)`` is called after each validation (a tuner prunes from it).
    Under several workers (``TF_CONFIG``) the chief writes everything; the others only train."""
    from runtime import trainer

    return trainer.train(cfg, cfg.out, cfg.epochs, lambda strategy, state: _stage(cfg, strategy, on_validation),
                         resume, progress)


def embedder_config(cfg: TrainConfig, manifest: dict, counts: np.ndarray, replicas: int):
    """The ``EmbedderConfig`` of a run: its classes from the manifest, the crop margin its records
    were cut with (written down so that inference cuts the same)."""
    from stage2_embed.layers import dynamic_margins
    from stage2_embed.model import EmbedderConfig
    from tfrecords.reader import crop_margin

    return EmbedderConfig(
        num_classes=len(manifest["individuals"]), num_species=len(manifest["species"]), backbone=cfg.backbone,
        weights=cfg.weights, image_size=cfg.image_size, embedding_dim=cfg.embedding_dim, head=cfg.head, k=cfg.k,
        scale=cfg.scale, margin=cfg.arc_margin, sync_bn=replicas > 1,
        margins=tuple(dynamic_margins(np.maximum(counts, 1))) if cfg.dynamic_margin else None,
        crop_margin=crop_margin(manifest, cfg.crop))


def _stage(cfg: TrainConfig, strategy, on_validation: Callable[[int, float], None] | None):
    import keras

    from runtime.strategy import shard_by_file
    from runtime.trainer import Stage, schedule_of
    from stage2_embed.data import train_dataset
    from tfrecords.reader import list_shards, read_manifest, train_counts

    manifest = read_manifest(cfg.records)
    counts = train_counts(manifest, cfg.held_out)
    if cfg.all_folds:
        cv_config(cfg.all_folds)  # a missing cross-validation run fails now, not after training
    if cfg.mixed_precision:  # bfloat16 on TPU (and CPU), float16 (with loss scaling) on GPU
        gpu = _has_gpu() and "TPU" not in type(strategy).__name__
        keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
    global_batch = cfg.batch_size * strategy.num_replicas_in_sync
    steps = max(1, int(counts.sum()) // global_batch)
    ecfg = embedder_config(cfg, manifest, counts, strategy.num_replicas_in_sync)
    keras.utils.set_random_seed(cfg.seed)
    cache = int(counts.sum()) * (cfg.image_size * 5 // 4) ** 2 * 3 < CACHE_BYTES
    ds = train_dataset(cfg.records, cfg.image_size, global_batch, cfg.held_out, counts, cfg.balance, cfg.flip,
                       cfg.seed, cfg.crop, cache)
    ds = shard_by_file(ds, len(list_shards(cfg.records, "train")), strategy)
    with strategy.scope():
        train_model, embed_model = compiled_models(cfg, ecfg, steps)
        if cfg.init:
            from stage2_embed.model import init_from

            print(f"--init {cfg.init}: {init_from(train_model, cfg.init)} layers' weights taken over", flush=True)

    def validate(epoch: int, last: bool) -> dict:
        if cfg.all_folds or (epoch + 1) % cfg.val_every and not last:
            return {}
        score = validation_map5(embed_model, cfg.records, cfg)
        if on_validation:
            on_validation(epoch, score)
        return {"val_map5": score}

    return Stage("stage2-embed", f"{cfg.backbone}-{cfg.head}-{cfg.image_size}", train_model, ds, steps,
                 configs={"embedder_config.json": asdict(ecfg)}, validate=validate,
                 finish=lambda history: _finish(cfg, ecfg, train_model, embed_model),
                 params={"replicas": strategy.num_replicas_in_sync, "global_batch": global_batch,
                         "mixed": str(cfg.mixed_precision)}, best="val_map5", schedule=schedule_of(cfg, steps),
                 reserve_epochs=FINISH_EPOCHS)


def _finish(cfg: TrainConfig, ecfg, train_model, embed_model) -> dict:
    """After the last epoch: the saved models (the embedding fused with the pixels), the species
    confusion report, and the artifacts in MLflow."""
    from runtime.checkpoint import save_model
    from runtime.storage import join
    from runtime.tracking import log_artifact, log_keras_model
    from stage2_embed import confusion_matrix
    from stage2_embed.head import centres_of, save_head, trained_individuals
    from tfrecords.reader import read_manifest

    fused, fusion = finish_embedding(embed_model, cfg, ecfg)
    for name, model in (("embedder.keras", fused), ("train_model.keras", train_model)):
        save_model(model, join(cfg.out, name))
    manifest = read_manifest(cfg.records)  # the class centres of the individuals trained on (pipeline/blend.py)
    save_head(cfg.out, centres_of(train_model, manifest["individuals"], trained_individuals(cfg.records, cfg.held_out)))
    conf = {}
    if not cfg.all_folds:  # with every fold trained on, no fold is left to be confused on
        conf = confusion_matrix.report(train_model, cfg.records, join(cfg.out, "confusion"), cfg.image_size,
                                       cfg.val_fold, cfg.head, cfg.crop)
        confusion_matrix.log_summary(conf)
    log_artifact(join(cfg.out, "embedder_config.json"))
    log_keras_model(fused, "embedder", cfg.image_size)
    return {**fusion, **conf}


def finish_embedding(embed_model, cfg: TrainConfig, ecfg) -> tuple:
    """(the embedding model to save, its metrics): with ``pixel_fusion``, mixed with the pixel and
    edge (HOG) descriptors at the weights validation prefers (``stage2_embed.fusion``), recorded in
    ``embedder_config.json`` and MLflow; a one-line warning when the embedder alone loses."""
    import mlflow

    from runtime.storage import join
    from stage2_embed.fusion import fuse, saved_choice, warning

    if not cfg.pixel_fusion:
        return embed_model, {}
    if cfg.all_folds:  # no fold left to choose on: the cross-validation run's weight and figures
        from runtime.storage import exists, read_bytes
        from stage2_embed.fusion import fused_model, refit_metrics

        cv_fusion = join(cfg.all_folds, "fusion.json")
        metrics = json.loads(read_bytes(cv_fusion)) if exists(cv_fusion) else {}
        cv = cv_config(cfg.all_folds)
        metrics.update({k: float(cv.get(k, 0.0)) for k in ("pixel_weight", "hog_weight", "pixel_metric", "hog_metric")})
        kernels = refit_metrics(cfg.records, cfg.image_size, cfg.crop,  # on every fold, as the backbone
                                [k for k, f, w in (("pixels", "pixel_metric", "pixel_weight"),
                                                   ("hog", "hog_metric", "hog_weight")) if metrics[f] and metrics[w]])
        fused = fused_model(embed_model, metrics["pixel_weight"], metrics["hog_weight"], kernels)
    else:
        fused, metrics = fuse(embed_model, cfg.records, cfg.image_size, cfg.val_fold, cfg.crop, cfg.descriptor_metric)
    saved = replace(ecfg, **saved_choice(metrics))
    atomic.write_json(join(cfg.out, "embedder_config.json"), asdict(saved))
    atomic.write_json(join(cfg.out, "fusion.json"), metrics)  # evaluate and infer repeat the warning
    mlflow.log_metrics(metrics)
    if msg := warning(metrics):
        print(msg, file=sys.stderr)
    return fused, metrics


def cv_config(run_dir: str) -> dict:
    """The embedder config of the cross-validation run that ``--all-folds`` names."""
    from runtime.storage import exists, join, read_bytes

    path = join(run_dir, "embedder_config.json")
    if not exists(path):
        raise FileNotFoundError(f"--all-folds {run_dir}: {path} not found; give the cross-validation run folder "
                                "(stage2_embed/train.py --out) whose choices the final model takes over")
    return json.loads(read_bytes(path))


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))
