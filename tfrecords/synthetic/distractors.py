"""Things at sea that are not the animal: birds, buoys, boats and splashes, drawn unboxed.

    from tfrecords.synthetic.distractors import add_distractors
    img = add_distractors(img, rng, boxes)   # float32 HxWx3 in 0..1, before ``render.degrade``

Photos taken from a boat hold gulls in the sky and on the water, buoys, other boats and the white
water a breaching animal leaves; the held-back detector set was boxed on splashes and the
shoreline. A detector that has only ever seen sea and animals has no reason not to box them. Each
distractor is small (``SIZE`` of the frame's width), never overlaps an animal's box (the boxes
stay true), and is drawn before the photo's degradation, so that it takes the same light, blur
and noise. ``tfrecords/synthesize.py --distractors R`` draws 1-3 in a share R of the photos.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

KINDS = ("bird", "buoy", "boat", "splash")
# a distractor's extent as a share of the frame's width (log-uniform): the sides of animals 1-5 % of the frame
SIZE = (0.03, 0.15)
TRIES = 8  # places tried for each distractor before it is left out
MARGIN = 0.02  # of the frame's width kept clear around every animal's box


def add_distractors(img: np.ndarray, rng: np.random.Generator, boxes: list, kinds: tuple[str, ...] = KINDS
                    ) -> np.ndarray:
    """``img`` (float32 HxWx3, 0..1) with 1-3 distractors of ``kinds`` drawn where no box in ``boxes``
    (x_min, y_min, x_max, y_max px) lies; the boxes are unchanged, none is added."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"distractor {bad[0]!r}: choose from {', '.join(KINDS)}")
    h, w = img.shape[:2]
    clear = np.ones((h, w), bool)
    m = MARGIN * w
    for x0, y0, x1, y1 in (b[:4] for b in boxes):
        clear[max(0, int(y0 - m)):int(np.ceil(y1 + m)), max(0, int(x0 - m)):int(np.ceil(x1 + m))] = False
    img = img.copy()
    for _ in range(int(rng.integers(1, 4))):
        kind = kinds[int(rng.integers(len(kinds)))]
        size = float(np.exp(rng.uniform(*np.log(SIZE)))) * w
        n = int(2 * size) + 4  # drawn on a local canvas of n x n px, its centre at (n / 2, n / 2)
        for _ in range(TRIES):
            x0, y0 = int(rng.uniform(-n / 2, w - n / 2)), int(rng.uniform(-n / 2, h - n / 2))
            alpha, colour = DRAW[kind](rng, n, size)
            xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + n), min(h, y0 + n)
            a = alpha[ya - y0:yb - y0, xa - x0:xb - x0]
            if (a > 0.05).any() and clear[ya:yb, xa:xb][a > 0.05].all():
                region = img[ya:yb, xa:xb]
                img[ya:yb, xa:xb] = region * (1 - a[:, :, None]) + colour * a[:, :, None]
                break
    return img


def _bird(rng: np.random.Generator, n: int, size: float) -> tuple:
    """A gull in flight (two bent wings) or sitting on the water (a body and a head), dark or white."""
    a, cx, cy = np.zeros((n, n), np.float32), n / 2, n / 2
    if rng.random() < 0.5:
        lift = rng.uniform(0.1, 0.35) * size
        pts = np.array([(-0.5, -lift / size), (-0.22, 0.0), (0.0, 0.12), (0.22, 0.0), (0.5, -lift / size)])
        pts = (pts * size + (cx, cy)).astype(np.int32)
        cv2.polylines(a, [pts], False, 1.0, max(1, int(size / 10)), cv2.LINE_AA)
    else:
        cv2.ellipse(a, (int(cx), int(cy)), (max(1, int(size / 3)), max(1, int(size / 7))), 0, 0, 360, 1.0, -1,
                    cv2.LINE_AA)
        cv2.circle(a, (int(cx + size / 3), int(cy - size / 7)), max(1, int(size / 9)), 1.0, -1, cv2.LINE_AA)
    tone = rng.uniform(0.85, 1.0) if rng.random() < 0.6 else rng.uniform(0.05, 0.3)
    return a, np.full(3, tone, np.float32)


def _buoy(rng: np.random.Generator, n: int, size: float) -> tuple:
    """A float: orange, red, yellow or white, lit from above, its lower part under the water."""
    a, cx, cy = np.zeros((n, n), np.float32), n / 2, n / 2
    r = max(2, int(size / 3))
    cv2.circle(a, (int(cx), int(cy)), r, 1.0, -1, cv2.LINE_AA)
    a[int(cy + rng.uniform(0.0, 0.5) * r):] = 0.0  # the water line
    colour = np.array([(1.0, 0.45, 0.05), (0.85, 0.1, 0.1), (0.95, 0.85, 0.1), (0.95, 0.95, 0.95)]
                      [int(rng.integers(4))], np.float32)
    return a, colour * rng.uniform(0.6, 1.0)


def _boat(rng: np.random.Generator, n: int, size: float) -> tuple:
    """A distant boat: a hull wider at the deck than at the water line, a cabin on it."""
    a, cx, cy = np.zeros((n, n), np.float32), n / 2, n / 2
    half, deep = size / 2, size * rng.uniform(0.12, 0.2)
    hull = np.array([(-half, 0), (half, 0), (half * 0.8, deep), (-half * 0.85, deep)]) + (cx, cy)
    cv2.fillPoly(a, [hull.astype(np.int32)], 1.0, cv2.LINE_AA)
    cab_w, cab_h = size * rng.uniform(0.2, 0.4), size * rng.uniform(0.12, 0.25)
    left = cx - half * rng.uniform(0.2, 0.6)
    cv2.rectangle(a, (int(left), int(cy - cab_h)), (int(left + cab_w), int(cy)), 1.0, -1)
    tone = rng.uniform(0.75, 1.0) if rng.random() < 0.6 else rng.uniform(0.1, 0.4)
    return a, np.full(3, tone, np.float32) * (1 + rng.normal(0, 0.05, 3)).astype(np.float32)


def _splash(rng: np.random.Generator, n: int, size: float) -> tuple:
    """White water: a ragged blob of foam, denser in its middle, with soft edges."""
    a = np.zeros((n, n), np.float32)
    k = max(4, int(size))
    blob = cv2.GaussianBlur(rng.random((k, k)).astype(np.float32), (0, 0), max(0.5, k / 8))
    yy, xx = np.mgrid[-1:1:complex(k), -1:1:complex(k)]
    blob = np.clip((blob - blob.mean()) * 8 + 1.3 - 1.4 * np.hypot(xx, yy), 0, 1)
    o = (n - k) // 2
    a[o:o + k, o:o + k] = blob * rng.uniform(0.7, 0.95)
    return a, np.full(3, rng.uniform(0.85, 1.0), np.float32)


DRAW: dict[str, Callable] = {"bird": _bird, "buoy": _buoy, "boat": _boat, "splash": _splash}
