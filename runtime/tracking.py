"""MLflow set-up shared by every trainer and evaluator: a local sqlite store by default (no
server), ``MLFLOW_TRACKING_URI`` to point elsewhere, and the whole frozen config logged with each run.

    with tracking.start_run("stage2-embed", cfg, run_name="b0-subcenter"):
        mlflow.log_metric("val_map5", 0.81, step=3)

Browse with ``mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1`` (the demo prints the
line for its own store).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def artifact_root() -> str | None:
    """Where a new experiment keeps its artifacts: beside a local sqlite store (``x/mlflow.db`` ->
    ``x/mlartifacts``), so that a run's models stay with its ``--workdir``; MLflow's own default,
    ``./mlruns`` in whatever folder the command ran from, otherwise."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    return "file://" + os.path.join(os.path.dirname(os.path.abspath(uri[len("sqlite:///"):])), "mlartifacts")


def create_store() -> None:
    """Create the tracking store's tables now. A sqlite store is created by its first use, and two
    processes that start using a new one together race to create the same tables (the demo's two
    trainings: "table latest_metrics already exists")."""
    import mlflow

    mlflow.MlflowClient(tracking_uri()).search_experiments(max_results=1)


def use_experiment(name: str) -> None:
    """``mlflow.set_experiment``, creating the experiment with ``artifact_root`` first."""
    import mlflow

    if mlflow.get_experiment_by_name(name) is None:
        try:
            mlflow.create_experiment(name, artifact_location=artifact_root())
        except mlflow.exceptions.MlflowException:  # created meanwhile by another process
            pass
    mlflow.set_experiment(name)


def log_keras_model(model, name: str, image_size: int) -> None:
    """The model in MLflow's Keras flavour with its input signature (images [-1, S, S, 3], float32
    0..255) into the active run, registered as ``happywhale-NAME``: ``mlflow models`` and the
    registry list it. (A signature, not an input example: MLflow 3.17's Keras flavour writes the
    example before it creates the model folder.)"""
    from importlib.metadata import version

    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, image_size, image_size, 3))]))
    # the requirements stated, not inferred (MLflow's inference reloads the model in a subprocess)
    needs = [f"{p}=={version(p)}" for p in ("tensorflow", "keras", "keras-cv")]
    mlflow.keras.log_model(model, name=name, signature=signature, registered_model_name=f"happywhale-{name}",
                           pip_requirements=needs)


def log_curves(history: list[dict]) -> None:
    """Every per-epoch metric of ``history`` as one PNG of small plots (``curves.png``) in the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    keys = sorted({k for h in history for k in h if k not in ("epoch", "epoch_seconds")})
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.6), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        pts = [(h["epoch"] + 1, h[k]) for h in history if k in h]
        ax.plot(*zip(*pts, strict=True), marker="o", ms=3)
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
    fig.tight_layout()
    mlflow.log_figure(fig, "curves.png")
    plt.close(fig)


def flat_params(config: Any, prefix: str = "") -> dict[str, str]:
    """A (nested) dataclass as flat ``a.b -> str`` params; MLflow caps a value at 6,000 chars."""
    items = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    out: dict[str, str] = {}
    for k, v in items.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_params(v, key + "."))
        else:
            out[key] = str(v)[:6000]
    return out


@contextlib.contextmanager
def start_run(
    experiment: str, config: Any, run_name: str | None = None, tags: dict[str, str] | None = None,
    nested: bool = False, run_id: str | None = None,
) -> Iterator[Any]:
    """Start (or nest, or with ``run_id`` continue) an MLflow run with the config logged as params
    and as ``config.json``."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    use_experiment(experiment)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags, nested=nested) as run:
        params = flat_params(config)
        cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        if run_id:  # continuing: MLflow params are immutable, so changed values become tags
            old = run.data.params
            mlflow.log_params({k: v for k, v in params.items() if k not in old})
            mlflow.set_tags({f"resumed_with.{k}": v for k, v in params.items() if k in old and old[k] != v})
            mlflow.log_dict(cfg, "config_resumed.json")
        else:
            mlflow.log_params(params)
            mlflow.log_dict(cfg, "config.json")
        yield run


def log_artifact(path: str, artifact_path: str | None = None) -> None:
    """``mlflow.log_artifact`` of a local file or a ``tf.io.gfile`` URL (copied to a temporary
    local file first: MLflow uploads from local paths)."""
    import mlflow

    from runtime.storage import local_copy

    with local_copy(path) as local:
        mlflow.log_artifact(local, artifact_path)


def log_folder(folder: str, artifact_path: str) -> None:
    """``mlflow.log_artifacts`` of a local folder or the files directly in a URL folder."""
    import mlflow

    from runtime.storage import is_url, isdir, join, listdir

    if not is_url(folder):
        mlflow.log_artifacts(folder, artifact_path)
        return
    for name in listdir(folder):
        if not isdir(join(folder, name)):
            log_artifact(join(folder, name), artifact_path)
