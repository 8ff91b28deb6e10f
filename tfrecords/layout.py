"""The Kaggle "Happywhale" file layout and its CSV reader.

    DATA/train.csv              image,species,individual_id
    DATA/train_images/*.jpg
    DATA/test_images/*.jpg
    DATA/sample_submission.csv  image,predictions           (optional)
    DATA/boxes.csv              image,x_min,y_min,x_max,y_max,label   (optional, ours)
    DATA/test_truth.csv         image,species,individual_id (synthetic data only)

Paths may be local or URLs (``runtime.storage``).
"""

from __future__ import annotations

import io

import pandas as pd

from runtime.cli import DataError
from runtime.storage import exists, listdir, read_bytes

TRAIN_CSV = "train.csv"
TRAIN_DIR = "train_images"
TEST_DIR = "test_images"
SAMPLE_SUBMISSION = "sample_submission.csv"
BOXES_CSV = "boxes.csv"
TEST_TRUTH_CSV = "test_truth.csv"
NEW_INDIVIDUAL = "new_individual"
# the crop margin wherever none is given: crop records, ``--crop`` training, and inference with an
# embedder whose config predates ``crop_margin``
CROP_MARGIN = 0.1

TRAIN_COLUMNS = ("image", "species", "individual_id")
BOX_COLUMNS = ("image", "x_min", "y_min", "x_max", "y_max", "label")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


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
