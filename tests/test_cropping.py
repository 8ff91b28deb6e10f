"""Stage 1's crops: the cut, the boxes moved into it, crop records from the hand boxes, the crop CLI's
errors, and chosen boxes too thin to cut."""

import json

import numpy as np
import pytest
import tensorflow as tf

from stage1_detect.cropping import CropConfig, boxes_in_crop, crop_records, cut
from stage1_detect.scoring import iou
from tfrecords.boxes import Box
from tfrecords.reader import grow, list_shards
from tfrecords.schema import parse_example


def test_grow_and_clamp():
    np.testing.assert_allclose(grow([[0.2, 0.2, 0.4, 0.6]], 0.5).numpy(), [[0.1, 0.0, 0.5, 0.8]], atol=1e-6)
    np.testing.assert_allclose(grow([[0.0, 0.5, 1.0, 1.0]], 0.1).numpy(), [[0.0, 0.45, 1.0, 1.0]], atol=1e-6)


def test_cut_stays_inside_and_keeps_aspect():
    img = np.zeros((100, 200, 3), np.uint8)
    img[20:60, 50:150] = 255
    enc = tf.io.encode_jpeg(img)
    out, exact = cut(enc, tf.constant([0.2, 0.25, 0.6, 0.75]), crop_size=50)
    crop = tf.io.decode_jpeg(out).numpy()
    assert crop.shape == (20, 50, 3)  # 40 x 100 px scaled to a longer side of 50
    assert crop.mean() > 240  # exactly the white part
    np.testing.assert_allclose(exact.numpy(), [0.2, 0.25, 0.6, 0.75])
    small, _ = cut(enc, tf.constant([0.0, 0.0, 0.1, 0.1]), crop_size=384)
    assert tf.io.decode_jpeg(small).shape[:2] == (10, 20)  # never scaled up


def test_boxes_move_into_the_crop_frame():
    moved = boxes_in_crop([Box(0.3, 0.2, 0.5, 0.6, "fin"), Box(0.9, 0.9, 1.0, 1.0, "fin")], (0.2, 0.2, 0.6, 0.6))
    assert len(moved) == 1
    b = moved[0]
    np.testing.assert_allclose([b.xmin, b.ymin, b.xmax, b.ymax], [0.25, 0.0, 0.75, 1.0])


@pytest.fixture(scope="module")
def box_crops(tiny_records, tmp_path_factory):
    out = tmp_path_factory.mktemp("crops")
    m = crop_records(CropConfig(records=str(tiny_records), out=str(out), source="boxes", crop_size=64,
                                margin=0.1), progress=False)
    return out, m


def test_box_crops_keep_labels_and_cover_the_truth(tiny_records, box_crops):
    out, m = box_crops
    src = json.loads((tiny_records / "manifest.json").read_text())
    assert m["counts"] == {"train": src["counts"]["train"], "test": src["counts"]["test"]}
    assert m["sources"] == {"boxes": src["counts"]["train"] + src["counts"]["test"]}
    assert m["individuals"] == src["individuals"] and m["kind"] == "crops"
    orig = {e["image/filename"].numpy(): e for e in
            tf.data.TFRecordDataset(list_shards(str(tiny_records), "train")).map(parse_example)}
    n = 0
    for c in tf.data.TFRecordDataset(list_shards(str(out), "train")).map(parse_example):
        o = orig[c["image/filename"].numpy()]
        for k in ("image/individual_id", "image/species", "image/fold", "image/holdout", "image/individual_index"):
            assert c[k].numpy() == o[k].numpy(), k
        cb = c["crop/box"].numpy()
        assert (cb >= 0).all() and (cb <= 1).all() and (cb[2:] > cb[:2]).all()
        truth = o["image/object/bbox"].numpy()[0]
        assert iou(cb[None], truth[None])[0] > 0.6  # the crop is the box plus a 10 % margin
        assert max(int(c["image/height"]), int(c["image/width"])) <= 64
        assert c["crop/source"].numpy() == b"boxes" and float(c["crop/score"]) == 1.0
        # the part's box, moved into the crop, sits inside the margin, unless the frame cuts the box
        # (close-ups overhang it): then the crop stops at the frame too
        inner = c["image/object/bbox"].numpy()[0]
        assert 0.0 <= inner[0] < 0.15 and 0.85 < inner[2] <= 1.0
        assert inner[0] > 0 or truth[0] < 1e-3, (inner, truth)
        assert inner[2] < 1 or truth[2] > 1 - 1e-3, (inner, truth)
        n += 1
    assert n == src["counts"]["train"]


def test_crop_cli_needs_a_model_for_detector_source(tmp_path, tiny_records):
    from conftest import run_script

    r = run_script(["stage1_detect/crop.py", "--records", str(tiny_records), "--out", str(tmp_path / "c")])
    assert r.returncode == 2 and "needs --detector" in r.stderr


def test_a_sliver_of_a_box_is_not_cut_out_and_its_thumbnail_does_not_break(tmp_path):
    """The demo's detector at 256 px once chose a box 1 px tall (a 1 x 320 crop that broke the report's
    thumbnails): a chosen box thinner than MIN_SIDE of the photo gives the whole photo, as a low score
    does; a thin crop's thumbnail is drawn all the same."""
    from pipeline.report import thumbnail
    from stage1_detect.cropping import MIN_SIDE, choose_boxes

    jpeg = tf.io.encode_jpeg(tf.fill([64, 64, 3], tf.constant(120, tf.uint8))).numpy()
    parsed = tf.data.Dataset.from_tensor_slices({"image/encoded": tf.constant([jpeg, jpeg])})
    found = np.array([[8.0, 8.0, 24.0, 20.0], [4.0, 10.0, 28.0, 10.0 + 0.5 * MIN_SIDE * 32]], np.float32)

    def detector(x):  # xyxy px of the 32-px input, as top_box_fn gives them
        return found[: int(x.shape[0])], np.array([0.9, 0.95], np.float32)[: int(x.shape[0])], np.zeros(2)

    boxes, scores, sources = choose_boxes(parsed, detector, 32, zoom=1, mirror=False, slices=1)
    assert sources == ["detector", "full"]
    np.testing.assert_allclose(boxes[0], [0.25, 0.25, 0.625, 0.75])  # rel yxyx of the first
    np.testing.assert_allclose(boxes[1], [0.0, 0.0, 1.0, 1.0])  # the sliver: the whole photo
    thin = thumbnail(tf.fill([1, 320, 3], tf.constant(200, tf.uint8)), 96).numpy()
    assert thin.shape == (96, 96, 3) and (thin[47] > 150).all() and thin[:47].max() == thin[48:].max() == 0
    square = thumbnail(tf.fill([40, 20, 3], tf.constant(90, tf.uint8)), 96).numpy()
    assert (square[:, 24:72] == 90).all() and square[:, :23].max() == 0
