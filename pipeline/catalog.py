"""The catalog: embeddings of labelled photos, searched by ``infer`` and grown by ``enroll``.

On disk it is an ``.npz`` of plain arrays (read with ``allow_pickle=False``): ``embeddings`` [N, D]
float32 (L2-normalised), ``filenames``, ``individual_ids``, ``species``, plus ``embedder`` (the
run folder's embedder config as JSON, so a catalog is never searched with another model's
embeddings). A catalog can also be given as crop records: they are embedded on the fly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

REQUIRED = ("embeddings", "filenames", "individual_ids", "species")


@dataclass(frozen=True)
class Catalog:
    embeddings: np.ndarray
    filenames: np.ndarray
    individual_ids: np.ndarray
    species: np.ndarray
    embedder: str = ""  # the embedder config (JSON) the embeddings came from

    def __len__(self) -> int:
        return len(self.filenames)

    def add(self, other: Catalog) -> Catalog:
        """This catalog with ``other``'s rows appended (rows with a filename already present replace it)."""
        if len(self) and other.embeddings.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"embeddings of dimension {other.embeddings.shape[1]} cannot join a catalog of "
                             f"dimension {self.embeddings.shape[1]}")
        keep = ~np.isin(self.filenames, other.filenames)
        return Catalog(*(np.concatenate([getattr(self, k)[keep], getattr(other, k)]) for k in REQUIRED),
                       embedder=self.embedder or other.embedder)


def same_embedder(a: str, b: str) -> bool:
    """Two embedder configs (JSON) describe the same model shape (the weights are not compared)."""
    return not a or not b or json.loads(a) == json.loads(b)


def load_npz(path: str) -> Catalog:
    from tfrecords.layout import exists, local_copy

    if not exists(path):
        raise FileNotFoundError(f"{path}: no such catalog (an .npz from stage2_embed/embed.py or pipeline/enroll.py)")
    try:
        with local_copy(path) as local, np.load(local, allow_pickle=False) as z:
            missing = [k for k in REQUIRED if k not in z.files]
            if missing:
                raise ValueError(f"{path} is not a catalog: it lacks {', '.join(missing)}")
            arrays = {k: z[k] for k in REQUIRED}
            embedder = str(z["embedder"]) if "embedder" in z.files else ""
    except (OSError, ValueError) as e:
        if "is not a catalog" in str(e):
            raise
        raise ValueError(f"{path} is not a readable .npz catalog ({e})") from None
    return Catalog(arrays["embeddings"].astype(np.float32), *(arrays[k].astype(str) for k in REQUIRED[1:]),
                   embedder=embedder)


def save_npz(catalog: Catalog, path: str) -> None:
    """Written atomically: a reader sees the old catalog or the new one, never half of one."""
    from stage2_embed.embed import save_npz as _save

    _save(path, {**{k: getattr(catalog, k) for k in REQUIRED}, "embedder": np.array(catalog.embedder)})


def from_records(model, embedder_cfg: dict, records: str, exclude_folds: tuple[int, ...] = (),
                 include_holdout: bool = True) -> tuple[Catalog, dict[str, np.ndarray]]:
    """Embed the train split of crop records: (catalog of the kept rows, every row's arrays)."""
    from stage2_embed.embed import embed_records

    arr = embed_records(model, embedder_cfg["image_size"], records, ("train",))
    keep = ~np.isin(arr["folds"], list(exclude_folds))
    if not include_holdout:
        keep &= arr["holdout"] == 0
    return (Catalog(arr["embeddings"][keep], arr["filenames"][keep], arr["individual_ids"][keep],
                    arr["species"][keep], json.dumps(embedder_cfg, sort_keys=True)), arr)


def load(path: str, model, embedder_cfg: dict) -> Catalog:
    """A catalog from an ``.npz`` or from crop records (a folder with a manifest.json)."""
    cfg_json = json.dumps(embedder_cfg, sort_keys=True)
    from tfrecords.layout import exists, isdir, join

    if isdir(path):
        if not exists(join(path, "manifest.json")):
            raise FileNotFoundError(f"{path} is a folder without manifest.json: give crop records or an .npz catalog")
        return from_records(model, embedder_cfg, path)[0]
    cat = load_npz(path)
    if not same_embedder(cat.embedder, cfg_json):
        raise ValueError(f"{path} was embedded by another embedder: re-export it with this one "
                         "(stage2_embed/embed.py) or pass the embedder it came from")
    return cat
