import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import ROOT, run_script

from runtime.atomic import LockedError, folder_lock
from tfrecords.builder import build
from tfrecords.plan import BuildConfig


def raw_count(files) -> int:
    return sum(1 for _ in tf.data.TFRecordDataset([str(f) for f in files]))


def test_record_counts_equal_rows_minus_rejections(tiny_data, tiny_records):
    train = pd.read_csv(tiny_data / "train.csv")
    rej = pd.read_csv(tiny_records / "rejected.csv")
    n_test = len(list((tiny_data / "test_images").iterdir()))
    assert raw_count(tiny_records.glob("train-*.tfrec")) == len(train) - (rej["split"] == "train").sum()
    assert raw_count(tiny_records.glob("test-*.tfrec")) == n_test - (rej["split"] == "test").sum()
    m = json.loads((tiny_records / "manifest.json").read_text())
    assert m["counts"]["train"] == len(train) and m["counts"]["test"] == n_test
    assert len(m["shards"]) == 6 and {s["split"] for s in m["shards"]} == {"train", "test"}
    import hashlib

    for s in m["shards"]:
        assert hashlib.sha256((tiny_records / s["file"]).read_bytes()).hexdigest() == s["sha256"]
        assert raw_count([tiny_records / s["file"]]) == s["records"]


def test_readable_with_plain_tf_and_the_od_api_keys(tiny_records, tiny_data):
    spec = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "image/individual_id": tf.io.FixedLenFeature([], tf.string),
        "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
        "image/object/class/text": tf.io.VarLenFeature(tf.string),
    }
    train = pd.read_csv(tiny_data / "train.csv").set_index("image")
    boxes = pd.read_csv(tiny_data / "boxes.csv").set_index("image")
    files = sorted(str(p) for p in tiny_records.glob("train-*.tfrec"))
    for raw in tf.data.TFRecordDataset(files).take(10):
        ex = tf.io.parse_single_example(raw, spec)
        name = ex["image/filename"].numpy().decode()
        img = tf.io.decode_jpeg(ex["image/encoded"])
        assert img.shape[:2] == (ex["image/height"], ex["image/width"]) and max(img.shape[:2]) <= 128
        assert ex["image/individual_id"].numpy().decode() == train.loc[name, "individual_id"]
        from PIL import Image

        w0 = Image.open(tiny_data / "train_images" / name).size[0]
        xmin = tf.sparse.to_dense(ex["image/object/bbox/xmin"]).numpy()
        assert xmin == pytest.approx([boxes.loc[name, "x_min"] / w0], abs=1e-6)
        assert tf.sparse.to_dense(ex["image/object/class/text"]).numpy()[0] == boxes.loc[name, "label"].encode()


def test_folds_spread_individuals_and_holdout_is_whole_individuals(tiny_records):
    idx = pd.read_csv(tiny_records / "index.csv")
    train = idx[idx["split"] == "train"]
    assert set(train["fold"]) == {0, 1, 2}
    sizes = train["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 0.25 * len(train)
    multi = train.groupby("individual_id")["fold"].agg(["size", "nunique"])
    assert (multi.loc[multi["size"] >= 3, "nunique"] >= 2).all()  # several images -> several folds
    held = train.groupby("individual_id")["holdout"].agg(["min", "max"])
    assert (held["min"] == held["max"]).all()  # an individual is held out whole or not at all
    n_ind = train["individual_id"].nunique()
    assert held["max"].sum() == round(0.2 * n_ind)
    m = json.loads((tiny_records / "manifest.json").read_text())
    assert sorted(m["holdout_individuals"]) == sorted(held.index[held["max"] == 1])


def test_manifest_counts_match_the_records_so_nothing_rescans_them(tiny_records, tiny_crops):
    from tfrecords.reader import parsed_records, read_manifest, train_counts

    for records in (tiny_records, tiny_crops):  # crop records carry their image records' counts
        m = read_manifest(str(records))
        for val in (0, 2):
            counts = np.zeros(len(m["individuals"]), np.int64)
            ds = parsed_records(str(records), "train", exclude_folds=[val], include_holdout=False)
            for i in ds.map(lambda e: e["image/individual_index"]).batch(4096):
                np.add.at(counts, i.numpy(), 1)
            np.testing.assert_array_equal(train_counts(m, val), counts)
        species = {}
        for e in parsed_records(str(records), "train"):
            species[m["individuals"][int(e["image/individual_index"])]] = m["species"][int(e["image/species_index"])]
        assert m["individual_species"] == species


def cli(data, out, *extra):
    return [sys.executable, "tfrecords/build.py", "--data", str(data), "--out", str(out), "--quiet",
            "--folds", "3", "--max-side", "128", "--shards", "8", "--workers", "1", *extra]


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    subprocess.run(cli(tiny_data, out), cwd=ROOT, check=True, capture_output=True, timeout=300)
    return out


def same_outputs(a, b):
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()), (names, sorted(p.name for p in b.iterdir()))
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


def test_kill_9_during_build_then_resume_gives_identical_outputs(tiny_data, reference, tmp_path):
    rng = random.Random(1)
    effective = 0
    # 3 kill points (while the first shard is written, after one, after two): each is two runs of the CLI,
    # ~7 s of start-up apiece
    for attempt, shards_done in enumerate((0, 1, 2)):
        out = tmp_path / f"killed{attempt}"
        p = subprocess.Popen(cli(tiny_data, out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        state = out / ".state"
        # kill at a random moment once `shards_done` shards are whole (0: while the first is written)
        while time.time() < deadline and p.poll() is None and not (
            (state / "signature").exists() and len(list(state.glob("*.json"))) >= shards_done):
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.03))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        if (out / "manifest.json").exists():
            continue  # this machine finished before the kill landed: that point tested nothing
        effective += 1
        for f in out.glob("*.tfrec"):  # whatever looks whole is whole: its state is beside it
            assert (state / (f.name + ".json")).exists()
        r = subprocess.run(cli(tiny_data, out), cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        same_outputs(reference, out)
    assert effective >= 2


def test_rerun_of_a_finished_build_changes_nothing(tiny_data, reference, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in reference.iterdir()}
    r = subprocess.run(cli(tiny_data, reference), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0
    assert {p.name: p.stat().st_mtime_ns for p in reference.iterdir()} == before


def test_a_changed_config_replaces_every_old_shard(tiny_data, tmp_path):
    out = tmp_path / "o"
    build(BuildConfig(data=str(tiny_data), out=str(out), max_side=96, shards=4, workers=1), progress=False)
    build(BuildConfig(data=str(tiny_data), out=str(out), max_side=96, shards=2, workers=1), progress=False)
    assert sorted(p.name for p in out.glob("*.tfrec")) == [
        "test-00000-of-00002.tfrec", "test-00001-of-00002.tfrec",
        "train-00000-of-00002.tfrec", "train-00001-of-00002.tfrec"]


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tiny_data, tmp_path):
    out = tmp_path / "o"
    with folder_lock(str(out)), pytest.raises(LockedError, match="being written by pid"):
        build(BuildConfig(data=str(tiny_data), out=str(out), workers=1), progress=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    (out / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    m = build(BuildConfig(data=str(tiny_data), out=str(out), max_side=96, workers=1), progress=False)
    assert m["counts"]["train"] == 60 and not (out / ".lock").exists()


def test_reads_and_writes_through_tf_gfile_urls(tiny_data, tiny_records):
    """ram:// is TF's in-memory filesystem: a build that works there assumes no local disk."""
    src = "ram://hw/data"
    for p in tiny_data.rglob("*"):
        if p.is_file():
            dst = f"{src}/{p.relative_to(tiny_data).as_posix()}"
            tf.io.gfile.makedirs(os.path.dirname(dst))
            tf.io.gfile.copy(str(p), dst, overwrite=True)
    m = build(BuildConfig(data=src, out="ram://hw/records", folds=3, holdout_individuals=0.2, max_side=128,
                          shards=3, workers=1), progress=False)
    local = json.loads((tiny_records / "manifest.json").read_text())
    assert [s["sha256"] for s in m["shards"]] == [s["sha256"] for s in local["shards"]]
    assert m["counts"] == local["counts"]


def test_cli_help_and_module_form():
    for args in (["tfrecords/build.py", "--help"], ["-m", "tfrecords.build", "--help"]):
        r = run_script(args)
        assert r.returncode == 0 and "--holdout-individuals" in r.stdout


def test_missing_data_folder_is_one_clear_line(tmp_path):
    r = run_script(["tfrecords/build.py", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error:") and "nope" in r.stderr
    assert "Traceback" not in r.stderr


def test_progress_ticks_never_replace_results():
    from tfrecords.builder import _counted

    class Bar:  # tqdm.update returns True whenever it redraws
        n = 0

        def update(self, k):
            self.n += k
            return True

    bar = Bar()
    assert list(_counted(iter(["a", "b"]), bar)) == ["a", "b"] and bar.n == 2


def test_folds_of_a_small_catalog_are_dealt_not_refused():
    import numpy as np
    import pandas as pd

    from tfrecords.folds import assign_folds

    # 20 photos of 8 individuals, none with 5 photos: scikit-learn's StratifiedKFold refuses --folds 5
    ids = pd.Series([f"i{j}" for j in [0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 4, 5, 5, 6, 6, 6, 6, 7, 7, 7]])
    folds = assign_folds(ids, 5, seed=0)
    assert np.bincount(folds).tolist() == [4, 4, 4, 4, 4]
    per = pd.DataFrame({"i": ids, "f": folds}).groupby("i")["f"]
    assert (per.nunique() == per.size()).all()  # each individual's photos in distinct folds
    shuffled = ids.sample(frac=1.0, random_state=1)
    again = pd.Series(assign_folds(shuffled, 5, seed=0), index=shuffled.index).sort_index()
    assert (pd.DataFrame({"i": ids, "f": again}).groupby("i")["f"].apply(sorted)
            == pd.DataFrame({"i": ids, "f": folds}).groupby("i")["f"].apply(sorted)).all()  # row order free
    with pytest.raises(ValueError, match="--folds 5: only 3 images"):
        assign_folds(ids[:3], 5, seed=0)


def test_a_build_after_opencv_ran_its_threads_here_finishes(tiny_data, tmp_path):
    # a process that ran SIFT or resizes before building (a notebook, bench/real.py, a test file): its
    # OpenCV thread pool must not be forked into the image workers, where the first resize waited forever
    code = ("import cv2, numpy as np, sys; cv2.SIFT_create().detectAndCompute(np.random.default_rng(0).integers("
            "0, 255, (512, 512), dtype=np.uint8), None); cv2.resize(np.zeros((2000, 2000, 3), np.uint8), (999, 999))\n"
            "from tfrecords.builder import build; from tfrecords.plan import BuildConfig\n"
            f"m = build(BuildConfig(data={str(tiny_data)!r}, out={str(tmp_path / 'r')!r}, max_side=96, shards=2, "
            "workers=2), progress=False); print(m['counts']['train'])")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.split()[-1]) == len(pd.read_csv(tiny_data / "train.csv"))
