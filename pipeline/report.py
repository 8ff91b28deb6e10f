"""The evaluation's self-contained HTML report: plots and crops inlined as base64, one file to open
or attach anywhere (no server, no neighbouring files)."""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd

from runtime.storage import join


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plots(thresholds, curve, chosen: float, per_species: dict[str, float], cm: pd.DataFrame) -> dict[str, str]:
    """base64 PNGs: threshold curve, MAP@5 per species, species confusion matrix (with two species or more)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stage2_embed.confusion_matrix import confusion_figure

    out = {}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(thresholds, curve, marker=".")
    ax.axvline(chosen, color="tab:red", ls="--", label=f"chosen {chosen:.3f}")
    ax.set_xlabel("new_individual threshold (cosine)")
    ax.set_ylabel("MAP@5")
    ax.legend()
    out["threshold"] = _png(fig)
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * max(1, len(per_species))))
    names = list(per_species)
    ax.barh(names, [per_species[n] for n in names], color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_xlabel("MAP@5")
    ax.invert_yaxis()
    out["species"] = _png(fig)
    if len(cm) < 2:  # one species (a catalog of one kind of animal): nothing to confuse it with
        return out
    out["confusion"] = _png(confusion_figure(cm, "species: true (rows) vs predicted from the nearest catalog images"))
    return out


def thumbnail(img, size: int):
    """uint8 HxWx3 -> uint8 size x size x 3: scaled to fit, centred on black. A crop of any shape: a
    1 x 320 sliver keeps a row of 1 px (``tf.image.resize_with_pad`` asked for 0 rows and failed)."""
    import tensorflow as tf

    h, w = int(img.shape[0]), int(img.shape[1])
    fit = (max(1, round(h * size / max(h, w))), max(1, round(w * size / max(h, w))))
    img = tf.image.resize(tf.cast(img, tf.float32), fit)
    img = tf.image.pad_to_bounding_box(img, (size - fit[0]) // 2, (size - fit[1]) // 2, size, size)
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)


def thumbnails(records: str, names: set[str], size: int = 96) -> dict[str, str]:
    """base64 JPEG thumbnails of the named train records."""
    import tensorflow as tf

    from tfrecords.reader import parsed_records

    out = {}
    for e in parsed_records(records, "train"):
        name = e["image/filename"].numpy().decode()
        if name in names:
            img = thumbnail(tf.io.decode_jpeg(e["image/encoded"], channels=3), size)
            out[name] = base64.b64encode(tf.io.encode_jpeg(img, quality=85).numpy()).decode()
    return out


def folder_thumbnails(folder: str | None, names: set[str], boxes: dict, size: int = 96) -> dict[str, str]:
    """base64 JPEG thumbnails of the named photos in ``folder``, each cut to its box (rel yxyx) as the
    crops are; none without a folder, and an unreadable photo is left blank."""
    import tensorflow as tf

    from runtime.storage import join, read_bytes
    from tfrecords.reader import crop_square

    out = {}
    for name in sorted(names) if folder else []:
        try:
            img = tf.io.decode_image(read_bytes(join(folder, name)), channels=3, expand_animations=False)
        except (OSError, tf.errors.OpError):
            continue
        thumb = tf.cast(crop_square(img, tf.constant(boxes[name], tf.float32), size), tf.uint8)
        out[name] = base64.b64encode(tf.io.encode_jpeg(thumb, quality=85).numpy()).decode()
    return out


def gallery_rows(cands, preds, truths, arr, q_mask, cat_mask, n: int) -> list[dict]:
    """The first ``n`` queries, wrong answers first: the query and, per prediction, the catalog
    image that scored best for that individual."""
    from pipeline.search import NEW

    q_idx, c_idx = np.flatnonzero(q_mask), np.flatnonzero(cat_mask)
    cat_emb, cat_ids = arr["embeddings"][c_idx], arr["individual_ids"][c_idx]
    order = sorted(range(len(preds)), key=lambda i: (preds[i][0] == truths[i], i))[:n]
    rows = []
    for i in order:
        q = q_idx[i]
        sims = cat_emb @ arr["embeddings"][q]
        score = {cands.ids[i, j]: float(cands.scores[i, j]) for j in range(cands.ids.shape[1])}
        cells = []
        for p in preds[i]:
            if p == NEW:
                cells.append({"id": p, "file": None, "score": None, "right": truths[i] == NEW})
                continue
            members = np.flatnonzero(cat_ids == p)
            best = members[np.argmax(sims[members])]
            cells.append({"id": p, "file": arr["filenames"][c_idx[best]], "score": score.get(p),
                          "right": p == truths[i]})
        rows.append({"file": arr["filenames"][q], "truth": truths[i], "species": arr["species"][q], "cells": cells})
    return rows


CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
td{padding:4px;text-align:center;font-size:11px;vertical-align:top}
.ok{outline:4px solid #2a2}.q{outline:2px solid #555}.new{width:96px;height:96px;display:flex;align-items:center;
justify-content:center;background:#eee}.metrics td{text-align:left;padding:2px 12px}"""


def write_report(cfg, result: dict, thresholds, curve, cm, cands, preds, truths, arr, q_mask, cat_mask) -> str:
    from runtime import atomic

    imgs = plots(thresholds, curve, result["threshold"], result["per_species_map5"], cm)
    rows = gallery_rows(cands, preds, truths, arr, q_mask, cat_mask, cfg.gallery)
    needed = {r["file"] for r in rows} | {c["file"] for r in rows for c in r["cells"] if c["file"]}
    if cfg.records:
        thumbs = thumbnails(cfg.records, needed)
    else:  # an enrolled catalog: its photos' folder, where given
        thumbs = folder_thumbnails(cfg.images, needed, dict(zip(arr["filenames"], arr["boxes"], strict=True)))

    def img(name: str, cls: str = "") -> str:
        return f'<img class="{cls}" src="data:image/jpeg;base64,{thumbs.get(name, "")}" width="96" height="96">'

    metrics = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" if isinstance(v, float) else
                      f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                      for k, v in result.items() if k not in ("per_species_map5", "report"))
    body = [f"<h1>Happywhale-ID evaluation: fold {result['fold']}</h1>",
            f"<p>Embedder <code>{html.escape(cfg.embedder)}</code>, "
            f"{'records' if cfg.records else 'catalog'} <code>{html.escape(cfg.records or cfg.catalog)}</code>."
            " Queries: the validation fold and the holdout individuals (truth <i>new_individual</i>).</p>",
            f'<table class="metrics">{metrics}</table>',
            '<h2>Threshold</h2><img src="data:image/png;base64,' + imgs["threshold"] + '">',
            '<h2>MAP@5 per species</h2><img src="data:image/png;base64,' + imgs["species"] + '">',
            '<h2>Species confusion</h2>' + (f'<img src="data:image/png;base64,{imgs["confusion"]}">'
                                             if "confusion" in imgs else "<p>One species: nothing to confuse.</p>"),
            "<h2>Match gallery</h2><p>Query (grey frame), then the five predictions with the best-scoring catalog "
            "image of each; the right answer has a green frame. Wrong answers first.</p><table>"]
    for r in rows:
        cells = [f'<td>{img(r["file"], "q")}<br>{html.escape(r["file"])}<br>truth {html.escape(r["truth"])}'
                 f'<br>{html.escape(r["species"])}</td>']
        for c in r["cells"]:
            cls = "ok" if c["right"] else ""
            pic = img(c["file"], cls) if c["file"] else f'<div class="new {cls}">new_individual</div>'
            score = "" if c["score"] is None else f"{c['score']:.3f}"
            cells.append(f"<td>{pic}<br>{html.escape(c['id'])}<br>{score}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    body.append("</table>")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>evaluation</title><style>{CSS}</style></head>" \
           f"<body>{''.join(body)}</body></html>"
    path = join(cfg.out, "report.html")
    atomic.write_bytes(path, page.encode())
    return path
