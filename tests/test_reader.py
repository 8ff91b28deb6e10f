import numpy as np
import pytest
import tensorflow as tf

from runtime.cli import DataError
from tfrecords.reader import crop_to_box, decode, list_shards, make_dataset, read_manifest, subject_box
from tfrecords.schema import parse_example


def one_example(records):
    raw = next(iter(tf.data.TFRecordDataset(list_shards(str(records), "train"))))
    return parse_example(raw)


def test_subject_box_is_the_first_with_margin_and_clamp():
    ex = {"image/object/bbox": tf.constant([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.7, 0.7]])}
    # the identified animal's box is the first; another animal's box is not cut with it
    np.testing.assert_allclose(subject_box(ex).numpy(), [0.1, 0.1, 0.5, 0.5], atol=1e-6)
    # margin 0.5 of the box's size (0.4 x 0.4) on each side, clamped to the frame
    np.testing.assert_allclose(subject_box(ex, 0.5).numpy(), [0.0, 0.0, 0.7, 0.7], atol=1e-6)
    empty = {"image/object/bbox": tf.zeros((0, 4))}
    np.testing.assert_allclose(subject_box(empty, 0.2).numpy(), [0, 0, 1, 1])


def test_ops_are_the_same_eagerly_and_inside_map(tiny_records):
    ex = one_example(tiny_records)
    eager = crop_to_box(ex, 64)
    mapped = next(iter(tf.data.Dataset.from_tensors(ex).map(lambda e: crop_to_box(e, 64))))
    np.testing.assert_allclose(eager["image"].numpy(), mapped["image"].numpy(), atol=1e-4)
    assert eager["image"].shape == (64, 64, 3)
    d = decode(ex)
    assert d["image"].shape == (int(ex["image/height"]), int(ex["image/width"]), 3)
    d2 = next(iter(tf.data.Dataset.from_tensors(ex).map(lambda e: decode(e, 32))))
    assert d2["image"].shape == (32, 32, 3)


def test_crop_shows_the_part_not_the_sea(tiny_records):
    """The synthetic sea is blue-dominant; the animal's skin is grey: the crop is greyer."""
    ex = one_example(tiny_records)
    whole, crop = decode(ex, 64)["image"].numpy(), crop_to_box(ex, 64, margin=0.0)["image"].numpy()
    blueness = lambda a: float((a[..., 2] - a[..., 0]).mean())  # noqa: E731
    assert blueness(crop) < blueness(whole)


def test_fold_filters_partition_the_train_split(tiny_records):
    names = lambda ds: [f.numpy().decode() for f in ds.map(lambda e: e["image/filename"])]  # noqa: E731
    every = names(make_dataset(str(tiny_records), "train"))
    val = names(make_dataset(str(tiny_records), "train", folds=[1]))
    rest = names(make_dataset(str(tiny_records), "train", exclude_folds=[1]))
    assert len(every) == 60 and sorted(val + rest) == sorted(every) and not set(val) & set(rest)
    no_holdout = list(make_dataset(str(tiny_records), "train", include_holdout=False))
    assert 0 < len(no_holdout) < 60 and all(int(e["image/holdout"]) == 0 for e in no_holdout)


def test_batches_and_determinism(tiny_records):
    ds = make_dataset(str(tiny_records), "train", image_size=48, crop=True, batch_size=16)
    b = next(iter(ds))
    assert b["image"].shape == (16, 48, 48, 3) and b["image"].dtype == tf.float32
    assert float(tf.reduce_max(b["image"])) <= 255.0 and b["crop/box"].shape == (16, 4)
    first = [f.numpy().tolist() for f in (x["image/filename"] for x in ds)]
    again = [f.numpy().tolist() for f in (x["image/filename"] for x in ds)]
    assert first == again
    shuffled = make_dataset(str(tiny_records), "train", image_size=48, batch_size=60, shuffle=True, seed=1)
    order = next(iter(shuffled))["image/filename"].numpy().tolist()
    assert sorted(order) == sorted(sum(first, [])) and order != sum(first, [])


def test_errors_name_the_folder(tmp_path, tiny_records):
    with pytest.raises(DataError, match="no manifest.json"):
        read_manifest(str(tmp_path))
    with pytest.raises(ValueError, match="need image_size"):
        make_dataset(str(tiny_records), "train", batch_size=4)
