"""What stage 1 brings to the one training loop (``runtime.trainer``): its config, the YOLOv8
detector compiled with its losses, the box datasets and COCO validation every ``val_every`` epochs (the
library behind ``stage1_detect/train.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from runtime.flags import check, option
from runtime.trainer import BUDGET_HELP


@dataclass(frozen=True)
class TrainConfig:
    records: str = option(help="image records folder (tfrecords/build.py output)")
    out: str = option(help="run folder: checkpoints, detector.keras, detector_config.json")
    image_size: int = option(192, help="square model input in pixels, a multiple of 32 (the CPU budget; "
                                       "384-512 on a GPU/TPU)", lo=64)
    backbone: str = option("xs", help="YOLOv8 backbone size", choices=("xs", "s", "m"))
    weights: str = option("none", help="backbone weights: none, a local keras-cv preset folder (e.g. COCO's "
                                       "yolo_v8_s_backbone_coco) or a .weights.h5 file")
    epochs: int = option(14, help="passes over the training folds", lo=1)
    budget_minutes: float = option(0.0, help=BUDGET_HELP, lo=0.0)
    batch_size: int = option(8, help="images per replica per step", lo=1)
    lr: float = option(2e-3, help="peak learning rate (AdamW, warmup then cosine decay)", lo=1e-8)
    warmup_epochs: float = option(1.0, help="epochs of linear warmup", lo=0.0)
    val_fold: int = option(0, help="the fold held out for validation", lo=0)
    val_every: int = option(2, help="epochs between COCO validation passes (and always after the last): each "
                                    "costs ~a tenth of an epoch on CPU", lo=1)
    fpn_depth: int = option(1, help="blocks per feature-pyramid level", lo=1)
    seed: int = option(0, help="random seed for weights, shuffling and augmentation")
    augment: bool = option(True, help="random flips, scale and colour jitter while training")
    photometric: str = option("mild", help="colour jitter with --augment: mild (saturation, brightness) or wide "
                                           "(any hue, hazy to hard contrast, blur, grey: domain randomisation for "
                                           "detectors trained on synthetic photos)", choices=("mild", "wide"))
    grey: float = option(0.0, help="share of training photos turned grey with --augment, after the colour jitter "
                                   "(the synthetic sea is always coloured and its animals grey; an overcast sea "
                                   "is grey too; 0: off)", lo=0.0, hi=1.0)
    desaturate: float = option(0.3, help="the most colour a training photo loses in the colour jitter with --augment "
                                         "(each drawn from 0 to this; 1: full colour to grey, as overcast seas go)",
                               lo=0.0, hi=1.0)
    mosaic: float = option(0.5, help="share of training photos replaced by 2x2 grids of four with --augment "
                                     "(animals at a quarter of their area, four to a frame: the framing of "
                                     "photos at sea; 0: off)", lo=0.0, hi=1.0)
    close_ups: float = option(0.3, help="share of training photos cut close around their animal with --augment (its "
                                        "box filling 0.55-1.1 of the side: the framing of photo-ID close-ups, which "
                                        "the synthetic world rarely has; 0: off)", lo=0.0, hi=1.0)
    empty: float = option(0.0, help="share of training photos replaced by a window of their own water away from "
                                    "every box, with no box, with --augment (what is not an animal, at the scale "
                                    "of photos at sea; 0: off)", lo=0.0, hi=1.0)
    far: float = option(0.0, help="share of training photos shrunk to 0.2-0.5 of the side on a canvas of their own "
                                  "water, with --augment (animals at 1-5 %% of the frame with open water all round: "
                                  "the framing of photos at sea; 0: off)", lo=0.0, hi=1.0)
    far_water: str = option("own", help="the canvas of --far: own (a window of the photo's own water) or sea (the "
                                        "sea scene's open water, tfrecords/synthetic/sea.py)", choices=("own", "sea"))

    def __post_init__(self) -> None:
        check(self)


def smoke(records: str, out: str) -> TrainConfig:
    """A tiny run for tests and the small demo (no mosaic: at 96 px a quarter photo is too small to teach;
    no close-ups: they decode each photo at twice the size, and these runs are for speed)."""
    return TrainConfig(records=records, out=out, image_size=96, epochs=2, batch_size=4, warmup_epochs=0.5,
                       mosaic=0.0, close_ups=0.0)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train (or resume); returns the final metrics. Writes everything under ``cfg.out`` (under
    several workers in ``TF_CONFIG``, the chief writes it; the others only train)."""
    from runtime import trainer

    return trainer.train(cfg, cfg.out, cfg.epochs, lambda strategy, state: _stage(cfg, strategy), resume, progress)


def _stage(cfg: TrainConfig, strategy):
    import keras

    from runtime.checkpoint import save_model
    from runtime.optimizer import AdamW
    from runtime.storage import join
    from runtime.strategy import shard_by_file
    from runtime.tracking import log_artifact, log_keras_model
    from runtime.trainer import Stage, schedule_of
    from stage1_detect.data import count_with_boxes, eval_dataset, train_dataset
    from stage1_detect.model import DetectorConfig, build_detector
    from stage1_detect.scoring import coco_map
    from tfrecords.reader import list_shards, read_manifest

    dcfg = DetectorConfig(classes=tuple(read_manifest(cfg.records)["parts"]), backbone=cfg.backbone,
                          image_size=cfg.image_size, fpn_depth=cfg.fpn_depth, weights=cfg.weights)
    keras.utils.set_random_seed(cfg.seed)
    global_batch = cfg.batch_size * strategy.num_replicas_in_sync
    train_ds = train_dataset(cfg.records, cfg.image_size, global_batch, cfg.val_fold, cfg.seed, cfg.augment,
                             cfg.photometric, cfg.mosaic, cfg.close_ups, cfg.empty, cfg.far,
                             cfg.far_water, cfg.grey, cfg.desaturate)
    train_ds = shard_by_file(train_ds, len(list_shards(cfg.records, "train")), strategy)
    val_ds = eval_dataset(cfg.records, cfg.image_size, cfg.batch_size, cfg.val_fold).cache()
    steps = count_with_boxes(cfg.records, cfg.val_fold) // global_batch
    if steps == 0:
        raise ValueError(f"{cfg.records}: fewer than {global_batch} training images with boxes (--batch-size "
                         f"{cfg.batch_size} x {strategy.num_replicas_in_sync} replicas) outside fold {cfg.val_fold}")
    schedule = schedule_of(cfg, steps)
    with strategy.scope():
        model = build_detector(dcfg)
        optimizer = AdamW(schedule(cfg.epochs), weight_decay=5e-4,
                          global_clipnorm=10.0)
        model.compile(optimizer=optimizer, classification_loss="binary_crossentropy", box_loss="ciou")

    def finish(history: list[dict]) -> dict:
        path = join(cfg.out, "detector.keras")
        save_model(model, path)
        log_artifact(join(cfg.out, "detector_config.json"))
        log_keras_model(model, "detector", cfg.image_size)
        return {}

    # A repeated dataset and a fixed number of steps, as the embedder's: the trainer then keeps one
    # data iterator for the whole run. With one per epoch (fit's), each dropped iterator was freed
    # by Python's garbage collector at some later moment, and freeing it blocked ~17-20 s in tf.data's
    # thread pool: 3-4 such stalls per demo detector (docs/history.md, "Iterators freed late").
    return Stage("stage1-detect", f"yolov8-{cfg.backbone}-{cfg.image_size}", model, train_ds.repeat(), steps,
                 configs={"detector_config.json": asdict(dcfg)},
                 validate=lambda epoch, last: validate(cfg, epoch, lambda: coco_map(model, val_ds), last),
                 finish=finish, best="map50", schedule=schedule)


def validate(cfg: TrainConfig, epoch: int, score, last: bool) -> dict:
    """``score()`` on every ``val_every``-th epoch and the ``last`` ({} otherwise: the trainer skips it)."""
    return score() if (epoch + 1) % cfg.val_every == 0 or last else {}
