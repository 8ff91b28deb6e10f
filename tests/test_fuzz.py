"""Fuzzing the readers of user files (hypothesis): the boxes CSV, COCO JSON, train.csv and the
enroll labels. Whatever the bytes, a reader returns checked rows (and rejections) or raises our
one-line ``DataError``; it never crashes with another exception, and never loses a good row."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.cli import DataError
from tfrecords.boxes import load_boxes, read_box_table
from tfrecords.cleaning import clean_train_rows
from tfrecords.layout import read_csv

CELLS = st.one_of(
    st.sampled_from(["", "a.jpg", "../x.jpg", "/etc/passwd", "b.JPG", "fin", "nan", "inf", "-1", "1e309", "12",
                     "3.5", '"q,uoted"', "humpback_whale", "kiler_whale", "\ufeffimage", " 7 ", "x\ny"]),
    st.text(max_size=12),
)
ROWS = st.lists(st.lists(CELLS, min_size=1, max_size=7), max_size=8)
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    return "\n".join(",".join(r) for r in [header, *rows]).encode("utf-8", "surrogatepass")


def _write(data: bytes, suffix: str) -> str:
    f = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)  # noqa: SIM115 - read back by path
    f.write(data)
    f.close()
    return f.name


HEADERS = st.one_of(st.just(["image", "x_min", "y_min", "x_max", "y_max", "label"]),
                    st.lists(CELLS, min_size=1, max_size=7))


@SETTINGS
@given(header=HEADERS, rows=ROWS, bom=st.booleans(), junk=st.binary(max_size=40))
def test_boxes_csv_never_crashes_and_keeps_only_valid_boxes(header, rows, bom, junk):
    data = (b"\xef\xbb\xbf" if bom else b"") + _csv(header, rows) + junk
    path = _write(data, ".csv")
    try:
        boxes, rejections = load_boxes(path)
    except DataError as e:
        assert "\n" not in str(e).strip()
        return
    for name, bs in boxes.items():
        assert ".." not in Path(name).parts and not name.startswith("/")
        for x0, y0, x1, y1, label in bs:
            assert all(map(math.isfinite, (x0, y0, x1, y1))) and x1 > x0 and y1 > y0 and label
    assert sum(map(len, boxes.values())) + len(rejections) == len(read_box_table(path))  # each once


COCO = st.recursive(st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=True), CELLS),
                    lambda inner: st.one_of(st.lists(inner, max_size=4),
                                            st.dictionaries(st.sampled_from(
                                                ["images", "annotations", "categories", "id", "file_name",
                                                 "image_id", "bbox", "category_id", "name"]), inner, max_size=5)),
                    max_leaves=25)


@SETTINGS
@given(doc=COCO)
def test_coco_json_never_crashes(doc):
    try:
        boxes, _ = load_boxes(_write(json.dumps(doc).encode(), ".json"))
    except DataError as e:
        assert "\n" not in str(e).strip()
        return
    for bs in boxes.values():
        for x0, y0, x1, y1, label in bs:
            assert x1 > x0 and y1 > y0 and label


@SETTINGS
@given(header=st.one_of(st.just(["image", "species", "individual_id"]), st.lists(CELLS, min_size=1, max_size=5)),
       rows=ROWS)
def test_train_csv_rows_are_kept_or_rejected_each_once(header, rows):
    try:
        df = read_csv(_write(_csv(header, rows), ".csv"), ("image", "species", "individual_id"), "train.csv")
    except DataError as e:
        assert "\n" not in str(e).strip()
        return
    kept, rejections = clean_train_rows(df, set(df["image"]))
    assert len(kept) + len(rejections) >= len(df) - df.duplicated(["image", "species", "individual_id"]).sum()
    assert not kept["image"].duplicated().any()
    assert (kept.groupby("individual_id")["species"].nunique() <= 1).all()


@SETTINGS
@given(header=st.one_of(st.just(["image", "individual_id", "species"]), st.lists(CELLS, min_size=1, max_size=5)),
       rows=ROWS)
def test_enroll_labels_are_checked_or_refused_in_one_line(header, rows):
    from pipeline.enrolment import read_labels

    try:
        df = read_labels(_write(_csv(header, rows), ".csv"))
    except DataError as e:
        assert "\n" not in str(e).strip()
        return
    assert len(df) and not df["image"].duplicated().any()
    assert (df.groupby("individual_id")["species"].nunique() == 1).all()
