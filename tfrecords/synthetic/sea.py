"""The water and light of the sea scene (``--scene sea``): a sea surface seen from a boat, or the
water of an underwater shot, the foam and spray where a fin breaks the surface, and the light on the
skin (the library behind ``scene.compose_sea``).

Domain randomisation (docs: ../shared/notes/sim2real.md): what a detector must learn is the animal's
silhouette and where it sits, so the water varies more widely than in any real set: palettes from
overcast grey to deep blue, green and dusk; chop at several scales, stretched along the horizon;
whitecaps, sparkling glint, a horizon with sky, haze and sometimes land; murky green or blue water
with caustic light and particles under the surface. NumPy + OpenCV only: every layer is noise drawn
small and resized (the water of a 640x480 photo: ~20 ms of the ~110 ms the photo costs).
"""

from __future__ import annotations

import cv2
import numpy as np

# (R, G, B) of the water, 0..1: what field photos of fins show (overcast grey, green coastal, deep
# blue, dusk); each photo jitters one of them
SURFACE_PALETTES = ((0.42, 0.46, 0.5), (0.16, 0.3, 0.28), (0.06, 0.2, 0.42), (0.3, 0.27, 0.33),
                    (0.1, 0.32, 0.5), (0.22, 0.28, 0.3))
UNDERWATER_PALETTES = ((0.38, 0.48, 0.3), (0.12, 0.5, 0.48), (0.1, 0.3, 0.55), (0.3, 0.45, 0.42))


def noise(rng: np.random.Generator, h: int, w: int, cell: float, stretch: float = 1.0) -> np.ndarray:
    """Smooth noise with features ~``cell`` px tall and ``cell * stretch`` px wide, float32 HxW, sd ~1."""
    gh, gw = max(2, int(h / cell)), max(2, int(w / (cell * stretch)))
    return cv2.resize(rng.standard_normal((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)


def _palette(rng: np.random.Generator, palettes: tuple) -> np.ndarray:
    base = np.asarray(palettes[int(rng.integers(len(palettes)))], np.float32)
    return np.clip(base * rng.uniform(0.7, 1.3) + rng.normal(0, 0.04, 3).astype(np.float32), 0.02, 0.9)


def _chop(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Relative brightness of the waves: several scales, elongated along the horizon."""
    side = max(h, w)
    out = np.zeros((h, w), np.float32)
    for cell, amp in ((side / 4, 0.12), (side / 16, 0.1), (side / 48, 0.08), (side / 140, 0.05)):
        out += amp * rng.uniform(0.3, 1.5) * noise(rng, h, w, cell, stretch=rng.uniform(1.5, 4.0))
    return out


def surface(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """The sea from a boat (sometimes with sky, haze and land above a horizon), float32 HxWx3 in 0..1."""
    sea = _palette(rng, SURFACE_PALETTES)
    img = sea[None, None, :] * (1.0 + _chop(rng, h, w))[:, :, None]
    if rng.random() < 0.6:  # whitecaps and foam streaks
        foam = noise(rng, h, w, max(h, w) / rng.uniform(20, 80), stretch=rng.uniform(3, 8))
        cover = np.clip((foam - rng.uniform(1.4, 2.6)) / 0.5, 0, 1) * rng.uniform(0.4, 0.9)
        img = img * (1 - cover[:, :, None]) + rng.uniform(0.75, 0.95) * cover[:, :, None]
    if rng.random() < 0.4:  # sun glint: sparkles, dense in a band
        spark = np.clip(noise(rng, h, w, rng.uniform(1.5, 4)) - 2.6, 0, None) * rng.uniform(0.8, 2.5)
        band = np.exp(-((np.arange(h, dtype=np.float32)[:, None] / h - rng.uniform(0, 1)) / 0.15) ** 2)
        img += (spark * band)[:, :, None]
    if rng.random() < 0.4:  # a horizon with sky above, hazy where they meet, sometimes land
        hy = max(1, int(rng.uniform(0.05, 0.35) * h))
        sky = np.clip(np.array([rng.uniform(0.55, 0.85), rng.uniform(0.6, 0.88), rng.uniform(0.65, 0.95)],
                               np.float32), 0, 1)
        grad = (0.85 + 0.15 * np.linspace(0, 1, hy, dtype=np.float32))[:, None, None]
        img[:hy] = sky[None, None, :] * grad
        if rng.random() < 0.35:
            ridge = hy - np.abs(noise(rng, 1, w, w / 6)[0] * rng.uniform(0.02, 0.08) * h)
            rows = np.arange(h, dtype=np.float32)[:, None]
            land = (rows >= ridge[None, :]) & (rows < hy)
            img[land] = np.float32(rng.uniform(0.15, 0.4)) * sky
        haze = np.exp(-np.abs(np.arange(h, dtype=np.float32) - hy) / (0.04 * h))[:, None, None]
        img = img * (1 - 0.5 * haze) + 0.5 * haze * sky
    return img


def underwater(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Water seen from a cage or a pole camera: murky colour brighter towards the surface, caustic
    light lines and particles. Returns the image and the water colour (for haze over the animal)."""
    water = _palette(rng, UNDERWATER_PALETTES)
    rows = np.linspace(1.25, 0.75, h, dtype=np.float32)[:, None]
    img = water[None, None, :] * (rows + 0.08 * noise(rng, h, w, max(h, w) / 3))[:, :, None]
    light = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(0, 6))):  # caustics: wavy bright lines
        x = np.linspace(0, w, 24)
        y = rng.uniform(0, h) + np.cumsum(rng.normal(0, 0.03 * h, 24)) + rng.uniform(-0.5, 0.5) * x
        pts = np.stack([x, y], 1).astype(np.int32)
        cv2.polylines(light, [pts], False, float(rng.uniform(0.1, 0.35)), max(1, int(0.006 * w)), cv2.LINE_AA)
    if rng.random() < 0.6:  # suspended particles
        spots = np.clip(noise(rng, h, w, rng.uniform(1.5, 3)) - 2.4, 0, None) * 0.6
        light += spots
    light = cv2.GaussianBlur(light, (0, 0), max(0.5, 0.004 * w))
    return img + light[:, :, None], water


def foam_line(rng: np.random.Generator, h: int, w: int, water_y: np.ndarray, near: tuple[float, float]
              ) -> np.ndarray:
    """Foam and spray where a fin breaks the surface: a ragged band along the water line
    ``water_y`` (px per column), densest between columns ``near``; alpha HxW in 0..1."""
    rows = np.arange(h, dtype=np.float32)[:, None]
    thick = rng.uniform(0.01, 0.06) * h
    band = np.exp(-((rows - water_y[None, :]) / thick) ** 2)
    x = np.arange(w, dtype=np.float32)[None, :]
    centre, half = (near[0] + near[1]) / 2, max(4.0, (near[1] - near[0]) / 2)
    along = np.exp(-((x - centre) / (half * rng.uniform(0.8, 2.0))) ** 2)
    rough = np.clip(noise(rng, h, w, max(2.0, thick / 2), stretch=2.0) * 0.5 + 0.5, 0, 1)
    return np.clip(band * along * rough * rng.uniform(0.8, 1.6), 0, 1)


def gradient(rng: np.random.Generator, s: int) -> np.ndarray:
    """A linear ramp from -1 to 1 (at the corners ~1.4) across an s x s square, from a random side."""
    yy = np.linspace(-1, 1, s, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, s, dtype=np.float32)[None, :]
    ang = rng.uniform(0, 2 * np.pi)
    return np.cos(ang) * xx + np.sin(ang) * yy


def skin_light(rng: np.random.Generator, s: int) -> np.ndarray:
    """This photo's light on an s x s skin, a multiplier: a shading gradient from any side, a fine
    skin texture and sometimes a wet sheen. Real fins are never flat grey."""
    along = gradient(rng, s)
    light = 1.0 + rng.uniform(0.08, 0.4) * along
    light += rng.uniform(0.02, 0.08) * noise(rng, s, s, rng.uniform(2, 6)) + 0.05 * noise(rng, s, s, s / 5)
    if rng.random() < 0.5:  # a wet sheen: a soft bright band across the skin
        light += rng.uniform(0.1, 0.4) * np.exp(-((along - rng.uniform(-0.6, 0.6)) / rng.uniform(0.05, 0.2)) ** 2)
    return light
