"""Validate one image and re-encode it for the records: the builder's per-image work.

Pure functions of the file's bytes, importable without TensorFlow (they run in worker processes).
Checks, in order: the header is readable; the pixel count from the header is under the limit
(a decompression bomb is refused before any decoding); the shorter side is at least ``min_side``;
the whole image decodes. Then EXIF orientation is applied, 16-bit, alpha, palette and grayscale
images become 8-bit RGB, the longer side is scaled down to ``max_side``, and the result is JPEG.
A JPEG that is already upright RGB/gray and small enough is passed through byte for byte.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = None  # we check the pixel count ourselves, from the header, with our reason

DEFAULT_MAX_PIXELS = 80_000_000
DEFAULT_MIN_SIDE = 32
JPEG_QUALITY = 95


class ImageRejected(ValueError):
    """The image cannot go into the records; the message is the reason for rejected.csv."""


@dataclass(frozen=True)
class PreparedImage:
    encoded: bytes  # JPEG
    height: int  # of ``encoded``
    width: int
    source_height: int  # after EXIF orientation, before resizing: the frame boxes are given in
    source_width: int


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> HxWx3 uint8. Alpha is composited on white; 16-bit is scaled, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a * (255.0 / hi) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = (a - a.min()) / max(float(np.ptp(a)), 1e-12) * 255.0
        return np.repeat(a.astype(np.uint8)[:, :, None], 3, axis=2)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return np.asarray(img.convert("RGB"))


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageRejected("could not encode as JPEG")
    return buf.tobytes()


def resize_longer_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def prepare_image(
    data: bytes,
    max_side: int = 1024,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
) -> PreparedImage:
    """Validate and re-encode one image's bytes; raises ``ImageRejected`` with the reason."""
    if not data:
        raise ImageRejected("empty file")
    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageRejected(f"not a readable image ({type(e).__name__})") from None
    w0, h0 = img.size
    if w0 * h0 > max_pixels:
        raise ImageRejected(f"{w0}x{h0} exceeds the {max_pixels}-pixel limit (possible decompression bomb)")
    if min(w0, h0) < min_side:
        raise ImageRejected(f"{w0}x{h0} is smaller than {min_side} px on its shorter side")
    orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
    passthrough = (
        img.format == "JPEG" and orientation in (0, 1) and img.mode in ("RGB", "L") and max(w0, h0) <= max_side
    )
    if img.format == "JPEG" and not passthrough and max(w0, h0) >= 2 * max_side:
        # DCT-domain downscale while decoding: exact enough for the INTER_AREA resize that follows
        img.draft("RGB", (max_side, max_side))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageRejected(f"image does not decode ({str(e).splitlines()[0][:80]})") from None
    if passthrough:
        return PreparedImage(data, h0, w0, h0, w0)
    if orientation not in (0, 1):
        try:
            img = ImageOps.exif_transpose(img)
        except (OSError, ValueError, KeyError):
            pass  # a broken EXIF block: keep the stored orientation
    ws, hs = (h0, w0) if orientation in (5, 6, 7, 8) else (w0, h0)
    rgb = resize_longer_side(_to_rgb8(img), max_side)
    return PreparedImage(encode_jpeg(rgb), rgb.shape[0], rgb.shape[1], hs, ws)


def worker_init() -> None:
    """Pool initializer: parallelism is across processes, so OpenCV's own threads would only
    oversubscribe the cores."""
    cv2.setNumThreads(1)


def load_and_prepare(job: tuple[str, int, int, int]) -> PreparedImage | str:
    """Worker entry point: ``(path, max_side, max_pixels, min_side)`` -> a prepared image, or the
    rejection reason as a string (a worker never raises for a bad image)."""
    from runtime.storage import read_bytes

    path, max_side, max_pixels, min_side = job
    try:
        data = read_bytes(path)
    except OSError as e:
        return f"unreadable file ({e.strerror or type(e).__name__})"
    try:
        return prepare_image(data, max_side=max_side, max_pixels=max_pixels, min_side=min_side)
    except ImageRejected as e:
        return str(e)
