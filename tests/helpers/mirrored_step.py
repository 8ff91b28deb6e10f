"""One or two training steps of the embedder on a fixed batch, on 1 or N logical CPU devices.

    python tests/helpers/mirrored_step.py REPLICAS  ->  JSON {"replicas", "losses", "weights_sum", ...}

Run in a subprocess: logical devices must be configured before TensorFlow starts.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tensorflow as tf  # noqa: E402

replicas = int(sys.argv[1])
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from stage2_embed.model import EmbedderConfig  # noqa: E402
from stage2_embed.train import TrainConfig, compiled_models  # noqa: E402
from tfrecords.strategy import choose_strategy  # noqa: E402

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
losses = [float(model.fit(ds.skip(i).take(1), epochs=1, verbose=0).history["loss"][0]) for i in range(2)]
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "losses": losses,
                  "weights": [np.asarray(w, "float64").ravel()[:50].tolist() for w in model.trainable_weights[-4:]]}))
