"""Object storage: the data, crop and inference commands take ``tf.io.gfile`` URLs for every path.
TensorFlow's in-memory ``ram://`` filesystem stands in for ``gs://``: each command reads its inputs
from it and writes its outputs to it, with the same bytes as on a local disk (no code path assumes
one). ``ram://`` lives in this process, so the commands run in-process."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

_N = itertools.count()


def to_ram(local: Path) -> str:
    """Copy a local folder into a fresh ``ram://`` folder."""
    root = f"ram://t{next(_N)}/{local.name}"
    for path in local.rglob("*"):
        if path.is_file():
            dst = f"{root}/{path.relative_to(local).as_posix()}"
            tf.io.gfile.makedirs(dst.rsplit("/", 1)[0])
            tf.io.gfile.copy(str(path), dst, overwrite=True)
    return root


def ram_bytes(url: str) -> bytes:
    with tf.io.gfile.GFile(url, "rb") as f:
        return f.read()


def test_build_reads_and_writes_urls(tiny_data, tiny_records):
    from tfrecords.builder import BuildConfig, build

    out = f"ram://t{next(_N)}/records"
    local = tiny_records
    cfg = BuildConfig(**{**_build_config(local), "data": to_ram(tiny_data), "out": out, "workers": 1})
    build(cfg, progress=False)
    for shard in sorted(p.name for p in local.glob("*.tfrec")):
        assert ram_bytes(f"{out}/{shard}") == (local / shard).read_bytes(), shard


def _build_config(records: Path) -> dict:
    import json

    return {k: v for k, v in json.loads((records / "manifest.json").read_text())["config"].items()
            if k not in ("data", "out", "workers")}


def test_crop_reads_and_writes_urls(tiny_records, tiny_crops):
    from stage1_detect.cropping import CropConfig, crop_records

    out = f"ram://t{next(_N)}/crops"
    crop_records(CropConfig(records=to_ram(tiny_records), out=out, source="boxes", crop_size=96), progress=False)
    for shard in sorted(p.name for p in tiny_crops.glob("*.tfrec")):
        assert ram_bytes(f"{out}/{shard}") == (tiny_crops / shard).read_bytes(), shard
    assert not tf.io.gfile.exists(f"{out}/.state")


def test_embed_and_infer_read_and_write_urls(tiny_embedder, tiny_crops, tmp_path):
    from pipeline.identify import InferConfig, run
    from stage2_embed.embedder import export

    emb, crops = to_ram(tiny_embedder), to_ram(tiny_crops)
    local = export(str(tiny_embedder), str(tiny_crops), str(tmp_path / "emb.npz"))
    export(emb, crops, f"{crops}-out/emb.npz")
    with np.load(tf.io.gfile.GFile(f"{crops}-out/emb.npz", "rb"), allow_pickle=False) as z:
        for k, v in local.items():
            np.testing.assert_array_equal(z[k], v, err_msg=k)

    def infer(embedder: str, data: str, out: str) -> None:
        run(InferConfig(detector="none", embedder=embedder, catalog=data, records=data, split="test", out=out,
                        threshold=0.5), progress=False)

    infer(str(tiny_embedder), str(tiny_crops), str(tmp_path / "sub"))
    infer(emb, crops, f"{crops}-sub")
    for name in ("submission.csv", "matches.csv"):
        assert ram_bytes(f"{crops}-sub/{name}") == (tmp_path / "sub" / name).read_bytes(), name


@pytest.mark.parametrize("missing", ["ram://nowhere/records"])
def test_a_missing_url_is_a_clear_error(missing):
    from runtime.cli import DataError
    from tfrecords.reader import read_manifest

    with pytest.raises(DataError, match="no manifest.json"):
        read_manifest(missing)


def test_checkpoints_models_and_artifacts_go_to_urls(tmp_path, monkeypatch):
    """What the trainers write under ``--out``: checkpoints (resumable), models, MLflow artifacts."""
    import keras
    import mlflow

    from runtime.checkpoint import Checkpoint, save_model
    from runtime.tracking import log_artifact, start_run

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        return m

    x, y = np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")
    run = f"ram://t{next(_N)}/run"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    a = model()
    with start_run("object-storage", {"out": run}) as r:
        ckpt = Checkpoint(run)
        history: list[dict] = []
        for epoch in range(2):
            a.fit(x, y, epochs=1, verbose=0)
            ckpt.end_epoch(a, epoch, 2, {"loss": 1.0}, history, r.info.run_id)
        save_model(a, f"{run}/model.keras")
        log_artifact(f"{run}/model.keras")
    assert sorted(tf.io.gfile.listdir(f"{run}/ckpt")) == ["epoch1.optimizer.npz", "epoch1.weights.h5", "state.json"]
    b = model()
    Checkpoint(run).restore(b, Checkpoint(run).state())
    for u, v in zip(a.get_weights() + [a.optimizer.iterations.numpy()],
                    b.get_weights() + [b.optimizer.iterations.numpy()], strict=True):
        np.testing.assert_array_equal(u, v)
    again = keras.saving.load_model(f"{run}/model.keras", safe_mode=True)
    np.testing.assert_array_equal(again.predict(x, verbose=0), a.predict(x, verbose=0))
    names = [f.path for f in mlflow.MlflowClient().list_artifacts(r.info.run_id)]
    assert "model.keras" in names


def test_evaluate_reads_and_writes_urls(tiny_embedder, tiny_crops, monkeypatch, tmp_path):
    import json

    from pipeline.validation import EvalConfig, evaluate

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    emb, crops = to_ram(tiny_embedder), to_ram(tiny_crops)
    result = evaluate(EvalConfig(embedder=emb, records=crops, out=f"{emb}/evaluation"), progress=False)
    assert json.loads(ram_bytes(f"{emb}/threshold.json"))["threshold"] == result["threshold"]
    assert b"<html" in ram_bytes(f"{emb}/evaluation/report.html").lower()


def test_enroll_grows_a_catalog_at_a_url(tiny_embedder, tiny_data, tmp_path):
    import pandas as pd

    from pipeline.catalog import load_npz
    from pipeline.enrolment import enroll

    labels = pd.read_csv(tiny_data / "train.csv").head(10)[["image", "individual_id", "species"]]
    labels.to_csv(tmp_path / "labels.csv", index=False)
    photos = to_ram(tiny_data / "train_images")
    enroll(str(tiny_embedder), str(tmp_path / "cat.npz"), photos, str(tmp_path / "labels.csv"), progress=False)
    url = f"ram://t{next(_N)}/catalogs/cat.npz"
    enroll(to_ram(tiny_embedder), url, photos, str(tmp_path / "labels.csv"), progress=False)
    local, remote = load_npz(str(tmp_path / "cat.npz")), load_npz(url)
    np.testing.assert_array_equal(local.embeddings, remote.embeddings)
    assert list(remote.filenames) == list(local.filenames) and len(remote.filenames) == 10
