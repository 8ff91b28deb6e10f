"""Local features: SIFT keypoints of each crop, matched between a query and a catalog photo with
Lowe's ratio test and verified geometrically (RANSAC similarity transform): the number of inliers
is evidence that two crops show the same marks, where a global embedding only says they look alike.

On the demo crops, re-ranking each query's 30 best individuals by 16x16 pixels with inlier counts
raised validation MAP@5 from 0.62 to 0.70, and adding them to the trained embedder's cosine from
0.83 to 0.91 (prototype, ``docs/history.md``); the re-ranking itself is ``pipeline/rerank.py``.

``LocalFeatures`` holds the keypoints of many photos in three flat arrays (stored in a catalog
``.npz`` beside the embeddings, no pickles): ``xy`` [M, 2] float32 pixel positions in the crop
scaled to ``SIDE``, ``desc`` [M, 128] uint8 SIFT descriptors, ``offsets`` [N + 1].
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

SIDE = 256  # crops are scaled so their longer side is this many pixels before SIFT
FEATURES = 300  # keypoints kept per crop (the strongest): bounds the cost of every match
RATIO = 0.8  # Lowe's ratio test
RANSAC_PX = 6.0  # reprojection error of an inlier, in pixels at SIDE


@dataclass(frozen=True)
class LocalFeatures:
    xy: np.ndarray
    desc: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.xy[a:b], self.desc[a:b]

    def take(self, rows: np.ndarray) -> LocalFeatures:
        """The features of ``rows`` (a boolean mask or indices), in that order."""
        rows = np.asarray(rows)
        return from_list([self.of(int(i)) for i in (np.flatnonzero(rows) if rows.dtype == bool else rows)])

    def concat(self, other: LocalFeatures) -> LocalFeatures:
        return from_list([self.of(i) for i in range(len(self))] + [other.of(i) for i in range(len(other))])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"local_xy": self.xy, "local_desc": self.desc, "local_offsets": self.offsets}


def from_arrays(z) -> LocalFeatures | None:
    """From a loaded ``.npz`` (None when it has no local features)."""
    if "local_offsets" not in z:
        return None
    return LocalFeatures(z["local_xy"].astype(np.float32), z["local_desc"].astype(np.uint8),
                         z["local_offsets"].astype(np.int64))


def from_list(items: Sequence[tuple[np.ndarray, np.ndarray]]) -> LocalFeatures:
    counts = np.array([len(xy) for xy, _ in items], np.int64)
    xy = np.concatenate([x for x, _ in items]) if len(items) else np.zeros((0, 2), np.float32)
    desc = np.concatenate([d for _, d in items]) if len(items) else np.zeros((0, 128), np.uint8)
    return LocalFeatures(xy.reshape(-1, 2).astype(np.float32), desc.reshape(-1, 128).astype(np.uint8),
                         np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))


_SIFT = None


def describe(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints of one grey crop (uint8 [H, W]), scaled to a longer side of ``SIDE``."""
    import cv2

    global _SIFT
    if _SIFT is None:
        _SIFT = cv2.SIFT_create(nfeatures=FEATURES)
    s = SIDE / max(grey.shape[:2])
    img = cv2.resize(grey, (max(1, round(grey.shape[1] * s)), max(1, round(grey.shape[0] * s))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    kp, desc = _SIFT.detectAndCompute(img, None)
    if desc is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8)
    return (np.array([k.pt for k in kp], np.float32).reshape(-1, 2),
            np.clip(np.round(desc), 0, 255).astype(np.uint8))


def of_crops(encoded: Iterable[bytes], boxes: np.ndarray | None = None) -> LocalFeatures:
    """Local features of JPEG/PNG images, each cut to its rel-yxyx box first (None: whole images)."""
    import cv2

    items = []
    for i, data in enumerate(encoded):
        grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            items.append((np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8)))
            continue
        if boxes is not None:
            h, w = grey.shape
            y0, x0, y1, x1 = boxes[i]
            r0, c0 = int(np.floor(y0 * h)), int(np.floor(x0 * w))
            grey = grey[r0:max(int(np.ceil(y1 * h)), r0 + 1), c0:max(int(np.ceil(x1 * w)), c0 + 1)]
        items.append(describe(grey))
    return from_list(items)


_MATCHER = None


def inliers(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> int:
    """Geometrically verified matches between two crops' keypoints: ratio-test matches that a
    RANSAC similarity transform (rotation, scale, shift) explains within ``RANSAC_PX``."""
    import cv2

    global _MATCHER
    (xa, da), (xb, db) = a, b
    if len(da) < 2 or len(db) < 2:
        return 0
    if _MATCHER is None:
        _MATCHER = cv2.BFMatcher(cv2.NORM_L2)
    pairs = _MATCHER.knnMatch(da.astype(np.float32), db.astype(np.float32), k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < 3:
        return 0
    src = xa[[g.queryIdx for g in good]]
    dst = xb[[g.trainIdx for g in good]]
    _, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX)
    return int(mask.sum()) if mask is not None else 0
