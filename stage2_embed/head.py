"""The trained ArcFace head's class centres, kept beside the embedder as ``head.npz``.

Per individual the (sub-center) ArcFace layer holds ``k`` centres that every training photo of it
pulled on; ``pipeline/blend.py`` compares queries with them. Only individuals the run trained on
are kept (an untrained class's centre is its random start): those with photos in the training
folds, holdouts out (``tfrecords.reader.train_counts``). Written when training finishes, or on
first use for older run folders.

    head = load_head(run_dir)           # None for a softmax head or a folder without a training model
    cos = head.cosines(query_emb, candidate_ids)
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

FILE = "head.npz"


@dataclass(frozen=True)
class Head:
    """Unit-norm class centres [C, k, dim] of the individuals ``ids`` (one row per individual)."""
    centres: np.ndarray
    ids: np.ndarray

    def cosines(self, query_emb: np.ndarray, cand_ids: np.ndarray) -> np.ndarray:
        """[Q, K] cosine of each query to its candidates' nearest centre; NaN for an individual the
        head does not know. ``query_emb``: the stored (maybe pixel-fused) embeddings, whose first
        ``dim`` values are the embedder's (``stage2_embed.fusion``)."""
        import pandas as pd

        n, k, dim = self.centres.shape
        e = query_emb[:, :dim] / np.maximum(np.linalg.norm(query_emb[:, :dim], axis=1, keepdims=True), 1e-12)
        col = pd.Index(self.ids).get_indexer(np.asarray(cand_ids, dtype=object).ravel()).reshape(cand_ids.shape)
        out = np.full(cand_ids.shape, np.nan, np.float32)
        flat = self.centres.reshape(n * k, dim).T
        for s in range(0, len(e), 1024):  # [chunk, classes] at a time: a Kaggle-size head is 15k classes
            cos = (e[s:s + 1024] @ flat).reshape(-1, n, k).max(axis=2)
            c = col[s:s + 1024]
            out[s:s + 1024] = np.where(c >= 0, np.take_along_axis(cos, np.maximum(c, 0), 1), np.nan)
        return out


def trained_individuals(records: str, val_fold: int | None) -> np.ndarray:
    """The individuals with training photos when ``val_fold`` is held out (None: every fold)."""
    from tfrecords.reader import read_manifest, train_counts

    manifest = read_manifest(records)
    return np.asarray(manifest["individuals"], dtype=object)[train_counts(manifest, val_fold) > 0]


def centres_of(train_model, individuals_all: list[str], keep) -> Head | None:
    """The head of ``train_model`` (its ``individual`` layer; classes in ``individuals_all`` order)
    for the individuals in ``keep``; None for a softmax head."""
    import keras

    from stage2_embed.layers import ArcMarginLogits

    layer = train_model.get_layer("individual")
    if not isinstance(layer, ArcMarginLogits):
        return None
    w = keras.ops.convert_to_numpy(layer.centres)  # [dim, C * k]
    w = w / np.maximum(np.linalg.norm(w, axis=0, keepdims=True), 1e-12)
    centres = w.T.reshape(layer.num_classes, layer.k, -1).astype(np.float32)
    ids = np.asarray(individuals_all, dtype=object)
    rows = np.isin(ids, np.asarray(keep, dtype=object))
    return Head(centres[rows], ids[rows])


def save_head(run_dir: str, head: Head | None) -> None:
    """``RUN_DIR/head.npz`` (an empty one for a softmax head: nothing to blend, nothing to redo)."""
    from runtime import atomic
    from runtime.storage import join

    buf = io.BytesIO()
    if head is None:
        np.savez(buf, centres=np.zeros((0, 1, 1), np.float32), ids=np.zeros(0, str))
    else:
        np.savez(buf, centres=head.centres, ids=head.ids.astype(str))
    atomic.write_bytes(join(run_dir, FILE), buf.getvalue())


def load_head(run_dir: str) -> Head | None:
    """``RUN_DIR/head.npz``; a run folder from before it existed gets it from ``train_model.keras``
    first. None for a softmax head or a folder without a training model (e.g. the pixel embedder)."""
    from runtime.storage import exists, join, read_bytes

    path = join(run_dir, FILE)
    if not exists(path):
        if not (exists(join(run_dir, "train_model.keras")) and exists(join(run_dir, "train_config.json"))):
            return None
        save_head(run_dir, _from_run(run_dir))
    with np.load(io.BytesIO(read_bytes(path))) as z:
        return Head(z["centres"], z["ids"].astype(object)) if len(z["ids"]) else None


def _from_run(run_dir: str) -> Head | None:
    import keras

    from runtime.storage import join, local_copy, read_bytes
    from stage2_embed import layers  # noqa: F401 - registers the custom layers
    from tfrecords.reader import read_manifest

    cfg = json.loads(read_bytes(join(run_dir, "train_config.json")))
    with local_copy(join(run_dir, "train_model.keras")) as local:
        model = keras.saving.load_model(local, safe_mode=True, compile=False)
    val_fold = None if cfg.get("all_folds") else cfg["val_fold"]
    return centres_of(model, read_manifest(cfg["records"])["individuals"],
                      trained_individuals(cfg["records"], val_fold))
