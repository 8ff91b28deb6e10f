"""Two training steps of the embedder on fixed batches, through the trainers' ``fit_epoch``.

    python tests/helpers/mirrored_step.py REPLICAS              one process, REPLICAS logical CPUs
    python tests/helpers/mirrored_step.py worker INDEX PORT,PORT  one of the workers on 127.0.0.1
    ->  last line JSON {"replicas", "losses", "weights"}

Run in a subprocess: logical devices and TF_CONFIG must be set before TensorFlow starts.
The global batch is 16 in every mode.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
if sys.argv[1] == "worker":
    ports = sys.argv[3].split(",")
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                          "task": {"type": "worker", "index": int(sys.argv[2])}})
    replicas = len(ports)
else:
    replicas = int(sys.argv[1])

import tensorflow as tf  # noqa: E402

if sys.argv[1] != "worker":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from runtime.strategy import choose_strategy, fit_epoch, shard_by_file  # noqa: E402
from stage2_embed.model import EmbedderConfig  # noqa: E402
from stage2_embed.training import TrainConfig, compiled_models  # noqa: E402

strategy = choose_strategy()
cfg = TrainConfig(records="", out="", image_size=32, batch_size=16 // replicas, lr=1e-3, epochs=1,
                  warmup_epochs=0.0)
ecfg = EmbedderConfig(num_classes=6, num_species=2, image_size=32, embedding_dim=16, dropout=0.0,
                      sync_bn=replicas > 1)
keras.utils.set_random_seed(0)
with strategy.scope():
    model, _ = compiled_models(cfg, ecfg, steps_per_epoch=2)
for layer in model.layers[1].layers:  # stochastic depth draws differ per replica by design: off here
    if isinstance(layer, keras.layers.Dropout):
        layer.rate = 0.0
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (32, 32, 32, 3)).astype("float32")
y = rng.integers(0, 6, 32).astype("int32")
ds = tf.data.Dataset.from_tensor_slices(({"image": x, "label": y}, {"individual": y, "species": y % 2})).batch(16)
ds = shard_by_file(ds, 0, strategy)  # in-memory data: each worker keeps its half of every batch
losses = [fit_epoch(model, ds.skip(i).take(1), 1, strategy, progress=False)["loss"] for i in range(2)]
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "losses": losses,
                  "weights": [np.asarray(w, "float64").ravel()[:50].tolist() for w in model.trainable_weights[-4:]]}))
