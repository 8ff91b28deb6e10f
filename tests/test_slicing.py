"""Test-time slices (stage1_detect/slicing.py) with hand-made photos and a fake detector whose answers
are known: it boxes every bright square of at least ``SEEN`` pixels at the model's input, so a square
too small for the whole photo is found in a tile; boxes cut by a tile's inner edge are left out, and in
close-ups the tiles' boxes rank last; boxes come back in the photo's pixels."""

import cv2
import numpy as np
import tensorflow as tf

from stage1_detect.slicing import DEMOTE, close_up, tile_grid
from stage1_detect.views import detect_views, top_views

S = 32  # the model's input; photos are decoded at 2 x S for 2 x 2 slices
SEEN = 6  # the fake detector's smallest square, in model pixels


def _squares(image: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """The bright squares of one image as (xyxy box, confidence): 0.9, or 0.95 for the biggest."""
    mask = (image[..., 0] > 128).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    found = [(np.array([x, y, x + w, y + h], np.float32), float(w * h)) for x, y, w, h, _ in stats[1:n]
             if min(w, h) >= SEEN]
    top = max((a for _, a in found), default=0.0)
    return [(b, 0.95 if a == top else 0.9) for b, a in found]


def detect(images):
    """Dense, -1 padded predictions (4 a photo) as the detector's decoder gives them."""
    out = np.full((len(images), 4, 4), -1.0, np.float32), np.full((len(images), 4), -1.0, np.float32)
    for i, image in enumerate(np.asarray(images)):
        for j, (b, c) in enumerate(_squares(image)[:4]):
            out[0][i, j], out[1][i, j] = b, c
    return {"boxes": tf.constant(out[0]), "confidence": tf.constant(out[1]), "classes": tf.zeros_like(out[1])}


def top(images):
    """``top_box_fn``'s outputs: each image's most confident box."""
    d = detect(images)
    best = tf.argmax(d["confidence"], axis=1)
    return (tf.gather(d["boxes"], best, batch_dims=1), tf.reduce_max(d["confidence"], axis=1),
            tf.zeros(len(images), tf.int32))


def photo(*squares) -> tf.Tensor:
    x = np.zeros((1, 2 * S, 2 * S, 3), np.float32)
    for x0, y0, x1, y1 in squares:
        x[0, y0:y1, x0:x1] = 255.0
    return tf.constant(x)


def boxes_of(d: dict) -> np.ndarray:
    return np.asarray(d["boxes"])[0][np.asarray(d["confidence"])[0] > 0]


def test_two_by_two_tiles_overlap_by_a_fifth_of_the_photo():
    assert tile_grid(64, 2) == (38, [0, 26]) and tile_grid(320, 2) == (192, [0, 128])
    assert tile_grid(90, 3) == (39, [0, 26, 51]) and tile_grid(64, 1) == (64, [0])


def test_a_square_too_small_for_the_whole_photo_is_found_in_a_tile_at_its_place():
    x = photo((40, 40, 50, 50))  # 10 px: 5 px at the model's input, 8 px in the tile that holds it
    assert len(boxes_of(detect_views(detect, tf.image.resize(x, (S, S)), zoom=1))) == 0
    found = boxes_of(detect_views(detect, x, zoom=1, slices=2))
    assert found.shape == (1, 4) and np.allclose(found[0], [40, 40, 50, 50], atol=1.5)
    b, c, _ = top_views(top, x, zoom=1, slices=2)
    assert np.allclose(np.asarray(b)[0], [40, 40, 50, 50], atol=1.5) and float(c[0]) > 0.8


def test_a_box_cut_by_a_tiles_inner_edge_is_left_to_the_tile_that_holds_it_whole():
    x = photo((28, 28, 44, 44))  # the tiles at 0 cut it at 38 (a box of IoU 0.39 with it); the last holds it
    found = boxes_of(detect_views(detect, x, zoom=1, slices=2))
    assert found.shape == (1, 4) and np.allclose(found[0], [28, 28, 44, 44], atol=1.5)


def test_in_a_close_up_the_tiles_boxes_rank_last_and_the_crop_never_takes_one():
    small = (48, 48, 58, 58)  # found only in a tile, as above
    alone = detect_views(detect, photo(small), zoom=1, slices=2)
    assert len(boxes_of(alone)) == 1 and float(alone["confidence"][0, 0]) == np.float32(0.95)
    x = photo((2, 2, 40, 40), small)  # the whole photo's best box covers 35 % of it: a close-up
    d = detect_views(detect, x, zoom=1, slices=2)
    found, conf = boxes_of(d), np.asarray(d["confidence"])[0]
    assert found.shape == (2, 4) and np.allclose(found[0], [2, 2, 40, 40], atol=1.5)
    assert np.allclose(found[1], small, atol=1.5)  # the tile's box, kept at DEMOTE of its 0.9
    assert conf[0] == np.float32(0.95) and conf[1] == np.float32(0.9 * DEMOTE)
    b, _, _ = top_views(top, x, zoom=1, slices=2)
    assert np.allclose(np.asarray(b)[0], [2, 2, 40, 40], atol=1.5)


def test_a_close_up_is_a_confident_box_over_a_tenth_of_the_photo():
    boxes = tf.constant([[[0, 0, 30, 30], [0, 0, 90, 90]], [[0, 0, 90, 90], [0, 0, 10, 10]]], tf.float32)
    conf = tf.constant([[0.9, 0.2], [-1.0, 0.5]])  # the first photo's best box covers 11 %, the second's 1 %
    assert close_up(boxes, conf, 90).numpy().tolist() == [True, False]


def test_a_photo_of_many_small_animals_keeps_more_boxes_than_one_view_does(monkeypatch):
    import stage1_detect.model

    monkeypatch.setattr(stage1_detect.model, "MAX_DETECTIONS", 3)  # one view's decoder keeps 3
    corners = [(5, 5, 15, 15), (49, 5, 59, 15), (5, 49, 15, 59), (49, 49, 59, 59)]  # one in each tile
    found = boxes_of(detect_views(detect, photo(*corners), zoom=1, slices=2))
    assert sorted(map(tuple, found.round().astype(int).tolist())) == sorted(corners)
