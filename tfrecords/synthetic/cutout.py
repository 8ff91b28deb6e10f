"""An animal cut out of its photo along its outline, for laying it into other water (``at_sea``).

    from tfrecords.synthetic.cutout import cut_out, lay_in
    mask = cut_out(rgb, (x0, y0, x1, y1))        # bool HxW, or None where no outline can be found
    frame = lay_in(patch, alpha, water, x0, y0)  # the patch's animal over the water, nothing else

The boxes say where an animal is, not its outline. OpenCV's GrabCut finds the outline from the box
alone: everything outside the box is background, and colour models of the two sides settle the pixels
inside it. A fin laid into another frame this way brings none of its own water: no rectangle of
other water marks where it is, and its pixels keep their own colours. The Poisson blend used before
(``at_sea.blend``) made the photo's water match the frame's by adding a smooth offset that meets the
frame at the photo's border; a close-up's fin is often cut by that border, and there the offset was
the fin's own darkness, so the fin came out a pale ghost (docs/history.md, "Ghosts and kaleidoscopes").
The blend remains for photos whose outline cannot be found.
"""

from __future__ import annotations

import cv2
import numpy as np

CUT_SIDE = 512  # px: GrabCut runs on the photo shrunk to this longer side (photos at sea are 24 MP)
ITERATIONS = 5  # GrabCut's rounds of re-estimating the two colour models
# an outline is believed when the animal fills this share of its box: a fin fills about half of its
# box (0.59 median on the committed fins); a few per cent means GrabCut took the box for water
MIN_FILL = 0.1
MIN_BACKGROUND = 0.05  # the share of the photo outside the boxes GrabCut needs to learn the water
EDGE_SIGMA = 0.7  # px of the pasted patch: the cut edge softened as a lens softens an outline


def cut_out(rgb: np.ndarray, box: tuple) -> np.ndarray | None:
    """The pixels of the animal in ``box`` (x0, y0, x1, y1, ... in pixels of ``rgb``, uint8 HxWx3) as a
    bool HxW mask, or None where the box leaves too little of the photo to learn the water from, or
    GrabCut keeps under ``MIN_FILL`` of the box."""
    h, w = rgb.shape[:2]
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x1 - x0 < 2 or y1 - y0 < 2 or 1.0 - (x1 - x0) * (y1 - y0) / (h * w) < MIN_BACKGROUND:
        return None
    k = min(1.0, CUT_SIDE / max(h, w))
    small = rgb
    if k < 1:
        small = cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    sx0, sy0 = int(x0 * k), int(y0 * k)
    rect = (sx0, sy0, max(1, int(np.ceil(x1 * k)) - sx0), max(1, int(np.ceil(y1 * k)) - sy0))
    mask = np.zeros(small.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models with k-means: the same cut every time
    cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), mask, rect, bgd, fgd, ITERATIONS, cv2.GC_INIT_WITH_RECT)
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    if k < 1:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_NEAREST)
    fg = fg.astype(bool)
    return fg if fg[y0:y1, x0:x1].mean() >= MIN_FILL else None


def lay_in(patch: np.ndarray, alpha: np.ndarray, water: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """``patch`` (uint8 hxwx3) laid into ``water`` (uint8 HxWx3) at (x0, y0) through ``alpha`` (float
    hxw in 0..1, the cut-out shrunk with the patch), its edge softened by ``EDGE_SIGMA`` px."""
    ph, pw = patch.shape[:2]
    a = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), EDGE_SIGMA)[..., None]
    out = water.copy()
    under = out[y0:y0 + ph, x0:x0 + pw].astype(np.float32)
    out[y0:y0 + ph, x0:x0 + pw] = np.clip(a * patch + (1.0 - a) * under + 0.5, 0, 255).astype(np.uint8)
    return out
