"""The sea scene (``--scene sea``; tfrecords/synthetic/sea.py, scene.py): what a detector must not key
on varies widely, foam sits where a fin breaks the surface, the skin is lit per photo, and the box is
still the part's."""

import numpy as np

from tfrecords.synthetic.render import make_individual, render_sprite
from tfrecords.synthetic.scene import compose_sea
from tfrecords.synthetic.sea import foam_line, surface, underwater


def test_foam_gathers_on_the_water_line_at_the_fin():
    h, w = 200, 300
    alpha = foam_line(np.random.default_rng(3), h, w, np.full(w, 100.0, np.float32), (120.0, 180.0))
    at_fin = alpha[95:106, 130:171].mean()
    assert at_fin > 0.2
    assert at_fin > 5 * alpha[150:, 130:171].mean()  # below the water line
    assert at_fin > 5 * alpha[95:106, :30].mean()  # along the water line, far from the fin


def test_sea_colours_and_light_vary_widely():
    means = np.array([surface(np.random.default_rng(s), 60, 80).mean((0, 1)) for s in range(40)])
    blue_share = means[:, 2] / means.sum(1)
    assert blue_share.max() - blue_share.min() > 0.2  # grey and green seas beside deep blue ones
    assert means.mean(1).max() > 2 * means.mean(1).min()  # dark and bright seas
    brighter_above = 0
    for s in range(20):
        img, water = underwater(np.random.default_rng(s), 60, 80)
        assert water.shape == (3,) and np.all(water > 0)
        brighter_above += img[:10].mean() > img[-10:].mean()  # light comes from the surface
    assert brighter_above >= 18


def test_skin_is_lit_per_photo_not_flat():
    ind = make_individual(np.random.default_rng(0), "x", "bottlenose_dolphin")
    skin1, mask1 = render_sprite(ind, np.random.default_rng(1), lit=True)
    skin2, mask2 = render_sprite(ind, np.random.default_rng(2), lit=True)
    plain1, _ = render_sprite(ind, np.random.default_rng(1))
    plain2, _ = render_sprite(ind, np.random.default_rng(2))
    assert np.array_equal(mask1, mask2)  # the outline is the individual's
    inside = mask1 > 0.5
    lit_change = np.abs(skin1 - skin2)[inside].mean()
    assert lit_change > 0.02 and lit_change > 1.5 * np.abs(plain1 - plain2)[inside].mean()


def test_sea_scene_boxes_the_visible_part_inside_the_frame():
    shares = []
    for i in range(24):
        rng = np.random.default_rng(i)
        ind = make_individual(rng, "x", ("bottlenose_dolphin", "humpback_whale", "beluga")[i % 3])
        area = float(np.exp(rng.uniform(np.log(0.07), np.log(0.9))))
        img, [(x0, y0, x1, y1)] = compose_sea(ind, rng, 120, 160, area)
        assert img.shape == (120, 160, 3) and img.dtype == np.uint8
        assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 120
        shares.append((x1 - x0) * (y1 - y0) / (120 * 160))
    assert min(shares) < 0.15 and max(shares) > 0.5  # distant parts and close-ups
