"""Drawing of the synthetic Happywhale-like photos: sea and sky, and a fin, fluke or body whose
identity lives in per-individual marks (trailing-edge notches, scars, pigment patches).

Each individual is a frozen ``Individual`` (shape and marks); each photo draws it in a canonical
sprite, warps it into the frame at a random pose and scale, and degrades the whole photo (exposure,
colour cast, glare, blur, noise, JPEG). Pose, scale, light and colour all vary per photo, so colour
or size alone cannot identify an individual; the marks can. NumPy + OpenCV only, ~10 ms a photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tfrecords.synthetic.distractors import add_distractors
from tfrecords.synthetic.sea import gradient, skin_light

SPRITE = 256  # canonical sprite side, px
OVERHANG = 0.12  # the share of a close-up part's box that may lie outside the frame, per side


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
        sign = look.patch_sign or float(rng.choice([-1.0, 1.0]))
        patches.append((
            float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.4, 0.8)),
            float(rng.uniform(0.04, 0.14)), float(rng.uniform(0.03, 0.1)),
            float(rng.uniform(0, 180)), sign * float(rng.uniform(0.25, 0.5)),
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


def render_sprite(ind: Individual, rng: np.random.Generator, lit: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Canonical SPRITE x SPRITE grey skin (float32 0..1) and alpha mask, with this photo's small
    pose-independent variation (shading direction); ``lit``: the sea scene's light instead
    (``sea.skin_light``: stronger shading from any side, skin texture, a wet sheen)."""
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
                 float(min(1.0, ind.tone + 0.45)), max(2, int(th * s)), cv2.LINE_AA)
    if lit:
        return np.clip(skin * skin_light(rng, s), 0, 1), mask.astype(np.float32) / 255.0
    skin = np.clip(skin * (1.0 + 0.18 * gradient(rng, s)), 0, 1)
    return skin, mask.astype(np.float32) / 255.0


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Sea (and sometimes sky above a horizon) with waves and sun glare, float32 HxWx3 in 0..1."""
    sea = np.array([rng.uniform(0.05, 0.25), rng.uniform(0.2, 0.45), rng.uniform(0.3, 0.6)], np.float32)
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    f1, f2 = rng.uniform(0.02, 0.09, 2)
    ph = rng.uniform(0, 2 * np.pi, 3)
    waves = 0.06 * np.sin(f1 * y + 0.3 * np.sin(f2 * x + ph[0]) + ph[1]) + 0.03 * np.sin(0.5 * f2 * x + ph[2])
    noise = cv2.resize(rng.normal(0, 0.05, (max(2, h // 16), max(2, w // 16))).astype(np.float32), (w, h))
    img = sea[None, None, :] * (1.0 + waves + noise)[:, :, None]
    if rng.random() < 0.45:  # a horizon with sky above
        hy = int(rng.uniform(0.05, 0.3) * h)
        sky = np.array([rng.uniform(0.55, 0.8), rng.uniform(0.65, 0.85), rng.uniform(0.75, 0.95)], np.float32)
        grad = (0.85 + 0.15 * np.linspace(0, 1, hy, dtype=np.float32))[:, None, None]
        img[:hy] = sky[None, None, :] * grad
    for _ in range(int(rng.integers(0, 4))):  # glare
        g = np.zeros((h, w), np.float32)
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        ax = (int(rng.uniform(0.05, 0.3) * w), int(rng.uniform(0.01, 0.06) * h))
        cv2.ellipse(g, c, ax, float(rng.uniform(-10, 10)), 0, 360, float(rng.uniform(0.3, 0.8)), -1)
        k = 2 * int(0.02 * w) + 1
        img += cv2.GaussianBlur(g, (k, k), 0)[:, :, None]
    return img


def compose(
    ind: Individual, rng: np.random.Generator, h: int, w: int, area: float, companions: float = 0.0,
    distractors: float = 0.0,
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """One photo: uint8 HxWx3 RGB and its boxes (x_min, y_min, x_max, y_max) in pixels, the
    individual's part first.

    ``area`` is the fraction of the frame the part's box covers (above 0.3 the part may overhang
    the frame; the box is the visible part). ``companions``: the chance that 1-3 smaller animals of
    its species share the photo, each boxed (``add_companions``). ``distractors``: the chance that
    1-3 birds, buoys, boats or splashes share it, unboxed (``distractors.add_distractors``)."""
    img = background(rng, h, w)
    img, alpha = _paste(img, ind, rng, area)
    boxes = [visible_box(alpha)]
    if companions > 0 and rng.random() < companions:  # no draw at 0: the photos stay as they were
        img, boxes = add_companions(img, ind, rng, boxes)
    if distractors > 0 and rng.random() < distractors:  # no draw at 0, as for companions
        img = add_distractors(img, rng, boxes)
    return degrade(img, rng), boxes


def _paste(img: np.ndarray, ind: Individual, rng: np.random.Generator, area: float) -> tuple[np.ndarray, np.ndarray]:
    """``img`` with ``ind``'s part posed over it at ~``area`` of the frame, and the part's alpha."""
    h, w = img.shape[:2]
    skin, alpha = render_sprite(ind, rng)
    m, k, rbh, oy = pose(alpha, rng, h, w, area)
    warped_a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR)
    warped_s = cv2.warpAffine(skin, m, (w, h), flags=cv2.INTER_LINEAR)
    if ind.part == "fin":  # the fin rises out of the water: the sea covers its base
        cut = oy + k * rbh * rng.uniform(0.32, 0.45)
        warped_a[int(min(h, max(0, cut))):] *= 0.0
    tint = np.array([1.0, 1.0, 1.0], np.float32) + rng.normal(0, 0.03, 3).astype(np.float32)
    return img * (1 - warped_a[:, :, None]) + (warped_s[:, :, None] * tint) * warped_a[:, :, None], warped_a


# companions: animals of the photographed one's species farther off, as a pod is photographed at sea; each
# COMPANION_AREA of the frame (log-uniform) and at most half the main part's box, none overlapping another
COMPANION_AREA = (0.01, 0.05)
COMPANION_TRIES = 8


def add_companions(img: np.ndarray, ind: Individual, rng: np.random.Generator, boxes: list
                   ) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """``img`` with 1-3 smaller unknown animals of ``ind``'s species (each a new individual, so that
    no identity repeats), posed where no box in ``boxes`` lies; ``boxes`` with theirs appended."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = boxes[0]
    ceiling = min(COMPANION_AREA[1], 0.5 * (x1 - x0) * (y1 - y0) / (h * w))
    boxes = list(boxes)
    for _ in range(int(rng.integers(1, 4))):
        other = make_individual(rng, "", ind.species)
        a = float(np.exp(rng.uniform(np.log(COMPANION_AREA[0]), np.log(max(ceiling, COMPANION_AREA[0])))))
        for _ in range(COMPANION_TRIES):
            placed, alpha = _paste(img, other, rng, a)
            if not (alpha > 0.5).any():
                continue
            box = visible_box(alpha)
            if not any(_overlap(box, b) for b in boxes):
                img = placed
                boxes.append(box)
                break
    return img, boxes


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def visible_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """The box (x_min, y_min, x_max, y_max) px of a warped part's visible pixels (alpha > 0.5)."""
    ys, xs = np.nonzero(alpha > 0.5)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def pose(alpha: np.ndarray, rng: np.random.Generator, h: int, w: int, area: float
         ) -> tuple[np.ndarray, float, float, float]:
    """A random rotation, stretch and scale of the sprite into the frame so that its rotated box covers
    ~``area`` of it: (2x3 warp matrix, scale, the rotated box's height in sprite px, its centre y)."""
    ys, xs = np.nonzero(alpha > 0.5)
    bw, bh = (xs.max() - xs.min() + 1), (ys.max() - ys.min() + 1)
    stretch = rng.uniform(0.85, 1.15)
    rot = np.deg2rad(rng.uniform(-12, 12))
    cos, sin = abs(np.cos(rot)), abs(np.sin(rot))
    rbw = bw * stretch * cos + bh * sin
    rbh = bw * stretch * sin + bh * cos
    # close-ups (photo-ID framing) may overhang the frame by up to OVERHANG of the part's box per
    # side: the detector learns boxes cut by the frame edge, which real close-ups are
    over = OVERHANG if area > 0.3 else 0.0
    k = min(np.sqrt(area * h * w / (rbw * rbh)), (0.97 + over) * w / rbw, (0.97 + over) * h / rbh)
    a = np.array([[stretch * np.cos(rot), -np.sin(rot)], [stretch * np.sin(rot), np.cos(rot)]]) * k
    cx0, cy0 = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    ox = rng.uniform(*sorted((k * rbw * (0.5 - over), w - k * rbw * (0.5 - over))))
    oy = rng.uniform(*sorted((k * rbh * (0.5 - over), h - k * rbh * (0.5 - over))))
    m = np.hstack([a, np.array([[ox], [oy]]) - a @ np.array([[cx0], [cy0]])]).astype(np.float32)
    return m, k, rbh, oy


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, gamma, colour cast, blur and sensor noise: what a field camera adds."""
    img = img * rng.uniform(0.7, 1.3) * (1 + rng.normal(0, 0.05, 3)).astype(np.float32)
    img = np.clip(img, 0, 1) ** rng.uniform(0.75, 1.35)
    if rng.random() < 0.5:
        sigma = rng.uniform(0.5, 1.8)
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    noise = np.empty(img.shape, np.float32)
    cv2.setRNGSeed(int(rng.integers(2**31)))  # OpenCV's generator is ~10x faster than NumPy's here
    cv2.randn(noise, 0.0, float(rng.uniform(1, 6)))
    return np.clip(img * 255.0 + noise, 0, 255).astype(np.uint8)
