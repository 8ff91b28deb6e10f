import numpy as np
import pytest
import tensorflow as tf

from tfrecords.boxes import Box
from tfrecords.schema import ImageRecord, parse_example, serialize

REC = ImageRecord(
    encoded=b"\xff\xd8jpegbytes", filename="abc.jpg", height=48, width=64, species="beluga", species_index=2,
    individual_id="cafe01", individual_index=7, fold=3, holdout=1,
    boxes=(Box(0.1, 0.2, 0.5, 0.6, "body"), Box(0.0, 0.0, 1.0, 0.25, "fin")), box_labels=(0, 1),
)


def check(p):
    assert p["image/encoded"].numpy() == REC.encoded
    assert p["image/filename"].numpy() == b"abc.jpg"
    assert (int(p["image/height"]), int(p["image/width"])) == (48, 64)
    assert p["image/species"].numpy() == b"beluga" and int(p["image/species_index"]) == 2
    assert p["image/individual_id"].numpy() == b"cafe01" and int(p["image/individual_index"]) == 7
    assert int(p["image/fold"]) == 3 and int(p["image/holdout"]) == 1
    np.testing.assert_allclose(p["image/object/bbox/xmin"].numpy(), [0.1, 0.0])
    np.testing.assert_allclose(p["image/object/bbox/ymax"].numpy(), [0.6, 0.25])
    np.testing.assert_allclose(p["image/object/bbox"].numpy(), [[0.2, 0.1, 0.6, 0.5], [0.0, 0.0, 0.25, 1.0]])
    assert p["image/object/class/text"].numpy().tolist() == [b"body", b"fin"]
    assert p["image/object/class/label"].numpy().tolist() == [0, 1]


def test_every_field_round_trips_eagerly():
    check(parse_example(tf.constant(serialize(REC))))


def test_every_field_round_trips_inside_dataset_map():
    ds = tf.data.Dataset.from_tensor_slices([serialize(REC)] * 2).map(parse_example)
    for p in ds:
        check(p)


def test_test_split_defaults_and_no_boxes():
    p = parse_example(tf.constant(serialize(ImageRecord(encoded=b"x", filename="t.jpg", height=1, width=1))))
    assert int(p["image/fold"]) == -1 and int(p["image/individual_index"]) == -1
    assert p["image/object/bbox"].shape == (0, 4)


def test_serialization_is_deterministic():
    assert serialize(REC) == serialize(REC)


@pytest.mark.parametrize("key", ["image/encoded", "image/filename", "image/height", "image/width"])
def test_plain_tf_keys_are_the_od_api_ones(key):
    ex = tf.train.Example.FromString(serialize(REC))
    assert key in ex.features.feature
