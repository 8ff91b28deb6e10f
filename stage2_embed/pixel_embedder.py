"""The 16x16 grey-pixel reference as an embedder run folder that every command accepts (the library
behind ``stage2_embed/pixels.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.flags import option

SIDE = 16


def build_pixel_embedder(image_size: int, side: int = SIDE):
    """image [B, S, S, 3] float 0..255 -> L2-normalised ``side**2`` thumbnail descriptor."""
    import keras

    from stage2_embed.layers import PixelDescriptor

    image = keras.Input((image_size, image_size, 3), name="image")
    return keras.Model(image, PixelDescriptor(side, name="embedding")(image), name="pixel_embedder")


@dataclass(frozen=True)
class PixelConfig:
    """``stage2_embed/pixels.py``'s options."""

    out: str = option(help="run folder to write")
    image_size: int = option(96, help="crop side the images are resized to first", lo=8)
    side: int = option(SIDE, help="thumbnail side", lo=2)


def write_pixel_embedder(out: str, image_size: int, side: int = SIDE) -> str:
    """``out/embedder.keras`` and ``out/embedder_config.json`` (``kind: pixels``); returns ``out``."""
    from runtime import atomic
    from runtime.checkpoint import save_model
    from runtime.storage import join, makedirs

    makedirs(out)
    save_model(build_pixel_embedder(image_size, side), join(out, "embedder.keras"))
    atomic.write_json(join(out, "embedder_config.json"),
                      {"kind": "pixels", "image_size": image_size, "side": side, "embedding_dim": side * side})
    return out
