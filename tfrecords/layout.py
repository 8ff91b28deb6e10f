"""The Kaggle "Happywhale" file layout, and paths that may be local or ``tf.io.gfile`` URLs.

    DATA/train.csv              image,species,individual_id
    DATA/train_images/*.jpg
    DATA/test_images/*.jpg
    DATA/sample_submission.csv  image,predictions           (optional)
    DATA/boxes.csv              image,x_min,y_min,x_max,y_max,label   (optional, ours)
    DATA/test_truth.csv         image,species,individual_id (synthetic data only)

TensorFlow is imported lazily (``gfile()``) so that image workers and the synthesizer stay light.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
from collections.abc import Iterator

import pandas as pd

TRAIN_CSV = "train.csv"
TRAIN_DIR = "train_images"
TEST_DIR = "test_images"
SAMPLE_SUBMISSION = "sample_submission.csv"
BOXES_CSV = "boxes.csv"
TEST_TRUTH_CSV = "test_truth.csv"
NEW_INDIVIDUAL = "new_individual"

TRAIN_COLUMNS = ("image", "species", "individual_id")
BOX_COLUMNS = ("image", "x_min", "y_min", "x_max", "y_max", "label")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class DataError(ValueError):
    """A problem with an input file as a whole (not one bad row): reported as one line, exit 2."""


def is_url(path: str) -> bool:
    return "://" in str(path)


def gfile():
    """``tf.io.gfile``, imported on first use."""
    import tensorflow as tf

    return tf.io.gfile


def join(*parts: str) -> str:
    return posixpath.join(*parts) if is_url(parts[0]) else os.path.join(*parts)


def exists(path: str) -> bool:
    return gfile().exists(path) if is_url(path) else os.path.exists(path)


def read_bytes(path: str) -> bytes:
    if is_url(path):
        with gfile().GFile(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def makedirs(path: str) -> None:
    if is_url(path):
        gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def isdir(path: str) -> bool:
    return gfile().isdir(path) if is_url(path) else os.path.isdir(path)


def dirname(path: str) -> str:
    """The folder holding ``path`` (absolute when local)."""
    return posixpath.dirname(path) if is_url(path) else os.path.dirname(os.path.abspath(path))


def remove(path: str) -> None:
    gfile().remove(path) if is_url(path) else os.remove(path)


def rmtree(path: str) -> None:
    """Remove a folder and its contents; nothing when absent."""
    if is_url(path):
        if gfile().exists(path):
            gfile().rmtree(path)
    else:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def listdir(path: str) -> list[str]:
    names = gfile().listdir(path) if is_url(path) else os.listdir(path)
    return sorted(n.rstrip("/") for n in names)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local path holding ``path``'s bytes (``path`` itself when local)."""
    if not is_url(path):
        yield path
        return
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        local = os.path.join(d, path.rsplit("/", 1)[-1])
        with open(local, "wb") as f:
            f.write(read_bytes(path))
        yield local


def list_images(folder: str) -> list[str]:
    """Image file names directly inside ``folder`` (sorted); [] when the folder is absent."""
    if not exists(folder):
        return []
    return [n for n in listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")]


def read_csv(path: str, required: tuple[str, ...], what: str) -> pd.DataFrame:
    """Read a CSV as strings, checking its columns; a file-level problem raises ``DataError``.

    A UTF-8 byte-order mark is accepted (spreadsheets write one); column names are stripped and
    lower-cased; extra columns are kept; cells are stripped strings, empty cells are "".
    """
    if not exists(path):
        raise DataError(f"{path}: {what} not found")
    raw = read_bytes(path)
    if not raw.strip():
        raise DataError(f"{path}: {what} is empty; expected a header with {','.join(required)}")
    try:
        df = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: {what} is not a readable CSV ({str(e).splitlines()[0]})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: {what} lacks column(s) {','.join(missing)}; found {','.join(df.columns)}"
        )
    for c in df.columns:
        df[c] = df[c].astype(str).str.strip()
    return df.reset_index(drop=True)
