"""Plans and draws the synthetic world: individuals, image counts, shots and the Kaggle-layout folder
with boxes and test truth (the library behind ``tfrecords/synthesize.py``).
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from runtime import atomic
from runtime.flags import check, option
from runtime.storage import join, makedirs
from tfrecords.layout import (
    BOXES_CSV,
    NEW_INDIVIDUAL,
    SAMPLE_SUBMISSION,
    TEST_DIR,
    TEST_TRUTH_CSV,
    TRAIN_CSV,
    TRAIN_DIR,
)
from tfrecords.synthetic.render import SPECIES, Individual, compose, make_individual
from tfrecords.synthetic.scene import compose_sea

# Kaggle's misspellings, written for a share of the rows so that cleaning has real work to do
MISSPELLINGS = {"killer_whale": "kiler_whale", "bottlenose_dolphin": "bottlenose_dolpin",
                "short_finned_pilot_whale": "globis"}


ASPECTS = (4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3)


@dataclass(frozen=True)
class SynthConfig:
    seed: int = option(1, help="seed of the whole world: individuals, counts, photos")
    individuals: int = option(300, help="individuals in train", lo=1)
    train_images: int = option(1100, help="training photos (each individual has at least one)", lo=1)
    test_images: int = option(450, help="test photos", lo=0)
    species: int = option(8, help="number of species", lo=1, hi=len(SPECIES))
    new_share: float = option(0.2, help="share of test photos showing individuals absent from train", lo=0.0,
                              hi=0.99)
    max_side: int = option(800, help="longest photo side; sizes vary in [max/2, max]", lo=96)
    max_area: float = option(0.9, help="largest share of the frame a part's box covers before the sea cuts a "
                                       "fin (log-uniform from 0.07); above 0.3 a part may overhang the frame. "
                                       "0.9: photo-ID close-ups, where real fins fill a median 69 %% of the "
                                       "frame (tests/data/finid_sharks); 0.6 was the world before 2026-11-30",
                             lo=0.08, hi=1.0)
    scene: str = option("plain", help="plain: clean sea textures, on which the demo's embedder learns the marks; "
                                      "sea: widely randomised water and light (foam at the water line, whitecaps, "
                                      "glint, haze, underwater shots, lit skin), for training a detector for real "
                                      "photos (tfrecords/synthetic/scene.py)", choices=("plain", "sea"))
    sea_share: float = option(0.0, help="share of photos drawn by the sea scene instead, evenly spread over each "
                                        "split by index (the rest as --scene): a world for a detector meant for "
                                        "photos at sea (README, Stage 1, 'Photos at sea'); not for the embedder, "
                                        "which learns the marks on the plain scene", lo=0.0, hi=1.0)
    companions: float = option(0.0, help="share of photos in which 1-3 smaller animals of the species share the "
                                         "frame (1-5 %% of it each, every one boxed after the photographed "
                                         "one's box): a pod at sea, for the detector (plain scene only)",
                               lo=0.0, hi=1.0)
    distractors: float = option(0.0, help="share of photos with 1-3 birds, buoys, boats or splashes in them, "
                                          "unboxed, clear of the animals (tfrecords/synthetic/distractors.py): "
                                          "what a detector at sea must learn not to box", lo=0.0, hi=1.0)
    misspell_rate: float = option(0.25, help="share of species names written as Kaggle's misspellings", lo=0.0,
                                  hi=1.0)
    size: tuple[int, int] | None = option(None, help="(width, height) of every photo; None: varied", cli=False)

    def __post_init__(self) -> None:
        check(self)
        if self.train_images < self.individuals:
            raise ValueError("--train-images must be >= --individuals (each has at least one image)")
        if self.companions and self.scene != "plain":
            raise ValueError("--companions draws on the plain scene only; use --scene plain or --companions 0")


SMOKE = SynthConfig(individuals=24, train_images=72, test_images=24, species=4, max_side=192)


@dataclass(frozen=True)
class Shot:
    """One photo to draw: everything it needs, so that workers are pure functions of it."""

    split: str
    index: int
    image: str
    individual: Individual
    height: int
    width: int
    area: float
    scene: str = "plain"
    companions: float = 0.0
    distractors: float = 0.0


def _hex_ids(rng: np.random.Generator, n: int, chars: int, taken: set[str]) -> list[str]:
    out = []
    while len(out) < n:
        s = "".join(rng.choice(list("0123456789abcdef"), chars))
        if s not in taken:
            taken.add(s)
            out.append(s)
    return out


def image_counts(rng: np.random.Generator, n: int, total: int) -> np.ndarray:
    """A Happywhale-like long tail: Zipf(2) draws (61 % ones, capped at 25), then adjusted to sum
    to ``total`` by adding to individuals in proportion to what they have (the rich get richer, the
    singletons stay) or removing from the largest; the largest ends with >= 20 where ``total`` allows."""
    c = np.minimum(rng.zipf(2.0, n), 25)
    while c.sum() < total:
        c[rng.choice(n, p=(c - 0.5) / (c - 0.5).sum())] += 1
    while c.sum() > total:
        c[rng.choice(np.flatnonzero(c == c.max()))] -= 1
    top = int(np.argmax(c))
    while c[top] < 20 and (c > 2).sum() > 1 and c.sum() - c[top] > n:
        donors = np.flatnonzero((c > 2) & (np.arange(n) != top))
        if not len(donors):
            break
        c[rng.choice(donors)] -= 1
        c[top] += 1
    return c


def plan(cfg: SynthConfig) -> tuple[list[Shot], pd.DataFrame, pd.DataFrame]:
    """Decide every photo (who, where, how big) from the seed; returns shots, train.csv, truth."""
    rng = np.random.default_rng([cfg.seed, 0])
    names = list(SPECIES)[: cfg.species]
    w = 1.0 / np.arange(1, cfg.species + 1) ** 0.9
    taken: set[str] = set()
    n_new_images = int(round(cfg.new_share * cfg.test_images))
    n_new = max(1, n_new_images // 2) if n_new_images else 0
    ids = _hex_ids(rng, cfg.individuals + n_new, 12, taken)
    people = [make_individual(rng, i, names[rng.choice(cfg.species, p=w / w.sum())]) for i in ids]
    known, new = people[: cfg.individuals], people[cfg.individuals:]
    counts = image_counts(rng, cfg.individuals, cfg.train_images)

    train_who = [ind for ind, c in zip(known, counts, strict=True) for _ in range(c)]
    p_known = np.sqrt(counts) / np.sqrt(counts).sum()
    test_who = [known[i] for i in rng.choice(cfg.individuals, cfg.test_images - n_new_images, p=p_known)]
    test_who += [new[i % n_new] for i in range(n_new_images)]
    test_who = [test_who[i] for i in rng.permutation(len(test_who))]
    train_who = [train_who[i] for i in rng.permutation(len(train_who))]

    shots = []
    for split, who in (("train", train_who), ("test", test_who)):
        for i, (ind, name) in enumerate(zip(who, _hex_ids(rng, len(who), 14, taken), strict=True)):
            long = int(rng.uniform(cfg.max_side / 2, cfg.max_side))
            aspect = ASPECTS[rng.integers(len(ASPECTS))]
            wd, ht = (long, int(long / aspect)) if aspect >= 1 else (int(long * aspect), long)
            if cfg.size:
                wd, ht = cfg.size
            area = float(np.exp(rng.uniform(np.log(0.07), np.log(cfg.max_area))))  # box/frame, before the sea cut
            shots.append(Shot(split, i, f"{name}.jpg", ind, ht, wd, area, _scene(cfg, i), cfg.companions,
                              cfg.distractors))

    def written_species(s: str) -> str:
        return MISSPELLINGS[s] if s in MISSPELLINGS and rng.random() < cfg.misspell_rate else s

    train = pd.DataFrame([(s.image, written_species(s.individual.species), s.individual.individual_id)
                          for s in shots if s.split == "train"], columns=["image", "species", "individual_id"])
    new_ids = {p.individual_id for p in new}
    truth = pd.DataFrame(
        [(s.image, s.individual.species,
          NEW_INDIVIDUAL if s.individual.individual_id in new_ids else s.individual.individual_id)
         for s in shots if s.split == "test"], columns=["image", "species", "individual_id"])
    return shots, train, truth


def _scene(cfg: SynthConfig, index: int) -> str:
    """The scene of a split's ``index``-th photo: ``sea`` for an evenly spread ``sea_share`` of them (no draw
    from the generator, so a world at 0 is the world without the option, bit for bit)."""
    sea = int((index + 1) * cfg.sea_share) > int(index * cfg.sea_share)
    return "sea" if sea else cfg.scene


def draw(args: tuple[int, Shot, str]) -> tuple[str, str, list[tuple[int, int, int, int]], str]:
    """Render and write one photo (worker). Returns split, image, boxes (the individual's first), part label."""
    seed, shot, folder = args
    rng = np.random.default_rng([seed, 1 if shot.split == "train" else 2, shot.index])
    if shot.scene == "sea":
        rgb, boxes = compose_sea(shot.individual, rng, shot.height, shot.width, shot.area, shot.distractors)
    else:
        rgb, boxes = compose(shot.individual, rng, shot.height, shot.width, shot.area, shot.companions,
                             shot.distractors)
    quality = int(rng.integers(45, 96))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    atomic.write_bytes(join(folder, shot.image), buf.tobytes())
    return shot.split, shot.image, boxes, shot.individual.part


class _Serial:
    """Stands in for a process pool when one worker is asked for (simpler to debug and profile)."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap(self, fn, jobs, chunksize: int = 1):
        return map(fn, jobs)


def synthesize(cfg: SynthConfig, out: str, workers: int = 0, progress: bool = True) -> dict[str, int]:
    """Write the dataset under ``out``; returns counts. CSVs are written last, so a folder with a
    train.csv is a whole dataset."""
    shots, train, truth = plan(cfg)
    for d in (TRAIN_DIR, TEST_DIR):
        makedirs(join(out, d))
    jobs = [(cfg.seed, s, join(out, TRAIN_DIR if s.split == "train" else TEST_DIR)) for s in shots]
    workers = workers or min(mp.cpu_count(), 8)
    with mp.get_context("fork").Pool(workers) if workers > 1 else _Serial() as pool:
        it = pool.imap(draw, jobs, chunksize=8)
        results = list(tqdm(it, total=len(jobs), desc="synthesize", unit="img", disable=not progress))
    boxes = pd.DataFrame([(im, *box, part) for _, im, bs, part in results for box in bs],
                         columns=["image", "x_min", "y_min", "x_max", "y_max", "label"])
    top = train["individual_id"].value_counts().index[:4].tolist()
    sample = pd.DataFrame({"image": truth["image"], "predictions": " ".join([*top, NEW_INDIVIDUAL])})
    for name, df in ((BOXES_CSV, boxes), (TEST_TRUTH_CSV, truth), (SAMPLE_SUBMISSION, sample), (TRAIN_CSV, train)):
        atomic.write_text(join(out, name), df.to_csv(index=False))
    return {"train_images": len(train), "test_images": len(truth),
            "individuals": int(train["individual_id"].nunique()),
            "new_individual_test_images": int((truth["individual_id"] == NEW_INDIVIDUAL).sum())}
