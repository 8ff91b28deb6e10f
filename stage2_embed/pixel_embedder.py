"""The training-free references as embedder run folders that every command accepts (the library
behind ``stage2_embed/pixels.py``): 16x16 grey pixels, or a histogram of oriented gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.flags import option

SIDE = 16
DESCRIPTORS = ("pixels", "hog")  # stage2_embed.layers: PixelDescriptor, HOGDescriptor


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
    descriptor: str = option("pixels", help="16x16 grey pixels (the reference every embedder must beat) or "
                                            "HOG edges (stronger on real fins: stage2_embed/layers.py)",
                             choices=DESCRIPTORS)


def write_pixel_embedder(out: str, image_size: int, side: int = SIDE, descriptor: str = "pixels") -> str:
    """``out/embedder.keras`` and ``out/embedder_config.json`` (``kind``: the descriptor); returns ``out``."""
    from runtime import atomic
    from runtime.checkpoint import save_model
    from runtime.storage import join, makedirs

    makedirs(out)
    model = build_pixel_embedder(image_size, side, descriptor)
    save_model(model, join(out, "embedder.keras"))
    cfg = {"kind": descriptor, "image_size": image_size, "embedding_dim": int(model.output_shape[-1])}
    atomic.write_json(join(out, "embedder_config.json"), {**cfg, "side": side} if descriptor == "pixels" else cfg)
    return out
