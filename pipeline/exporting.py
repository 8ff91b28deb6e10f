"""Both models of a pipeline to ONNX, beside their ``.keras`` files (the library behind
``pipeline/export.py``); ``infer.py --runtime onnx`` runs them with ONNX Runtime.

Each export is checked on random input before it is kept: the largest difference between the
TensorFlow and the ONNX outputs is returned (and an export that differs by more than ``TOLERANCE``
is refused, never written).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.flags import option

TOLERANCE = 1e-3  # float32 rounding of two runtimes is ~1e-6; a wrong conversion is > 0.01


@dataclass(frozen=True)
class ExportConfig:
    """``pipeline/export.py``'s options."""

    detector: str = option("none", help="detector run folder to export, or none")
    embedder: str = option("none", help="embedder run folder to export, or none")
    batch_size: int = option(4, help="random images the export is checked on", lo=1)


def export_embedder(run_dir: str, check: int = 4) -> dict:
    """``RUN_DIR/embedder.onnx``: the embedder's forward pass (``forward_fn``), [B, S, S, 3] float
    0..255 -> L2-normalised embeddings [B, D]."""
    import tensorflow as tf

    from runtime.storage import join
    from stage2_embed.embedder import load_embedder
    from stage2_embed.forward import forward_fn

    model, cfg = load_embedder(run_dir)
    s = cfg["image_size"]
    path = join(run_dir, "embedder.onnx")
    x = np.random.default_rng(0).uniform(0, 255, (check, s, s, 3)).astype(np.float32)
    fn = forward_fn(model)
    diff = _export_checked(fn, [tf.TensorSpec((None, s, s, 3), tf.float32, name="image")], path,
                           join(run_dir, "embedder.keras"), x)
    return {"embedder_onnx": path, "embedder_max_diff": diff}


def export_detector(run_dir: str, check: int = 4) -> dict:
    """``RUN_DIR/detector.onnx``: the detector's most confident box per image (``top_box_fn``),
    [B, S, S, 3] float 0..255 -> (boxes xyxy px, confidence, class)."""
    from runtime.storage import join
    from stage1_detect.model import load_detector, top_box_fn

    model, cfg = load_detector(run_dir)
    s = cfg.image_size
    path = join(run_dir, "detector.onnx")
    x = np.random.default_rng(0).uniform(0, 255, (check, s, s, 3)).astype(np.float32)
    # the class index is compared too: a box of another class is a different detection
    diff = _export_checked(top_box_fn(model, s), [], path, join(run_dir, "detector.keras"), x)
    return {"detector_onnx": path, "detector_max_diff": diff}


def _flat(out) -> list[np.ndarray]:
    return [np.asarray(o, np.float32) for o in (out if isinstance(out, tuple | list) else (out,))]


def _export_checked(fn, specs, path: str, source: str, x: np.ndarray) -> float:
    """Export to a local scratch file, compare on ``x``, then publish; the largest absolute
    difference between the two runtimes' outputs."""
    import os

    from runtime import atomic, onnx

    scratch = atomic.scratch(path)
    try:
        onnx.export(fn, specs, scratch, source=source)
        pairs = zip(_flat(fn(x)), _flat(onnx.Session(scratch)(x)), strict=True)
        diff = max(float(np.max(np.abs(w - g), initial=0.0)) for w, g in pairs)
        if diff > TOLERANCE:
            raise ValueError(f"{path}: the ONNX export differs from TensorFlow by {diff:.3g} (> {TOLERANCE}); "
                             "not written")
        atomic.publish(scratch, path)
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)
    return diff


def export(cfg: ExportConfig) -> dict:
    """Export the run folders given (at least one)."""
    if cfg.detector == "none" and cfg.embedder == "none":
        raise ValueError("nothing to export: give --detector DIR and/or --embedder DIR")
    out: dict = {}
    if cfg.embedder != "none":
        out |= export_embedder(cfg.embedder, cfg.batch_size)
    if cfg.detector != "none":
        out |= export_detector(cfg.detector, cfg.batch_size)
    return out
