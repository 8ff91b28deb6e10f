"""MLflow set-up shared by every trainer and evaluator: a local sqlite store by default (no
server), ``MLFLOW_TRACKING_URI`` to point elsewhere, and the whole frozen config logged with each run.

    with tracking.start_run("stage2-embed", cfg, run_name="b0-subcenter"):
        mlflow.log_metric("val_map5", 0.81, step=3)

Browse with ``mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1``.
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
    mlflow.set_experiment(experiment)
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
