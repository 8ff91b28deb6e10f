"""Export embeddings of every record of the given splits, batched through tf.data.

    python stage2_embed/embed.py --model RUN_DIR --records R --out emb.npz [--splits train,test] [--crop]

Writes an ``.npz`` (no pickled objects: load with ``allow_pickle=False``) with arrays
``embeddings`` [N, D] float32 (L2-normalised), ``filenames``, ``individual_ids``, ``species``,
``splits``, ``folds``, ``holdout``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np

from tfrecords import cli

KEYS = ("embeddings", "filenames", "individual_ids", "species", "splits", "folds", "holdout")


def load_embedder(run_dir: str):
    """(``RUN_DIR/embedder.keras`` loaded with ``safe_mode=True``, its config dict)."""
    import keras

    from stage2_embed import layers  # noqa: F401 - registers GeM and ArcFace for deserialisation
    from tfrecords.layout import exists, join, read_bytes

    path = join(run_dir, "embedder.keras")
    if not exists(path):
        raise FileNotFoundError(f"{path} not found: is {run_dir} a run folder of stage2_embed/train.py?")
    cfg = json.loads(read_bytes(join(run_dir, "embedder_config.json")))
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
    from tfrecords import atomic

    buf = io.BytesIO()
    np.savez(buf, **{k: (v.astype(str) if v.dtype.kind == "O" else v) for k, v in arrays.items()})
    atomic.write_bytes(path, buf.getvalue())


def export(run_dir: str, records: str, out: str, splits: tuple[str, ...] = ("train", "test"),
           crop: bool = False, batch_size: int = 64) -> dict[str, np.ndarray]:
    model, cfg = load_embedder(run_dir)
    arrays = embed_records(model, cfg["image_size"], records, splits, crop, batch_size)
    save_npz(out, arrays)
    return arrays


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="embedder run folder")
    p.add_argument("--records", required=True, help="crop records (or image records with --crop)")
    p.add_argument("--out", required=True, help="the .npz to write")
    p.add_argument("--splits", default="train,test")
    p.add_argument("--crop", action="store_true", help="records are image records: cut them to their boxes")
    p.add_argument("--batch-size", type=int, default=64)
    cli.add_debug_flag(p)
    return p.parse_args(argv)


def _main(a: argparse.Namespace) -> int:
    arr = export(a.model, a.records, a.out, tuple(s for s in a.splits.split(",") if s), a.crop, a.batch_size)
    print(f"wrote {a.out}: {len(arr['filenames'])} embeddings of dimension {arr['embeddings'].shape[1]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
