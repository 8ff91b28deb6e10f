"""The catalog: embeddings of labelled photos, searched by ``infer`` and grown by ``enroll``.

On disk it is an ``.npz`` of plain arrays (read with ``allow_pickle=False``): ``embeddings`` [N, D]
float32 (L2-normalised), ``filenames``, ``individual_ids``, ``species``, plus ``embedder`` (the
run folder's embedder config as JSON, so a catalog is never searched with another model's
embeddings) and, where known, ``boxes`` (each photo's crop, rel ``ymin xmin ymax xmax``: what the
match review shows) and local features (``local_*``: SIFT keypoints for the re-ranking,
``pipeline.local``). A catalog can also be given as crop records: they are embedded on the fly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from pipeline.local import LocalFeatures, from_arrays, from_list

REQUIRED = ("embeddings", "filenames", "individual_ids", "species")


@dataclass(frozen=True)
class Catalog:
    embeddings: np.ndarray
    filenames: np.ndarray
    individual_ids: np.ndarray
    species: np.ndarray
    embedder: str = ""  # the embedder config (JSON) the embeddings came from
    boxes: np.ndarray | None = None  # [N, 4] crop of each photo; None: unknown (whole photos)
    local: LocalFeatures | None = None  # keypoints of each photo's crop; None: not computed

    def __len__(self) -> int:
        return len(self.filenames)

    def add(self, other: Catalog) -> Catalog:
        """This catalog with ``other``'s rows appended (rows with a filename already present replace it)."""
        if len(self) and other.embeddings.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"embeddings of dimension {other.embeddings.shape[1]} cannot join a catalog of "
                             f"dimension {self.embeddings.shape[1]}")
        keep = ~np.isin(self.filenames, other.filenames)
        boxes = None
        if self.boxes is not None or other.boxes is not None:
            boxes = np.concatenate([self.box_array()[keep], other.box_array()])
        local = None  # kept only where both sides have it: a catalog never holds half of them
        if self.local is not None and other.local is not None:
            local = self.local.take(keep).concat(other.local)
        return Catalog(*(np.concatenate([getattr(self, k)[keep], getattr(other, k)]) for k in REQUIRED),
                       embedder=self.embedder or other.embedder, boxes=boxes, local=local)

    def box_array(self) -> np.ndarray:
        """The crop boxes, whole photos where unknown."""
        if self.boxes is not None:
            return self.boxes.astype(np.float32)
        return np.tile(np.array([0.0, 0.0, 1.0, 1.0], np.float32), (len(self), 1))


def embedder_mismatch(a: str, b: str) -> str | None:
    """Why two embedder configs (JSON) are not the same model, or None: another shape, or the same
    shape with other weights (their ``embedder.keras`` digests differ; a catalog written before the
    digest was recorded is compared by shape alone)."""
    from stage2_embed.embedder import WEIGHTS_KEY

    if not a or not b:
        return None
    da, db = json.loads(a), json.loads(b)
    wa, wb = da.pop(WEIGHTS_KEY, None), db.pop(WEIGHTS_KEY, None)
    if da != db:
        return "another embedder shape"
    if wa and wb and wa != wb:
        return "an embedder of the same shape with other weights (another run)"
    return None


def load_npz(path: str) -> Catalog:
    from runtime.storage import exists, local_copy

    if not exists(path):
        raise FileNotFoundError(f"{path}: no such catalog (an .npz from stage2_embed/embed.py or pipeline/enroll.py)")
    try:
        with local_copy(path) as local, np.load(local, allow_pickle=False) as z:
            missing = [k for k in REQUIRED if k not in z.files]
            if missing:
                raise ValueError(f"{path} is not a catalog: it lacks {', '.join(missing)}")
            arrays = {k: z[k] for k in REQUIRED}
            embedder = str(z["embedder"]) if "embedder" in z.files else ""
            boxes = z["boxes"].astype(np.float32) if "boxes" in z.files else None
            local = from_arrays({k: z[k] for k in z.files if k.startswith("local_")})
    except (OSError, ValueError) as e:
        if "is not a catalog" in str(e):
            raise
        raise ValueError(f"{path} is not a readable .npz catalog ({e})") from None
    return Catalog(arrays["embeddings"].astype(np.float32), *(arrays[k].astype(str) for k in REQUIRED[1:]),
                   embedder=embedder, boxes=boxes, local=local)


def save_npz(catalog: Catalog, path: str) -> None:
    """Written atomically: a reader sees the old catalog or the new one, never half of one."""
    from stage2_embed.embedder import save_npz as _save

    extra = {} if catalog.boxes is None else {"boxes": catalog.boxes.astype(np.float32)}
    extra.update({} if catalog.local is None else catalog.local.arrays())
    _save(path, {**{k: getattr(catalog, k) for k in REQUIRED}, "embedder": np.array(catalog.embedder), **extra})


def from_records(model, embedder_cfg: dict, records: str, exclude_folds: tuple[int, ...] = (),
                 include_holdout: bool = True, local: bool = False) -> tuple[Catalog, dict[str, np.ndarray]]:
    """Embed the train split of crop records: (catalog of the kept rows, every row's arrays; with
    ``local``, every row's local features under ``"local"``)."""
    from stage2_embed.embedder import embed_records

    arr = embed_records(model, embedder_cfg["image_size"], records, ("train",))
    keep = ~np.isin(arr["folds"], list(exclude_folds))
    if not include_holdout:
        keep &= arr["holdout"] == 0
    feats = records_local(records, arr["filenames"]) if local else None
    cat = Catalog(arr["embeddings"][keep], arr["filenames"][keep], arr["individual_ids"][keep],
                  arr["species"][keep], json.dumps(embedder_cfg, sort_keys=True),
                  local=None if feats is None else feats.take(keep))
    return cat, {**arr, "local": feats} if local else arr


def validation_arrays(cat: Catalog, folds: int = 5, holdout: float = 0.1, seed: int = 0) -> dict[str, np.ndarray]:
    """The catalog as the arrays validation takes from crop records (``pipeline.validation``): its
    photos dealt into ``folds`` folds by individual and a ``holdout`` share of its individuals held
    out, as the data stage deals records (``tfrecords.folds``), so that the threshold and the
    re-ranking can be fitted on an enrolled catalog, e.g. for an embedder that never trained."""
    import pandas as pd

    from tfrecords.folds import assign_folds, holdout_individuals

    ids = pd.Series(cat.individual_ids)
    held = sorted(holdout_individuals(ids, holdout, seed))
    return {"embeddings": cat.embeddings, "filenames": cat.filenames, "individual_ids": cat.individual_ids,
            "species": cat.species, "folds": assign_folds(ids, min(folds, len(cat)), seed),
            "holdout": np.isin(cat.individual_ids, held).astype(np.int64), "local": cat.local,
            "boxes": cat.box_array()}


# The last crop folder's local features by filename, under its shards' (path, size, mtime): SIFT is
# most of what validation, export and identification cost on CPU, and one process often describes
# the same crops several times (the demo: export, then the re-ranked baseline's evaluation and
# identification). One folder only: a catalog's features are tens of MB.
_LOCAL_MEMO: dict[tuple, dict[str, tuple[np.ndarray, np.ndarray]]] = {}


def records_local(records: str, filenames) -> LocalFeatures:
    """Local features of the train split's crops, in the order of ``filenames``."""
    from pipeline.local import of_crops
    from tfrecords.reader import parsed_records

    key = _shards_key(records)
    feats = _LOCAL_MEMO.get(key) if key else None
    if feats is None:
        feats = {}
        for e in parsed_records(records, "train"):
            one = of_crops([e["image/encoded"].numpy()])
            feats[e["image/filename"].numpy().decode()] = one.of(0)
        _LOCAL_MEMO.clear()
        if key:
            _LOCAL_MEMO[key] = feats
    return from_list([feats[f] for f in filenames])


def _shards_key(records: str) -> tuple | None:
    """What identifies the train shards' content on a local disk (None for object storage: not kept)."""
    import os

    from runtime.storage import is_url
    from tfrecords.reader import list_shards

    if is_url(records):
        return None
    stats = {s: os.stat(s) for s in list_shards(records, "train")}
    return (os.path.abspath(records), *((s, st.st_size, st.st_mtime_ns) for s, st in stats.items()))


def export(embedder: str, records: str, path: str) -> Catalog:
    """Embed crop records' train split with the run folder's embedder into a catalog ``.npz`` (with
    each photo's crop box): the file that ``enroll`` and the match review grow."""
    from dataclasses import replace

    from stage2_embed.embedder import load_embedder
    from tfrecords.reader import parsed_records

    model, cfg = load_embedder(embedder)
    cat = from_records(model, cfg, records, local=True)[0]
    box_of = {e["image/filename"].numpy().decode(): e["crop/box"].numpy() for e in parsed_records(records, "train")}
    cat = replace(cat, boxes=np.array([box_of[f] for f in cat.filenames], np.float32).reshape(-1, 4))
    save_npz(cat, path)
    return cat


def load(path: str, model, embedder_cfg: dict, local: bool = False) -> Catalog:
    """A catalog from an ``.npz`` or from crop records (a folder with a manifest.json; with
    ``local``, their local features are computed too)."""
    cfg_json = json.dumps(embedder_cfg, sort_keys=True)
    from runtime.storage import exists, isdir, join

    if isdir(path):
        if not exists(join(path, "manifest.json")):
            raise FileNotFoundError(f"{path} is a folder without manifest.json: give crop records or an .npz catalog")
        return from_records(model, embedder_cfg, path, local=local)[0]
    cat = load_npz(path)
    why = embedder_mismatch(cat.embedder, cfg_json)
    if why:
        raise ValueError(f"{path} was embedded by {why}: re-embed it with this one "
                         "(pipeline/enroll.py, or crop records as the catalog) or pass the embedder it came from")
    return cat


def relabel(path: str, mapping: dict[str, str]) -> int:
    """Rename individuals in a catalog ``.npz`` (``mapping``: old id -> new id, e.g. a merge of two
    ids filed for one animal), atomically under the folder's lock; returns the rows changed."""
    from dataclasses import replace

    from runtime.atomic import folder_lock
    from runtime.storage import dirname

    with folder_lock(dirname(path)):
        cat = load_npz(path)
        ids = np.array([mapping.get(i, i) for i in cat.individual_ids], dtype=str)
        changed = int((ids != cat.individual_ids).sum())
        if changed:
            save_npz(replace(cat, individual_ids=ids), path)
    return changed
