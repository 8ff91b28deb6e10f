"""The learned embedding fused with the 16 x 16 pixel descriptor, weighted on validation.

On a few thousand real photos of hundreds of individuals, an EfficientNet trained from scratch
found fewer individuals than nearest neighbours on 16 x 16 grey thumbnails (known-individual MAP@5
0.011 against 0.184): training can destroy what the pixels hold. So after training, validation
scores both and every mix of them: with unit-norm parts, the concatenation
``[sqrt(w) * embedding, sqrt(1 - w) * pixels]`` is unit-norm and its cosine is exactly
``w * cos_embedding + (1 - w) * cos_pixels``, so one nearest-neighbour search (catalog, FAISS,
threshold, review) serves any mix unchanged. The weight with the best validation MAP@5 is kept
(``w = 1``: the embedder alone; ``w = 0``: pixels alone, with a warning). The saved embedder is
never worse than the pixels on validation.
"""

from __future__ import annotations

import json
import math

import numpy as np

WEIGHTS = tuple(float(w) for w in np.round(np.linspace(0.0, 1.0, 11), 2))  # the embedder's weight


def split_embeddings(embed_model, records: str, image_size: int, crop: bool = False):
    """Embeddings, pixel descriptors, ids, folds, holdout of every training-split record, in one pass."""
    import keras

    from stage2_embed.data import image_dataset
    from stage2_embed.forward import embed_all
    from stage2_embed.layers import PixelDescriptor
    from stage2_embed.pixel_embedder import SIDE

    image = embed_model.input
    both = keras.Model(image, keras.layers.Concatenate()([embed_model(image), PixelDescriptor(SIDE)(image)]))
    out, ids, _, _, folds, holdout = embed_all(both, image_dataset(records, "train", image_size, 64, crop=crop))
    dim = embed_model.output_shape[-1]
    return out[:, :dim], out[:, dim:], ids, folds, holdout


def weight_curve(emb: np.ndarray, pix: np.ndarray, ids: np.ndarray, folds: np.ndarray, holdout: np.ndarray,
                 val_fold: int) -> dict[float, float]:
    """Known-individual validation MAP@5 (the validation fold against the training folds) at each
    embedder weight of ``WEIGHTS``."""
    from stage2_embed.retrieval import known_individual_map5_from_sim

    q = folds == val_fold
    g = (folds != val_fold) & (holdout == 0)
    sim_e, sim_p = emb[q] @ emb[g].T, pix[q] @ pix[g].T
    return {w: known_individual_map5_from_sim(w * sim_e + (1 - w) * sim_p, ids[q].tolist(), ids[g].tolist())
            for w in WEIGHTS}


def choose_weight(curve: dict[float, float]) -> float:
    """The weight with the best MAP@5; among equals the largest (the learned embedding)."""
    best = max(curve.values())
    return max(w for w, m in curve.items() if m >= best - 1e-9)


def fused_model(embed_model, weight: float):
    """image -> ``[sqrt(w) * embedding, sqrt(1 - w) * pixels]`` (unit norm); ``w = 1``: the embedder
    itself; ``w = 0``: the pixel descriptor alone (the backbone is not run at all)."""
    import keras

    from stage2_embed.layers import PixelDescriptor
    from stage2_embed.pixel_embedder import SIDE

    if weight >= 1.0:
        return embed_model
    image = keras.Input(embed_model.input_shape[1:], name="image")
    pix = PixelDescriptor(SIDE, name="pixels")(image)
    if weight <= 0.0:
        return keras.Model(image, pix, name="embedder_pixels")
    parts = [keras.layers.Rescaling(math.sqrt(weight), name="embedding_part")(embed_model(image)),
             keras.layers.Rescaling(math.sqrt(1.0 - weight), name="pixel_part")(pix)]
    return keras.Model(image, keras.layers.Concatenate(name="fused")(parts), name="embedder_fused")


def fuse(embed_model, records: str, image_size: int, val_fold: int, crop: bool = False):
    """(the model to save as ``embedder.keras``, metrics): the validation MAP@5 of the embedder, of
    the pixels and of the chosen mix, and the pixels' weight in it."""
    emb, pix, ids, folds, holdout = split_embeddings(embed_model, records, image_size, crop)
    curve = weight_curve(emb, pix, ids, folds, holdout, val_fold)
    w = choose_weight(curve)
    metrics = {"val_map5_embedder": curve[1.0], "val_map5_pixels": curve[0.0], "val_map5_fused": curve[w],
               "pixel_weight": round(1.0 - w, 2)}
    return fused_model(embed_model, w), metrics


def warning(metrics: dict) -> str | None:
    """One line when the embedder alone does not beat the pixels on validation (None without those
    figures: a final model trained on every fold whose cross-validation run recorded none)."""
    if "val_map5_embedder" not in metrics or metrics["val_map5_embedder"] > metrics["val_map5_pixels"]:
        return None
    return (f"warning: the embedder (validation MAP@5 {metrics['val_map5_embedder']:.3f}) does not beat 16x16 "
            f"pixel nearest neighbours ({metrics['val_map5_pixels']:.3f}); the saved embedding is "
            f"{metrics['pixel_weight']:.0%} pixels. Try --weights imagenet, a lower --image-size, more --epochs")


def warn_if_weak(run_dir: str) -> None:
    """Print ``warning`` for a run folder whose trainer recorded its validation (``fusion.json``)."""
    import sys

    from runtime.storage import exists, join, read_bytes

    path = join(run_dir, "fusion.json")
    if exists(path) and (msg := warning(json.loads(read_bytes(path)))):
        print(msg, file=sys.stderr)
