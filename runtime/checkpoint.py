"""Per-epoch training checkpoints shared by both trainers: resume after a kill from the last epoch.

RUN_DIR/ckpt holds the last epoch's weights, the optimizer's variables (``.npz``, no pickle) and
``state.json`` (epoch, history, MLflow run id, anything else the trainer keeps). Each file is
written to a temporary name and renamed; the state is written last, so a state always names a
whole checkpoint. RUN_DIR may be a ``tf.io.gfile`` URL: Keras writes its files to a local
temporary folder, which is then published with the same temp + rename.
"""

from __future__ import annotations

import io
import json

from runtime import atomic
from runtime.storage import exists, join, listdir, local_copy, makedirs, read_bytes, remove


class Checkpoint:
    """The checkpoint folder of one run (see the module docstring)."""

    def __init__(self, run_dir: str):
        self.dir = join(run_dir, "ckpt")
        makedirs(self.dir)
        self.state_path = join(self.dir, "state.json")

    def state(self) -> dict | None:
        return json.loads(read_bytes(self.state_path)) if exists(self.state_path) else None

    def save(self, model, state: dict) -> None:
        import numpy as np

        e = state["epoch"]
        weights = join(self.dir, f"epoch{e}.weights.h5")
        tmp = atomic.scratch(weights)
        model.save_weights(tmp)
        atomic.publish(tmp, weights)
        store: dict = {}
        model.optimizer.save_own_variables(store)
        buf = io.BytesIO()
        np.savez(buf, **store)
        atomic.write_bytes(join(self.dir, f"epoch{e}.optimizer.npz"), buf.getvalue())
        atomic.write_json(self.state_path, state)
        for name in listdir(self.dir):  # keep only the checkpoint the state names
            if name.startswith("epoch") and not name.startswith(f"epoch{e}."):
                path = join(self.dir, name)
                remove(path)

    def restore(self, model, state: dict) -> None:
        import numpy as np

        e = state["epoch"]
        with local_copy(join(self.dir, f"epoch{e}.weights.h5")) as weights:
            model.load_weights(weights)
        model.optimizer.build(model.trainable_variables)
        with np.load(io.BytesIO(read_bytes(join(self.dir, f"epoch{e}.optimizer.npz"))), allow_pickle=False) as z:
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
    tmp = atomic.scratch(path)  # keeps the name's ".keras", which Keras requires
    model.save(tmp)
    atomic.publish(tmp, path)
