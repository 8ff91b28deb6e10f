"""The sea scene (``tfrecords/synthesize.py --scene sea``): one photo of an individual in widely
randomised water, for training a detector that must find real fins.

A fin rises from a back at a wavy water line with foam at its base, or, in ``UNDERWATER`` of fin
photos, sits on a flank fading into murky water; the skin is lit per photo (``sea.skin_light``).
The box is the fin's visible part. The identity marks are the plain scene's (``render``); on this
scene the demo's embedder learns them far less well (docs/history.md, 2026-11-30 evening), so the
default scene stays ``plain``.
"""

from __future__ import annotations

import cv2
import numpy as np

from tfrecords.synthetic.distractors import add_distractors
from tfrecords.synthetic.render import SPRITE, Individual, degrade, outline, pose, render_sprite, visible_box
from tfrecords.synthetic.sea import foam_line, noise, surface, underwater

UNDERWATER = 0.3  # share of fin photos taken under the surface (cage and pole cameras), as in photo-ID


def compose_sea(
    ind: Individual, rng: np.random.Generator, h: int, w: int, area: float, distractors: float = 0.0
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """One photo: uint8 HxWx3 RGB and its one box (x_min, y_min, x_max, y_max) in pixels, as
    ``render.compose``, in the sea scene (``distractors`` as there)."""
    below = ind.part == "fin" and rng.random() < UNDERWATER
    img, water = underwater(rng, h, w) if below else (surface(rng, h, w), None)
    skin, alpha = render_sprite(ind, rng, lit=True)
    m, k, rbh, oy = pose(alpha, rng, h, w, area)
    warped_a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR)
    warped_s = cv2.warpAffine(skin, m, (w, h), flags=cv2.INTER_LINEAR)
    tint = np.array([1.0, 1.0, 1.0], np.float32) + rng.normal(0, 0.06, 3).astype(np.float32)
    back = np.zeros((h, w), np.float32)
    water_y = None
    if ind.part == "fin":
        tone = float(np.median(warped_s[warped_a > 0.5])) if (warped_a > 0.5).any() else ind.tone
        above = None
        if not below:  # the sea covers the fin's base along a wavy water line
            x = np.arange(w, dtype=np.float32)
            swell = rng.uniform(0.005, 0.03) * h * np.sin(x * rng.uniform(0.005, 0.04) + rng.uniform(0, 6.3))
            water_y = oy + k * rbh * rng.uniform(0.32, 0.45) + swell + 0.01 * h * noise(rng, 1, w, w / 8)[0]
            above = np.arange(h, dtype=np.float32)[:, None] < water_y[None, :]
            warped_a *= above
        back = body(rng, h, w, base(ind, m), k * rbh, under=below)
        if above is not None:
            back *= above
        shade = tone * rng.uniform(0.8, 1.05) * (1 + 0.1 * noise(rng, h, w, max(h, w) / 8))
        img = img * (1 - back[:, :, None]) + (shade[:, :, None] * tint) * back[:, :, None]
    img = img * (1 - warped_a[:, :, None]) + (warped_s[:, :, None] * tint) * warped_a[:, :, None]
    if below:  # the animal fades into the water
        haze = rng.uniform(0.1, 0.5)
        animal = np.maximum(warped_a, back)[:, :, None]
        img = img * (1 - haze * animal) + haze * animal * water
    elif water_y is not None and rng.random() < 0.7:
        cols = np.nonzero((warped_a > 0.5).any(0))[0]
        foam = foam_line(rng, h, w, water_y, (float(cols.min()), float(cols.max())) if cols.size else (0.0, w))
        img = img * (1 - foam[:, :, None]) + rng.uniform(0.8, 1.0) * foam[:, :, None]
    box = visible_box(warped_a)
    if distractors > 0 and rng.random() < distractors:
        img = add_distractors(img, rng, [box])
    return degrade(img, rng), [box]


def base(ind: Individual, m: np.ndarray) -> np.ndarray:
    """The fin's two base corners in the photo, px (2x2: left, right)."""
    pts = outline(ind)[[0, -1]] * SPRITE
    return pts @ m[:, :2].T + m[:, 2]


def body(rng: np.random.Generator, h: int, w: int, corners: np.ndarray, fin_h: float, under: bool) -> np.ndarray:
    """Alpha of the back the fin stands on: a long low ellipse under its base (under water, a deeper
    one, the flank); none in 40 % of surface photos, where only the fin breaks the water."""
    out = np.zeros((h, w), np.float32)
    if not under and rng.random() < 0.4:
        return out
    (xl, yl), (xr, yr) = corners
    width = max(4.0, float(np.hypot(xr - xl, yr - yl)))
    deep = rng.uniform(0.25, 0.6) if under else rng.uniform(0.04, 0.15)
    centre = ((xl + xr) / 2 + rng.uniform(-0.2, 0.2) * width, (yl + yr) / 2 + deep * fin_h * rng.uniform(0.3, 0.9))
    axes = (int(width * rng.uniform(0.8, 2.0)), max(2, int(deep * fin_h)))
    angle = float(np.degrees(np.arctan2(yr - yl, xr - xl)))
    cv2.ellipse(out, (int(centre[0]), int(centre[1])), axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(out, (0, 0), 1.0)
