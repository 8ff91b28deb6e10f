"""Train the stage-1 detector on image records with boxes.

    python stage1_detect/train.py --records OUT --out RUN_DIR [--image-size 256] [--backbone xs]
        [--epochs E] [--batch-size B] [--lr LR] [--val-fold K] [--weights none|PATH] [--resume]

Trains on folds != ``--val-fold``; after each epoch evaluates COCO mAP@0.5 and mAP@0.5:0.95 on the
validation fold (keras-cv's ``BoxCOCOMetrics``, i.e. pycocotools), checkpoints (weights, optimizer
state, history), and logs to MLflow. ``--resume`` continues a killed run from its last epoch.
The strategy comes from the environment (tfrecords/strategy.py); ``--batch-size`` is per replica.
Ends with ``RUN_DIR/detector.keras`` and ``RUN_DIR/detector_config.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import weakref
from dataclasses import asdict, dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from tfrecords import atomic, cli
from tfrecords.checkpoint import Checkpoint, save_model


@dataclass(frozen=True)
class TrainConfig:
    records: str
    out: str
    image_size: int = 192  # CPU budget; on a GPU/TPU use 384-512
    backbone: str = "xs"
    weights: str = "none"
    epochs: int = 14
    batch_size: int = 8
    lr: float = 2e-3
    warmup_epochs: float = 1.0
    val_fold: int = 0
    fpn_depth: int = 1
    seed: int = 0
    augment: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("--epochs, --batch-size and --lr must be positive")


def smoke(records: str, out: str) -> TrainConfig:
    """A tiny run for tests and the small demo."""
    return TrainConfig(records=records, out=out, image_size=96, epochs=2, batch_size=4, warmup_epochs=0.5)


_DETECT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its traced detection


def coco_map(model, ds) -> dict[str, float]:
    """COCO mAP@0.5 and mAP@0.5:0.95 of ``model`` on ``ds`` (images, dense boxes)."""
    import keras_cv
    import tensorflow as tf

    from stage1_detect.model import BOX_FORMAT

    metric = keras_cv.metrics.BoxCOCOMetrics(bounding_box_format=BOX_FORMAT, evaluate_freq=1_000_000_000)
    # predict_step's decoding, called directly: ``predict`` would run under the model's strategy,
    # which several workers must enter together, and only the chief evaluates
    detect = _DETECT.get(model)
    if detect is None:  # traced once per model, not once per epoch
        detect = _DETECT[model] = tf.function(lambda x: model.decode_predictions(model(x, training=False), x))
    for x, y in ds:
        metric.update_state(y, detect(x))
    r = metric.result(force=True)
    return {"map50": float(r["MaP@[IoU=50]"]), "map": float(r["MaP"])}


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train (or resume); returns the final metrics. Writes everything under ``cfg.out`` (under
    several workers in ``TF_CONFIG``, the chief writes it; the others only train)."""
    from tfrecords.reader import read_manifest
    from tfrecords.strategy import choose_strategy, is_chief

    strategy = choose_strategy()  # first: under several workers it waits for the others to connect
    chief = is_chief()
    manifest = read_manifest(cfg.records)
    with atomic.folder_lock(cfg.out) if chief else contextlib.nullcontext():
        return _train(cfg, strategy, chief, manifest, resume, progress)


def _train(cfg: TrainConfig, strategy, chief: bool, manifest: dict, resume: bool, progress: bool) -> dict:
    import keras
    import mlflow

    from stage1_detect.data import count_with_boxes, eval_dataset, train_dataset
    from stage1_detect.model import DetectorConfig, build_detector, save_config
    from tfrecords.layout import join
    from tfrecords.reader import list_shards
    from tfrecords.strategy import fit_epoch, shard_by_file
    from tfrecords.tracking import log_artifact, start_run

    ckpt = Checkpoint(cfg.out)
    state = ckpt.state() if resume else None
    if ckpt.state() and not resume:
        raise ValueError(f"{cfg.out} holds a run already: pass --resume to continue it, or choose another --out")
    dcfg = DetectorConfig(classes=tuple(manifest["parts"]), backbone=cfg.backbone, image_size=cfg.image_size,
                          fpn_depth=cfg.fpn_depth, weights=cfg.weights)
    keras.utils.set_random_seed(cfg.seed)
    global_batch = cfg.batch_size * strategy.num_replicas_in_sync
    train_ds = train_dataset(cfg.records, cfg.image_size, global_batch, cfg.val_fold, cfg.seed, cfg.augment)
    train_ds = shard_by_file(train_ds, len(list_shards(cfg.records, "train")), strategy)
    val_ds = eval_dataset(cfg.records, cfg.image_size, cfg.batch_size, cfg.val_fold).cache()
    n_train = count_with_boxes(cfg.records, cfg.val_fold) // global_batch  # steps per epoch
    if n_train == 0:
        raise ValueError(f"{cfg.records}: fewer than {global_batch} training images with boxes (--batch-size "
                         f"{cfg.batch_size} x {strategy.num_replicas_in_sync} replicas) outside fold {cfg.val_fold}")
    total = n_train * cfg.epochs
    warm = max(1, int(cfg.warmup_epochs * n_train))
    schedule = keras.optimizers.schedules.CosineDecay(
        cfg.lr * 0.05, max(1, total - warm), alpha=0.01, warmup_target=cfg.lr, warmup_steps=warm)
    with strategy.scope():
        model = build_detector(dcfg)
        model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=5e-4, global_clipnorm=10.0),
                      classification_loss="binary_crossentropy", box_loss="ciou")
    history: list[dict] = []
    start, run_id = 0, None
    if state:
        ckpt.restore(model, state)
        start, history, run_id = state["epoch"] + 1, state["history"], state.get("mlflow_run_id")
        print(f"resuming {cfg.out} after epoch {state['epoch'] + 1}/{cfg.epochs}", flush=True)
    if not chief:  # the other workers train their share of each step and write nothing
        for _ in range(start, cfg.epochs):
            fit_epoch(model, train_ds, None, strategy, progress=False)
        return {}
    save_config(dcfg, cfg.out)
    atomic.write_json(join(cfg.out, "train_config.json"), asdict(cfg))
    with start_run("stage1-detect", cfg, run_name=f"yolov8-{cfg.backbone}-{cfg.image_size}", run_id=run_id) as run:
        mlflow.log_dict(asdict(dcfg), "detector_config.json")
        for epoch in range(start, cfg.epochs):
            t = time.perf_counter()
            metrics = fit_epoch(model, train_ds, None, strategy, progress)  # the whole split
            metrics.update(coco_map(model, val_ds))
            metrics["epoch_seconds"] = time.perf_counter() - t
            ckpt.end_epoch(model, epoch, cfg.epochs, metrics, history, run.info.run_id)
        path = join(cfg.out, "detector.keras")
        save_model(model, path)
        atomic.write_json(join(cfg.out, "history.json"), history)
        log_artifact(path)
        log_artifact(join(cfg.out, "detector_config.json"))
    return history[-1] if history else {}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = TrainConfig(records="", out="")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", required=True, help="image records folder (tfrecords/build.py output)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, detector.keras, config")
    p.add_argument("--image-size", type=int, default=d.image_size, help="square model input, multiple of 32")
    p.add_argument("--backbone", default=d.backbone, choices=["xs", "s", "m"])
    p.add_argument("--weights", default=d.weights, help="none, or a local backbone .weights.h5")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--val-fold", type=int, default=d.val_fold)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--smoke", action="store_true", help="tiny settings for smoke tests")
    p.add_argument("--quiet", action="store_true")
    cli.add_debug_flag(p)
    return p.parse_args(argv)


def _main(a: argparse.Namespace) -> int:
    cfg = smoke(a.records, a.out) if a.smoke else TrainConfig(
        records=a.records, out=a.out, image_size=a.image_size, backbone=a.backbone, weights=a.weights,
        epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, val_fold=a.val_fold, seed=a.seed,
        augment=not a.no_augment)
    if a.smoke:
        cfg = replace(cfg, val_fold=a.val_fold, seed=a.seed)
    final = train(cfg, resume=a.resume, progress=not a.quiet)
    print(json.dumps({"run_dir": a.out, **final}))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
