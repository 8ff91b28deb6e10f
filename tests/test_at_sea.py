"""Boxed photos shrunk into the sea (tfrecords/synthetic/at_sea.py): the proxy for photos taken at
sea. The boxes must follow the animal's pixels into the frame, the photo must be small in it, and
the result must be a folder the builder reads."""

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tfrecords.synthetic.at_sea import AREA, FRAME, paste_at_sea, paste_one


def test_the_box_follows_the_animal_into_a_frame_where_it_is_small():
    rgb = np.zeros((200, 300, 3), np.uint8)
    rgb[80:140, 100:160] = 255  # a white "fin", boxed below
    rng = np.random.default_rng(0)
    for _ in range(5):
        frame, [(x0, y0, x1, y1, label)] = paste_one(rgb, [(100.0, 80.0, 160.0, 140.0, "fin")], rng)
        assert frame.shape == (FRAME[1], FRAME[0], 3) and label == "fin"
        inner = frame[int(y0) + 2:int(y1) - 2, int(x0) + 2:int(x1) - 2]
        assert inner.min() > 240  # the box holds the animal ...
        share = (x1 - x0) * (y1 - y0) / (FRAME[0] * FRAME[1])
        assert share < AREA[1] * 0.06 * 1.01  # ... which is small: 6 % of a photo at most 6 % of the frame
        assert frame.mean() < 200  # and the rest is sea, not the photo


def test_the_photo_is_blended_in_no_rectangle_of_other_water_marks_the_fin():
    """A fin (dark square) on its own bright water, pasted into darker sea: the fin keeps its contrast
    and its place, the photo's water takes the sea's level, so nothing but the fin stands out."""
    from tfrecords.synthetic.at_sea import blend

    patch = np.full((60, 80, 3), 200, np.uint8)
    patch[20:40, 30:50] = 120  # the fin: 80 darker than its water
    sea = np.full((300, 400, 3), 90, np.uint8)
    out = blend(patch, sea, 150, 100).astype(float)
    water = out[100 + 5:100 + 15, 150 + 5:150 + 75]  # the photo's own water, above the fin
    assert abs(water.mean() - 90) < 6  # the sea's level, not the photo's 200: no rectangle
    fin = out[100 + 22:100 + 38, 150 + 32:150 + 48]
    assert water.mean() - fin.mean() > 60  # the fin still stands out
    ys, xs = np.nonzero(out.mean(axis=-1) < water.mean() - 40)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (120, 139, 180, 199)  # where paste_one's box says
    assert (out[:90] == 90).all() and (out[:, :140] == 90).all()  # the sea away from the photo untouched


def test_a_folder_goes_to_sea_with_its_boxes_and_individuals(tmp_path):
    src = tmp_path / "src"
    for d in ("train_images", "test_images"):
        (src / d).mkdir(parents=True)
    for i, d in enumerate(("train_images", "train_images", "test_images")):
        Image.fromarray(np.full((64, 96, 3), 40 * i, np.uint8)).save(src / d / f"p{i}.jpg")
    pd.DataFrame({"image": ["p0.jpg", "p1.jpg"], "species": "s", "individual_id": ["a", "b"]}).to_csv(
        src / "train.csv", index=False)
    pd.DataFrame({"image": ["p2.jpg"], "species": "s", "individual_id": ["a"]}).to_csv(src / "test_truth.csv",
                                                                                    index=False)
    pd.DataFrame({"filename": ["p0.jpg", "p2.jpg"], "xmin": [10, 0], "ymin": [5, 0], "xmax": [50, 96],
                  "ymax": [60, 64]}).to_csv(src / "boxes.csv", index=False)  # p1 has no box: left out
    assert paste_at_sea(str(src), str(tmp_path / "a"), seed=3, part="fin") == 2
    assert paste_at_sea(str(src), str(tmp_path / "b"), seed=3, part="fin") == 2
    train = pd.read_csv(tmp_path / "a" / "train.csv")
    assert train.to_dict("list") == {"image": ["p0.jpg", "p2.jpg"], "species": ["s", "s"], "individual_id": ["a", "a"]}
    boxes = pd.read_csv(tmp_path / "a" / "boxes.csv")
    assert list(boxes["label"]) == ["fin", "fin"] and (boxes["x_max"] <= FRAME[0]).all()
    pd.testing.assert_frame_equal(boxes, pd.read_csv(tmp_path / "b" / "boxes.csv"))  # the seed decides all
    assert (Image.open(tmp_path / "a" / "train_images" / "p0.jpg").size == FRAME)
    # a pasted folder is known as such, for its seed and water, and one pasted another way is not
    from tfrecords.synthetic.at_sea import MARKER, pasted

    assert pasted(str(tmp_path / "a"), 3, "sea") and not pasted(str(tmp_path / "a"), 4, "sea")
    assert not pasted(str(tmp_path / "a"), 3, "real") and not pasted(str(tmp_path / "src"), 3, "sea")
    (tmp_path / "a" / MARKER).write_text('{"paste": "fade", "seed": 3, "water": "sea"}')  # before 2026-12-04
    assert not pasted(str(tmp_path / "a"), 3, "sea")


def test_real_water_is_the_band_above_the_boxes_tiled_to_the_frame_not_mirrored():
    from tfrecords.synthetic.at_sea import STRIP_TRIM, TIP_MARGIN, real_sea, water_strip

    rgb = np.zeros((240, 300, 3), np.uint8)
    rgb[:, :, 2] = np.tile(np.linspace(0, 250, 100), 3).astype(np.uint8)[None, :]  # water that differs across it
    rgb[150:240, 60:300] = 255  # the animal, at the bottom
    strip = water_strip(rgb, [(60.0, 150.0, 300.0, 240.0, "fin")])
    t, top = STRIP_TRIM, int(150 - TIP_MARGIN * 90)  # the fin's tip may rise a little above its box
    assert strip.shape == (top - 2 * t, 300 - 2 * t, 3) and strip.max() < 255  # above: no animal in it
    # beside and below a box lie the fin's base, the back, the reflection: never taken, however wide
    assert water_strip(rgb, [(0.0, 10.0, 60.0, 60.0, "fin")]) is None
    sky = rgb.copy()
    sky[:150] = 255
    assert water_strip(sky, [(60.0, 150.0, 300.0, 240.0, "fin")]) is None  # a white sky is not water
    # tiled, not mirrored: away from the seams the frame holds the band itself, translated (a mirror
    # would hold it reversed: every slope meeting its mirror image in a fin-shaped peak)
    rng = np.random.default_rng(0)
    band = cv2.GaussianBlur(rng.uniform(0, 255, (80, 60, 3)).astype(np.float32), (0, 0), 3)
    band = cv2.normalize(band, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    sea = real_sea(band)  # a frame of 120 x 80 at the band's scale: copies at x = 0, 45, 90 (overlap 15)
    assert sea.shape == (FRAME[1], FRAME[0], 3)
    small = cv2.resize(sea, (120, 80), interpolation=cv2.INTER_AREA)
    middle = small[10:70, 62:88].ravel()  # the second copy alone: the band's columns 17-42
    same = np.corrcoef(middle, band[10:70, 17:43].astype(np.float32).ravel())[0, 1]
    mirrored = np.corrcoef(middle, band[10:70, 42:16:-1].astype(np.float32).ravel())[0, 1]
    assert same > 0.9 and same > mirrored + 0.3, (same, mirrored)


def test_a_fin_is_cut_out_along_its_outline_no_ghost_and_no_rectangle():
    """A dark triangle (a fin) filling most of its box, cut by the photo's bottom edge as close-ups
    are, on its own bright water: laid into darker sea it keeps its own darkness to the frame's edge
    (the Poisson blend turned such fins into pale ghosts), its water stays behind, and the box is
    drawn around what was laid in."""
    from tfrecords.synthetic.at_sea import paste_one

    rgb = np.full((200, 300, 3), 210, np.uint8)
    pts = np.array([[90, 199], [150, 40], [220, 199]], np.int32)
    cv2.fillPoly(rgb, [pts], (30, 30, 30))
    sea = np.full((FRAME[1], FRAME[0], 3), 90.0, np.float32)
    frame, [(x0, y0, x1, y1, label)] = paste_one(rgb, [(80.0, 30.0, 230.0, 200.0, "fin")], np.random.default_rng(1),
                                                 sea)
    x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
    inside = frame[y0:y1, x0:x1].mean(axis=-1)
    assert inside.min() < 40  # the fin's own darkness, not lifted towards the sea's 90
    assert (inside[-3:] < 60).any()  # down to where its photo cut it
    out = frame.mean(axis=-1)
    out[y0 - 2:y1 + 2, x0 - 2:x1 + 2] = 90  # the cut edge is softened by a pixel or two
    assert np.abs(out - 90).max() < 3  # no rectangle of the photo's bright water anywhere
    ys, xs = np.nonzero(frame.mean(axis=-1) < 60)
    assert abs(xs.min() - x0) <= 2 and abs(xs.max() + 1 - x1) <= 2 and abs(ys.min() - y0) <= 2  # box on the fin


def test_a_folder_at_real_sea_takes_each_frames_water_from_another_photo(tmp_path):
    src = tmp_path / "src"
    (src / "train_images").mkdir(parents=True)
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
    rows = []
    for i, c in enumerate(colours):
        img = np.zeros((160, 200, 3), np.uint8)
        img[:] = c  # each photo's water its own colour
        img[100:140, 60:100] = 255
        Image.fromarray(img).save(src / "train_images" / f"p{i}.jpg", quality=95)
        rows.append((f"p{i}.jpg", 60, 100, 100, 140))
    pd.DataFrame({"image": [r[0] for r in rows], "species": "s", "individual_id": ["a", "b", "c"]}).to_csv(
        src / "train.csv", index=False)
    pd.DataFrame(rows, columns=["image", "x_min", "y_min", "x_max", "y_max"]).to_csv(src / "boxes.csv", index=False)
    assert paste_at_sea(str(src), str(tmp_path / "out"), seed=1, part="fin", water="real") == 3
    boxes = pd.read_csv(tmp_path / "out" / "boxes.csv")
    for i, c in enumerate(colours):
        frame = np.asarray(Image.open(tmp_path / "out" / "train_images" / f"p{i}.jpg"), np.float32)
        corner = frame[:40, :40].reshape(-1, 3).mean(0)  # water, far from the small pasted photo (mostly)
        b = boxes.iloc[i]
        if b.x_min < 60 and b.y_min < 60:
            corner = frame[-40:, -40:].reshape(-1, 3).mean(0)
        assert int(np.argmax(corner)) != int(np.argmax(c))  # another photo's water
        inner = frame[int(b.y_min) + 2:int(b.y_max) - 2, int(b.x_min) + 2:int(b.x_max) - 2]
        # the box still holds the animal, cut out with its own colour
        assert inner.mean(axis=-1).min() > corner.mean() + 80
    # water seen from below is not the sea's surface: a photo from an underwater cage lends none
    pd.DataFrame({"image": ["p0.jpg", "p1.jpg", "p2.jpg"], "view": ["underwater", "surface", "surface"]}).to_csv(
        src / "views.csv", index=False)
    assert paste_at_sea(str(src), str(tmp_path / "out2"), seed=1, part="fin", water="real") == 3
    for i in range(3):
        frame = np.asarray(Image.open(tmp_path / "out2" / "train_images" / f"p{i}.jpg"), np.float32)
        assert frame[..., 0].mean() < 100  # no frame of p0's red water (the photo itself is small in it)


def test_the_water_chosen_is_of_the_photos_own_colour_among_the_nearest():
    from tfrecords.synthetic.at_sea import NEAREST, nearest_water, rim_colour

    photo = np.full((100, 120, 3), (40, 90, 150), np.uint8)  # blue water
    photo[30:70, 40:80] = (20, 20, 20)  # a dark fin in the middle: not the water's colour
    assert np.allclose(rim_colour(photo), (40, 90, 150))
    greys = [np.full((50, 60, 3), g, np.uint8) for g in (0, 60, 120, 180, 240)]
    blues = [np.full((50, 60, 3), (40 + d, 90 + d, 150 + d), np.uint8) for d in range(-2 * NEAREST, 0, 2)]
    strips = greys[:2] + blues + greys[2:]
    rng = np.random.default_rng(0)
    chosen = {id(nearest_water(photo, strips, rng)) for _ in range(60)}
    assert chosen == {id(b) for b in blues}  # every one of the nearest drawn, never a grey one


def test_only_some_photos_go_to_sea_each_in_the_frame_it_has_among_all(tmp_path):
    """``only`` (the surface photos of a folder's views.csv) writes a subset whose frames are those the
    same seed gives with every photo, so the two proxies differ in their photos alone."""
    from runtime.cli import DataError
    from tfrecords.synthetic.at_sea import surface_photos

    src = tmp_path / "src"
    (src / "train_images").mkdir(parents=True)
    names = [f"p{i}.jpg" for i in range(3)]
    for i, n in enumerate(names):
        Image.fromarray(np.full((64, 96, 3), 60 * i + 20, np.uint8)).save(src / "train_images" / n)
    pd.DataFrame({"image": names, "species": "s", "individual_id": ["a", "b", "c"]}).to_csv(src / "train.csv",
                                                                                           index=False)
    pd.DataFrame({"image": names, "x_min": 10, "y_min": 5, "x_max": 50, "y_max": 60}).to_csv(src / "boxes.csv",
                                                                                             index=False)
    assert surface_photos(str(src)) is None  # no views.csv: no subset
    pd.DataFrame({"image": names, "view": ["surface", "underwater", "surface"]}).to_csv(src / "views.csv",
                                                                                         index=False)
    only = surface_photos(str(src))
    assert only == {"p0.jpg", "p2.jpg"}
    assert paste_at_sea(str(src), str(tmp_path / "all"), seed=5, part="fin") == 3
    assert paste_at_sea(str(src), str(tmp_path / "some"), seed=5, part="fin", only=only) == 2
    every, some = (pd.read_csv(tmp_path / d / "boxes.csv") for d in ("all", "some"))
    pd.testing.assert_frame_equal(some, every[every["image"] != "p1.jpg"].reset_index(drop=True))
    assert sorted(p.name for p in (tmp_path / "some" / "train_images").iterdir()) == ["p0.jpg", "p2.jpg"]
    assert list(pd.read_csv(tmp_path / "some" / "train.csv")["image"]) == ["p0.jpg", "p2.jpg"]
    pd.DataFrame({"image": names, "view": ["surface", "aerial", "surface"]}).to_csv(src / "views.csv", index=False)
    with pytest.raises(DataError, match="view 'aerial' is not one of surface, underwater"):
        surface_photos(str(src))
