import io

import numpy as np
import pytest
from images_corpus import jpeg, png, png16_gray, png_bomb, png_rgba
from PIL import Image

from tfrecords.images import ImageRejected, prepare_image


def truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()[: buf.tell() // 2]


def decode(b: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).astype(int)


def test_small_upright_jpeg_passes_through_byte_for_byte():
    data = jpeg(96, 64)
    p = prepare_image(data, max_side=128)
    assert p.encoded == data and (p.height, p.width) == (64, 96)


def test_longer_side_is_scaled_to_max_side():
    p = prepare_image(jpeg(300, 150), max_side=100)
    assert (p.width, p.height) == (100, 50) and (p.source_width, p.source_height) == (300, 150)
    assert decode(p.encoded).shape == (50, 100, 3)


def test_exif_orientation_is_applied():
    # orientation 6: the stored image must be rotated 90 degrees clockwise to display
    p = prepare_image(jpeg(96, 64, exif_orientation=6), max_side=256)
    assert (p.width, p.height) == (64, 96) and (p.source_width, p.source_height) == (64, 96)
    a = decode(p.encoded)
    # the green marker, stored top-left, is displayed top-right after the rotation
    assert a[5, -5, 1] > 150 and a[5, -5, 0] < 100
    assert a[5, 5, 0] > 150


def test_sixteen_bit_png_is_scaled_not_clipped():
    a = decode(prepare_image(png16_gray(value=32768), max_side=256).encoded)
    assert abs(a.mean() - 128) < 3


def test_alpha_is_composited_on_white():
    a = decode(prepare_image(png_rgba(), max_side=256).encoded)
    assert a[:, :20].min() > 240  # transparent half: white
    assert a[:, -20:, 0].mean() > 240 and a[:, -20:, 1].mean() < 20  # opaque half: red


def test_grayscale_and_palette_become_rgb():
    g = decode(prepare_image(png(np.full((40, 50), 77, np.uint8)), max_side=256).encoded)
    assert g.shape == (40, 50, 3) and abs(g.mean() - 77) < 3
    pal = Image.new("P", (50, 40), 3)
    pal.putpalette([0, 0, 0] * 3 + [10, 200, 30] + [0, 0, 0] * 252)
    buf = io.BytesIO()
    pal.save(buf, "PNG")
    a = decode(prepare_image(buf.getvalue(), max_side=256).encoded)
    assert abs(a[..., 1].mean() - 200) < 5


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"this is not an image", "not a readable image"),
        (truncated_jpeg(), "does not decode"),
        (jpeg(20, 100), "smaller than 32 px"),
        (png_bomb(), "pixel limit"),
    ],
)
def test_bad_images_are_rejected_with_a_reason(data, reason):
    with pytest.raises(ImageRejected, match=reason):
        prepare_image(data, max_side=256)
