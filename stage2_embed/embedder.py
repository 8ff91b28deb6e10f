"""Loading a trained embedder run folder and embedding records with it (the library behind
``stage2_embed/embed.py``).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

from runtime.flags import option

KEYS = ("embeddings", "filenames", "individual_ids", "species", "splits", "folds", "holdout")
# The key ``load_embedder`` adds to a run's config: a digest of its ``embedder.keras``. Two runs of one
# shape (the demo's cross-validated embedder and its final one fine-tuned from it) share a config,
# so a catalog that recorded only the config could be searched with the other run's embeddings
# without a word; with the digest, ``pipeline.catalog`` refuses it.
WEIGHTS_KEY = "weights_sha256"


@dataclass(frozen=True)
class EmbedConfig:
    """``stage2_embed/embed.py``'s options."""

    embedder: str = option(help="embedder run folder")
    records: str = option(help="crop records (or image records with --crop)")
    npz: str = option(help="the .npz file to write")
    split: str = option("train,test", help="the splits to embed, comma-separated")
    crop: bool = option(False, help="the records are image records: cut them to their boxes first")
    batch_size: int = option(64, help="images per embedder batch", lo=1)


def load_embedder(run_dir: str, runtime: str = "tf"):
    """(``RUN_DIR/embedder.keras`` loaded with ``safe_mode=True``, its config dict with the file's
    digest under ``WEIGHTS_KEY``); with ``runtime="onnx"``, its export ``embedder.onnx`` as a
    ``runtime.onnx.Session`` instead (the digest still the ``.keras`` file's: the same weights)."""
    import hashlib

    from runtime.storage import exists, join, read_bytes

    path = join(run_dir, "embedder.keras")
    if not exists(path):
        raise FileNotFoundError(f"{path} not found: is {run_dir} a run folder of stage2_embed/train.py?")
    cfg = json.loads(read_bytes(join(run_dir, "embedder_config.json")))
    cfg[WEIGHTS_KEY] = hashlib.sha256(read_bytes(path)).hexdigest()[:16]
    if runtime == "onnx":
        from runtime.onnx import Session

        return Session(join(run_dir, "embedder.onnx"), source=path), cfg
    import keras

    from stage2_embed import layers  # noqa: F401 - registers GeM and ArcFace for deserialisation

    return keras.saving.load_model(path, safe_mode=True), cfg


def embed_records(model, image_size: int, records: str, splits: tuple[str, ...] = ("train", "test"),
                  crop: bool = False, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Embeddings and labels of every record of ``splits``, as the arrays of ``KEYS``."""
    from stage2_embed.data import image_dataset
    from stage2_embed.forward import embed_all

    parts = []
    for split in splits:
        emb, ids, species, names, folds, holdout = embed_all(
            model, image_dataset(records, split, image_size, batch_size, crop=crop))
        parts.append((emb, names, ids, species, np.full(len(names), split), folds, holdout))
    arrays = {k: np.concatenate([p[i] for p in parts]) for i, k in enumerate(KEYS)}
    return {k: (v.astype(np.float32) if k == "embeddings" else v.astype(str) if v.dtype.kind in "OUS" else v)
            for k, v in arrays.items()}


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Atomic ``.npz`` of plain arrays (strings as unicode, never objects: no pickle needed to read)."""
    from runtime import atomic

    buf = io.BytesIO()
    np.savez(buf, **{k: (v.astype(str) if v.dtype.kind == "O" else v) for k, v in arrays.items()})
    atomic.write_bytes(path, buf.getvalue())


def export(run_dir: str, records: str, out: str, splits: tuple[str, ...] = ("train", "test"),
           crop: bool = False, batch_size: int = 64) -> dict[str, np.ndarray]:
    model, cfg = load_embedder(run_dir)
    arrays = embed_records(model, cfg["image_size"], records, splits, crop, batch_size)
    save_npz(out, arrays)
    return arrays
