"""The detector's zoom-out view (stage1_detect/views.py), with hand-made photos and fake detectors
whose answers are known: where the shrunk photo lands, how its boxes come back, which box wins;
the mirrored view's boxes fused with the photo's; the demo's memory of boxes already chosen."""

import numpy as np
import tensorflow as tf

from stage1_detect.views import detect_mirrored, detect_views, fuse, to_photo, top_mirrored, top_views, zoom_out


def test_the_zoomed_out_photo_sits_in_the_middle_of_its_mean_colour_and_boxes_map_back():
    x = np.zeros((1, 90, 90, 3), np.float32)
    x[0, 30:60, 0:30] = 255.0  # a white square at rows 30-59, columns 0-29: 1/9 of the photo
    view, offset, factor = zoom_out(tf.constant(x), 3)
    assert (offset, factor) == (30, 3.0)
    v = view.numpy()[0, :, :, 0]
    mean = 255.0 / 9
    assert np.allclose(v[:30], mean, atol=0.5) and np.allclose(v[60:], mean, atol=0.5)  # the canvas
    assert np.allclose(v[41:49, 31:39], 255.0, atol=1.0)  # the square, shrunk to rows 40-49, columns 30-39
    assert np.allclose(v[41:49, 41:59], 0.0, atol=1.0)
    # the square's box in the view (xyxy px) comes back to where it is in the photo
    back = to_photo(tf.constant([[30.0, 40.0, 40.0, 50.0]]), offset, factor, 90).numpy()
    assert np.allclose(back, [[0.0, 30.0, 30.0, 60.0]])
    assert np.allclose(to_photo(tf.constant([[0.0, 0.0, 90.0, 90.0]]), offset, factor, 90), [[0, 0, 90, 90]])


def _dense(boxes, conf, classes):
    return {"boxes": tf.constant(boxes, tf.float32), "confidence": tf.constant(conf, tf.float32),
            "classes": tf.constant(classes, tf.float32)}


def test_both_views_boxes_are_kept_and_a_box_seen_twice_once_at_its_higher_score():
    photo = np.zeros((1, 90, 90, 3), np.float32)

    def detect(images):  # the photo (mean 0) and its view (mean 0) told apart by a call count
        detect.calls += 1
        if detect.calls == 1:  # the photo: a small box at the top left, and the big one weakly
            return _dense([[[0, 0, 10, 10], [0, 30, 30, 60], [-1, -1, -1, -1]]], [[0.9, 0.3, -1]], [[1, 1, -1]])
        # the view: the big box strongly (view px 30-40 / 40-50 = photo 0-30 / 30-60), nothing else
        return _dense([[[30, 40, 40, 50], [-1, -1, -1, -1], [-1, -1, -1, -1]]], [[0.8, -1, -1]], [[2, -1, -1]])

    detect.calls = 0
    out = detect_views(detect, tf.constant(photo), 3)
    n = int(out["num_detections"][0])
    assert n == 2
    assert np.allclose(out["confidence"][0, :n], [0.9, 0.8])
    assert np.allclose(out["boxes"][0, :n], [[0, 0, 10, 10], [0, 30, 30, 60]])  # the view's box, moved back
    assert np.allclose(out["classes"][0, :n], [1, 2])
    assert np.all(out["confidence"][0, n:] == -1) and np.all(out["boxes"][0, n:] == -1)  # padded as keras-cv pads
    detect.calls = 0
    alone = detect_views(detect, tf.constant(photo), 1)
    assert detect.calls == 1 and np.allclose(alone["confidence"], [[0.9, 0.3, -1]])


def test_the_crop_takes_the_more_confident_view_for_each_photo():
    photos = tf.zeros((2, 90, 90, 3))

    def top(images):  # photo 0: the photo is surer; photo 1: the view is
        top.calls += 1
        if top.calls == 1:
            return np.array([[1, 1, 20, 20], [5, 5, 80, 80]], np.float32), np.array([0.7, 0.2], np.float32), \
                np.array([0, 0], np.int32)
        return np.array([[30, 30, 60, 60], [33, 33, 57, 57]], np.float32), np.array([0.5, 0.6], np.float32), \
            np.array([2, 1], np.int32)

    top.calls = 0
    boxes, conf, cls = (np.asarray(t) for t in top_views(top, photos, 3))
    assert np.allclose(boxes, [[1, 1, 20, 20], [9, 9, 81, 81]])  # (33 - 30) * 3 = 9, (57 - 30) * 3 = 81
    assert np.allclose(conf, [0.7, 0.6]) and cls.tolist() == [0, 1]


def test_weighted_box_fusion_averages_overlapping_boxes_of_a_class_and_halves_a_lone_one():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 0, 10, 10]], float)
    b, c, k = fuse(boxes, np.array([0.8, 0.4, 0.6, 0.5]), np.array([0, 0, 0, 1]))
    # (0 * 0.8 + 1 * 0.4) / 1.2 = 0.333; (0.8 + 0.4) / 2 = 0.6; the class-1 box is not merged with class 0
    assert np.allclose(b, [[1 / 3, 0, 10 + 1 / 3, 10], [50, 50, 60, 60], [0, 0, 10, 10]])
    assert np.allclose(c, [0.6, 0.3, 0.25]) and k.tolist() == [0, 0, 1]


def test_the_mirror_images_boxes_come_back_and_fuse_with_the_photos():
    photo = tf.zeros((1, 100, 100, 3))

    def detect(images):  # the photo: two boxes; the mirror: the first one again (x 12-32 in the photo)
        detect.calls += 1
        if detect.calls == 1:
            return _dense([[[10, 0, 30, 20], [60, 50, 80, 70], [-1, -1, -1, -1]]], [[0.8, 0.6, -1]], [[0, 0, -1]])
        return _dense([[[68, 0, 88, 20], [-1, -1, -1, -1], [-1, -1, -1, -1]]], [[0.4, -1, -1]], [[0, -1, -1]])

    detect.calls = 0
    out = detect_mirrored(detect, photo)
    n = int(out["num_detections"][0])
    assert detect.calls == 2 and n == 2
    assert np.allclose(out["boxes"][0, :n], [[10 + 2 / 3, 0, 30 + 2 / 3, 20], [60, 50, 80, 70]], atol=1e-5)
    assert np.allclose(out["confidence"][0, :n], [0.6, 0.3]) and np.all(out["confidence"][0, n:] == -1)
    detect.calls = 0
    both = detect_views(detect, photo, 1, mirror=True)
    assert detect.calls == 2 and np.allclose(both["confidence"][0, :2], [0.6, 0.3])


def test_the_crop_box_is_the_mean_of_the_photos_and_the_mirrors_where_they_agree():
    photos = tf.zeros((2, 100, 100, 3))

    def top(images):  # photo 0: both find the box; photo 1: the mirror's box is elsewhere and surer
        top.calls += 1
        if top.calls == 1:
            return np.array([[10, 0, 30, 20], [0, 0, 10, 10]], np.float32), np.array([0.8, 0.3], np.float32), \
                np.array([0, 0], np.int32)
        return np.array([[68, 0, 88, 20], [0, 0, 20, 20]], np.float32), np.array([0.4, 0.5], np.float32), \
            np.array([0, 2], np.int32)

    top.calls = 0
    boxes, conf, cls = top_mirrored(top, photos)
    assert np.allclose(boxes, [[10 + 2 / 3, 0, 30 + 2 / 3, 20], [80, 0, 100, 20]], atol=1e-5)
    assert np.allclose(conf, [0.8, 0.5]) and cls.tolist() == [0, 2]


def test_the_demo_detects_a_photo_once_however_often_it_identifies_it():
    from stage1_detect.cropping import boxes_of, remembered_boxes

    photos = [tf.io.encode_jpeg(tf.fill([40, 40, 3], tf.constant(v, tf.uint8))).numpy() for v in (10, 200)]

    def top(images):  # a detector (as an ONNX session is called): the same box for every photo
        top.seen += int(images.shape[0])
        n = int(images.shape[0])
        return np.tile([[8, 8, 24, 24]], (n, 1)).astype(np.float32), np.full(n, 0.9, np.float32), np.zeros(n, int)

    top.seen = 0
    with remembered_boxes():
        first = boxes_of(photos[:1], top, 32, zoom=1, mirror=False, slices=1)
        again = boxes_of(photos, top, 32, zoom=1, mirror=False, slices=1)  # only the second photo is new
        assert top.seen == 2 and np.allclose(again[0][0], first[0][0]) and again[2] == ["detector"] * 2
        boxes_of(photos, top, 32, zoom=1, mirror=True, slices=1)  # other settings: detected again (twice: the mirror)
        assert top.seen == 6
    boxes_of(photos, top, 32, zoom=1, mirror=False, slices=1)  # outside the demo nothing is remembered
    assert top.seen == 8 and np.allclose(again[0], [[0.25, 0.25, 0.75, 0.75]] * 2)
