"""Export embeddings of every record of the given splits, batched through tf.data.

    python stage2_embed/embed.py --embedder RUN_DIR --records R --npz emb.npz [--split train,test] [--crop]

Writes an ``.npz`` (no pickled objects: load with ``allow_pickle=False``) with arrays
``embeddings`` [N, D] float32 (L2-normalised), ``filenames``, ``individual_ids``, ``species``,
``splits``, ``folds``, ``holdout``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])


from runtime import cli
from stage2_embed.embedder import EmbedConfig, export


def _main(a: argparse.Namespace) -> None:
    arr = export(a.embedder, a.records, a.npz, tuple(s for s in a.split.split(",") if s), a.crop, a.batch_size)
    print(f"wrote {a.npz}: {len(arr['filenames'])} embeddings of dimension {arr['embeddings'].shape[1]}")


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, cli.parse_config(__doc__, EmbedConfig, argv))


if __name__ == "__main__":
    sys.exit(main())
