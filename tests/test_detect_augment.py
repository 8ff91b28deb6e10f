"""Stage 1's training augmentation: the ``wide`` colour randomisation for synthetic-to-real transfer."""

import numpy as np
import pytest
import tensorflow as tf

from stage1_detect.data import augmenter, photometric_layers


def _fin_photos(n: int = 48, size: int = 64) -> np.ndarray:
    """``n`` copies of one photo: blue water, a dark grey triangle with a white mark on it."""
    img = np.zeros((size, size, 3), np.float32) + np.array([40, 90, 160], np.float32)
    for y in range(16, 56):
        half = (y - 16) // 3
        img[y, 32 - half:32 + half + 1] = (70, 70, 75)
    img[40:44, 30:34] = 250
    return np.repeat(img[None], n, axis=0)


def _apply(kind: str, images: np.ndarray) -> np.ndarray:
    x = tf.constant(images)
    for layer in photometric_layers(kind, seed=3):
        x = layer(x, training=True)
    return x.numpy()


def _edge_energy(images: np.ndarray) -> np.ndarray:
    """Mean absolute horizontal gradient of each image's grey level: what blur takes away."""
    grey = images.mean(axis=-1)
    return np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2))


def test_wide_jitter_spreads_colour_and_softens_edges_where_mild_does_not():
    photos = _fin_photos()
    mild, wide = _apply("mild", photos), _apply("wide", photos)
    for out in (mild, wide):
        assert out.shape == photos.shape and out.min() >= 0 and out.max() <= 255
    # the water's colour: the spread of each photo's mean blue-minus-red over the batch
    cast = lambda x: (x[..., 2] - x[..., 0]).mean(axis=(1, 2))  # noqa: E731
    assert cast(wide).std() > 2.5 * cast(mild).std()  # measured 3.5-5.4x
    # blur and haze: under wide some photos lose over half of their edges, under mild none
    e0 = _edge_energy(photos)[0]
    assert _edge_energy(wide).min() < 0.5 * e0
    assert (_edge_energy(mild) > 0.7 * e0).all()
    with pytest.raises(ValueError, match="mild or wide"):
        photometric_layers("vivid")


def test_augmenter_keeps_the_boxes_eagerly_and_inside_a_dataset_map():
    photos = _fin_photos(8)
    boxes = tf.ragged.constant([[[20.0, 16.0, 44.0, 56.0]]] * 8, ragged_rank=1, inner_shape=(4,))
    classes = tf.ragged.constant([[1.0]] * 8)
    batch = {"images": tf.constant(photos), "bounding_boxes": {"boxes": boxes, "classes": classes},
             "filename": tf.constant(["a.jpg"] * 8)}
    eager = augmenter(64, seed=1, photometric="wide")(batch)
    mapped = next(iter(tf.data.Dataset.from_tensors(batch).map(augmenter(64, seed=1, photometric="wide"))))
    for out in (eager, mapped):
        assert out["images"].shape == (8, 64, 64, 3)
        b = out["bounding_boxes"]["boxes"].to_tensor().numpy()
        assert b.shape == (8, 1, 4) and (b[..., 2] > b[..., 0]).all() and (b[..., 3] > b[..., 1]).all()
        assert b.min() >= 0 and b.max() <= 64  # moved with the image (flip, resize), never off it
        # the fin stays a fin: its box is 24x40 px scaled by the jittered resize (0.7-1.3)
        w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
        np.testing.assert_allclose(h / w, 40 / 24, rtol=0.15)
        assert out["filename"].shape == (8,)


def _four_photos() -> dict:
    """Four 64 px photos of grey levels 0, 50, 100, 150 with hand-placed boxes (xyxy px); the third has two."""
    images = np.stack([np.full((64, 64, 3), 50.0 * i, np.float32) for i in range(4)])
    boxes = tf.ragged.constant([[[8.0, 16.0, 40.0, 48.0]], [[0.0, 0.0, 64.0, 64.0]],
                                [[10.0, 10.0, 20.0, 20.0], [30.0, 30.0, 50.0, 60.0]], [[4.0, 4.0, 8.0, 8.0]]],
                               ragged_rank=1, inner_shape=(4,))
    classes = tf.ragged.constant([[1.0], [0.0], [2.0, 2.0], [1.0]])
    return {"images": tf.constant(images), "bounding_boxes": {"boxes": boxes, "classes": classes}}


def test_tiles_shrink_four_photos_into_one_grid_and_move_every_box_with_its_photo():
    from stage1_detect.framing import tiles

    photos = _four_photos()
    eager = tiles(2)(photos)
    mapped = next(iter(tf.data.Dataset.from_tensors(photos).map(tiles(2))))
    for g in (eager, mapped):
        assert g["images"].shape == (64, 64, 3)
        # row by row: photo 0 top left, 1 top right, 2 bottom left, 3 bottom right
        np.testing.assert_allclose(g["images"].numpy()[[8, 8, 40, 40], [8, 40, 8, 40], 0], [0, 50, 100, 150],
                                   atol=1e-3)
        np.testing.assert_allclose(g["bounding_boxes"]["boxes"].numpy(),
                                   [[4, 8, 20, 24], [32, 0, 64, 32], [5, 37, 10, 42], [15, 47, 25, 62],
                                    [34, 34, 36, 36]])
        np.testing.assert_array_equal(g["bounding_boxes"]["classes"].numpy(), [1, 0, 2, 2, 1])


def test_mosaic_replaces_its_share_of_photos_by_grids_of_four_different_ones():
    from stage1_detect.framing import mosaic

    photos = {**_four_photos(), "seed": tf.constant([3, 0], tf.int64)}
    kept = mosaic(0.0)(photos)
    np.testing.assert_array_equal(kept["images"].numpy(), photos["images"].numpy())
    np.testing.assert_array_equal(kept["bounding_boxes"]["boxes"].row_lengths().numpy(), [1, 1, 2, 1])
    for out in (mosaic(1.0)(photos),
                next(iter(tf.data.Dataset.from_tensors({**photos, "seed": tf.constant([5, 1], tf.int64)})
                          .map(mosaic(1.0))))):
        # four distinct photos per grid: all five boxes, each quarter a different grey level
        np.testing.assert_array_equal(out["bounding_boxes"]["boxes"].row_lengths().numpy(), [5, 5, 5, 5])
        quarters = out["images"].numpy()[:, [8, 8, 40, 40], [8, 40, 8, 40], 0]
        assert all(len(set(np.round(q).tolist())) == 4 for q in quarters)
        b = out["bounding_boxes"]["boxes"].flat_values.numpy()
        assert b.min() >= 0 and b.max() <= 64
        areas = np.sort((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
        np.testing.assert_allclose(areas, np.sort(np.repeat([256, 1024, 25, 150, 4], 4)))  # a quarter each
    boxes = {k: tf.concat([v] * 8, 0) for k, v in photos["bounding_boxes"].items()}
    half = mosaic(0.5)({**photos, "images": tf.tile(photos["images"], [8, 1, 1, 1]), "bounding_boxes": boxes})
    grids = int((half["bounding_boxes"]["boxes"].row_lengths() >= 4).numpy().sum())  # a photo has 1 or 2 boxes
    assert 8 <= grids <= 24  # half of 32, give or take 2.8 sd


def _boxed_photo() -> dict:
    """A 320 px photo: a bright 80x100 px animal (box first) and a small one in the far corner."""
    img = np.zeros((320, 320, 3), np.float32)
    img[100:200, 40:120] = 255.0
    return {"images": tf.constant(img), "filename": tf.constant("a.jpg"),
            "bounding_boxes": {"boxes": tf.constant([[40.0, 100.0, 120.0, 200.0], [280.0, 0.0, 318.0, 30.0]]),
                               "classes": tf.constant([0.0, 1.0])}}


def test_close_ups_frame_the_first_animal_as_a_close_up_and_keeps_its_pixels_boxed():
    from stage1_detect.framing import CLOSE_UP_FILL, close_ups, keyed

    photo = {**_boxed_photo(), "seed": tf.constant([2, 0], tf.int64)}
    whole = close_ups(0.0, 160)(photo)  # off: the photo resized, every box with it
    np.testing.assert_allclose(whole["bounding_boxes"]["boxes"].numpy(), [[20, 50, 60, 100], [140, 0, 159, 15]])
    ds = tf.data.Dataset.from_tensors(photo).repeat(12).enumerate().map(keyed(4)).map(close_ups(1.0, 160))
    for out in [close_ups(1.0, 160)(photo), *ds]:
        boxes, img = out["bounding_boxes"]["boxes"].numpy(), out["images"].numpy()
        assert img.shape == (160, 160, 3) and out["filename"] == b"a.jpg"
        # the far animal is outside every window around the first; the first fills 0.55-1.1 of the side
        np.testing.assert_array_equal(out["bounding_boxes"]["classes"].numpy(), [0.0])
        (x0, y0, x1, y1), = boxes
        assert CLOSE_UP_FILL[0] * 160 - 1 <= max(x1 - x0, y1 - y0) <= 160
        inside = img[int(y0) + 2:int(y1) - 2, int(x0) + 2:int(x1) - 2, 0]
        assert inside.min() > 200  # the box holds the animal's pixels ...
        assert img[..., 0].mean() < 255 * (x1 - x0 + 4) * (y1 - y0 + 4) / 160**2  # ... and little else is bright


def test_empty_windows_cut_water_away_from_every_box_and_leave_it_unboxed():
    """Water alone: a window touching neither animal, scaled to the photo's size, with no box; off, or
    where no free window exists, the photo as it was."""
    from stage1_detect.framing import EMPTY_SIDE, empty_windows, keyed

    photo = {**_boxed_photo(), "seed": tf.constant([2, 0], tf.int64)}
    ramp = np.linspace(0.0, 100.0, 320, dtype=np.float32)[None, :, None]  # water that differs from place to place
    photo["images"] = tf.maximum(photo["images"], ramp)
    photo["images"] = tf.where(tf.constant(np.arange(320)[None, :, None] >= 280) & (tf.range(320)[:, None, None] < 30),
                               255.0, photo["images"])  # the small animal in the corner, bright too
    same = empty_windows(0.0)(photo)
    np.testing.assert_array_equal(same["images"].numpy(), photo["images"].numpy())
    np.testing.assert_array_equal(same["bounding_boxes"]["boxes"].numpy(), photo["bounding_boxes"]["boxes"].numpy())
    ds = tf.data.Dataset.from_tensors(photo).repeat(12).enumerate().map(keyed(4)).map(empty_windows(1.0))
    outs = [empty_windows(1.0)(photo), *ds]
    emptied = [o for o in outs if o["bounding_boxes"]["classes"].shape[0] == 0]
    assert len(emptied) >= 10  # 8 tries find a free window almost always here
    for out in emptied:
        img = out["images"].numpy()
        assert img.shape == (320, 320, 3) and out["bounding_boxes"]["boxes"].shape == (0, 4)
        assert img.max() <= 100.5  # only water: no pixel of either bright animal
    draws = {o["images"].numpy().tobytes() for o in emptied}
    assert len(draws) > 1  # keyed per photo: not one window for all
    full = {**photo, "bounding_boxes": {"boxes": tf.constant([[0.0, 0.0, 320.0, 320.0]]),
                                        "classes": tf.constant([0.0])}}
    kept = empty_windows(1.0)(full)  # the animal fills the photo: no water to cut
    np.testing.assert_array_equal(kept["bounding_boxes"]["classes"].numpy(), [0.0])
    assert EMPTY_SIDE[0] > 0.1  # windows are water at the scale of photos at sea, not single pixels


def test_training_batches_with_empty_windows_hold_photos_without_boxes(tiny_records):
    from stage1_detect.data import train_dataset

    def unboxed(rate: float) -> int:
        ds = train_dataset(str(tiny_records), 64, 4, val_fold=0, close_up_rate=0.3, empty_rate=rate)
        return sum(int((boxes["classes"].numpy() < 0).all(axis=1).sum()) for _, boxes in ds.take(8))

    assert unboxed(0.0) == 0 and unboxed(0.5) >= 4


def test_far_views_shrink_the_photo_onto_its_own_water_with_every_box_on_its_animal():
    """Seen from afar: the photo at 0.2-0.5 of its side somewhere on a canvas of its water, each box
    moved onto its shrunk animal; close-ups then leave such a photo whole; off, the photo as it was."""
    from stage1_detect.framing import FAR_SIDE, close_ups, far_views, keyed

    photo = {**_boxed_photo(), "seed": tf.constant([2, 0], tf.int64)}
    photo["images"] = tf.maximum(photo["images"], 40.0)  # water of 40, the animals 255
    same = far_views(0.0)(photo)
    np.testing.assert_array_equal(same["images"].numpy(), photo["images"].numpy())
    assert not bool(same["far"])
    ds = tf.data.Dataset.from_tensors(photo).repeat(12).enumerate().map(keyed(4)).map(far_views(1.0))
    outs = [far_views(1.0)(photo), *ds]
    sides = []
    for out in outs:
        img, boxes = out["images"].numpy(), out["bounding_boxes"]["boxes"].numpy()
        assert img.shape == (320, 320, 3) and bool(out["far"])
        np.testing.assert_array_equal(out["bounding_boxes"]["classes"].numpy(), [0.0, 1.0])
        (x0, y0, x1, y1), _ = boxes
        sides.append((x1 - x0) / 80)  # the first animal was 80 px wide
        assert FAR_SIDE[0] - 0.01 <= sides[-1] <= FAR_SIDE[1] + 0.01
        assert 0 <= x0 and x1 <= 320 and 0 <= y0 and y1 <= 320
        cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
        assert img[cy, cx, 0] > 200  # the box's middle is the animal's pixels ...
        assert (img[..., 0] > 200).mean() < 80 * 100 * FAR_SIDE[1] ** 2 * 1.6 / 320**2  # ... small in a sea of water
        assert np.median(img[..., 0]) < 100  # water, or where no free window was drawn, the photo's mean
        whole = close_ups(1.0, 160)({**out, "seed": tf.constant([2, 0], tf.int64)})
        np.testing.assert_allclose(whole["bounding_boxes"]["boxes"].numpy(), boxes / 2, atol=1e-3)  # not cut close
    assert len({round(float(s), 3) for s in sides}) > 1  # keyed per photo: not one size for all


def test_training_batches_with_far_views_hold_small_animals(tiny_records):
    from stage1_detect.data import train_dataset

    def small(rate: float) -> int:
        ds = train_dataset(str(tiny_records), 64, 4, val_fold=0, close_up_rate=0.3, far_rate=rate)
        n = 0
        for _, boxes in ds.take(8):
            b, c = boxes["boxes"].numpy(), boxes["classes"].numpy()
            area = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) / 64**2
            n += int(((c >= 0) & (area < 0.02)).any(axis=1).sum())
        return n

    assert small(1.0) > small(0.0) + 8


def test_far_views_on_sea_water_take_the_canvas_from_the_bank():
    from stage1_detect.framing import far_views, keyed, sea_water

    photo = {**_boxed_photo(), "seed": tf.constant([2, 0], tf.int64)}
    photo["images"] = tf.maximum(photo["images"], 40.0)
    bank = np.full((3, 320, 320, 3), 90, np.uint8)
    bank[:, :, :160] = 120  # left half brighter: mirrored draws differ
    ds = tf.data.Dataset.from_tensors(photo).repeat(12).enumerate().map(keyed(4)).map(far_views(1.0, bank))
    halves = set()
    for out in ds:
        img = out["images"].numpy()
        assert np.median(img[..., 0]) in (90.0, 120.0)  # the bank's water, not the photo's 40
        (x0, y0, x1, y1), _ = out["bounding_boxes"]["boxes"].numpy()
        assert img[int((y0 + y1) / 2), int((x0 + x1) / 2), 0] > 200  # the animal under its box
        halves.add(bool(img[5, 5, 0] > 105))
    assert halves == {True, False}  # mirrored at random
    sea = sea_water(2, 64, seed=0)
    assert sea.shape == (2, 64, 64, 3) and sea.dtype == np.uint8 and sea[0].std() > 1
    np.testing.assert_array_equal(sea, sea_water(2, 64, seed=0))  # the run's seed decides the water


def test_grey_turns_about_its_share_of_the_photos_grey_and_nothing_at_zero():
    photos = _fin_photos(64)

    def greyed(share: float) -> np.ndarray:
        x = tf.constant(photos)
        for layer in photometric_layers("mild", seed=3, grey=share):
            x = layer(x, training=True)
        x = x.numpy()
        return np.abs(x - x.mean(axis=-1, keepdims=True)).max(axis=(1, 2, 3)) < 1.0  # no colour left

    assert len(photometric_layers("mild", seed=3, grey=0.0)) == len(photometric_layers("mild", seed=3))
    assert not greyed(0.0).any()  # mild jitter leaves the sea blue
    assert greyed(1.0).all()
    assert 0.15 < greyed(0.4).mean() < 0.65, greyed(0.4).mean()


def test_desaturate_draws_how_much_colour_each_photo_keeps_from_full_to_none():
    photos = _fin_photos(64)
    blue = (photos[..., 2] - photos[..., 0]).mean()  # the water's colour before the jitter

    def kept(desaturate: float) -> np.ndarray:
        x = tf.constant(photos)
        for layer in photometric_layers("mild", seed=3, desaturate=desaturate):
            x = layer(x, training=True)
        x = x.numpy()
        return (x[..., 2] - x[..., 0]).mean(axis=(1, 2)) / blue  # the share of the colour each photo keeps

    default, wide = kept(0.3), kept(1.0)
    assert default.min() > 0.65  # today's mild jitter: at most 30 % of the colour goes
    assert wide.min() < 0.1 and wide.max() > 0.9  # anything from grey to full colour
    assert 0.3 < np.median(wide) < 0.7, np.median(wide)  # drawn evenly between
