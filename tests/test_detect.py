"""Stage 1: detector geometry, a tiny training run, reload, scoring, detector crops and the fallback path."""

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from stage1_detect.cropping import CropConfig, crop_records
from stage1_detect.model import top_boxes
from stage1_detect.scoring import iou
from tfrecords.reader import list_shards
from tfrecords.schema import parse_example


def test_iou_known_values():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1], [0, 0, 1, 1]], float)
    b = np.array([[1, 1, 3, 3], [0, 0, 1, 1], [2, 2, 3, 3]], float)
    np.testing.assert_allclose(iou(a, b), [1 / 7, 1.0, 0.0])


def test_top_boxes_are_relative_yxyx_and_fall_back_below_the_floor():
    out = (np.array([[20, 40, 60, 80], [0, 0, 10, 10]], np.float32),  # xyxy px: the most confident box each
           np.array([0.9, 0.005], np.float32), np.array([2, 1]))  # the second is below CONFIDENCE_FLOOR
    boxes, scores, labels = top_boxes(out, 100)
    np.testing.assert_allclose(boxes, [[0.4, 0.2, 0.8, 0.6], [0, 0, 1, 1]])  # rel yxyx
    np.testing.assert_allclose(scores, [0.9, -1.0])
    assert labels.tolist() == [2, -1]


@pytest.fixture(scope="module")
def tiny_run(tiny_records, tmp_path_factory):
    """The smoke trainer, through its CLI: 2 epochs at 96 px, then a resume that has nothing to do."""
    from conftest import run_script

    out = tmp_path_factory.mktemp("det_run")
    env_db = f"sqlite:///{out}/mlflow.db"
    import os

    env = {**os.environ, "MLFLOW_TRACKING_URI": env_db}
    r = run_script(["stage1_detect/train.py", "--records", str(tiny_records), "--out", str(out), "--smoke",
                    "--quiet"], env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, json.loads(r.stdout.strip().splitlines()[-1]), env_db


def test_training_writes_checkpoint_history_and_mlflow(tiny_run):
    import mlflow

    out, final, uri = tiny_run
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [0, 1]
    assert {"loss", "box_loss", "class_loss", "map50", "map"} <= set(hist[-1])
    assert hist[1]["loss"] < hist[0]["loss"]
    state = json.loads((out / "ckpt" / "state.json").read_text())
    assert state["epoch"] == 1
    run = mlflow.MlflowClient(uri).get_run(state["mlflow_run_id"])
    assert run.data.params["image_size"] == "96" and "map50" in run.data.metrics
    hist_m = mlflow.MlflowClient(uri).get_metric_history(run.info.run_id, "loss")
    assert len(hist_m) == 2


def test_validation_runs_every_val_every_epochs_and_after_the_last():
    from stage1_detect.training import TrainConfig, validate

    cfg = TrainConfig(records="r", out="o", epochs=7, val_every=3)
    scored = [e for e in range(7) if validate(cfg, e, lambda: {"map50": 1.0}, last=e == 6)]
    assert scored == [2, 5, 6]  # epochs 3, 6 and the last, 7
    assert [e for e in range(3) if validate(TrainConfig(records="r", out="o", epochs=3, val_every=1), e,
                                            lambda: {"map50": 1.0}, last=e == 2)] == [0, 1, 2]


def test_detector_reloads_with_safe_mode_and_gives_the_same_boxes(tiny_run, tiny_records):
    import keras

    from stage1_detect.data import eval_dataset
    from stage1_detect.model import build_detector, load_config, load_detector

    out, _, _ = tiny_run
    model, cfg = load_detector(str(out))
    x, _ = next(iter(eval_dataset(str(tiny_records), cfg.image_size, 8, 0)))
    fresh = build_detector(load_config(str(out)))
    fresh.load_weights(str(out / "ckpt" / "epoch1.weights.h5"))
    a, b = model.predict(x, verbose=0), fresh.predict(x, verbose=0)
    raw_a, raw_b = model(x, training=False), fresh(x, training=False)
    for k in raw_a:
        np.testing.assert_allclose(np.asarray(raw_a[k]), np.asarray(raw_b[k]), atol=1e-5)
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-4)
    assert isinstance(keras.saving.load_model(str(out / "detector.keras"), safe_mode=True), keras.Model)


def test_evaluate_all_scores_every_boxed_record_of_both_splits(tiny_run, tiny_records):
    from stage1_detect.data import boxed_records
    from stage1_detect.scoring import evaluate

    out, _, _ = tiny_run
    one, every = evaluate(str(out), str(tiny_records)), evaluate(str(out), str(tiny_records), every=True)
    index = pd.read_csv(tiny_records / "index.csv")
    assert sum(1 for _ in boxed_records(str(tiny_records), None)) == every["images"]
    assert every["images"] > (index["split"] == "test").sum() and one["images"] < every["images"]
    assert every["val_fold"] == "all"
    assert 0.0 <= every["iou50_share"] <= 1.0 and one["val_fold"] == 0
    assert {"boxed_share"} <= set(every) & set(one)  # its counting: test_a_true_box_counts_as_boxed_...
    tiled = evaluate(str(out), str(tiny_records), every=True, tile=2)  # 2x2 grids: the photos left over are left out
    assert tiled["tile"] == 2 and tiled["grids"] == every["images"] // 4 and "iou50_share" not in tiled
    assert "boxed_share" in tiled


def test_a_true_box_counts_as_boxed_when_any_kept_box_covers_it():
    from stage1_detect.scoring import covered

    truth = np.array([[10, 10, 50, 50], [100, 100, 140, 160], [60, 0, 90, 30], [-1, -1, -1, -1]], np.float32)
    boxes = np.array([[12, 8, 52, 50],  # on the first: IoU 0.9
                      [100, 100, 140, 120],  # a third of the second: IoU 0.33, not covered
                      [60, 0, 90, 30],  # exactly the third, but suppressed (confidence 0)
                      [0, 0, 200, 200]], np.float32)  # the whole frame covers none
    conf = np.array([0.9, 0.8, 0.0, 0.7])
    assert covered(boxes, conf, truth).tolist() == [True, False, False]  # padding left out
    conf[2] = 0.01  # kept at any confidence: no ranking could find more than these
    assert covered(boxes, conf, truth).tolist() == [True, False, True]
    assert covered(np.zeros((0, 4)), np.zeros(0), truth).tolist() == [False, False, False]


def test_the_subject_share_counts_the_first_box_alone():
    from stage1_detect.scoring import first_box_iou, iou

    pod = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])  # the identified animal first, a companion
    chosen = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.4]])
    truths = [pod, pod, pod[:1]]
    np.testing.assert_allclose(first_box_iou(chosen, truths), [1.0, 0.0, 0.8])
    nearest = [iou(np.repeat(c[None], len(t), 0), t).max() for c, t in zip(chosen, truths, strict=True)]
    np.testing.assert_allclose(nearest, [1.0, 1.0, 0.8])  # the companion's box is an animal, not the subject
    assert first_box_iou(chosen[:1], [np.zeros((0, 4))])[0] == 0.0


def test_detector_crops_fall_back_to_the_full_image(tiny_run, tiny_records, tmp_path):
    out, _, _ = tiny_run
    m = crop_records(CropConfig(records=str(tiny_records), out=str(tmp_path / "c"), detector=str(out),
                                min_score=1.01, crop_size=64), progress=False)  # nothing can pass
    assert m["sources"] == {"full": m["counts"]["train"] + m["counts"]["test"]}
    c = next(iter(tf.data.TFRecordDataset(list_shards(str(tmp_path / "c"), "test")).map(parse_example)))
    np.testing.assert_allclose(c["crop/box"].numpy(), [0, 0, 1, 1])
    assert c["crop/source"].numpy() == b"full"


def test_the_traced_detector_call_gives_what_predict_gives(monkeypatch):
    import stage1_detect.model as detector_model
    from stage1_detect.model import DetectorConfig, build_detector, detect_fn, top_box_fn

    monkeypatch.setattr(detector_model, "MIN_INSIDE", 0.0)  # predict keeps boxes off the photo; see the next test
    model = build_detector(DetectorConfig(image_size=64))
    x = tf.random.stateless_uniform((2, 64, 64, 3), (1, 2), maxval=255.0)
    want, got = model.predict(x, verbose=0), detect_fn(model)(x)
    for k in ("boxes", "confidence", "classes"):
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), atol=1e-4)
    assert detect_fn(model) is detect_fn(model)
    # the crops' box (no NMS, ONNX-exportable) is the most confident box NMS keeps, of its class
    box, conf, cls = (np.asarray(o) for o in top_box_fn(model, 64)(x))
    found = np.asarray(want["confidence"]).max(axis=1) > 0
    assert found.any()
    for i in np.flatnonzero(found):
        j = int(np.argmax(want["confidence"][i]))
        np.testing.assert_allclose(box[i], want["boxes"][i, j], atol=1e-3)
        assert conf[i] == pytest.approx(want["confidence"][i, j], abs=1e-5) and cls[i] == want["classes"][i, j]


def regression(distances: list[float]) -> np.ndarray:
    """YOLOv8 box-regression logits [64] whose decoded distances (left, top, right, bottom, in
    strides) are ``distances``: each side's 16 bins peaked on a whole number."""
    logits = np.full((4, 16), -30.0, np.float32)
    logits[np.arange(4), np.asarray(distances, int)] = 30.0
    return logits.reshape(-1)


def test_a_box_mostly_off_the_photo_is_not_a_detection():
    """The 12:09 demo detector's failure, by hand: the most confident anchor's box runs far past the
    frame (less than ``MIN_INSIDE`` of it inside), a weaker one sits on the animal. The off-frame box
    gets score 0 and the crops take the other; a box three quarters inside (a fin at the edge) is kept."""
    from keras_cv.src.models.object_detection.yolo_v8.yolo_v8_detector import get_anchors

    from stage1_detect.model import anchor_boxes

    size = 64
    anchors, strides = (np.asarray(a) for a in get_anchors(image_shape=(size, size, 3)))
    px = anchors * strides[:, None]  # anchor centres in pixels (get_anchors gives them in strides)
    edge = int(np.flatnonzero((strides == 32) & (px[:, 0] == 48) & (px[:, 1] == 16))[0])  # coarse, upper right
    centre = int(np.flatnonzero((strides == 8) & (px[:, 0] == 28) & (px[:, 1] == 36))[0])  # fine, mid-photo
    border = int(np.flatnonzero((strides == 16) & (px[:, 0] == 56) & (px[:, 1] == 40))[0])  # mid-size, right
    boxes = np.tile(regression([1, 1, 1, 1]), (len(anchors), 1))
    boxes[edge] = regression([1, 15, 6, 15])  # x 16-240, y -464-496: a twentieth of it on the photo
    boxes[border] = regression([1, 1, 1, 1])  # x 40-72, y 24-56: three quarters on the photo
    classes = np.full((len(anchors), 3), 1e-3, np.float32)
    classes[edge, 1], classes[centre, 0], classes[border, 2] = 0.99, 0.6, 0.3
    pred = {"boxes": tf.constant(boxes[None]), "classes": tf.constant(classes[None])}
    b, scores = (np.asarray(t)[0] for t in anchor_boxes(pred, size))
    assert b[edge, 2] > 2 * size  # the saturated box really leaves the photo
    assert scores[edge].max() == 0.0 and scores[centre, 0] == pytest.approx(0.6)
    assert scores[border, 2] == pytest.approx(0.3)  # three quarters inside: a fin at the frame's edge
    assert int(np.argmax(scores.max(axis=1))) == centre


def test_a_detector_trains_from_a_locally_saved_pretrained_preset(tiny_records, tmp_path):
    """``--weights DIR``: a keras-cv preset folder (as a COCO backbone attached on Kaggle would be) is
    loaded with its weights, its architecture wins, and training starts from it: its loss falls."""
    import keras
    import keras_cv
    import tensorflow as tf
    from keras_cv.src.utils.preset_utils import save_to_preset

    from runtime.strategy import fit_epoch
    from stage1_detect.data import train_dataset
    from stage1_detect.model import DetectorConfig, build_backbone, build_detector

    keras.utils.set_random_seed(7)
    pretrained = keras_cv.models.YOLOV8Backbone(stackwise_channels=[16, 32, 64, 64], stackwise_depth=[1, 1, 1, 1],
                                                include_rescaling=True, activation="swish", input_shape=(64, 64, 3))
    save_to_preset(pretrained, str(tmp_path / "preset"))
    loaded = build_backbone(DetectorConfig(image_size=64, backbone="m", weights=str(tmp_path / "preset")))
    assert loaded.count_params() == pretrained.count_params()  # the preset's size, not --backbone m
    for a, b in zip(loaded.weights, pretrained.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    model = build_detector(DetectorConfig(image_size=64, weights=str(tmp_path / "preset")))
    model.compile(optimizer=keras.optimizers.Adam(2e-3), classification_loss="binary_crossentropy", box_loss="ciou")
    # the loss falls on a handful of images, through the trainers' own epoch (runtime.strategy)
    ds = train_dataset(str(tiny_records), 64, 8, val_fold=0, augment=False).take(1).cache().repeat(12)
    h = [fit_epoch(model, ds, None, tf.distribute.get_strategy(), progress=False)["loss"] for _ in range(2)]
    assert h[1] < 0.7 * h[0]
    assert not np.array_equal(model.backbone.weights[0].numpy(), pretrained.weights[0].numpy())  # it trained
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_backbone(DetectorConfig(image_size=64, weights=str(tmp_path)))


def test_training_photos_with_close_ups_come_at_the_input_size_with_their_animal_filling_the_frame(tiny_records):
    from stage1_detect.data import train_dataset
    from stage1_detect.framing import CLOSE_UP_FILL

    sides = {}
    for rate in (0.0, 1.0):
        for images, boxes in train_dataset(str(tiny_records), 64, 4, val_fold=0, close_up_rate=rate).take(12):
            assert images.shape == (4, 64, 64, 3)
            b = boxes["boxes"].numpy()[boxes["classes"].numpy() >= 0]  # padding has class -1
            sides[rate] = [*sides.get(rate, []), *(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 64)]
    # cut close, the animals fill most of the frame (before the jittered resize's 0.7-1.3); whole (the
    # tiny world frames them large already), clearly less
    assert np.median(sides[1.0]) >= max(CLOSE_UP_FILL[0], np.median(sides[0.0]) + 0.1)


def test_a_seeded_detector_dataset_draws_the_same_augmented_batches_and_another_seed_others(tiny_records):
    """Every random draw of the detector's input (close-ups, mosaic, flip, resize, colour) follows the
    seed: the same seed twice gives the same batches, whatever order the parallel maps run in; seed 0
    included (keras-cv reads a layer seed of 0 as "none")."""
    from stage1_detect.data import train_dataset

    def batches(seed: int) -> np.ndarray:
        ds = train_dataset(str(tiny_records), 64, 4, val_fold=0, seed=seed, photometric="wide", mosaic_rate=0.5,
                           close_up_rate=0.5)
        return np.stack([images.numpy() for images, _ in ds.take(3)])

    for seed in (0, 3):
        np.testing.assert_array_equal(batches(seed), batches(seed))
    assert np.abs(batches(0) - batches(3)).mean() > 5.0


def test_the_evaluate_cli_passes_every_option_on(monkeypatch, tmp_path):
    """Each of ``DetectorEvalConfig``'s options reaches ``scoring.evaluate`` (``--slices`` once did not:
    the CLI scored with the default tiles whatever it was told)."""
    import dataclasses

    from stage1_detect import evaluate as cli
    from stage1_detect.scoring import DetectorEvalConfig

    seen = {}
    monkeypatch.setattr(cli, "evaluate", lambda *a, **k: seen.update(args=a, kwargs=k) or {"map50": 0.0})
    cli.main(["--detector", "D", "--records", "R", "--val-fold", "2", "--batch-size", "3", "--all", "--tile", "4",
              "--zoom", "5", "--no-mirror", "--slices", "1", "--input-size", "256", "--out", str(tmp_path)])
    assert seen["args"] == ("D", "R", 2, str(tmp_path), 3)
    assert seen["kwargs"] == {"every": True, "tile": 4, "zoom": 5, "mirror": False, "slices": 1, "input_size": 256}
    assert len(seen["args"]) + len(seen["kwargs"]) == len(dataclasses.fields(DetectorEvalConfig))


def test_wide_share_counts_found_boxes_over_half_the_photo():
    from stage1_detect.scoring import wide_share

    boxes = np.array([[0.0, 0.0, 1.0, 1.0],  # the whole photo
                      [0.0, 0.0, 0.7, 0.7],  # 0.49: not over half
                      [0.1, 0.0, 0.9, 0.9],  # 0.72
                      [0.2, 0.2, 0.3, 0.3]])
    assert wide_share(boxes) == 0.5
    assert wide_share(boxes, found=np.array([False, True, True, True])) == 0.25  # a box not found is no box
    assert wide_share(np.zeros((0, 4))) == 0.0


def test_a_detector_runs_at_another_input_size_with_its_own_weights(tiny_run, tiny_records):
    from stage1_detect.data import boxed_records
    from stage1_detect.model import load_detector
    from stage1_detect.scoring import evaluate

    out, _, _ = tiny_run
    trained, cfg = load_detector(str(out))
    big, big_cfg = load_detector(str(out), input_size=cfg.image_size + 64)
    assert big_cfg.image_size == cfg.image_size + 64 and big_cfg.classes == cfg.classes
    assert tuple(big.input_shape[1:3]) == (cfg.image_size + 64,) * 2
    for a, b in zip(trained.get_weights(), big.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    same, _ = load_detector(str(out), input_size=cfg.image_size)
    assert same is trained  # the trained size: the loaded model itself
    # both stay loaded (bench/real.py measures seven times at one --input-size): rebuilt once
    assert load_detector(str(out), input_size=cfg.image_size + 64)[0] is big and load_detector(str(out))[0] is trained
    with pytest.raises(ValueError, match="ONNX export .* use --runtime tf"):
        load_detector(str(out), runtime="onnx", input_size=cfg.image_size + 64)
    with pytest.raises(ValueError, match="multiple of 32"):
        load_detector(str(out), input_size=cfg.image_size + 10)
    r = evaluate(str(out), str(tiny_records), input_size=cfg.image_size + 64)  # the validation fold's photos
    assert r["images"] == sum(1 for _ in boxed_records(str(tiny_records), r["val_fold"])) > 0

