"""The pipeline on the tiny dataset: open-set evaluation (threshold, report), inference from records
and from a photo folder with a broken file, enrollment that the next search finds."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import run_script

from pipeline.search import NEW
from pipeline.threshold import THRESHOLDS, ThresholdModel
from pipeline.validation import split_queries


@pytest.fixture(scope="module")
def trained(tiny_crops, tiny_embedder, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root}/mlflow.db"
    yield root, tiny_crops, tiny_embedder
    os.environ.pop("MLFLOW_TRACKING_URI")


@pytest.fixture(scope="module")
def evaluated(trained):
    from pipeline.validation import EvalConfig, evaluate

    root, crops, emb = trained
    return evaluate(EvalConfig(embedder=str(emb), records=str(crops), out=str(root / "eval"), gallery=6,
                               rerank="sift", rerank_depth="20"),  # a 2-epoch embedder: re-ranking kept to test it,
                    progress=False)  # and deeper than the default 10 (too few queries to choose a depth on)


def test_split_queries_makes_unknown_individuals_new():
    folds = np.array([0, 1, 1, 0, 1])
    holdout = np.array([0, 0, 0, 0, 1])
    ids = np.array(["a", "a", "b", "c", "d"])
    cat, q, truths = split_queries(folds, holdout, ids, fold=0)
    assert cat.tolist() == [False, True, True, False, False]
    assert q.tolist() == [True, False, False, True, True]
    assert truths.tolist() == ["a", NEW, NEW]


def test_evaluation_picks_the_best_threshold_and_writes_the_report(trained, evaluated):
    _, _, emb = trained
    r = evaluated
    assert r["threshold"] in THRESHOLDS and 0.0 <= r["map5"] <= 1.0
    assert r["new_queries"] > 0 and r["queries"] > r["new_queries"]
    stored = json.loads((emb / "threshold.json").read_text())
    assert stored["threshold"] == r["threshold"]
    curve = ThresholdModel.from_json(stored["curves"]).curve(0.2)  # the report's weighting
    assert r["threshold"] == THRESHOLDS[int(np.argmax(curve))] and r["map5"] == pytest.approx(curve.max(), abs=1e-5)
    page = open(r["report"]).read()
    assert page.count("<tr><td><img class=\"q\"") == 6  # six gallery rows
    assert page.count("data:image/png;base64,") == 3 and "new_individual" in page


def test_infer_from_records_writes_a_valid_submission(trained, evaluated, tiny_records, tiny_data, tmp_path):
    from pipeline.submission import validate_submission

    _, crops, emb = trained
    out = tmp_path / "sub" / "submission.csv"
    r = run_script(["pipeline/infer.py", "--detector", "none", "--embedder", str(emb), "--catalog", str(crops),
                    "--records", str(tiny_records), "--out", str(out.parent), "--species-consistency", "--tta", "flip",
                    "--new-share", "0.2", "--quiet"])
    assert r.returncode == 0, r.stderr[-2000:]
    truth = pd.read_csv(tiny_data / "test_truth.csv")
    sub = validate_submission(str(out), truth["image"].tolist())
    assert all(len(p.split()) == 5 for p in sub["predictions"])
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["threshold"] == evaluated["threshold"]
    m = pd.read_csv(tmp_path / "sub" / "matches.csv")
    assert set(m["image"]) == set(truth["image"]) and (m.groupby("image")["score"].is_monotonic_decreasing).all()
    # searched and re-ranked as deep as validation fitted the fusion: every catalog individual (16 > 10)
    assert evaluated["rerank_depth"] == 20 and m.groupby("image")["rank"].max().min() > 10
    import mlflow  # the run is recorded: its settings, threshold and submission

    rec = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(res["mlflow_run_id"])
    assert rec.data.params["new_share"] == "0.2" and rec.data.params["tta"] == "flip"
    assert rec.data.metrics["threshold"] == pytest.approx(evaluated["threshold"])
    assert rec.data.metrics["images"] == len(truth)
    local = mlflow.artifacts.download_artifacts(run_id=rec.info.run_id, artifact_path="submission.csv",
                                                tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    assert open(local).read() == out.read_text()


def test_infer_from_a_folder_gives_a_broken_photo_its_row(trained, tiny_data, tmp_path):
    from pipeline.identify import InferConfig, run
    from pipeline.submission import validate_submission

    _, crops, emb = trained
    photos = tmp_path / "photos"
    shutil.copytree(tiny_data / "test_images", photos)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = tmp_path / "submission.csv"
    res = run(InferConfig(detector="none", embedder=str(emb), catalog=str(crops), images=str(photos),
                          out=str(out.parent)), progress=False)
    names = sorted(os.listdir(photos))
    sub = validate_submission(str(out), names)
    assert res["failures"] == 1 and sub.set_index("image").loc["broken.jpg", "predictions"].startswith(NEW)
    assert pd.read_csv(tmp_path / "failures.csv")["image"].tolist() == ["broken.jpg"]


def test_enrolled_photos_are_found_by_the_next_search(trained, evaluated, tiny_data, tmp_path):
    """``evaluated`` fitted the re-ranking (threshold.json) that the second search uses: run alone,
    without it, this test failed (not re-ranked); the suite's order had hidden that."""
    from pipeline.enrolment import enroll
    from pipeline.identify import InferConfig, run

    _, crops, emb = trained
    photos = tmp_path / "new"
    photos.mkdir()
    names = sorted(os.listdir(tiny_data / "test_images"))[:3]
    for n in names:
        shutil.copy(tiny_data / "test_images" / n, photos / n)
    labels = tmp_path / "labels.csv"
    labels.write_text("\ufeffimage,individual_id,species\n" + "".join(
        f"{n},newbie{i},Bottlenose Dolpin\n" for i, n in enumerate(names)))
    cat = tmp_path / "catalog.npz"
    res = enroll(str(emb), str(cat), str(photos), str(labels))
    assert res["enrolled"] == 3 and res["individuals"] == 3
    out = tmp_path / "sub.csv"
    run(InferConfig(detector="none", embedder=str(emb), catalog=str(cat), images=str(photos), out=str(out.parent),
                    threshold=0.0, rerank="none"), progress=False)
    m = pd.read_csv(tmp_path / "matches.csv")
    for i, n in enumerate(names):  # the photo itself is in the catalog now: its own id scores 1
        own = m[(m["image"] == n) & (m["individual_id"] == f"newbie{i}")]["score"]
        assert len(own) == 1 and own.iloc[0] == pytest.approx(1.0, abs=1e-5)
        assert own.iloc[0] >= m[m["image"] == n]["score"].max() - 1e-6  # (a 2-epoch embedder may tie others)
    # re-ranked: enroll stored the keypoints, and the same photo matches them all
    res = run(InferConfig(detector="none", embedder=str(emb), catalog=str(cat), images=str(photos),
                          out=str(out.parent)), progress=False)
    m = pd.read_csv(tmp_path / "matches.csv")
    assert res["reranked"] and all(m[(m["image"] == n) & (m["rank"] == 1)]["individual_id"].item() == f"newbie{i}"
                                   for i, n in enumerate(names))
    with np.load(cat, allow_pickle=False) as z:
        assert set(z["species"]) == {"bottlenose_dolphin"}
    labels.write_text("image,individual_id,species\n" + f"{names[0]},newbie1,beluga\n")
    r = run_script(["pipeline/enroll.py", "--embedder", str(emb), "--catalog", str(cat), "--images", str(photos),
                    "--labels", str(labels)])
    assert r.returncode == 2 and "newbie1 is bottlenose_dolphin in the catalog" in r.stderr
    assert len(r.stderr.strip().splitlines()[-1]) < 300
    other = retrained_copy(emb, tmp_path / "other")  # same config, other weights: the catalog is not its
    with pytest.raises(ValueError, match="same shape with other weights"):
        run(InferConfig(detector="none", embedder=other, catalog=str(cat), images=str(photos), out=str(out.parent)),
            progress=False)


def retrained_copy(emb, out) -> str:
    """A copy of the run folder ``emb`` whose embedder has other weights (as a second run of the same
    config would): every weight nudged."""
    from runtime.checkpoint import save_model
    from stage2_embed.embedder import load_embedder

    shutil.copytree(emb, out)
    model, _ = load_embedder(str(out))
    model.set_weights([w + 0.01 for w in model.get_weights()])
    save_model(model, str(out / "embedder.keras"))
    return str(out)


def test_a_catalog_names_the_embedder_by_shape_and_weights_and_old_ones_by_shape():
    from pipeline.catalog import embedder_mismatch

    a = json.dumps({"image_size": 96, "weights_sha256": "aa"})
    assert embedder_mismatch(a, a) is None
    assert "other weights" in embedder_mismatch(a, json.dumps({"image_size": 96, "weights_sha256": "bb"}))
    assert "shape" in embedder_mismatch(a, json.dumps({"image_size": 64, "weights_sha256": "aa"}))
    assert embedder_mismatch(json.dumps({"image_size": 96}), a) is None  # a catalog from before the digest
    assert "shape" in embedder_mismatch(json.dumps({"image_size": 64}), a)


def untrained_detector(path) -> str:
    from runtime.checkpoint import save_model
    from stage1_detect.model import DetectorConfig, build_detector, save_config

    cfg = DetectorConfig(image_size=64)
    os.makedirs(path)
    save_model(build_detector(cfg), os.path.join(path, "detector.keras"))
    save_config(cfg, str(path))
    return str(path)


def test_scrambled_test_truth_and_boxes_leave_the_submission_byte_identical(trained, evaluated, tiny_data, tmp_path,
                                                                          monkeypatch):
    """Nothing about the test photos but their pixels may reach the predictions: not their truth, not
    their hand-drawn boxes (the build stores both in the records), not their order."""
    import stage1_detect.model as detector_model
    from pipeline.catalog import export

    # the untrained detector's boxes run past the photo: kept, so that crops are cut from its boxes
    monkeypatch.setattr(detector_model, "MIN_INSIDE", 0.0)
    from pipeline.identify import InferConfig, run
    from tfrecords.builder import build
    from tfrecords.plan import BuildConfig

    _, crops, emb = trained
    det = untrained_detector(tmp_path / "det")
    catalog = str(tmp_path / "catalog.npz")  # embedded once, not by each of the four runs
    export(str(emb), str(crops), catalog)
    rng = np.random.default_rng(0)
    subs = []
    for variant in ("as_given", "scrambled"):
        data = tmp_path / variant / "data"
        shutil.copytree(tiny_data, data)
        if variant == "scrambled":
            truth = pd.read_csv(data / "test_truth.csv", dtype=str)
            truth[["individual_id", "species"]] = truth[["individual_id", "species"]].sample(frac=1, random_state=1
                                                                                           ).to_numpy()
            truth.iloc[::-1].to_csv(data / "test_truth.csv", index=False)
            boxes = pd.read_csv(data / "boxes.csv")
            test = boxes["image"].isin(truth["image"])
            assert test.any()  # the build reads boxes of test photos too
            lo = rng.integers(0, 40, (int(test.sum()), 2))
            boxes.loc[test, ["x_min", "y_min"]] = lo
            boxes.loc[test, ["x_max", "y_max"]] = lo + rng.integers(10, 60, (int(test.sum()), 2))
            boxes.to_csv(data / "boxes.csv", index=False)
        rec = tmp_path / variant / "records"
        build(BuildConfig(data=str(data), out=str(rec), folds=3, holdout_individuals=0.2, max_side=128, shards=3,
                          workers=2), progress=False)
        out = tmp_path / variant / "submission.csv"
        for detector in (det, "none"):
            res = run(InferConfig(detector=detector, embedder=str(emb), catalog=catalog, records=str(rec),
                                  out=str(out.parent)), progress=False)
            if detector == "none":  # every crop is its whole photo
                assert res["wide_crop_share"] == 1.0
            subs.append((variant, detector, out.read_bytes()))
    assert (tmp_path / "as_given" / "data" / "test_truth.csv").read_bytes() != (
        tmp_path / "scrambled" / "data" / "test_truth.csv").read_bytes()
    assert subs[0][2] == subs[2][2] and subs[1][2] == subs[3][2]


def test_thin_catalog_leaves_one_photo_of_each_named_individual_and_the_rest_alone():
    from pipeline.single_photo import thin_catalog

    ids = np.array(["a", "a", "a", "b", "b", "c", "a", "d"], dtype=object)
    cat = np.array([True, True, True, True, True, True, False, True])
    keep = thin_catalog(cat, ids, ["a", "b", "a"])
    assert [int((keep & (ids == i)).sum()) for i in "abcd"] == [1, 1, 1, 1]
    assert not keep[6] and keep[5] and keep[7]  # a non-catalog photo stays out; others untouched
    assert (keep <= cat).all() and (thin_catalog(cat, ids, ["a", "b"]) == keep).all()  # deterministic
    assert len({int(np.flatnonzero(thin_catalog(cat, ids, ["a"], seed=s) & (ids == "a"))[0]) for s in range(20)}) == 3


def test_holdout_pairs_put_one_photo_of_each_repeated_holdout_individual_in_the_catalog_and_query_the_rest():
    from pipeline import single_photo

    ids = np.array(["h1"] * 9 + ["h2", "h2", "h3", "k", "k"], dtype=object)
    arr = {"individual_ids": ids, "holdout": np.array([1] * 12 + [0, 0])}
    added, queries = single_photo.holdout_pairs(arr)
    assert sorted(ids[added]) == ["h1", "h2"]  # h3 has one photo: nothing to pair; k is not held out
    assert sorted(ids[queries]) == ["h1"] * single_photo.PER_HOLDOUT + ["h2"]  # capped per individual
    assert not set(added) & set(queries)
    assert (single_photo.holdout_pairs(arr)[1] == queries).all()  # deterministic


def test_top1_counts_queries_whose_best_candidate_is_their_individual_among_single_photo_ones():
    from pipeline.search import Candidates, single_catalog_photo, top1

    ids = np.array([["a", "b"], ["b", "a"], ["c", "a"], ["a", "c"]], dtype=object)
    cands = Candidates(ids, ids, np.zeros((4, 2)), np.array(["s"] * 4, dtype=object))
    truths = np.array(["a", "a", "c", "new_individual"], dtype=object)
    single = single_catalog_photo(truths, np.array(["a", "a", "b", "c"], dtype=object))
    assert single.tolist() == [False, False, True, False]  # c has one catalog photo; a has two
    assert top1(cands, truths) == 0.5 and top1(cands, truths, single) == 1.0
    assert top1(cands, truths, ~single & (truths != "new_individual")) == 0.5
