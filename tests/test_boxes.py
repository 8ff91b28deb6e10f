"""Boxes CSVs as public box files spell them: every spelling gives the same boxes."""

from __future__ import annotations

import pytest

from runtime.cli import DataError
from tfrecords.boxes import load_boxes

WANT = {"a.jpg": [(10.0, 5.0, 30.0, 15.0, "fin")], "b.jpg": [(1.0, 2.0, 3.0, 4.0, "fin")]}


@pytest.mark.parametrize("header, rows", [
    ("image,x_min,y_min,x_max,y_max,label", ["a.jpg,10,5,30,15,fin", "b.jpg,1,2,3,4,fin"]),
    ("image,xmin,ymin,xmax,ymax,label", ["a.jpg,10,5,30,15,fin", "b.jpg,1,2,3,4,fin"]),
    ("Filename,X1,Y1,X2,Y2,Class", ["a.jpg,10,5,30,15,fin", "b.jpg,1,2,3,4,fin"]),
    ("file_name,left,top,right,bottom,category", ["a.jpg,10,5,30,15,fin", "b.jpg,1,2,3,4,fin"]),
    ("image,x,y,w,h,label", ["a.jpg,10,5,20,10,fin", "b.jpg,1,2,2,2,fin"]),
    ("image_id,x,y,width,height,part", ["a.jpg,10,5,20,10,fin", "b.jpg,1,2,2,2,fin"]),
])
def test_every_spelling_gives_the_same_boxes(tmp_path, header, rows):
    p = tmp_path / "boxes.csv"
    p.write_text("\n".join([header, *rows]) + "\n")
    boxes, rejected = load_boxes(str(p))
    assert boxes == WANT and rejected == []


def test_a_file_without_labels_takes_the_one_part_given(tmp_path):
    p = tmp_path / "boxes.csv"
    p.write_text("image,xmin,ymin,xmax,ymax\na.jpg,10,5,30,15\nb.jpg,1,2,3,4\n")
    assert load_boxes(str(p), part="fin") == (WANT, [])
    assert load_boxes(str(p))[0]["a.jpg"][0][4] == "animal"


def test_junk_sizes_are_a_rejection_of_the_box_not_an_error(tmp_path):
    p = tmp_path / "boxes.csv"
    p.write_text("image,x,y,w,h\na.jpg,10,5,20,10\nb.jpg,1,2,oops,2\n")
    boxes, rejected = load_boxes(str(p), part="fin")
    assert boxes == {"a.jpg": WANT["a.jpg"]} and [r.image for r in rejected] == ["b.jpg"]


def test_columns_that_name_no_box_are_one_line_listing_the_spellings(tmp_path):
    p = tmp_path / "boxes.csv"
    p.write_text("image,a,b,c,d\na.jpg,1,2,3,4\n")
    with pytest.raises(DataError, match=r"needs an image column .* x1,y1,x2,y2.*found image,a,b,c,d") as e:
        load_boxes(str(p))
    assert "\n" not in str(e.value)
