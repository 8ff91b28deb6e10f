"""The bad-input corpus: every rule of the cleaning stage, one rejection per bad row with its
reason, and no good row lost."""

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from images_corpus import jpeg, png, png16_gray, png_bomb, png_rgba

from tfrecords.builder import build
from tfrecords.cleaning import SPECIES_FIXES, normalize_species, unsafe_name_reason
from tfrecords.plan import BuildConfig
from tfrecords.schema import parse_example

KAGGLE_SPECIES = """melon_headed_whale humpback_whale false_killer_whale bottlenose_dolphin beluga minke_whale
fin_whale blue_whale gray_whale southern_right_whale common_dolphin kiler_whale pilot_whale dusky_dolphin
killer_whale long_finned_pilot_whale sei_whale spinner_dolphin bottlenose_dolpin cuviers_beaked_whale
spotted_dolphin globis brydes_whale commersons_dolphin white_sided_dolphin short_finned_pilot_whale
rough_toothed_dolphin pantropic_spotted_dolphin pygmy_killer_whale frasiers_dolphin""".split()


def test_kaggle_species_strings_normalise_to_26():
    assert len(KAGGLE_SPECIES) == 30
    fixed = {normalize_species(s) for s in KAGGLE_SPECIES}
    assert len(fixed) == 26
    assert normalize_species("kiler_whale") == "killer_whale"
    assert normalize_species("globis") == normalize_species("pilot_whale") == "short_finned_pilot_whale"
    assert normalize_species(" Humpback Whale ") == "humpback_whale"
    assert set(SPECIES_FIXES.values()) <= fixed


@pytest.mark.parametrize("name", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "C:/x.jpg", "a\\b.jpg", "", "gs://b/x.jpg"])
def test_unsafe_names(name):
    assert unsafe_name_reason(name)


@pytest.mark.parametrize("name", ["abc.jpg", "sub/abc.jpg", "a..b.jpg"])
def test_safe_names(name):
    assert unsafe_name_reason(name) is None


def palette_png() -> bytes:
    import io

    from PIL import Image

    img = Image.new("P", (60, 40), 1)
    img.putpalette([0, 0, 0, 50, 100, 150] + [0] * 762)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


GOOD_TRAIN = {  # image -> (bytes, species as written, individual)
    "good1.jpg": (jpeg(), "beluga", "ind_a"),
    "good2.jpg": (jpeg(exif_orientation=6), "beluga", "ind_a"),
    "good3.png": (png_rgba(), "Humpback Whale", "ind_b"),
    "good4.png": (png16_gray(), "humpback_whale", "ind_b"),
    "good5.jpg": (jpeg(mode="L"), "kiler_whale", "ind_c"),
    "good6.png": (palette_png(), "killer_whale", "ind_c"),
    "good7.jpg": (jpeg(), "beluga", "ind_x"),
    "good8.jpg": (jpeg(), "beluga", "ind_x"),
    "gray.png": (png(np.full((40, 60), 90, np.uint8)), "beluga", "ind_d"),
}
BAD_FILES = {
    "truncated.jpg": jpeg(300, 300, color=(1, 2, 3))[:200],
    "empty.jpg": b"",
    "text.jpg": b"hello, not an image",
    "tiny.jpg": jpeg(20, 100),
    "bomb.png": png_bomb(),
    "conflict.jpg": jpeg(),
    "nospecies.jpg": jpeg(),
    "good9.jpg": jpeg(),
    "badid.jpg": jpeg(),
}
EXPECTED_REJECTIONS = [  # (split, image, reason substring)
    ("train", "missing.jpg", "missing from train_images"),
    ("train", "../evil.jpg", "escapes"),
    ("train", "/etc/passwd", "absolute"),
    ("train", "good1.jpg", "duplicate row"),
    ("train", "conflict.jpg", "conflicting labels"),
    ("train", "conflict.jpg", "conflicting labels"),
    ("train", "good9.jpg", "another species"),
    ("train", "nospecies.jpg", "missing species"),
    ("train", "badid.jpg", "malformed individual_id"),
    ("train", "truncated.jpg", "not a readable image"),
    ("train", "empty.jpg", "empty file"),
    ("train", "text.jpg", "not a readable image"),
    ("train", "tiny.jpg", "smaller than 32"),
    ("train", "bomb.png", "pixel limit"),
    ("train", "orphan.jpg", "not in train.csv"),
    ("test", "t3.jpg", "missing from test_images"),
    ("test", "t4.jpg", "not a readable image"),
    ("train", "good2.jpg", "lies outside"),
    ("boxes", "good1.jpg", "x_max <= x_min"),
    ("boxes", "nowhere.jpg", "neither split"),
    ("boxes", "good3.png", "non-numeric"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "train_images").mkdir()
    (d / "test_images").mkdir()
    rows = []
    for name, (data, species, ind) in GOOD_TRAIN.items():
        (d / "train_images" / name).write_bytes(data)
        rows.append((name, species, ind))
    for name, data in BAD_FILES.items():
        (d / "train_images" / name).write_bytes(data)
    (d / "train_images" / "orphan.jpg").write_bytes(jpeg())
    rows += [
        ("missing.jpg", "beluga", "ind_m"), ("../evil.jpg", "beluga", "ind_m"), ("/etc/passwd", "beluga", "ind_m"),
        ("good1.jpg", "beluga", "ind_a"),  # exact duplicate
        ("conflict.jpg", "beluga", "ind_p"), ("conflict.jpg", "beluga", "ind_q"),
        ("good9.jpg", "humpback_whale", "ind_x"),  # ind_x is a beluga twice: the minority row goes
        ("nospecies.jpg", "", "ind_n"), ("badid.jpg", "beluga", "bad id!"),
        ("truncated.jpg", "beluga", "ind_t"), ("empty.jpg", "beluga", "ind_t"), ("text.jpg", "beluga", "ind_t"),
        ("tiny.jpg", "beluga", "ind_t"), ("bomb.png", "beluga", "ind_t"),
    ]
    # a BOM and upper-case headers, as spreadsheets write them
    csv = "\ufeffImage,Species,Individual_ID\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)
    (d / "train.csv").write_text(csv, encoding="utf-8")
    (d / "test_images" / "t1.jpg").write_bytes(jpeg())
    (d / "test_images" / "t2.png").write_bytes(png_rgba())
    (d / "test_images" / "t4.jpg").write_bytes(b"junk")
    pd.DataFrame({"image": ["t1.jpg", "t2.png", "t3.jpg", "t4.jpg"], "predictions": "x"}).to_csv(
        d / "sample_submission.csv", index=False)
    (d / "boxes.csv").write_text(
        "image,x_min,y_min,x_max,y_max,label\n"
        "good1.jpg,10,10,50,40,body\n"
        "good1.jpg,50,10,10,40,body\n"  # inverted: this box goes, the image and its other box stay
        "good2.jpg,1000,1000,2000,2000,body\n"  # outside the image once normalised
        "good3.png,a,1,2,3,fin\n"
        "nowhere.jpg,1,1,5,5,fin\n"
        "t1.jpg,0,0,48,32,fin\n")
    out = tmp_path_factory.mktemp("bad_records")
    manifest = build(BuildConfig(data=str(d), out=str(out), folds=2, max_side=256, workers=1), progress=True)
    return d, out, manifest


def records(out, split):
    files = sorted(str(p) for p in out.glob(f"{split}-*.tfrec"))
    return [parse_example(r) for r in tf.data.TFRecordDataset(files)]


def test_every_bad_row_is_rejected_once_with_its_reason(corpus):
    _, out, _ = corpus
    rej = pd.read_csv(out / "rejected.csv", keep_default_na=False)
    assert list(rej.columns) == ["split", "image", "reason"]
    remaining = list(rej.itertuples(index=False))
    for split, image, reason in EXPECTED_REJECTIONS:
        hit = next((r for r in remaining if r.split == split and r.image == image and reason in r.reason), None)
        assert hit is not None, (split, image, reason, rej.to_string())
        remaining.remove(hit)
    assert not remaining, remaining


def test_no_good_row_is_lost(corpus):
    _, out, manifest = corpus
    train = {r["image/filename"].numpy().decode(): r for r in records(out, "train")}
    assert set(train) == set(GOOD_TRAIN)
    assert {r["image/filename"].numpy().decode() for r in records(out, "test")} == {"t1.jpg", "t2.png"}
    assert manifest["counts"]["train"] == len(GOOD_TRAIN) and manifest["counts"]["test"] == 2
    assert manifest["species"] == ["beluga", "humpback_whale", "killer_whale"]
    assert train["good5.jpg"]["image/species"].numpy() == b"killer_whale"  # kiler_whale fixed
    # good1 keeps its valid box; good2's only box fell outside, so it has none; EXIF applied to good2
    np.testing.assert_allclose(train["good1.jpg"]["image/object/bbox"].numpy(), [[10 / 64, 10 / 96, 40 / 64, 50 / 96]])
    assert train["good2.jpg"]["image/object/bbox"].shape[0] == 0
    assert (int(train["good2.jpg"]["image/height"]), int(train["good2.jpg"]["image/width"])) == (96, 64)
    m = json.loads((out / "manifest.json").read_text())
    assert sum(s["records"] for s in m["shards"]) == len(GOOD_TRAIN) + 2


def test_coco_boxes_are_read(tmp_path):
    from tfrecords.boxes import load_boxes

    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
                       {"id": 2, "file_name": "../b.jpg", "width": 10, "height": 10}],
            "categories": [{"id": 7, "name": "fluke"}],
            "annotations": [{"image_id": 1, "bbox": [10, 5, 20, 10], "category_id": 7},
                            {"image_id": 2, "bbox": [1, 1, 2, 2], "category_id": 7},
                            {"image_id": 1, "bbox": "junk", "category_id": 7}]}
    p = tmp_path / "boxes.json"
    p.write_text(json.dumps(coco))
    boxes, rej = load_boxes(str(p))
    assert boxes == {"a.jpg": [(10.0, 5.0, 30.0, 15.0, "fluke")]}
    assert sorted(r.reason.split()[0] for r in rej) == ["COCO", "image"]


def test_missing_columns_and_empty_csv_are_one_line_errors(tmp_path):
    from conftest import run_script

    (tmp_path / "train_images").mkdir()
    (tmp_path / "train.csv").write_text("image,species\na.jpg,beluga\n")
    r = run_script(["tfrecords/build.py", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"])
    assert r.returncode == 2 and "lacks column(s) individual_id" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "train.csv").write_text("")
    r = run_script(["tfrecords/build.py", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"])
    assert r.returncode == 2 and "is empty" in r.stderr
