"""Drawing of the synthetic Happywhale-like photos: a fin, fluke or body whose identity lives in
per-individual marks (trailing-edge notches, scars, faint pigment patches), in a scene
(``scene``: sea, sky, distractors) with 0-3 other animals of its species.

Each individual is a frozen ``Individual`` (shape and marks); each photo draws it in a canonical
sprite, warps it into the frame at a random pose and scale, and degrades the whole photo (exposure,
colour cast, blur, noise, JPEG). What a detector must learn is the real silhouette in its context:
a dark fin rising from an arched back at the waterline, a fluke raised with water streaming off, a
body under the surface seen from above; everything else varies widely. Pose, scale, light and
colour vary per photo, so colour or size alone cannot identify an individual; the marks can.
NumPy + OpenCV only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SPRITE = 256  # canonical sprite side, px


@dataclass(frozen=True)
class SpeciesLook:
    part: str  # box label: fin | fluke | body
    tone: float  # base grey level of the skin, 0..1
    tone_jitter: float  # per-individual spread of the base tone
    patch_sign: float  # +1 light patches on dark skin, -1 dark on light, 0 both


# Real Happywhale species (normalised names) with their photographed part. Order = default order
# of ``--species K`` (the most common first); frequencies decay along it, as on Kaggle.
SPECIES: dict[str, SpeciesLook] = {
    "bottlenose_dolphin": SpeciesLook("fin", 0.42, 0.05, 0),
    "humpback_whale": SpeciesLook("fluke", 0.18, 0.04, +1),
    "beluga": SpeciesLook("body", 0.86, 0.04, -1),
    "false_killer_whale": SpeciesLook("fin", 0.2, 0.04, +1),
    "blue_whale": SpeciesLook("body", 0.5, 0.05, 0),
    "dusky_dolphin": SpeciesLook("fin", 0.3, 0.05, +1),
    "killer_whale": SpeciesLook("fin", 0.1, 0.03, +1),
    "spinner_dolphin": SpeciesLook("fin", 0.38, 0.05, 0),
    "melon_headed_whale": SpeciesLook("fin", 0.22, 0.04, +1),
    "gray_whale": SpeciesLook("body", 0.55, 0.06, 0),
    "minke_whale": SpeciesLook("fin", 0.32, 0.05, 0),
    "fin_whale": SpeciesLook("fin", 0.35, 0.05, 0),
    "southern_right_whale": SpeciesLook("body", 0.15, 0.03, +1),
    "short_finned_pilot_whale": SpeciesLook("fin", 0.15, 0.03, +1),
    "common_dolphin": SpeciesLook("fin", 0.36, 0.05, 0),
}


@dataclass(frozen=True)
class Individual:
    individual_id: str
    species: str
    part: str
    tone: float
    shape: tuple[float, ...]  # part-specific shape parameters, each in [0, 1]
    notches: tuple[tuple[float, float, float], ...]  # (position on edge, depth, width), canonical units
    scars: tuple[tuple[float, float, float, float, float], ...]  # x0, y0, x1, y1, thickness
    patches: tuple[tuple[float, float, float, float, float, float], ...]  # cx, cy, rx, ry, angle, d_tone


def make_individual(rng: np.random.Generator, individual_id: str, species: str) -> Individual:
    look = SPECIES[species]
    n_notch = int(rng.integers(1, 5)) if look.part != "body" else 0
    notches = tuple(
        (float(rng.uniform(0.08, 0.92)), float(rng.uniform(0.035, 0.09)), float(rng.uniform(0.03, 0.08)))
        for _ in range(n_notch)
    )
    scars = tuple(
        (*(float(v) for v in rng.uniform(0.25, 0.75, 4)), float(rng.uniform(0.012, 0.025)))
        for _ in range(int(rng.integers(0 if look.part != "body" else 2, 4)))
    )
    patches = []
    for _ in range(int(rng.integers(2, 5))):
        sign = (look.patch_sign or float(rng.choice([-1.0, 1.0]))) * (0.6 if look.part == "fin" else 1.0)
        patches.append((
            float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.4, 0.8)),
            float(rng.uniform(0.04, 0.14)), float(rng.uniform(0.03, 0.1)),
            float(rng.uniform(0, 180)), sign * float(rng.uniform(0.12, 0.3)),
        ))
    return Individual(
        individual_id=individual_id,
        species=species,
        part=look.part,
        tone=float(np.clip(look.tone + rng.normal(0, look.tone_jitter), 0.03, 0.95)),
        shape=tuple(float(v) for v in rng.uniform(0, 1, 4)),
        notches=notches,
        scars=scars,
        patches=tuple(patches),
    )


def _bezier(p0, p1, p2, n: int) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t**2 * np.asarray(p2)


def _notch(edge: np.ndarray, notches, inside: np.ndarray) -> np.ndarray:
    """Push edge points towards ``inside`` in V shapes: one V per notch (position, depth, width)."""
    seg = np.r_[0, np.cumsum(np.linalg.norm(np.diff(edge, axis=0), axis=1))]
    s = seg / seg[-1]
    out = edge.copy()
    for pos, depth, width in notches:
        bump = np.clip(1 - np.abs(s - pos) / width, 0, 1)
        d = inside - edge
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
        out += d * (depth * bump)[:, None]
    return out


def outline(ind: Individual, n: int = 48) -> np.ndarray:
    """The part's outline in canonical [0, 1] coordinates (x right, y down), notches applied."""
    a, b, c, d = ind.shape
    if ind.part == "fin":
        base_l, base_r = (0.06 + 0.08 * c, 0.95), (0.78 + 0.12 * d, 0.95)
        tip = (0.45 + 0.35 * b, 0.06 + 0.22 * a)
        lead = _bezier(base_l, (0.2 + 0.1 * b, 0.3 + 0.15 * a), tip, n)
        trail = _bezier(tip, (0.5 + 0.15 * c, 0.5 + 0.2 * d), base_r, n)
        trail = _notch(trail, ind.notches, np.array([0.35, 0.8]))
        return np.vstack([lead, trail[1:]])
    if ind.part == "fluke":
        ytip = 0.2 + 0.15 * a
        lt, rt, mid = (0.02, ytip), (0.98, ytip + 0.05 * (b - 0.5)), (0.5, 0.38 + 0.08 * c)
        trail_l = _bezier(lt, (0.25, 0.25 + 0.15 * d), mid, n)
        trail_r = _bezier(mid, (0.75, 0.25 + 0.15 * d), rt, n)
        trail = np.vstack([trail_l, trail_r[1:]])
        trail = _notch(trail, ind.notches, np.array([0.5, 0.75]))
        lead_r = _bezier(rt, (0.8, 0.62 + 0.1 * b), (0.56, 0.95), n // 2)
        lead_l = _bezier((0.44, 0.95), (0.2, 0.62 + 0.1 * b), lt, n // 2)
        return np.vstack([trail, lead_r, lead_l])
    # body seen from above: a spindle with a rounded head on the left and a narrow tail stock
    t = np.linspace(0, np.pi, n)
    half = (0.13 + 0.08 * a) * np.sin(t) ** (0.6 + 0.5 * b)
    x = 0.04 + 0.92 * (1 - np.cos(t)) / 2
    top = np.stack([x, 0.5 - half], 1)
    bottom = np.stack([x[::-1], 0.5 + half[::-1]], 1)
    return np.vstack([top, bottom])


def render_sprite(ind: Individual, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Canonical SPRITE x SPRITE grey skin (float32 0..1) and alpha mask, with this photo's small
    pose-independent variation (shading direction, a little wetness sheen)."""
    s = SPRITE
    pts = (outline(ind) * s).astype(np.int32)
    mask = np.zeros((s, s), np.uint8)
    cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA)
    skin = np.full((s, s), ind.tone, np.float32)
    for cx, cy, rx, ry, ang, dt in ind.patches:
        layer = np.zeros((s, s), np.float32)
        cv2.ellipse(layer, (int(cx * s), int(cy * s)), (max(2, int(rx * s)), max(2, int(ry * s))),
                    ang, 0, 360, 1.0, -1, cv2.LINE_AA)
        skin += dt * layer
    for x0, y0, x1, y1, th in ind.scars:
        cv2.line(skin, (int(x0 * s), int(y0 * s)), (int(x1 * s), int(y1 * s)),
                 float(min(1.0, ind.tone + 0.3)), max(2, int(th * s)), cv2.LINE_AA)
    yy = np.linspace(-1, 1, s, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, s, dtype=np.float32)[None, :]
    ang = rng.uniform(0, 2 * np.pi)
    shade = 1.0 + 0.18 * (np.cos(ang) * xx + np.sin(ang) * yy)
    skin = np.clip(skin * shade, 0, 1)
    return skin, mask.astype(np.float32) / 255.0


def _pose(alpha: np.ndarray, rng: np.random.Generator, h: int, w: int, area: float, tilt: float) -> np.ndarray:
    """A 2x3 affine map of the sprite into the frame: random stretch, a tilt of up to ``tilt``
    degrees, scaled so that the part's box covers ~``area`` of the frame, anywhere inside it."""
    ys, xs = np.nonzero(alpha > 0.5)
    bw, bh = (xs.max() - xs.min() + 1), (ys.max() - ys.min() + 1)
    stretch, rot = rng.uniform(0.8, 1.2), np.deg2rad(rng.uniform(-tilt, tilt))
    cos, sin = abs(np.cos(rot)), abs(np.sin(rot))
    rbw, rbh = bw * stretch * cos + bh * sin, bw * stretch * sin + bh * cos
    k = min(np.sqrt(area * h * w / (rbw * rbh)), 0.97 * w / rbw, 0.97 * h / rbh)
    a = np.array([[stretch * np.cos(rot), -np.sin(rot)], [stretch * np.sin(rot), np.cos(rot)]]) * k
    if rng.random() < 0.5:  # facing the other way
        a[:, 0] *= -1
    cx0, cy0 = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    ox, oy = rng.uniform(k * rbw / 2, w - k * rbw / 2), rng.uniform(k * rbh / 2, h - k * rbh / 2)
    return np.hstack([a, np.array([[ox], [oy]]) - a @ np.array([[cx0], [cy0]])]).astype(np.float32)


def _waterline(rng: np.random.Generator, w: int, y: float, amp: float) -> np.ndarray:
    """A wavy water surface: row index per column around ``y``."""
    x = np.arange(w, dtype=np.float32)
    f, ph = rng.uniform(0.01, 0.05), rng.uniform(0, 2 * np.pi)
    return y + amp * (np.sin(f * x + ph) + 0.5 * np.sin(2.7 * f * x + 2 * ph))


def _animal(ind: Individual, rng: np.random.Generator, h: int, w: int, area: float):
    """(skin, alpha, part alpha): one animal warped into the frame, with what shows around the part
    (a fin's arched back, water streaming off a fluke) in ``alpha`` but not in the part's box."""
    skin, alpha = render_sprite(ind, rng)
    m = _pose(alpha, rng, h, w, area, 8 if ind.part == "fin" else 15)
    part = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR)
    sk = cv2.warpAffine(skin, m, (w, h), flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(part > 0.5)
    if not len(ys):
        return sk, part, part
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    full = part.copy()
    if ind.part == "fin":  # the back it rises from, arching out of the water, then the surface
        base = y0 + (y1 - y0) * rng.uniform(0.55, 0.75)
        back_w, back_h = (x1 - x0) * rng.uniform(1.2, 2.8), (y1 - y0) * rng.uniform(0.12, 0.35)
        cx = (x0 + x1) / 2 + rng.uniform(-0.3, 0.3) * (x1 - x0)
        cv2.ellipse(full, (int(cx), int(base + back_h * 0.8)), (int(back_w / 2) + 1, int(back_h) + 1), 0, 180, 360,
                    1.0, -1, cv2.LINE_AA)
        cv2.ellipse(sk, (int(cx), int(base + back_h * 0.8)), (int(back_w / 2) + 1, int(back_h) + 1), 0, 180, 360,
                    float(ind.tone * rng.uniform(0.8, 1.05)), -1, cv2.LINE_AA)
        surface = _waterline(rng, w, base + back_h * rng.uniform(0.3, 0.7), max(1.0, 0.03 * (y1 - y0)))
        under = np.arange(h, dtype=np.float32)[:, None] > surface[None, :]
        full[under], part[under] = 0.0, 0.0
    elif ind.part == "fluke" and rng.random() < 0.6:  # water streaming off the trailing edge
        for _ in range(int(rng.integers(3, 9))):
            x, top = int(rng.uniform(x0, x1)), int(y0 + rng.uniform(0.1, 0.4) * (y1 - y0))
            cv2.line(sk, (x, top), (x, int(y1 + rng.uniform(0, 0.3) * (y1 - y0))),
                     float(rng.uniform(0.6, 0.85)), max(1, int(0.006 * (x1 - x0))), cv2.LINE_AA)
    elif ind.part == "body":  # under the surface: fainter towards one end, tinted by the water
        fade = np.clip(np.linspace(rng.uniform(0.4, 0.8), 1.0, w, dtype=np.float32), 0, 1)[None, :]
        full *= fade if rng.random() < 0.5 else fade[:, ::-1]
        part = part * (full > 0.15)
    return sk, full, part


def compose(
    ind: Individual, rng: np.random.Generator, h: int, w: int, area: float
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """One photo: uint8 HxWx3 RGB and the boxes (x_min, y_min, x_max, y_max, pixels) of every
    animal's part, the identified animal's first. ``area`` is the share of the frame its part's box
    covers; 0-3 other animals of its species, smaller (farther), are drawn behind it."""
    from tfrecords.synthetic.scene import background, distractors, splash

    img, hy = background(rng, h, w)
    distractors(rng, img, hy)
    others = [make_individual(rng, "other", ind.species) for _ in range(int(rng.choice(4, p=[0.5, 0.25, 0.15, 0.1])))]
    boxes: list[tuple[int, int, int, int]] = []
    tint = np.array([1.0, 1.0, 1.0], np.float32) + rng.normal(0, 0.03, 3).astype(np.float32)
    for animal, share in [(o, area * rng.uniform(0.08, 0.5)) for o in others] + [(ind, area)]:
        sk, full, part = _animal(animal, rng, h, w, share)
        x, y, bw, bh = cv2.boundingRect((full > 0).astype(np.uint8))  # blend where the animal is
        roi, a = (slice(y, y + bh), slice(x, x + bw)), full[y:y + bh, x:x + bw, None]
        img[roi] = img[roi] * (1 - a) + (sk[roi][:, :, None] * tint) * a
        ys, xs = np.nonzero(part > 0.5)
        if len(ys) < 4 and animal is not ind:
            continue  # a far animal hidden by the sea: no box
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        if animal.part == "fin" and rng.random() < 0.35:  # spray where the back meets the water
            splash(rng, img, (box[0] + box[2]) / 2, box[3], 0.4 * (box[2] - box[0]))
        boxes.append(box)
    return _degrade(img, rng), [boxes[-1], *boxes[:-1]]


def _degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, gamma, colour cast, blur and sensor noise: what a field camera adds. (On uint8 with
    a lookup table: the float version took longer than drawing the photo.)"""
    gain = (rng.uniform(0.7, 1.3) * (1 + rng.normal(0, 0.05, 3))).astype(np.float32)
    u8 = cv2.convertScaleAbs(img * gain, alpha=255.0)  # saturates at 0..255
    gamma = rng.uniform(0.75, 1.35)
    u8 = cv2.LUT(u8, (255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8))
    if rng.random() < 0.5:
        u8 = cv2.GaussianBlur(u8, (0, 0), rng.uniform(0.5, 1.8))
    noise = np.empty(u8.shape, np.int16)
    cv2.setRNGSeed(int(rng.integers(2**31)))  # OpenCV's generator is ~10x faster than NumPy's here
    cv2.randn(noise, 0.0, float(rng.uniform(1, 6)))
    return np.clip(u8.astype(np.int16) + noise, 0, 255).astype(np.uint8)
