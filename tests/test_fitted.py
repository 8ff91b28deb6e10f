"""The descriptors fitted without a network (``stage2_embed/pixels.py --descriptor fitted``): the
mix of pixels and HOG edges alone, chosen on the records' validation fold, saved as an embedder run
folder that evaluation and identification take like any other."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stage2_embed.fusion import fused_model


def test_without_a_learned_part_the_cosine_is_the_descriptors_mix():
    x = np.random.default_rng(2).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
    p = np.asarray(fused_model(None, 1.0, 0.0, image_size=32)(x))
    h = np.asarray(fused_model(None, 0.0, 1.0, image_size=32)(x))
    f = np.asarray(fused_model(None, 0.3, 0.7, image_size=32)(x))
    np.testing.assert_allclose(f @ f.T, 0.3 * (p @ p.T) + 0.7 * (h @ h.T), atol=1e-5)
    assert p.shape == (5, 256) and h.shape == (5, 324) and f.shape == (5, 256 + 324)
    with pytest.raises(ValueError, match="must sum to 1; got pixels 0.3, hog 0.2"):
        fused_model(None, 0.3, 0.2, image_size=32)


def test_a_fitted_embedder_validates_above_each_descriptor_and_evaluates_like_any(tiny_crops, tmp_path, monkeypatch):
    from pipeline.validation import EvalConfig, evaluate
    from stage2_embed.embedder import load_embedder
    from stage2_embed.pixel_embedder import write_fitted_embedder

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    out = write_fitted_embedder(str(tmp_path / "fitted"), str(tiny_crops), 64, val_fold=1)
    model, cfg = load_embedder(out)  # a stock Keras model: loads with safe_mode=True
    fig = json.loads((tmp_path / "fitted" / "fusion.json").read_text())
    assert cfg["kind"] == "fitted" and cfg["val_fold"] == 1 and cfg["crop_margin"] is not None
    assert round(cfg["pixel_weight"] + cfg["hog_weight"], 6) == 1.0 and "val_map5_embedder" not in fig
    # fewer than 100 validation queries: no projection, and the mix is at least each raw part alone
    assert not cfg["pixel_metric"] and not cfg["hog_metric"]
    assert fig["val_map5_fused"] >= max(fig["val_map5_pixels"], fig["val_map5_hog"])
    assert model.output_shape[-1] == cfg["embedding_dim"] == 256 * (cfg["pixel_weight"] > 0) + 324 * (
        cfg["hog_weight"] > 0)
    r = evaluate(EvalConfig(embedder=out, records=str(tiny_crops), rerank="none"), progress=False)
    assert r["fold"] == 1  # the fold it was fitted for, read from its config
    assert json.loads((tmp_path / "fitted" / "threshold.json").read_text())["fold"] == 1


def test_fitted_needs_records_and_says_so(tmp_path):
    from stage2_embed.pixel_embedder import PixelConfig, write_pixel_embedder

    with pytest.raises(ValueError, match="--descriptor fitted needs --records CROPS"):
        PixelConfig(out=str(tmp_path), descriptor="fitted")
    with pytest.raises(ValueError, match="--records only goes with it"):
        PixelConfig(out=str(tmp_path), records="r")
    with pytest.raises(ValueError, match="needs crop records"):
        write_pixel_embedder(str(tmp_path), 32, descriptor="fitted")


def test_the_command_fits_prints_its_figures_and_refuses_a_fit_without_records(tiny_crops, tmp_path):
    import os

    from tests.conftest import run_script

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    r = run_script(["stage2_embed/pixels.py", "--out", str(tmp_path / "bad"), "--descriptor", "fitted"], env=env)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --descriptor fitted needs --records CROPS, and --records only goes with it"]
    r = run_script(["stage2_embed/pixels.py", "--out", str(tmp_path / "ok"), "--descriptor", "fitted",
                    "--records", str(tiny_crops), "--image-size", "64"], env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["run_dir"] == str(tmp_path / "ok") and out["val_map5_fused"] >= out["val_map5_hog"]
