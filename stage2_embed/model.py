"""The stage-2 embedder: an EfficientNet backbone, GeM pooling, a neck to an L2-normalised
embedding, and the heads it is trained with.

    backbone (keras.applications EfficientNetB0-B7 / V2 B0-B3, S, M, L; include_top=False)
      -> GeMPooling2D -> Dropout -> Dense(embedding_dim) -> BatchNormalization -> "embedding"
      -> heads: ArcMarginLogits (arcface: k=1; subcenter: k>1) or Dense softmax, + species Dense

``build_models`` returns the training model ({"image", "label"} -> {"individual", "species"} logits)
and the embedding model (image -> L2-normalised embedding) sharing the same layers. Images enter as
float 0..255: the EfficientNets rescale and normalise inside.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras

from stage2_embed.backbones import BACKBONES, HEADS
from stage2_embed.layers import ArcMarginLogits, GeMPooling2D


@dataclass(frozen=True)
class EmbedderConfig:
    num_classes: int
    num_species: int = 0  # 0: no auxiliary species head
    backbone: str = "b0"
    weights: str = "none"  # imagenet | none | path to a .h5 / .weights.h5 of the backbone
    image_size: int = 128
    embedding_dim: int = 256
    head: str = "subcenter"
    k: int = 3  # sub-centres (subcenter head)
    scale: float = 30.0
    margin: float = 0.3
    margins: tuple[float, ...] | None = None  # per-class dynamic margins
    dropout: float = 0.2
    gem_p: float = 3.0
    # Keras' EfficientNets use 0.99: over a few hundred steps from scratch the moving statistics then
    # lag the weights and inference-mode embeddings are poor (val MAP@5 0.05 where 0.9 gives 0.7)
    bn_momentum: float = 0.9
    # several replicas: batch statistics over the global batch, so training matches one device's
    sync_bn: bool = False
    # the 16x16 pixel descriptor's weight in the saved embedding (stage2_embed.fusion; 0: none);
    # a record of what the trainer saved, not read by build_models
    pixel_weight: float = 0.0
    hog_weight: float = 0.0  # the HOG edge descriptor's (stage2_embed.fusion), a record likewise
    # whether each descriptor entered the mix through its learned projection (stage2_embed.metric),
    # a record likewise; --all-folds refits the projections the cross-validation run kept
    pixel_metric: bool = False
    hog_metric: bool = False
    # the margin the training crops were grown by (crop records' manifest, or --crop's): inference
    # grows its detector boxes by the same (None: unknown, infer uses 0.1); a record, not read here
    crop_margin: float | None = None

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"--backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.head not in HEADS:
            raise ValueError(f"--head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.num_classes < 2:
            raise ValueError("an embedder needs at least 2 individuals to train on")


def weights_path(backbone: str) -> str:
    """Where Keras looks for (and downloads) the ImageNet weights of ``backbone``."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "models", BACKBONES[backbone][1])


def build_backbone(name: str, weights: str, image_size: int) -> keras.Model:
    """``keras.applications`` EfficientNet without its top. ``weights``: ``imagenet`` (downloaded
    where the network allows, else read from Keras' cache), ``none``, or a local weights file."""
    ctor = getattr(keras.applications, BACKBONES[name][0])
    shape = (image_size, image_size, 3)
    if weights == "imagenet":
        try:
            return ctor(include_top=False, weights="imagenet", input_shape=shape)
        except Exception as e:  # noqa: BLE001 - urllib, http and OS errors all mean "could not fetch"
            raise FileNotFoundError(
                f"--weights imagenet: could not download the {BACKBONES[name][0]} weights ({type(e).__name__}); "
                f"offline, put {BACKBONES[name][1]} at {weights_path(name)}, or pass --weights PATH or none"
            ) from None
    model = ctor(include_top=False, weights=None, input_shape=shape)
    if weights not in ("none", "", None):
        if not os.path.exists(weights):
            raise FileNotFoundError(f"--weights {weights}: no such file (a {BACKBONES[name][0]} .h5 without top)")
        model.load_weights(weights)
    return model


def build_models(cfg: EmbedderConfig) -> tuple[keras.Model, keras.Model]:
    """(training model, embedding model), sharing every layer."""
    image = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    label = keras.Input((), dtype="int32", name="label")
    backbone = build_backbone(cfg.backbone, cfg.weights, cfg.image_size)
    for layer in backbone.layers:  # the EfficientNets are flat functional models
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = cfg.bn_momentum  # both read at call time, and saved by get_config
            layer.synchronized = cfg.sync_bn
    feats = backbone(image)
    x = GeMPooling2D(p=cfg.gem_p, name="gem")(feats)
    x = keras.layers.Dropout(cfg.dropout, name="neck_dropout")(x)
    x = keras.layers.Dense(cfg.embedding_dim, name="neck_dense")(x)
    x = keras.layers.BatchNormalization(momentum=cfg.bn_momentum, synchronized=cfg.sync_bn, name="neck_bn")(x)
    emb = keras.layers.UnitNormalization(dtype="float32", name="embedding")(x)
    if cfg.head == "softmax":
        logits = keras.layers.Dense(cfg.num_classes, dtype="float32", name="individual")(x)
    else:
        k = cfg.k if cfg.head == "subcenter" else 1
        logits = ArcMarginLogits(cfg.num_classes, k=k, scale=cfg.scale, margin=cfg.margin,
                                 margins=list(cfg.margins) if cfg.margins else None, dtype="float32",
                                 name="individual")([x, label])  # float32 logits under mixed precision
    outputs = {"individual": logits}
    if cfg.num_species:
        outputs["species"] = keras.layers.Dense(cfg.num_species, dtype="float32", name="species")(x)
    train_model = keras.Model({"image": image, "label": label}, outputs, name="embedder_train")
    return train_model, keras.Model(image, emb, name="embedder")


def init_from(train_model: keras.Model, run_dir: str) -> int:
    """Copy another run's weights (``RUN_DIR/train_model.keras``) into ``train_model``, layer by layer
    where the name and every weight's shape agree: the backbone, GeM and the embedding neck; heads
    sized for other individuals are left as built. Returns how many layers were copied; none is a
    ``ValueError`` (the runs do not share an architecture)."""
    from runtime.storage import exists, join, local_copy
    from stage2_embed import layers  # noqa: F401 - registers GeM and ArcFace for deserialisation

    path = join(run_dir, "train_model.keras")
    if not exists(path):
        raise FileNotFoundError(f"--init {run_dir}: {path} not found; give a run folder of stage2_embed/train.py")
    with local_copy(path) as local:
        source = keras.saving.load_model(local, safe_mode=True, compile=False)
    theirs = {layer.name: layer for layer in source.layers}
    copied = 0
    for layer in train_model.layers:
        other = theirs.get(layer.name)
        if other is None or not layer.weights:
            continue
        mine, given = layer.get_weights(), other.get_weights()
        if len(mine) == len(given) and all(a.shape == b.shape for a, b in zip(mine, given, strict=True)):
            layer.set_weights(given)
            copied += 1
    if not copied:
        raise ValueError(f"--init {run_dir}: no layer matches this run's architecture (backbone, image size)")
    return copied
