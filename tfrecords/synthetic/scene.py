"""The scene around the animals: sea, sky, horizon and distractors, drawn wider than any real set
varies them (domain randomisation): palettes from deep blue to overcast grey, green and dusk;
multi-scale chop that shrinks towards the horizon; whitecaps and foam; sun glint; haze; sometimes
land or a boat on the horizon; birds, buoys and splashes. float32 RGB in 0..1, NumPy + OpenCV."""

from __future__ import annotations

import cv2
import numpy as np

# sea colours (RGB, 0..1): deep blue, bright blue, overcast grey, green, dusk
SEAS = ((0.05, 0.16, 0.3), (0.1, 0.32, 0.5), (0.33, 0.36, 0.38), (0.13, 0.28, 0.25), (0.3, 0.24, 0.28))
SKIES = ((0.62, 0.75, 0.9), (0.78, 0.8, 0.82), (0.9, 0.72, 0.55), (0.55, 0.6, 0.68))


def _noise(rng: np.random.Generator, h: int, w: int, cell: float, stretch: float = 1.0) -> np.ndarray:
    """Smooth noise of about ``cell`` px (``stretch`` x wider than tall), zero mean, unit-ish sd."""
    gh, gw = max(2, int(h / cell)), max(2, int(w / (cell * stretch)))
    return cv2.resize(rng.standard_normal((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def horizon(rng: np.random.Generator, h: int) -> int:
    """The horizon's row: 0 (no sky: a photo looking down at the water) in about half the photos."""
    return int(rng.uniform(0.04, 0.35) * h) if rng.random() < 0.5 else 0


def sea(rng: np.random.Generator, h: int, w: int, hy: int) -> np.ndarray:
    base = np.array(SEAS[rng.integers(len(SEAS))], np.float32) * rng.uniform(0.75, 1.25, 3).astype(np.float32)
    depth = np.clip((np.arange(h, dtype=np.float32) - hy) / max(1, h - hy), 0, 1)[:, None]  # 0 at horizon
    scale = max(4.0, w / rng.uniform(12, 60))
    chop = sum(_noise(rng, h, w, scale / 2**o, rng.uniform(2, 5)) * 0.5**o for o in range(3))
    amp = rng.uniform(0.08, 0.3) * (0.35 + 0.65 * depth)
    shade = 1.0 + amp * chop + 0.15 * (depth - 0.5) * rng.uniform(-1, 1)
    img = base[None, None, :] * shade[:, :, None]
    if rng.random() < 0.5:  # whitecaps and foam streaks
        fine = _noise(rng, h, w, max(2.0, scale / 6), rng.uniform(2, 6))
        foam = np.clip((fine - rng.uniform(1.6, 2.4)) * 2.0, 0, 1) * (0.3 + 0.7 * depth)
        img = img * (1 - foam[:, :, None]) + 0.92 * foam[:, :, None]
    if rng.random() < 0.35:  # sun glint: short horizontal sparkles in a band under the sun
        n = int(rng.uniform(0.0001, 0.001) * h * w)
        cy, sy = rng.uniform(hy, h), rng.uniform(0.03, 0.15) * h
        ys = np.clip(rng.normal(cy, sy, n), hy, h - 1).astype(int)
        xs = np.clip(rng.normal(rng.uniform(0, w), rng.uniform(0.05, 0.4) * w, n), 0, w - 1).astype(int)
        g = np.zeros((h, w), np.float32)
        g[ys, xs] = 1.0
        g = cv2.GaussianBlur(g, (0, 0), sigmaX=rng.uniform(1.0, 3.0), sigmaY=0.6) * rng.uniform(3, 8)
        img = img + np.clip(g, 0, 1)[:, :, None]
    return img


def sky(rng: np.random.Generator, img: np.ndarray, hy: int) -> None:
    """Sky above row ``hy`` with haze at the horizon, and sometimes land or a boat on it (in place)."""
    h, w = img.shape[:2]
    top = np.array(SKIES[rng.integers(len(SKIES))], np.float32) * rng.uniform(0.85, 1.1, 3).astype(np.float32)
    grad = (0.8 + 0.2 * np.linspace(0, 1, hy, dtype=np.float32))[:, None, None]
    img[:hy] = top * grad + 0.03 * _noise(rng, hy, w, w / 8, 3)[:, :, None]
    haze = np.exp(-np.abs(np.arange(h, dtype=np.float32) - hy) / (0.03 * h))[:, None, None] * rng.uniform(0.2, 0.6)
    img[:] = img * (1 - haze) + top * 1.05 * haze
    if rng.random() < 0.3:  # land: a dark ridge along the horizon
        ridge = hy - np.abs(_noise(rng, 1, w, w / rng.uniform(3, 10))[0]) * rng.uniform(0.02, 0.08) * h
        tone = np.array([rng.uniform(0.15, 0.35)] * 3, np.float32) * (1, rng.uniform(1, 1.3), 1)
        for x in range(w):
            img[max(0, int(ridge[x])):hy + 1, x] = tone
    if rng.random() < 0.15:  # a boat
        bw, bh = int(rng.uniform(0.03, 0.12) * w), int(rng.uniform(0.01, 0.03) * h) + 2
        x0 = int(rng.uniform(0, w - bw))
        cv2.rectangle(img, (x0, hy - bh), (x0 + bw, hy), (float(rng.uniform(0.05, 0.95)),) * 3, -1)


def background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, int]:
    """(float32 HxWx3 sea and sky, the horizon row; 0 without sky)."""
    hy = horizon(rng, h)
    img = sea(rng, h, w, hy)
    if hy:
        sky(rng, img, hy)
    return img, hy


def distractors(rng: np.random.Generator, img: np.ndarray, hy: int) -> None:
    """Birds, buoys and splashes: things that are not the animal (in place)."""
    h, w = img.shape[:2]
    for _ in range(int(rng.poisson(0.8))):  # birds: a dark or white flattened V
        x, y, s = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.006, 0.025) * w
        pts = np.array([[x - s, y - 0.3 * s], [x, y], [x + s, y - 0.35 * s]], np.int32)
        cv2.polylines(img, [pts], False, (float(rng.choice([0.08, 0.95])),) * 3, max(1, int(s / 5)), cv2.LINE_AA)
    if rng.random() < 0.12:  # a buoy
        r = int(rng.uniform(0.005, 0.02) * w) + 1
        colour = (0.9, rng.uniform(0.2, 0.5), 0.1)
        cv2.circle(img, (int(rng.uniform(0, w)), int(rng.uniform(max(hy, 1), h))), r, colour, -1, cv2.LINE_AA)
    for _ in range(int(rng.poisson(0.5))):  # a splash
        splash(rng, img, rng.uniform(0, w), rng.uniform(max(hy, 1), h), rng.uniform(0.02, 0.1) * w)


def splash(rng: np.random.Generator, img: np.ndarray, x: float, y: float, size: float) -> None:
    """White water: a cluster of soft blobs and droplets around (x, y) (in place)."""
    h, w = img.shape[:2]
    m = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(6, 20))):
        cx, cy = int(x + rng.normal(0, size / 2)), int(y - abs(rng.normal(0, size / 2)))
        cv2.circle(m, (cx, cy), max(1, int(rng.uniform(0.05, 0.3) * size)), float(rng.uniform(0.4, 1)), -1)
    m = np.clip(cv2.GaussianBlur(m, (0, 0), max(0.8, size / 12)), 0, 1)[:, :, None]
    img[:] = img * (1 - m) + 0.95 * m
