"""Hand-made image files for the bad-input corpus and the image tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def jpeg(w: int = 96, h: int = 64, color=(200, 30, 30), exif_orientation: int | None = None, mode="RGB") -> bytes:
    img = Image.new(mode, (w, h), color if mode == "RGB" else color[0])
    if mode == "RGB":  # a marker in the top-left corner, to check orientation
        a = np.asarray(img).copy()
        a[: h // 4, : w // 4] = (10, 220, 10)
        img = Image.fromarray(a)
    buf = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(buf, "JPEG", quality=95, exif=exif)
    else:
        img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, "PNG") if mode else Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def png16_gray(w: int = 64, h: int = 48, value: int = 65535) -> bytes:
    img = Image.fromarray(np.full((h, w), value, dtype=np.uint16))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def png_rgba(w: int = 64, h: int = 48) -> bytes:
    a = np.zeros((h, w, 4), np.uint8)
    a[..., 0] = 255  # red, fully transparent on the left half
    a[:, w // 2:, 3] = 255
    return png(a)


def png_bomb(w: int = 100_000, h: int = 100_000) -> bytes:
    """A PNG whose header claims w x h pixels (10 G) with almost no data: must be refused unread."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")
