"""The backbones and heads the embedder offers: plain names, importable without TensorFlow (for
configs and ``--help``)."""

# name -> (keras.applications constructor, the weights file Keras caches in ~/.keras/models)
BACKBONES: dict[str, tuple[str, str]] = {
    **{f"b{i}": (f"EfficientNetB{i}", f"efficientnetb{i}_notop.h5") for i in range(8)},
    **{f"v2b{i}": (f"EfficientNetV2B{i}", f"efficientnetv2-b{i}_notop.h5") for i in range(4)},
    **{f"v2{s}": (f"EfficientNetV2{s.upper()}", f"efficientnetv2-{s}_notop.h5") for s in ("s", "m", "l")},
}
HEADS = ("subcenter", "arcface", "softmax")
