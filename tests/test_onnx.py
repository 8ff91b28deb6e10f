"""ONNX on CPU: ``pipeline/export.py`` writes both models beside their ``.keras`` files, and
``infer --runtime onnx`` gives the same submission as TensorFlow; a stale or missing export is a
clear error. (Speed: ``bench/infer.py``'s ``onnx_speedup``.)"""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
from conftest import run_script
from test_pipeline import untrained_detector

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def off_photo_boxes_kept():
    """An untrained detector's boxes run far past the photo: kept, so that its boxes are compared."""
    import stage1_detect.model as detector_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(detector_model, "MIN_INSIDE", 0.0)
        yield


@pytest.fixture(scope="module")
def exported(off_photo_boxes_kept, tiny_embedder, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    emb = root / "emb"
    shutil.copytree(tiny_embedder, emb)
    det = untrained_detector(root / "det")
    from pipeline.export import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # in this process: TensorFlow is loaded once
        assert main(["--detector", det, "--embedder", str(emb), "--quiet"]) == 0
    res = json.loads(out.getvalue().strip().splitlines()[-1])
    assert res["embedder_max_diff"] < 1e-4 and res["detector_max_diff"] < 1e-3
    return root, det, emb


def test_onnx_and_tensorflow_give_the_same_submission(off_photo_boxes_kept, exported, tiny_crops, tiny_data):
    from pipeline.identify import InferConfig, identify, load
    from pipeline.photos import chunks, inputs

    root, det, emb = exported
    out = {}
    for rt in ("tf", "onnx"):
        # min_score 0: the untrained detector's low-confidence boxes are used, so the boxes count too
        cfg = InferConfig(detector=det, embedder=str(emb), catalog=str(tiny_crops), out=str(root / rt),
                          images=str(tiny_data / "test_images"), runtime=rt, min_score=0.0, threshold=0.5)
        out[rt] = identify(load(cfg), chunks(inputs(cfg, {}), 7), cfg)  # 3 chunks: batching is covered
    (_, e_tf, s_tf, b_tf, _, p_tf, _), (_, e_onnx, s_onnx, b_onnx, _, p_onnx, _) = out["tf"], out["onnx"]
    assert len(p_tf) == 20 and p_tf == p_onnx
    assert np.max(1 - np.sum(e_tf * e_onnx, axis=1)) < 1e-5
    assert (s_tf > 0).all() and np.abs(s_tf - s_onnx).max() < 1e-4 and np.abs(b_tf - b_onnx).max() < 1e-3


def test_a_stale_or_missing_export_is_a_one_line_error(exported, tiny_crops, tiny_data, tmp_path):
    root, det, emb = exported
    stale = tmp_path / "emb"
    shutil.copytree(emb, stale)
    (stale / "embedder.keras").write_bytes((stale / "embedder.keras").read_bytes() + b"\0")  # trained again
    args = ["pipeline/infer.py", "--detector", "none", "--catalog", str(tiny_crops), "--images",
            str(tiny_data / "test_images"), "--out", str(tmp_path / "out"), "--runtime", "onnx"]
    r = run_script([*args, "--embedder", str(stale)])
    assert r.returncode == 2 and "was exported from another" in r.stderr.strip().splitlines()[-1]
    (stale / "embedder.onnx").unlink()
    r = run_script([*args, "--embedder", str(stale)])
    assert r.returncode == 2 and "embedder.onnx not found: export the run first" in r.stderr.strip().splitlines()[-1]


def test_the_fused_embedders_descriptors_export_to_onnx(tmp_path):
    """The pixel and HOG parts of a fused embedder are plain ops (no arctangent, no area resize):
    tf2onnx converts them and ONNX Runtime computes the same descriptors."""
    import keras
    import tensorflow as tf

    from runtime.onnx import Session, export
    from stage2_embed.forward import forward_fn
    from stage2_embed.fusion import fused_model

    image = keras.Input((48, 48, 3))
    embed = keras.Model(image, keras.layers.UnitNormalization()(keras.layers.Dense(8)(keras.layers.Flatten()(image))))
    model = fused_model(embed, 0.3, 0.4)
    export(tf.function(forward_fn(model)), [tf.TensorSpec((None, 48, 48, 3), tf.float32)], str(tmp_path / "f.onnx"))
    x = np.random.default_rng(6).uniform(0, 255, (3, 48, 48, 3)).astype("float32")
    np.testing.assert_allclose(Session(str(tmp_path / "f.onnx"))(x), np.asarray(model(x)), atol=1e-4)
