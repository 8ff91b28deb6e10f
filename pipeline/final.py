"""The final embedder trained on every fold (``stage2_embed/train.py --all-folds CV_RUN``) has no
fold left to validate on: evaluating it on its own training photos would choose a threshold for
scores it memorised. So ``pipeline/evaluate.py`` on such a run carries the cross-validation run's
choices over, as the Happywhale winners did: its ``threshold.json`` (threshold curves, the share
model's scores, the SIFT fusion, the blend weight) is copied beside the final model, with where it
came from, and the copy is recorded in MLflow.
"""

from __future__ import annotations

import json


def cv_run(embedder: str) -> str | None:
    """The cross-validation run folder an ``--all-folds`` run names; None for an ordinary run."""
    from runtime.storage import exists, join, read_bytes

    path = join(embedder, "train_config.json")
    return json.loads(read_bytes(path)).get("all_folds") if exists(path) else None


def carry_over(cfg, cv: str) -> dict:
    """Copy ``CV/threshold.json`` into ``cfg.embedder`` (marked ``carried_from``); the result line of
    that cross-validation evaluation, with ``carried_from``."""
    import mlflow

    from runtime import atomic
    from runtime.storage import exists, join, read_bytes
    from runtime.tracking import start_run

    src = join(cv, "threshold.json")
    if not exists(src):
        raise FileNotFoundError(f"{src} not found: {cfg.embedder} was trained on every fold, so its threshold "
                                f"comes from its cross-validation run; run pipeline/evaluate.py --embedder {cv} first")
    saved = json.loads(read_bytes(src))
    atomic.write_json(join(cfg.embedder, "threshold.json"), {**saved, "carried_from": cv})
    ev = join(cv, "evaluation", "evaluation.json")
    result = {k: v for k, v in (json.loads(read_bytes(ev)) if exists(ev) else saved).items() if k != "curves"}
    result.update(carried_from=cv, threshold=saved["threshold"])
    with start_run("pipeline-evaluate", cfg, run_name="evaluate-carried-over", tags={"carried_from": cv}):
        mlflow.log_metrics({k: v for k, v in result.items() if isinstance(v, float)})
    print(f"{cfg.embedder} was trained on every fold: threshold, re-ranking and blend carried over from {cv}",
          flush=True)
    return result


def identifying_embedder(workdir: str) -> str:
    """The embedder a demo work folder identifies with, and so the one its ``catalog.npz`` was
    embedded with: ``embedder_final`` (trained on every fold) where it was trained, else the
    cross-validated ``embedder``. For benchmarks that reuse a demo's models (a catalog searched with
    other weights is refused: ``pipeline.catalog.embedder_mismatch``)."""
    import os

    final = os.path.join(workdir, "embedder_final")
    return final if os.path.exists(os.path.join(final, "embedder.keras")) else os.path.join(workdir, "embedder")
