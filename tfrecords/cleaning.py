"""Row-level cleaning of the Kaggle CSVs: species names, safe file names, duplicates, conflicts.

Every row that is dropped comes back as a ``Rejection`` (``split,image,reason``) for ``rejected.csv``;
no good row is ever dropped because of a bad one.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

import pandas as pd

# The one visible table of species-name fixes. The real train.csv has 30 species strings; these
# fixes (the winners' and the forum's) leave 26 species.
SPECIES_FIXES: dict[str, str] = {
    "kiler_whale": "killer_whale",
    "bottlenose_dolpin": "bottlenose_dolphin",
    "globis": "short_finned_pilot_whale",
    "pilot_whale": "short_finned_pilot_whale",
}

_SPECIES_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class Rejection:
    split: str
    image: str
    reason: str


REJECTED_COLUMNS = ("split", "image", "reason")


def rejections_frame(rejections: list[Rejection]) -> pd.DataFrame:
    rows = [(r.split, r.image, r.reason) for r in rejections]
    return pd.DataFrame(rows, columns=list(REJECTED_COLUMNS))


def normalize_species(name: str) -> str:
    """Lower-case, spaces and hyphens to underscores, then the ``SPECIES_FIXES`` table."""
    s = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    return SPECIES_FIXES.get(s, s)


def unsafe_name_reason(name: str) -> str | None:
    """Why an image name could escape its folder or is unusable, or None if it is safe."""
    if not name:
        return "empty image name"
    if "\x00" in name or "\\" in name:
        return "image name has a NUL or backslash"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "://" in name:
        return "absolute image path"
    norm = posixpath.normpath(name)
    if norm.startswith("..") or ".." in name.split("/"):
        return "image name escapes the image folder (..)"
    if norm.startswith("."):
        return "hidden or empty image name"
    return None


def clean_train_rows(df: pd.DataFrame, present: set[str]) -> tuple[pd.DataFrame, list[Rejection]]:
    """Validate train.csv rows: returns the kept rows (normalised species) and the rejections.

    Rules, in order: safe image name; species and individual_id present and well-formed; the file
    exists in ``present``; exact duplicate rows kept once; an image listed with different labels is
    ambiguous, so all its rows go; an individual seen under two species keeps the rows of its
    majority species (a tie drops all: two species are never one individual).
    """
    rej: list[Rejection] = []
    keep = []
    for row in df.itertuples(index=False):
        image, species_raw, ind = row.image, row.species, row.individual_id
        reason = unsafe_name_reason(image)
        species = normalize_species(species_raw) if species_raw else ""
        if reason is None and not species:
            reason = "missing species"
        elif reason is None and not _SPECIES_RE.match(species):
            reason = f"malformed species {species_raw!r}"
        if reason is None and not ind:
            reason = "missing individual_id"
        elif reason is None and not _ID_RE.match(ind):
            reason = f"malformed individual_id {ind!r}"
        if reason is None and image not in present:
            reason = "image file missing from train_images"
        if reason:
            rej.append(Rejection("train", image, reason))
        else:
            keep.append((image, species, ind))
    kept = pd.DataFrame(keep, columns=["image", "species", "individual_id"])

    dup = kept.duplicated(keep="first")
    rej += [Rejection("train", im, "duplicate row (kept once)") for im in kept.loc[dup, "image"]]
    kept = kept.loc[~dup]

    multi = kept.groupby("image")["image"].transform("size") > 1
    rej += [Rejection("train", im, "image listed with conflicting labels") for im in kept.loc[multi, "image"]]
    kept = kept.loc[~multi]

    counts = kept.groupby(["individual_id", "species"]).size().rename("n").reset_index()
    bad_rows = pd.Series(False, index=kept.index)
    for ind, grp in counts.groupby("individual_id"):
        if len(grp) < 2:
            continue
        top = grp["n"].max()
        winners = grp.loc[grp["n"] == top, "species"].tolist()
        keep_species = winners[0] if len(winners) == 1 else None
        sel = (kept["individual_id"] == ind) & (kept["species"] != keep_species)
        bad_rows |= sel
    rej += [
        Rejection("train", im, f"individual {ind} also appears under another species")
        for im, ind in kept.loc[bad_rows, ["image", "individual_id"]].itertuples(index=False)
    ]
    kept = kept.loc[~bad_rows].sort_values("image").reset_index(drop=True)
    return kept, rej


def clean_test_names(names: list[str], listed: list[str] | None) -> tuple[list[str], list[Rejection]]:
    """Test images are the files in test_images/; names in sample_submission without a file are
    reported (their rows would be missing from a submission), unsafe names rejected."""
    rej = []
    present = set(names)
    keep = []
    for n in names:
        reason = unsafe_name_reason(n)
        if reason:
            rej.append(Rejection("test", n, reason))
        else:
            keep.append(n)
    for n in listed or []:
        if n not in present:
            rej.append(Rejection("test", n, "listed in sample_submission.csv but missing from test_images"))
    return sorted(keep), rej
