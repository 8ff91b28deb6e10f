"""Exploratory plots and a Markdown report of a Kaggle-layout folder (the library behind
``tfrecords/eda.py``).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
from PIL import Image
from tqdm import tqdm

from runtime import atomic
from runtime.flags import option
from runtime.storage import exists, join, makedirs
from tfrecords import layout
from tfrecords.boxes import read_box_table
from tfrecords.cleaning import normalize_species
from tfrecords.layout import list_images, read_csv

matplotlib.use("Agg")


@dataclass(frozen=True)
class EdaConfig:
    """``tfrecords/eda.py``'s options."""

    data: str = option(help="Kaggle-layout folder")
    out: str = option(help="report folder (PNG plots and index.html)")


def image_sizes(folder: str, names: list[str], progress: bool = True) -> pd.DataFrame:
    """Width and height of each image from its header (nothing is decoded)."""
    from runtime.storage import gfile, is_url

    rows = []
    for n in tqdm(names, desc=f"sizes {Path(folder).name}", unit="img", disable=not progress):
        p = join(folder, n)
        try:
            with (gfile().GFile(p, "rb") if is_url(p) else open(p, "rb")) as f:
                w, h = Image.open(f).size
        except (OSError, ValueError):
            w = h = -1
        rows.append((n, w, h))
    return pd.DataFrame(rows, columns=["image", "width", "height"])


def summarize(train: pd.DataFrame, sizes: pd.DataFrame, boxes: pd.DataFrame | None) -> dict:
    per = train["individual_id"].value_counts()
    out = {
        "train_images": int(len(train)),
        "individuals": int(len(per)),
        "species": int(train["species_norm"].nunique()),
        "species_strings": int(train["species"].nunique()),
        "singleton_share": round(float((per == 1).mean()), 4),
        "images_per_individual": round(float(per.mean()), 3),
        "max_images_per_individual": int(per.max()),
        "test_images": int((sizes["split"] == "test").sum()),
    }
    if boxes is not None and len(boxes):
        out["box_area_share_median"] = round(float(boxes["area_share"].median()), 4)
    return out


def _plots(train, sizes, boxes, out: str) -> dict[str, str]:
    figs = {}
    fig, ax = plt.subplots(figsize=(8, 4))
    train["species_norm"].value_counts().plot.barh(ax=ax, color="#2b6a99")
    ax.invert_yaxis()
    ax.set(title="Images per species (normalised names)", xlabel="images")
    figs["species.png"] = fig
    fig, ax = plt.subplots(figsize=(6, 4))
    per = train["individual_id"].value_counts()
    ax.hist(per, bins=range(1, per.max() + 2), color="#2b6a99", log=True)
    ax.set(title=f"Images per individual ({(per == 1).mean():.0%} have one)", xlabel="images",
           ylabel="individuals (log)")
    figs["images_per_individual.png"] = fig
    fig, ax = plt.subplots(figsize=(5, 5))
    for split, c in (("train", "#2b6a99"), ("test", "#d9822b")):
        s = sizes[sizes["split"] == split]
        ax.scatter(s["width"], s["height"], s=6, alpha=0.5, c=c, label=split)
    ax.set(title="Image sizes", xlabel="width (px)", ylabel="height (px)")
    ax.legend()
    figs["image_sizes.png"] = fig
    if boxes is not None and len(boxes):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        for label, g in boxes.groupby("label"):
            a1.hist(g["area_share"], bins=30, alpha=0.6, label=label)
            a2.scatter(g["cx"], g["cy"], s=5, alpha=0.5, label=label)
        a1.set(title="Box area / image area", xlabel="share")
        a1.legend()
        a2.set(title="Box centres", xlim=(0, 1), ylim=(1, 0), xlabel="x / width", ylabel="y / height")
        a2.set_aspect("equal")
        figs["boxes.png"] = fig
    paths = {}
    for name, fig in figs.items():
        fig.tight_layout()
        p = join(out, name)
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths[name] = p
    return paths


def report(data: str, out: str, progress: bool = True) -> dict:
    """Write the plots and ``index.html`` under ``out``; returns the summary."""
    train = read_csv(join(data, layout.TRAIN_CSV), layout.TRAIN_COLUMNS, "train.csv")
    train["species_norm"] = train["species"].map(normalize_species)
    train_dir, test_dir = join(data, layout.TRAIN_DIR), join(data, layout.TEST_DIR)
    sizes = pd.concat([
        image_sizes(train_dir, list_images(train_dir), progress).assign(split="train"),
        image_sizes(test_dir, list_images(test_dir), progress).assign(split="test"),
    ], ignore_index=True)
    sizes = sizes[sizes["width"] > 0]
    boxes = None
    if exists(join(data, layout.BOXES_CSV)):
        boxes = read_box_table(join(data, layout.BOXES_CSV)).merge(sizes, on="image")
        for c in ("x_min", "y_min", "x_max", "y_max"):
            boxes[c] = pd.to_numeric(boxes[c], errors="coerce")
        boxes = boxes.dropna()
        boxes["area_share"] = (boxes.x_max - boxes.x_min) * (boxes.y_max - boxes.y_min) / (boxes.width * boxes.height)
        boxes["cx"] = (boxes.x_min + boxes.x_max) / 2 / boxes.width
        boxes["cy"] = (boxes.y_min + boxes.y_max) / 2 / boxes.height
    makedirs(out)
    paths = _plots(train, sizes, boxes, out)
    summary = summarize(train, sizes, boxes)
    raw = train["species"].value_counts()
    fixes = train.loc[train["species"] != train["species_norm"], ["species", "species_norm"]].drop_duplicates()
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in summary.items())
    fix_rows = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{raw[a]}</td></tr>"
                       for a, b in fixes.itertuples(index=False)) or "<tr><td colspan=3>none</td></tr>"
    imgs = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(open(p, "rb").read()).decode()}">'
        f"<figcaption>{html.escape(n)}</figcaption></figure>" for n, p in paths.items())
    page = (f"<!doctype html><meta charset=utf-8><title>EDA {html.escape(data)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 10px}figure{display:inline-block}"
            f"</style><h1>Dataset {html.escape(data)}</h1><table>{rows}</table>"
            f"<h2>Species names fixed</h2><table><tr><th>as written</th><th>normalised</th><th>rows</th></tr>"
            f"{fix_rows}</table><h2>Plots</h2>{imgs}")
    atomic.write_text(join(out, "index.html"), page)
    return summary
