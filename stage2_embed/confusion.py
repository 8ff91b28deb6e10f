"""How the classifier heads err: a species confusion matrix (CSV + PNG) and the individuals most
often taken for one another, for either head.

    python stage2_embed/confusion.py --embedder RUN_DIR --records CROPS [--out DIR] [--val-fold K]

The softmax head predicts an individual with its logits; an ArcFace head with its scaled cosines
to the class centres (the margin is a training-time device and is left out). Images are the
validation fold's; the individual pairs count only individuals the model was trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])


from runtime import cli
from stage2_embed.confusion_matrix import ConfusionConfig, log_to_run, report


def _main(a: argparse.Namespace) -> None:
    import keras

    from runtime.storage import exists, join, read_bytes
    from stage2_embed import layers  # noqa: F401 - registers GeM and ArcFace for deserialisation

    path = join(a.embedder, "train_model.keras")
    if not exists(path):
        raise FileNotFoundError(f"{path} not found: is {a.embedder} a run folder of stage2_embed/train.py?")
    cfg = json.loads(read_bytes(join(a.embedder, "train_config.json")))
    model = keras.saving.load_model(path, safe_mode=True, compile=False)  # no optimizer needed
    summary = report(model, a.records, a.out or join(a.embedder, "confusion"), cfg["image_size"],
                     cfg["val_fold"] if a.val_fold is None else a.val_fold, cfg["head"], cfg.get("crop", False))
    state = join(a.embedder, "ckpt", "state.json")
    if exists(state) and (run_id := json.loads(read_bytes(state)).get("mlflow_run_id")):
        log_to_run(run_id, summary)  # beside the training run's other results
    print(json.dumps(summary))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, cli.parse_config(__doc__, ConfusionConfig, argv))


if __name__ == "__main__":
    sys.exit(main())
