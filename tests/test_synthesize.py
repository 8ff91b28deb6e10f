import filecmp
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, run_script

from tfrecords.cleaning import normalize_species
from tfrecords.layout import NEW_INDIVIDUAL
from tfrecords.synthetic.render import SPECIES, make_individual, render_sprite
from tfrecords.synthetic.world import SynthConfig, plan, synthesize


def test_default_plan_has_happywhale_statistics():
    shots, train, truth = plan(SynthConfig(seed=1))
    per = train["individual_id"].value_counts()
    assert len(train) >= 1000 and len(per) >= 250 and len(truth) >= 400
    assert (per == 1).mean() >= 0.40
    assert 2.5 <= per.mean() <= 5.0
    assert per.max() >= 20
    assert 0.15 <= (truth["individual_id"] == NEW_INDIVIDUAL).mean() <= 0.30
    # unseen test individuals really are absent from train; known ones really are present
    known = truth[truth["individual_id"] != NEW_INDIVIDUAL]
    assert set(known["individual_id"]) <= set(train["individual_id"])
    # several species, with Kaggle's misspellings present and fixed by the cleaning table
    assert train["species"].map(normalize_species).nunique() == 8
    assert {"kiler_whale", "bottlenose_dolpin"} & set(train["species"])
    # one individual, one species (after normalisation)
    assert (train.assign(s=train["species"].map(normalize_species)).groupby("individual_id")["s"].nunique() == 1).all()
    sizes = {(s.width, s.height) for s in shots}
    assert len(sizes) > 100  # varied sizes and aspect ratios


def test_layout_and_boxes(tiny_data):
    train = pd.read_csv(tiny_data / "train.csv")
    assert list(train.columns) == ["image", "species", "individual_id"]
    assert list(pd.read_csv(tiny_data / "sample_submission.csv").columns) == ["image", "predictions"]
    truth = pd.read_csv(tiny_data / "test_truth.csv")
    assert list(truth.columns) == ["image", "species", "individual_id"]
    assert sorted(p.name for p in (tiny_data / "train_images").iterdir()) == sorted(train["image"])
    assert sorted(p.name for p in (tiny_data / "test_images").iterdir()) == sorted(truth["image"])
    boxes = pd.read_csv(tiny_data / "boxes.csv")
    assert set(boxes["image"]) == set(train["image"]) | set(truth["image"])
    from PIL import Image

    species = dict(zip(train["image"], train["species"].map(normalize_species), strict=True))
    species.update(zip(truth["image"], truth["species"], strict=True))
    shares = []
    for b in boxes.itertuples():
        folder = "train_images" if b.image in set(train["image"]) else "test_images"
        w, h = Image.open(tiny_data / folder / b.image).size
        assert 0 <= b.x_min < b.x_max <= w and 0 <= b.y_min < b.y_max <= h
        shares.append((b.x_max - b.x_min) * (b.y_max - b.y_min) / (w * h))
        assert 0.02 <= shares[-1] <= 0.96, shares[-1]
        assert b.label == SPECIES[species[b.image]].part
    assert min(shares) < 0.1 and max(shares) > 0.4, (min(shares), max(shares))


def test_close_ups_fill_the_frame_and_may_be_cut_by_its_edge():
    """Photo-ID framing: real close-up fins fill a median 69 % of the frame (tests/data/finid_sharks),
    beyond the 0.6 of the world before 2026-11-30; the box is the visible part."""
    import numpy as np

    from tfrecords.synthetic.render import compose, make_individual

    shares, cut = [], 0
    for i in range(12):
        rng = np.random.default_rng(i)
        ind = make_individual(rng, "x", ("bottlenose_dolphin", "humpback_whale", "beluga")[i % 3])
        _, [(x0, y0, x1, y1)] = compose(ind, rng, 240, 320, 0.9)
        shares.append((x1 - x0) * (y1 - y0) / (240 * 320))
        cut += x0 == 0 or y0 == 0 or x1 == 320 or y1 == 240
    assert np.median(shares) > 0.5 and cut >= 3, (shares, cut)
    from tfrecords.synthetic.world import SynthConfig, plan

    areas = np.array([shot.area for shot in plan(SynthConfig())[0]])
    assert areas.max() > 0.85 and 0.1 < (areas > 0.6).mean() < 0.3 and areas.min() < 0.08


def test_deterministic_per_seed_whatever_the_workers(tmp_path):
    cfg = SynthConfig(seed=5, individuals=6, train_images=10, test_images=4, species=3, max_side=128)
    synthesize(cfg, str(tmp_path / "a"), workers=1, progress=False)
    synthesize(cfg, str(tmp_path / "b"), workers=2, progress=False)
    cmp = filecmp.dircmp(tmp_path / "a", tmp_path / "b")
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    for sub in ("train_images", "test_images"):
        names = [p.name for p in (tmp_path / "a" / sub).iterdir()]
        match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a" / sub, tmp_path / "b" / sub, names, shallow=False)
        assert not mismatch and not errors and len(match) == len(names)
    synthesize(SynthConfig(**{**cfg.__dict__, "seed": 6}), str(tmp_path / "c"), workers=1, progress=False)
    assert (tmp_path / "a" / "train.csv").read_bytes() != (tmp_path / "c" / "train.csv").read_bytes()


def test_identity_lives_in_marks_not_in_pose():
    rng = np.random.default_rng(0)
    a = make_individual(rng, "a", "bottlenose_dolphin")
    b = make_individual(rng, "b", "bottlenose_dolphin")
    _, ma1 = render_sprite(a, np.random.default_rng(1))
    _, ma2 = render_sprite(a, np.random.default_rng(2))
    _, mb = render_sprite(b, np.random.default_rng(1))
    assert np.array_equal(ma1, ma2)  # the same individual keeps its outline (notches) photo to photo
    assert np.abs(ma1 - mb).mean() > 0.01  # another individual's outline differs
    assert a.notches and a.patches


@pytest.mark.parametrize("bad", [["--species", "99"], ["--individuals", "10", "--train-images", "5"]])
def test_cli_bad_arguments_give_one_line(tmp_path, bad):
    r = run_script(["tfrecords/synthesize.py", "--out", str(tmp_path / "x"), *bad])
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1


def test_cli_help_both_ways():
    for args in (["tfrecords/synthesize.py", "--help"], ["-m", "tfrecords.synthesize", "--help"]):
        r = run_script(args)
        assert r.returncode == 0 and "--individuals" in r.stdout


def test_tiny_fixture_matches_its_config(tiny_data):
    train = pd.read_csv(tiny_data / "train.csv")
    assert len(train) == TINY["train_images"] and train["individual_id"].nunique() == TINY["individuals"]


def test_companions_are_smaller_boxed_apart_and_leave_the_world_alone(tmp_path):
    """--companions: 1-3 smaller animals of the species, each boxed after the photographed one's box,
    none overlapping another; at 0, one box a photo."""
    cfg = SynthConfig(seed=3, individuals=8, train_images=16, test_images=4, species=3, max_side=256, companions=1.0)
    synthesize(cfg, str(tmp_path / "pod"), workers=1, progress=False)
    boxes = pd.read_csv(tmp_path / "pod" / "boxes.csv")
    per = boxes.groupby("image", sort=False)
    assert per.ngroups == 20 and per.size().between(1, 4).all() and (per.size() > 1).mean() > 0.7
    for _, b in per:
        areas = ((b.x_max - b.x_min) * (b.y_max - b.y_min)).to_numpy()
        assert (areas[1:] <= 0.5 * areas[0] + 1).all(), areas  # the photographed animal's box first, the largest
        assert b["label"].nunique() == 1  # one species: one part
        xy = b[["x_min", "y_min", "x_max", "y_max"]].to_numpy()
        for i in range(len(xy)):
            for j in range(i + 1, len(xy)):
                a, c = xy[i], xy[j]
                assert not (a[0] < c[2] and c[0] < a[2] and a[1] < c[3] and c[1] < a[3])
    plain = replace(cfg, companions=0.0)
    synthesize(plain, str(tmp_path / "none"), workers=1, progress=False)
    names = [p.name for p in (tmp_path / "none" / "train_images").iterdir()]
    match, mismatch, _ = filecmp.cmpfiles(tmp_path / "none" / "train_images", tmp_path / "pod" / "train_images", names,
                                          shallow=False)
    assert len(mismatch) > len(names) // 2  # the pods are drawn
    assert len(pd.read_csv(tmp_path / "none" / "boxes.csv")) == 20
    with pytest.raises(ValueError, match="plain scene only"):
        SynthConfig(scene="sea", companions=0.5)


def test_sea_share_draws_an_even_share_in_the_sea_scene_and_nothing_else_moves(tmp_path):
    """--sea-share R: the share R of each split's photos, evenly spread by index, drawn by the sea scene
    (for a detector's world); who, where and how big are those of the world without it, and at 0 the
    photos are the same files."""
    base = SynthConfig(seed=3, individuals=8, train_images=16, test_images=8, species=3, max_side=192)
    half = replace(base, sea_share=0.5)
    shots0, train0, truth0 = plan(base)
    shots1, train1, truth1 = plan(half)
    assert [s.scene for s in shots0] == ["plain"] * 24
    assert [s.scene for s in shots1 if s.split == "train"] == ["plain", "sea"] * 8  # every other photo
    assert [replace(s, scene="plain") for s in shots1] == shots0  # only the scene moved
    pd.testing.assert_frame_equal(train0, train1)
    pd.testing.assert_frame_equal(truth0, truth1)
    assert sum(s.scene == "sea" for s in plan(replace(base, sea_share=0.25))[0] if s.split == "train") == 4
    synthesize(base, str(tmp_path / "a"), workers=1, progress=False)
    synthesize(replace(base, sea_share=0.0), str(tmp_path / "b"), workers=1, progress=False)
    names = sorted(p.name for p in (tmp_path / "a" / "train_images").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a" / "train_images", tmp_path / "b" / "train_images",
                                               names, shallow=False)
    assert match == names and not mismatch and not errors
