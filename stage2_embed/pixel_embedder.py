"""The training-free references as embedder run folders that every command accepts (the library
behind ``stage2_embed/pixels.py``): 16x16 grey pixels, or a histogram of oriented gradients; or
both ``fitted`` on crop records in seconds, no network trained: mixed at the weights their
validation fold prefers, each through a linear discriminant projection fitted on the training
folds where 100 or more validation queries say it ranks better (``stage2_embed.fusion``, as the
trainer fuses them with a learned embedding). On the demo's test photos the pipeline with it
scored MAP@5 0.7435 against the pixels + SIFT reference's 0.5555 (RESULTS.md, ``weak_embedder``:
``fitted_*``).
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.flags import check, option
from stage2_embed.fusion import METRIC_MODES

SIDE = 16
DESCRIPTORS = ("pixels", "hog")  # stage2_embed.layers: PixelDescriptor, HOGDescriptor
KINDS = (*DESCRIPTORS, "fitted")  # fitted: both, mixed and projected on crop records (write_fitted_embedder)


def build_pixel_embedder(image_size: int, side: int = SIDE, descriptor: str = "pixels"):
    """image [B, S, S, 3] float 0..255 -> L2-normalised descriptor: the ``side**2`` thumbnail
    (``pixels``) or the HOG edges (``hog``, ``HOGDescriptor``'s defaults; ``side`` unused)."""
    import keras

    from stage2_embed.layers import HOGDescriptor, PixelDescriptor

    if descriptor not in DESCRIPTORS:
        raise ValueError(f"descriptor must be one of {', '.join(DESCRIPTORS)}; got {descriptor!r}")
    image = keras.Input((image_size, image_size, 3), name="image")
    layer = PixelDescriptor(side, name="embedding") if descriptor == "pixels" else HOGDescriptor(name="embedding")
    return keras.Model(image, layer(image), name=f"{descriptor}_embedder")


@dataclass(frozen=True)
class PixelConfig:
    """``stage2_embed/pixels.py``'s options."""

    out: str = option(help="run folder to write")
    image_size: int = option(96, help="crop side the images are resized to first", lo=8)
    side: int = option(SIDE, help="thumbnail side (--descriptor pixels)", lo=2)
    descriptor: str = option("pixels", help="16x16 grey pixels (the reference every embedder must beat), "
                                            "HOG edges (stronger on real fins: stage2_embed/layers.py), or both "
                                            "fitted on --records (mixed and LDA-projected as validation prefers)",
                             choices=KINDS)
    records: str | None = option(None, help="with --descriptor fitted: crop records (stage1_detect/crop.py output) "
                                            "whose training folds fit the projections and whose --val-fold "
                                            "chooses the mix")
    val_fold: int = option(0, help="with --descriptor fitted: the fold the mix is chosen on", lo=0)
    crop: bool = option(False, help="with --descriptor fitted: the records are image records: cut them to "
                                    "their boxes first")
    descriptor_metric: str = option("auto", help="with --descriptor fitted: LDA projections allowed (auto and on: "
                                                 "where >= 100 validation queries rate them higher) or not",
                                    choices=METRIC_MODES)

    def __post_init__(self) -> None:
        check(self)
        if (self.descriptor == "fitted") != (self.records is not None):
            raise ValueError("--descriptor fitted needs --records CROPS, and --records only goes with it")


def write_pixel_embedder(out: str, image_size: int, side: int = SIDE, descriptor: str = "pixels",
                         records: str | None = None) -> str:
    """``out/embedder.keras`` and ``out/embedder_config.json`` (``kind``: the descriptor); returns
    ``out``. ``fitted`` (on ``records``, its other options their defaults): ``write_fitted_embedder``."""
    from runtime import atomic
    from runtime.checkpoint import save_model
    from runtime.storage import join, makedirs

    if descriptor == "fitted":
        if records is None:
            raise ValueError("descriptor fitted needs crop records to fit on")
        return write_fitted_embedder(out, records, image_size)
    makedirs(out)
    model = build_pixel_embedder(image_size, side, descriptor)
    save_model(model, join(out, "embedder.keras"))
    cfg = {"kind": descriptor, "image_size": image_size, "embedding_dim": int(model.output_shape[-1])}
    atomic.write_json(join(out, "embedder_config.json"), {**cfg, "side": side} if descriptor == "pixels" else cfg)
    return out


def write_fitted_embedder(out: str, records: str, image_size: int = 96, val_fold: int = 0, crop: bool = False,
                          metric: str = "auto") -> str:
    """``out/embedder.keras``: the pixels and the HOG edges of ``records`` mixed at the weights their
    validation fold ``val_fold`` prefers, each projected where ``metric`` allows and validation
    agrees (``stage2_embed.fusion.fuse`` without a learned part); ``embedder_config.json``
    (``kind`` ``fitted``, the weights, the fold, the records' crop margin) and ``fusion.json`` (the
    validation figures); the figures logged to MLflow. Returns ``out``."""
    import mlflow

    from runtime import atomic
    from runtime.checkpoint import save_model
    from runtime.storage import join, makedirs
    from runtime.tracking import log_artifact, start_run
    from stage2_embed.fusion import fuse, saved_choice
    from tfrecords.reader import crop_margin, read_manifest

    manifest = read_manifest(records)  # a wrong path fails here, in one line, before any work
    makedirs(out)
    cfg = PixelConfig(out=out, image_size=image_size, descriptor="fitted", records=records, val_fold=val_fold,
                      crop=crop, descriptor_metric=metric)
    with start_run("stage2-fitted", cfg, run_name=f"fitted-{image_size}-fold{val_fold}"):
        model, metrics = fuse(None, records, image_size, val_fold, crop, metric)
        save_model(model, join(out, "embedder.keras"))
        atomic.write_json(join(out, "embedder_config.json"), {
            "kind": "fitted", "image_size": image_size, "embedding_dim": int(model.output_shape[-1]),
            "val_fold": val_fold, "crop_margin": crop_margin(manifest, crop), **saved_choice(metrics)})
        atomic.write_json(join(out, "fusion.json"), metrics)
        mlflow.log_metrics(metrics)
        log_artifact(join(out, "embedder_config.json"))
    return out
