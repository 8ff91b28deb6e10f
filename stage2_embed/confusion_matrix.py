"""Species confusion matrix and most-confused individual pairs of a trained embedder (the library
behind ``stage2_embed/confusion.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from runtime.flags import option


def classifier(train_model):
    """image -> {"individual", "species"} logits, sharing ``train_model``'s layers, no label input."""
    import keras

    from stage2_embed.layers import ArcMarginLogits

    image = train_model.get_layer("image").output
    neck = train_model.get_layer("neck_bn").output
    head = train_model.get_layer("individual")
    outputs = {"individual": head(neck) if isinstance(head, ArcMarginLogits) else head.output}
    if "species" in [layer.name for layer in train_model.layers]:
        outputs["species"] = train_model.get_layer("species").output
    return keras.Model(image, outputs, name="classifier")


def predict(train_model, records: str, image_size: int, fold: int, crop: bool = False,
            batch_size: int = 64) -> dict[str, np.ndarray]:
    """Argmax individual and species index per image of ``fold``, with the true indices."""
    import tensorflow as tf

    from stage2_embed.data import _loader
    from tfrecords.reader import parsed_records

    model = classifier(train_model)
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    keep = ("image", "image/individual_index", "image/species_index")  # boxes vary in number: not batchable
    ds = parsed_records(records, "train", folds=[fold]).map(_loader(crop, image_size)).map(
        lambda e: {k: e[k] for k in keep}).batch(batch_size)
    out: dict[str, list] = {"individual": [], "species": [], "true_individual": [], "true_species": []}
    for b in ds:
        logits = forward(b["image"])
        out["individual"].append(np.argmax(logits["individual"], -1))
        out["species"].append(np.argmax(logits["species"], -1) if "species" in logits else
                              np.full(len(b["image"]), -1))
        out["true_individual"].append(b["image/individual_index"].numpy())
        out["true_species"].append(b["image/species_index"].numpy())
    return {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in out.items()}


@dataclass(frozen=True)
class ConfusionConfig:
    """``stage2_embed/confusion.py``'s options."""

    embedder: str = option(help="embedder run folder (holds train_model.keras)")
    records: str = option(help="crop records the model was trained on")
    val_fold: int | None = option(None, help="validation fold (None: the run's)", lo=0)
    out: str | None = option(None, help="output folder (None: EMBEDDER/confusion)")


def species_confusion(true: np.ndarray, pred: np.ndarray, species: list[str]) -> pd.DataFrame:
    """Counts, rows the true species, columns the predicted one (every species, even if absent)."""
    from sklearn.metrics import confusion_matrix

    if len(species) == 1:  # sklearn warns on a single label; every query is then on the diagonal
        cm = np.array([[len(true)]])
    else:
        cm = confusion_matrix(true, pred, labels=np.arange(len(species)))
    return pd.DataFrame(cm, index=pd.Index(species, name="true"), columns=pd.Index(species, name="predicted"))


def confused_pairs(true: np.ndarray, pred: np.ndarray, individuals: list[str], species_of: dict[str, str],
                   top: int = 20) -> pd.DataFrame:
    """The (true, predicted) individual pairs most often confused, most frequent first."""
    wrong = true != pred
    df = pd.DataFrame({"true_id": np.asarray(individuals, dtype=object)[true[wrong]],
                       "predicted_id": np.asarray(individuals, dtype=object)[pred[wrong]]})
    pairs = df.value_counts().rename("count").reset_index()
    pairs = pairs.sort_values(["count", "true_id", "predicted_id"], ascending=[False, True, True]).head(top)
    pairs["true_species"] = pairs["true_id"].map(species_of)
    pairs["predicted_species"] = pairs["predicted_id"].map(species_of)
    return pairs.reset_index(drop=True)


def confusion_figure(cm: pd.DataFrame, title: str):
    """A matplotlib figure of ``cm`` (laid out), for the trainer's PNG and the evaluation report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    # at least the title's width: one species (a one-species catalog) made a 1.7-inch figure
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 + 0.7 * len(cm)), max(2.5, 0.6 + 0.6 * len(cm))))
    ConfusionMatrixDisplay(cm.to_numpy(), display_labels=list(cm.index)).plot(
        ax=ax, cmap="Blues", xticks_rotation=45, colorbar=False)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_confusion(cm: pd.DataFrame, path: str, title: str) -> None:
    import matplotlib.pyplot as plt

    from runtime import atomic

    fig = confusion_figure(cm, title)
    atomic.write_bytes(path, _png(fig))
    plt.close(fig)


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def report(train_model, records: str, out: str, image_size: int, fold: int, head: str, crop: bool = False) -> dict:
    """Write species_confusion.csv/.png and confused_individuals.csv under ``out``; returns a summary."""
    from runtime import atomic
    from runtime.storage import join, makedirs
    from tfrecords.reader import read_manifest, train_counts

    manifest = read_manifest(records)
    species, individuals = manifest["species"], manifest["individuals"]
    p = predict(train_model, records, image_size, fold, crop)
    makedirs(out)
    cm = species_confusion(p["true_species"], p["species"], species)
    atomic.write_bytes(join(out, "species_confusion.csv"), cm.to_csv().encode())
    accuracy = float(np.trace(cm.to_numpy()) / max(1, cm.to_numpy().sum()))
    plot_confusion(cm, join(out, "species_confusion.png"),
                   f"species, {head} run, fold {fold} (accuracy {accuracy:.1%})")
    trained = np.flatnonzero(train_counts(manifest, fold))
    known = np.isin(p["true_individual"], trained)  # pairs only among trained individuals
    species_of = manifest["individual_species"]
    pairs = confused_pairs(p["true_individual"][known], p["individual"][known], individuals, species_of)
    atomic.write_bytes(join(out, "confused_individuals.csv"), pairs.to_csv(index=False).encode())
    return {"species_accuracy": accuracy, "individual_accuracy": float((p["individual"] == p["true_individual"])[
        known].mean()) if known.any() else 0.0, "confusion_dir": out}


def log_summary(summary: dict) -> None:
    """Log a ``report`` summary and its files to the active MLflow run."""
    import mlflow

    mlflow.log_metrics({"val_species_accuracy": summary["species_accuracy"],
                        "val_individual_accuracy": summary["individual_accuracy"]})
    from runtime.tracking import log_folder

    log_folder(summary["confusion_dir"], "confusion")


def log_to_run(run_id: str, summary: dict) -> None:
    import mlflow

    from runtime.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    with mlflow.start_run(run_id=run_id):
        log_summary(summary)
