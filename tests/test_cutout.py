"""An animal cut out of its photo along its outline (tfrecords/synthetic/cutout.py), for the at-sea
proxies: GrabCut from the box alone must find the outline, the same one every time, at any photo size,
and say so when it cannot."""

import cv2
import numpy as np

from tfrecords.synthetic.cutout import cut_out, lay_in
from tfrecords.synthetic.render import visible_box


def _fin_photo(h: int = 300, w: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """A dark fin (triangle) on bright, slightly textured water, and its true mask."""
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal((170, 190, 210), 8, (h, w, 3)), 0, 255).astype(np.uint8)
    pts = (np.array([[0.3, 0.9], [0.5, 0.3], [0.7, 0.9]]) * (w, h)).astype(np.int32)
    truth = np.zeros((h, w), np.uint8)
    cv2.fillPoly(truth, [pts], 1)
    rgb[truth.astype(bool)] = (40, 45, 50)
    return rgb, truth.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_the_outline_is_found_from_the_box_alone_the_same_every_time():
    rgb, truth = _fin_photo()
    box = (*visible_box(truth), "fin")
    mask = cut_out(rgb, box)
    assert mask is not None and mask.shape == truth.shape
    assert _iou(mask, truth) > 0.9  # the fin, not its box: the box's water corners are left behind
    x0, y0, x1, y1 = box[:4]
    assert mask[y0:y1, x0:x1].mean() < 0.75 and not mask[:y0].any()  # nothing outside the box
    assert (cut_out(rgb, box) == mask).all()  # GrabCut's k-means seeded: the same cut


def test_a_large_photo_is_cut_at_a_smaller_size_and_the_mask_comes_back_full_size():
    rgb, truth = _fin_photo(1500, 2000)  # above CUT_SIDE: cut on the shrunk photo
    mask = cut_out(rgb, (*visible_box(truth), "fin"))
    assert mask.shape == truth.shape and _iou(mask, truth) > 0.9


def test_no_outline_where_the_box_leaves_no_water_to_learn_from():
    rgb, truth = _fin_photo()
    assert cut_out(rgb, (0, 0, 400, 300, "fin")) is None  # the box is the photo: the caller blends it whole
    assert cut_out(rgb, (5, 5, 6, 6, "fin")) is None  # a box of one pixel has no outline


def test_laying_in_puts_the_animal_alone_into_the_water():
    patch = np.full((20, 30, 3), 10, np.uint8)
    alpha = np.zeros((20, 30), np.float32)
    alpha[5:15, 10:20] = 1.0
    water = np.full((100, 100, 3), 200, np.uint8)
    out = lay_in(patch, alpha, water, 40, 50)
    assert out[50 + 10, 40 + 15].max() < 30  # the animal's own colour where the alpha holds it
    assert (out[50:52, 40:70] == 200).all() and (out[:50] == 200).all()  # the patch's other pixels stay out
    assert (water == 200).all()  # the water given is not written over
