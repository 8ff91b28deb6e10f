"""Boxed photos shrunk into a wide sea: a proxy for detecting animals in photos taken at sea.

    from tfrecords.synthetic.at_sea import paste_at_sea
    paste_at_sea("tests/data/finid_sharks", "work/at_sea")   # -> a Kaggle-layout folder with boxes.csv

Photo-ID close-ups (the committed real fins fill a median 69 % of their frame) say little about a
photo taken from a boat, where a fin is 1-5 % of the frame and the rest is water, sky and foam. Grids
of the photos (``stage1_detect/evaluate.py --tile K``) shrink the fins but fill the frame with other
fins. Here each boxed photo is shrunk to ``AREA`` of a ``FRAME`` and its animal laid on the synthetic
sea of ``tfrecords.synthetic.sea`` (chop, foam, glint, sometimes a horizon with sky and land: the
``sea`` scene, not the ``plain`` world the demo's detector trains on) or on real water (the band
above another surface photo's fin, tiled), cut out along its outline (``cutout``: GrabCut from the
box), so that nothing of its own photo marks where it is. Faded in (until 2026-12-04, 00:00), the
photo's rectangle showed and the detectors boxed it (docs/history.md, "The pasted rectangle");
Poisson-blended (until 2026-12-04, 05:00), fins cut by their photo's frame came out pale ghosts, and
the real water, mirrored out to the frame, held fin-shaped peaks the detectors boxed first: the same
detectors found twice as many fins once both were gone (docs/history.md, "Ghosts and kaleidoscopes"). The fin is
real; what lies around it is not, so a detector that draws boxes over open water, sky or foam pays
for each one here, as it would at sea. Deterministic per ``seed``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection

import cv2
import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from runtime import atomic
from tfrecords.boxes import load_boxes
from tfrecords.layout import (
    BOX_COLUMNS,
    BOXES_CSV,
    TEST_DIR,
    TEST_TRUTH_CSV,
    TRAIN_COLUMNS,
    TRAIN_CSV,
    TRAIN_DIR,
    read_csv,
)
from tfrecords.synthetic.cutout import cut_out, lay_in
from tfrecords.synthetic.render import visible_box
from tfrecords.synthetic.sea import surface

AREA = (0.015, 0.06)  # the pasted photo's share of the frame: its fin a few per cent of it
FRAME = (1536, 1024)  # width, height: 3:2 as a camera's; records keep 1024 px anyway
BORDER = 2  # px of the pasted photo's edge left out of the blend: its gradients there meet the sea's
# how the photos enter the frame, written beside each pasted folder (MARKER): a folder pasted another way
# (the faded rectangles before 2026-12-04), or with another seed or water, is pasted again (``pasted``)
PASTE = "cut-tiled"
MARKER = "at_sea.json"
# ``water="real"``: a photo lends its water when the band above its boxes is this many px tall (and wide)
STRIP_SIDE = 16
TIP_MARGIN = 0.05
CLIPPED = 250  # a band mostly this bright in every channel is an overexposed sky, not water
# the water a photo is pasted into: one of the NEAREST strips by mean colour to the photo's outer RIM
# (its own water): blended into water of another colour, a fin took that colour's offset (purple, pink;
# its box's mean colour moved 38 grey levels of 255 on average, 21 matched): no fin at sea looks so (docs/history.md)
NEAREST = 3
RIM = 0.08
STRIP_TRIM = 4  # px cut from each edge of a band: a few of the photos have a thin border
TILE_OVERLAP = 0.25  # the share of a band's side by which its copies overlap when tiled out to a frame
# optional in a folder: where each photo was taken from (image,view; view surface or underwater). Photos
# at sea are taken from the surface; a fin shot from an underwater cage, pasted into surface water, is a
# translucent patch no such photo shows (docs/history.md, "the fins above the water alone")
VIEWS_CSV = "views.csv"
VIEWS = ("surface", "underwater")


def pasted(out: str, seed: int, water: str) -> bool:
    """Whether ``out`` holds a whole ``paste_at_sea`` folder of this seed and water, pasted as today."""
    path = os.path.join(out, MARKER)
    if not (os.path.exists(path) and os.path.exists(os.path.join(out, BOXES_CSV))):
        return False
    with open(path) as f:
        return json.load(f) == _marker(seed, water)


def _marker(seed: int, water: str) -> dict:
    return {"paste": PASTE, "seed": seed, "water": water}


def surface_photos(data: str) -> set[str] | None:
    """The photos of ``data`` taken from the surface (its ``VIEWS_CSV``), or None without that file."""
    from runtime.cli import DataError

    path = os.path.join(data, VIEWS_CSV)
    if not os.path.exists(path):
        return None
    views = read_csv(path, ("image", "view"), VIEWS_CSV)
    bad = sorted(set(views["view"]) - set(VIEWS))
    if bad:
        raise DataError(f"{path}: view {bad[0]!r} is not one of {', '.join(VIEWS)}")
    return set(views.loc[views["view"] == "surface", "image"])


def water_strip(rgb: np.ndarray, boxes: list) -> np.ndarray | None:
    """The band of ``rgb`` above every box (and ``TIP_MARGIN`` of the tallest box's height), when it is
    ``STRIP_SIDE`` px tall and wide once trimmed and not mostly ``CLIPPED``; else None. Above, because
    a box bounds the part photographed, not the animal: beside and below it lie the base of the fin,
    the back and the reflection, which the largest box-free band (the rule until 2026-12-04) brought
    into the water as unboxed fins (docs/history.md, "Ghosts and kaleidoscopes")."""
    if not boxes:
        return None
    top = min(b[1] for b in boxes)
    # a box drawn a little low leaves the fin's tip above it: TIP_MARGIN of the box's height more is left out
    top = int(top - TIP_MARGIN * max(b[3] - b[1] for b in boxes))
    t = STRIP_TRIM  # some photos have a thin border of another colour
    band = rgb[t:max(t, top - t), t:rgb.shape[1] - t]
    if min(band.shape[:2]) < STRIP_SIDE or (band.min(axis=-1) >= CLIPPED).mean() > 0.5:
        return None  # too thin, or a white sky over the sea
    return band


def real_sea(strip: np.ndarray) -> np.ndarray:
    """A ``FRAME`` of real water, float32, from a strip tiled out to the frame's shape at the strip's own
    scale (as wide as the strip, or as tall), then resized. The copies overlap by ``TILE_OVERLAP`` of
    their side and cross-fade there; mirrored instead (until 2026-12-04), every slope of a wave met its
    mirror image in a peak, a fin-shaped triangle the detectors boxed (docs/history.md, "Ghosts and
    kaleidoscopes")."""
    width, height = FRAME
    h, w = strip.shape[:2]
    fw = max(w, int(np.ceil(h * width / height)))
    fh = int(round(fw * height / width))
    oy, ox = max(1, int(h * TILE_OVERLAP)), max(1, int(w * TILE_OVERLAP))
    ramp = [np.minimum(1.0, np.minimum(np.arange(n) + 1, n - np.arange(n)) / (o + 1)) for n, o in ((h, oy), (w, ox))]
    weight = (ramp[0][:, None] * ramp[1][None, :]).astype(np.float32)[..., None]
    acc = np.zeros((fh + h, fw + w, 3), np.float32)
    total = np.zeros((fh + h, fw + w, 1), np.float32)
    copy = strip.astype(np.float32) * weight  # the same weighted copy at every place
    for y in range(0, max(1, fh - oy), h - oy):  # the last copy reaches the frame's edge
        for x in range(0, max(1, fw - ox), w - ox):
            acc[y:y + h, x:x + w] += copy
            total[y:y + h, x:x + w] += weight
    water = np.clip(acc[:fh, :fw] / total[:fh, :fw] + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(water).resize(FRAME, Image.Resampling.BICUBIC), np.float32)


def paste_one(rgb: np.ndarray, boxes: list, rng: np.random.Generator, water: np.ndarray | None = None
              ) -> tuple[np.ndarray, list]:
    """One photo (uint8 HxWx3) and its pixel boxes (x0, y0, x1, y1, label) -> the sea frame with the
    photo's animals shrunk into it, cut out along their outlines (``cutout``; the whole photo
    Poisson-blended where an outline cannot be found), and the boxes moved with them, each drawn around
    what its cut-out kept (a box holds nothing that was not pasted). ``water``: a ``real_sea`` frame to
    use instead of the synthetic sea."""
    width, height = FRAME
    sea = (np.clip(surface(rng, height, width), 0.0, 1.0) * 255.0).astype(np.float32) if water is None else water.copy()
    h, w = rgb.shape[:2]
    s = float(np.sqrt(rng.uniform(*AREA) * width * height / (h * w)))
    ph, pw = max(1, min(height, round(h * s))), max(1, min(width, round(w * s)))
    y0, x0 = int(rng.integers(0, height - ph + 1)), int(rng.integers(0, width - pw + 1))
    patch = np.asarray(Image.fromarray(rgb).resize((pw, ph), Image.Resampling.BICUBIC), np.uint8)
    x0, y0 = min(max(x0, 1), width - pw - 1), min(max(y0, 1), height - ph - 1)  # the blend needs a pixel of sea
    sea = np.clip(sea, 0.0, 255.0).astype(np.uint8)
    masks = [cut_out(rgb, b) for b in boxes]
    if masks and all(m is not None for m in masks):
        animal = np.logical_or.reduce(masks).astype(np.float32)
        frame = lay_in(patch, cv2.resize(animal, (pw, ph), interpolation=cv2.INTER_AREA), sea, x0, y0)
        boxes = [(*visible_box(m), b[4]) for m, b in zip(masks, boxes, strict=True)]
    else:
        frame = blend(patch, sea, x0, y0)
    moved = [(x0 + b[0] * pw / w, y0 + b[1] * ph / h, x0 + b[2] * pw / w, y0 + b[3] * ph / h, b[4]) for b in boxes]
    return frame, moved


def blend(patch: np.ndarray, sea: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """``patch`` (uint8 hxwx3) Poisson-blended into ``sea`` (uint8 HxWx3) with its top-left corner at
    (x0, y0): inside, the patch's gradients; at its border, the sea's colours (OpenCV NORMAL_CLONE)."""
    ph, pw = patch.shape[:2]
    mask = np.zeros((ph, pw), np.uint8)
    mask[BORDER:ph - BORDER, BORDER:pw - BORDER] = 255
    # OpenCV centres the mask's bounding box on ``centre``: this centre puts the patch's pixel (0, 0) at (x0, y0)
    centre = (x0 + pw // 2, y0 + ph // 2)
    out = cv2.seamlessClone(np.ascontiguousarray(patch[..., ::-1]), np.ascontiguousarray(sea[..., ::-1]), mask,
                            centre, cv2.NORMAL_CLONE)
    return np.ascontiguousarray(out[..., ::-1])


def paste_at_sea(data: str, out: str, seed: int = 0, part: str = "animal", water: str = "sea",
                 only: Collection[str] | None = None) -> int:
    """Every boxed photo of the Kaggle-layout folder ``data`` (train and test, ``boxes.csv``) into the
    sea, written to ``out`` as training photos with their individuals and a ``boxes.csv``; returns
    how many. Photos without a box are left out (there is nothing to find in them). ``water``: sea
    (the synthetic sea) or real (the folder's own water: each frame a ``real_sea`` of the
    ``water_strip`` of another of its photos, drawn from the ``NEAREST`` to the photo's own water in
    colour; where the folder has a ``VIEWS_CSV``, only photos taken from the surface lend water).
    ``only``: write these photos alone, each in the frame it has among all of them (the same sea,
    place and size)."""
    if water not in ("sea", "real"):
        raise ValueError(f"water {water!r}: choose sea or real")
    boxes, _ = load_boxes(os.path.join(data, BOXES_CSV), part)
    tables = [read_csv(os.path.join(data, TRAIN_CSV), ("image",), TRAIN_CSV).assign(folder=TRAIN_DIR)]
    if os.path.exists(os.path.join(data, TEST_TRUTH_CSV)):
        tables.append(read_csv(os.path.join(data, TEST_TRUTH_CSV), ("image",), TEST_TRUTH_CSV).assign(folder=TEST_DIR))
    rows = pd.concat(tables, ignore_index=True)
    rows = rows[rows["image"].isin(boxes)].sort_values("image", kind="stable")
    os.makedirs(os.path.join(out, TRAIN_DIR), exist_ok=True)
    os.makedirs(os.path.join(out, TEST_DIR), exist_ok=True)
    rng, kept = np.random.default_rng(seed), []
    strips = []  # (image, band) read first; the photos themselves one at a time (24 MP each at sea)
    surface_only = surface_photos(data)  # water seen from below is not the sea a photo from a boat shows
    for row in rows.itertuples(index=False) if water == "real" else ():
        if surface_only is not None and row.image not in surface_only:
            continue
        band = water_strip(_read(os.path.join(data, row.folder, row.image)), boxes[row.image])
        if band is not None:
            strips.append((row.image, _fit(band)))
    if water == "real" and len(strips) < 2:
        raise ValueError(f"{data}: {len(strips)} photos with a band of water above their boxes; water='real' needs two")
    for row in rows.itertuples(index=False):
        rgb, sea = _read(os.path.join(data, row.folder, row.image)), None
        if water == "real":
            others = [s for name, s in strips if name != row.image]
            sea = real_sea(nearest_water(rgb, others, rng))
        frame, moved = paste_one(rgb, boxes[row.image], rng, sea)  # drawn for every photo: the same frames
        if only is not None and row.image not in only:
            continue
        Image.fromarray(frame).save(os.path.join(out, TRAIN_DIR, row.image), quality=92)
        kept += [(row.image, *b) for b in moved]
    if only is not None:
        rows = rows[rows["image"].isin(only)]
    rows[[c for c in TRAIN_COLUMNS if c in rows.columns]].to_csv(os.path.join(out, TRAIN_CSV), index=False)
    pd.DataFrame(kept, columns=list(BOX_COLUMNS)).to_csv(os.path.join(out, BOXES_CSV), index=False,
                                                         float_format="%.1f")
    atomic.write_text(os.path.join(out, MARKER), json.dumps(_marker(seed, water)))  # last: a folder with it is whole
    return len(rows)


def rim_colour(rgb: np.ndarray) -> np.ndarray:
    """The mean colour of a photo's outer ``RIM`` (its water, in photos of a fin): float32 RGB."""
    h, w = rgb.shape[:2]
    r = max(1, round(RIM * min(h, w)))
    inner = np.zeros((h, w), bool)
    inner[r:h - r, r:w - r] = True
    return rgb[~inner].reshape(-1, 3).astype(np.float32).mean(axis=0)


def nearest_water(rgb: np.ndarray, strips: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One of the ``NEAREST`` strips whose mean colour is nearest the photo's rim (drawn at random)."""
    rim = rim_colour(rgb)
    far = [float(np.abs(s.reshape(-1, 3).astype(np.float32).mean(axis=0) - rim).sum()) for s in strips]
    order = np.argsort(far, kind="stable")[:NEAREST]
    return strips[int(order[int(rng.integers(len(order)))])]


def _fit(band: np.ndarray) -> np.ndarray:
    """A band no larger than the frame (a copy: a view would keep its whole photo in memory)."""
    h, w = band.shape[:2]
    scale = min(1.0, FRAME[0] / w, FRAME[1] / h)
    if scale == 1.0:
        return band.copy()
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(band).resize(size, Image.Resampling.BILINEAR))


def _read(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
