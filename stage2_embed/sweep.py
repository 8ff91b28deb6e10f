"""Explore the embedder's parameter space with Optuna: each trial is a ``train.py`` run (an MLflow
child run of the sweep's run) scored by its validation MAP@5.

    python stage2_embed/sweep.py --records CROPS --out SWEEP_DIR --trials N --budget-minutes M
        [--epochs E] [--space default|smoke] [--seed S]

Searched: backbone size, image size, head, margin, scale, embedding size, learning rate and
balancing. Optuna's TPE sampler proposes, its median pruner stops trials whose MAP@5 trails the
others' at the same epoch. No new trial starts after ``--budget-minutes`` (the running one
finishes). The study lives in ``SWEEP_DIR/optuna.db``: rerunning the command continues it.
Ends with ``SWEEP_DIR/trials.csv`` (ranked), ``SWEEP_DIR/sweep.png`` (MAP@5 against each parameter)
and the best trial's run folder printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import pandas as pd

from runtime import cli, flags
from runtime.flags import check, option


@dataclass(frozen=True)
class Space:
    """The choices and ranges searched (a frozen config, logged with the sweep)."""
    backbones: tuple[str, ...] = ("b0", "b1", "b2")
    image_sizes: tuple[int, ...] = (64, 80, 96, 128)
    heads: tuple[str, ...] = ("subcenter", "arcface", "softmax")
    margin: tuple[float, float] = (0.1, 0.5)
    scale: tuple[float, float] = (8.0, 40.0)
    embedding_dims: tuple[int, ...] = (128, 256, 512)
    lr: tuple[float, float] = (5e-4, 1e-2)
    balances: tuple[str, ...] = ("none", "class_weight", "resample")


SPACES = {"default": Space(),
          "smoke": Space(backbones=("b0",), image_sizes=(48, 64), embedding_dims=(16, 32))}


@dataclass(frozen=True)
class SweepConfig:
    records: str = option(help="crop records")
    out: str = option(help="sweep folder (one run folder per trial inside, the Optuna study, trials.csv)")
    trials: int = option(20, help="trials in all (a rerun continues the study)", lo=1)
    budget_minutes: float = option(60.0, help="stop starting trials after this many minutes", lo=0.0)
    epochs: int = option(20, help="epochs per trial", lo=1)
    batch_size: int = option(32, help="images per replica per step", lo=1)
    space: str = option("default", help="the search space", choices=tuple(sorted(SPACES)))
    seed: int = option(0, help="seed of the sampler and of every trial")

    def __post_init__(self) -> None:
        check(self)


def suggest(trial, space: Space) -> dict:
    """One trial's parameters; margin and scale only where the head uses them."""
    p = {"backbone": trial.suggest_categorical("backbone", list(space.backbones)),
         "image_size": trial.suggest_categorical("image_size", list(space.image_sizes)),
         "head": trial.suggest_categorical("head", list(space.heads)),
         "embedding_dim": trial.suggest_categorical("embedding_dim", list(space.embedding_dims)),
         "lr": trial.suggest_float("lr", *space.lr, log=True),
         "balance": trial.suggest_categorical("balance", list(space.balances))}
    if p["head"] != "softmax":
        p["arc_margin"] = trial.suggest_float("arc_margin", *space.margin)
        p["scale"] = trial.suggest_float("scale", *space.scale, log=True)
    return p


def run_sweep(cfg: SweepConfig, progress: bool = True) -> pd.DataFrame:
    import mlflow
    import optuna

    from runtime.storage import is_url
    from runtime.tracking import start_run
    from stage2_embed.training import TrainConfig, train

    if is_url(cfg.out):
        raise ValueError(f"--out {cfg.out}: the sweep keeps its study in SQLite, which needs a local or mounted "
                         "folder")

    if cfg.space not in SPACES:
        raise ValueError(f"--space must be one of {', '.join(SPACES)}")
    space = SPACES[cfg.space]
    os.makedirs(cfg.out, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="embedder", storage=f"sqlite:///{os.path.abspath(cfg.out)}/optuna.db", load_if_exists=True,
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3))

    def objective(trial) -> float:
        params = suggest(trial, space)
        run_dir = os.path.join(cfg.out, f"trial-{trial.number:03d}")
        trial.set_user_attr("run_dir", run_dir)
        tcfg = TrainConfig(records=cfg.records, out=run_dir, epochs=cfg.epochs, batch_size=cfg.batch_size,
                           val_every=max(1, cfg.epochs // 4), seed=cfg.seed, **params)

        def report(epoch: int, score: float) -> None:
            trial.report(score, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"MAP@5 {score:.3f} at epoch {epoch + 1}")

        resume = os.path.exists(os.path.join(run_dir, "ckpt", "state.json"))  # a killed sweep's trial
        return float(train(tcfg, resume=resume, progress=False, on_validation=report)["val_map5"])

    done = sum(t.state.is_finished() for t in study.trials)
    with start_run("stage2-embed", cfg, run_name=f"sweep-{os.path.basename(os.path.abspath(cfg.out))}"):
        mlflow.log_dict(_asdict(space), "space.json")
        study.optimize(objective, n_trials=max(0, cfg.trials - done), timeout=cfg.budget_minutes * 60,
                       show_progress_bar=progress, catch=())
        table = ranked(study)
        _write_outputs(table, cfg.out)
        mlflow.log_artifact(os.path.join(cfg.out, "trials.csv"))
        mlflow.log_artifact(os.path.join(cfg.out, "sweep.png"))
        if len(table) and pd.notna(table["val_map5"].iloc[0]):
            mlflow.log_metric("best_val_map5", float(table["val_map5"].iloc[0]))
    return table


def ranked(study) -> pd.DataFrame:
    """Completed trials best first, then pruned ones; one row per trial."""
    df = study.trials_dataframe(attrs=("number", "value", "params", "state", "duration", "user_attrs"))
    df = df.rename(columns=lambda c: c.removeprefix("params_").removeprefix("user_attrs_"))
    df = df.rename(columns={"value": "val_map5"})
    df["minutes"] = df["duration"].dt.total_seconds() / 60
    df = df.drop(columns=["duration"]).sort_values(["val_map5", "number"], ascending=[False, True],
                                                   na_position="last")
    return df.reset_index(drop=True)


def _write_outputs(table: pd.DataFrame, out: str) -> None:
    from runtime import atomic

    atomic.write_bytes(os.path.join(out, "trials.csv"), table.to_csv(index=False).encode())
    atomic.write_bytes(os.path.join(out, "sweep.png"), plot(table))


def plot(table: pd.DataFrame) -> bytes:
    """MAP@5 against each searched parameter, one panel each (completed trials)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = table[table["state"] == "COMPLETE"]
    params = [c for c in ("backbone", "image_size", "head", "embedding_dim", "lr", "balance", "arc_margin", "scale")
              if c in table]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for ax, name in zip(axes.flat, params, strict=False):
        x = done[name]
        if x.dtype.kind in "OUSb":
            cats = sorted(x.dropna().astype(str).unique())
            ax.scatter([cats.index(v) for v in x.astype(str)], done["val_map5"], alpha=0.7)
            ax.set_xticks(range(len(cats)), cats)
        else:
            ax.scatter(x, done["val_map5"], alpha=0.7)
            if name == "lr":
                ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("val MAP@5")
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    fig.suptitle(f"{len(done)} completed trials")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _asdict(space: Space) -> dict:
    from dataclasses import asdict

    return asdict(space)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = flags.parser(__doc__)
    flags.add_config(p, SweepConfig)
    cli.add_common_flags(p)
    return flags.parse(p, argv)


def _main(a: argparse.Namespace) -> None:
    cfg = flags.config_from(SweepConfig, a)
    table = run_sweep(cfg, progress=not a.quiet)
    print(table.head(10).to_string(index=False))
    best = table.iloc[0] if len(table) else None
    print(json.dumps({"trials": len(table), "best_val_map5": None if best is None else best["val_map5"],
                      "best_run": None if best is None else best["run_dir"],
                      "table": os.path.join(cfg.out, "trials.csv"), "plot": os.path.join(cfg.out, "sweep.png")}))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
