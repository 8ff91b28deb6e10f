"""Per-epoch training checkpoints shared by both trainers: resume after a kill from the last epoch.

RUN_DIR/ckpt holds the last epoch's weights, the optimizer's variables (``.npz``, no pickle) and
``state.json`` (epoch, history, MLflow run id, anything else the trainer keeps). Each file is
written to a temporary name and renamed; the state is written last, so a state always names a
whole checkpoint.
"""

from __future__ import annotations

import json
import os

from tfrecords import atomic


class Checkpoint:
    """The checkpoint folder of one run (see the module docstring)."""

    def __init__(self, run_dir: str):
        self.dir = os.path.join(run_dir, "ckpt")
        os.makedirs(self.dir, exist_ok=True)
        self.state_path = os.path.join(self.dir, "state.json")

    def state(self) -> dict | None:
        return json.loads(open(self.state_path).read()) if os.path.exists(self.state_path) else None

    def save(self, model, state: dict) -> None:
        import numpy as np

        e = state["epoch"]
        tmp = os.path.join(self.dir, f".tmp-{os.getpid()}.weights.h5")
        model.save_weights(tmp)
        os.replace(tmp, os.path.join(self.dir, f"epoch{e}.weights.h5"))
        store: dict = {}
        model.optimizer.save_own_variables(store)
        tmp = os.path.join(self.dir, f".tmp-{os.getpid()}.npz")
        np.savez(tmp, **store)
        os.replace(tmp, os.path.join(self.dir, f"epoch{e}.optimizer.npz"))
        atomic.write_json(self.state_path, state)
        for name in os.listdir(self.dir):  # keep only the checkpoint the state names
            if name.startswith("epoch") and not name.startswith(f"epoch{e}."):
                os.remove(os.path.join(self.dir, name))

    def restore(self, model, state: dict) -> None:
        import numpy as np

        e = state["epoch"]
        model.load_weights(os.path.join(self.dir, f"epoch{e}.weights.h5"))
        model.optimizer.build(model.trainable_variables)
        with np.load(os.path.join(self.dir, f"epoch{e}.optimizer.npz"), allow_pickle=False) as z:
            model.optimizer.load_own_variables({k: z[k] for k in z.files})

    def end_epoch(self, model, epoch: int, epochs: int, metrics: dict[str, float], history: list[dict],
                  run_id: str) -> None:
        """The end of every trainer's epoch: record, log to MLflow, checkpoint, print one line."""
        import mlflow

        history.append({"epoch": epoch, **metrics})
        mlflow.log_metrics(metrics, step=epoch)
        self.save(model, {"epoch": epoch, "history": history, "mlflow_run_id": run_id})
        print(f"epoch {epoch + 1}/{epochs} " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)


def save_model(model, path: str) -> None:
    """``model.save`` to a temporary name, then rename: a reader never sees half a ``.keras``."""
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{os.path.basename(path)}")
    model.save(tmp)
    os.replace(tmp, path)
