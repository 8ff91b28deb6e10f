"""Training checkpoints shared by both trainers: resume after a kill from the last saved epoch.

An epoch is saved when ``EVERY_S`` seconds have passed since the last save (or the run's start),
when it is the best validated so far (so a resumed run's history names the epoch whose weights
``best.weights.h5`` holds), and the run's last epoch always: on 2 CPU cores a small run's epoch
can take about as long as saving it (the small demo's embedder: 15 saves of ~1 s beside epochs
of ~1 s), while a kill still costs at most about a minute of training. Every epoch's metrics go
to MLflow and the printed line all the same; a run resumed after a kill trains again the epochs
since its last save (their MLflow steps are logged twice).

RUN_DIR/ckpt holds the last saved epoch's weights, the optimizer's variables (``.npz``, no
pickle) and ``state.json`` (epoch, history, MLflow run id, anything else the trainer keeps). Each file is
written to a temporary name and renamed; the state is written last, so a state always names a
whole checkpoint. RUN_DIR may be a ``tf.io.gfile`` URL: Keras writes its files to a local
temporary folder, which is then published with the same temp + rename.
"""

from __future__ import annotations

import io
import json
import time

from runtime import atomic
from runtime.storage import exists, join, listdir, local_copy, makedirs, read_bytes, remove

EVERY_S = 60.0  # seconds between saves, at most (the last epoch is saved regardless)
clock = time.monotonic  # a test's fake clock stands in


class Checkpoint:
    """The checkpoint folder of one run (see the module docstring)."""

    def __init__(self, run_dir: str, every_s: float | None = None):
        self.dir = join(run_dir, "ckpt")
        makedirs(self.dir)
        self.state_path = join(self.dir, "state.json")
        self.every_s = EVERY_S if every_s is None else every_s
        self.saved_at = clock()

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
                  run_id: str, force: bool = False) -> bool:
        """The end of every trainer's epoch: record, log to MLflow, print one line; checkpoint the
        run's last epoch, any epoch ``every_s`` after the last save and any ``force``d (the best
        validated so far). True when it saved."""
        import mlflow

        history.append({"epoch": epoch, **metrics})
        mlflow.log_metrics(metrics, step=epoch)
        due = force or epoch + 1 >= epochs or clock() - self.saved_at >= self.every_s
        if due:
            self.save(model, {"epoch": epoch, "history": history, "mlflow_run_id": run_id})
            self.saved_at = clock()
        print(f"epoch {epoch + 1}/{epochs} " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)
        return due


def save_model(model, path: str) -> None:
    """``model.save`` to a temporary name, then rename: a reader never sees half a ``.keras``."""
    tmp = atomic.scratch(path)  # keeps the name's ".keras", which Keras requires
    model.save(tmp)
    atomic.publish(tmp, path)
