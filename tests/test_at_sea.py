"""Boxed photos shrunk into the sea (tfrecords/synthetic/at_sea.py): the proxy for photos taken at
sea. The boxes must follow the animal's pixels into the frame, the photo must be small in it, and
the result must be a folder the builder reads."""

import numpy as np
import pandas as pd
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
