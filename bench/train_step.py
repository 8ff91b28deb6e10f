"""Embedder training throughput: the compiled Keras ``fit`` step beside a plain ``tf.GradientTape``
loop (in a ``tf.function``) and beside ``fit`` with ``jit_compile=True``, with the achieved GFLOP/s
against a large fp32 matmul measured in the same run.

    python bench/train_step.py [--backbone b0] [--image-size 128] [--batch-size 32] [--steps 20]

Random images in memory (speed does not depend on the pixels); the sub-center ArcFace head plus
the species head, as ``stage2_embed/train.py`` trains them. Training FLOPs are taken as 3x the
forward pass's (forward + two backward matmuls per layer), the forward counted by TF's profiler.
The last line is JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import flags


def matmul_gflops(n: int = 4096, reps: int = 10) -> float:
    """fp32 GFLOP/s of an n x n matmul: the machine's practical ceiling."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    f().numpy()
    t = time.perf_counter()
    for _ in range(reps):
        f().numpy()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def forward_flops(model, image_size: int) -> float:
    """FLOPs of one image's forward pass, from TF's graph profiler."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(tf.TensorSpec((1, image_size, image_size, 3))))
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return float(tf.compat.v1.profiler.profile(frozen.graph, options=opts).total_float_ops)


class Setup(NamedTuple):
    """What every timed path trains on: the same batches, configs and number of timed steps."""

    ds: object  # tf.data.Dataset of (inputs, targets) batches, repeated
    cfg: object  # stage2_embed.training.TrainConfig
    ecfg: object  # stage2_embed.model.EmbedderConfig
    steps: int
    images: int  # images in the timed steps


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--backbone", default="b0", help="EfficientNet size")
    p.add_argument("--image-size", type=int, default=128, help="input side")
    p.add_argument("--batch-size", type=int, default=32, help="images per step")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--classes", type=int, default=300, help="individuals (head size)")
    a = p.parse_args(argv)

    import keras

    from stage2_embed.training import compiled_models

    setup = random_setup(a)
    ceiling = matmul_gflops()
    keras.utils.set_random_seed(0)
    _, embed_model = compiled_models(setup.cfg, setup.ecfg, a.steps)
    train_flops = 3 * forward_flops(embed_model, a.image_size)
    rates = {"fit": fit_rate(setup, False), "gradient_tape": tape_rate(setup), "step_loop": step_loop_rate(setup),
             "fit_jit": fit_rate(setup, True)}
    for name, r in rates.items():
        gf = r * train_flops / 1e9
        print(f"{name:14s} {r:7.1f} img/s  {gf:6.1f} GFLOP/s  {gf / ceiling:6.1%} of the matmul ceiling")
    print(json.dumps({
        "backbone": a.backbone, "image_size": a.image_size, "batch_size": a.batch_size,
        "train_gflop_per_image": train_flops / 1e9,
        "matmul_ceiling_gflops": round(ceiling, 1), **{f"{k}_img_s": round(v, 2) for k, v in rates.items()},
        "tape_vs_fit": round(rates["gradient_tape"] / rates["fit"], 3),
        "step_loop_vs_fit": round(rates["step_loop"] / rates["fit"], 3),
        "jit_vs_fit": round(rates["fit_jit"] / rates["fit"], 3),
        "fit_utilisation": round(rates["fit"] * train_flops / 1e9 / ceiling, 4)}))
    return 0


def random_setup(a) -> Setup:
    """Random images and labels in memory, batched and repeated, and the configs to train on them."""
    import numpy as np
    import tensorflow as tf

    from stage2_embed.model import EmbedderConfig
    from stage2_embed.training import TrainConfig

    n, s, b = a.batch_size * a.steps, a.image_size, a.batch_size
    rng = np.random.default_rng(0)
    x = {"image": rng.uniform(0, 255, (n, s, s, 3)).astype("float32"),
         "label": rng.integers(0, a.classes, n).astype("int32")}
    y = {"individual": x["label"], "species": x["label"] % 8}
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(b, drop_remainder=True).repeat()
    cfg = TrainConfig(records="", out="", backbone=a.backbone, image_size=s, batch_size=b, epochs=1)
    ecfg = EmbedderConfig(num_classes=a.classes, num_species=8, backbone=a.backbone, image_size=s)
    return Setup(ds, cfg, ecfg, a.steps, n)


def _model(setup: Setup):
    import keras

    from stage2_embed.training import compiled_models

    keras.utils.set_random_seed(0)
    return compiled_models(setup.cfg, setup.ecfg, setup.steps)[0]


def fit_rate(setup: Setup, jit: bool) -> float:
    """Images/s of Keras ``fit`` (``jit``: XLA-compiled), after a traced warm-up of two steps."""
    model = _model(setup)
    model.jit_compile = jit
    model.fit(setup.ds, steps_per_epoch=2, epochs=1, verbose=0)  # trace / compile
    t = time.perf_counter()
    model.fit(setup.ds, steps_per_epoch=setup.steps, epochs=1, verbose=0)
    return setup.images / (time.perf_counter() - t)


def tape_rate(setup: Setup) -> float:
    """Images/s of a plain ``tf.GradientTape`` step in a ``tf.function`` (the two heads' losses)."""
    import keras
    import tensorflow as tf

    model = _model(setup)
    opt, ce = model.optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            out = model(xb, training=True)
            loss = ce(yb["individual"], out["individual"]) + 0.1 * ce(yb["species"], out["species"])
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    it = iter(setup.ds)
    for _ in range(2):
        step(*next(it)).numpy()
    t = time.perf_counter()
    for _ in range(setup.steps):
        loss = step(*next(it))
    loss.numpy()
    return setup.images / (time.perf_counter() - t)


def step_loop_rate(setup: Setup) -> float:
    """Keras' own ``train_step`` (losses, metrics, optimizer) in a ``tf.function`` loop with no
    per-step sync: ``runtime.strategy.fit_epoch``'s loop."""
    import tensorflow as tf

    from runtime.strategy import fit_epoch

    model = _model(setup)
    strategy = tf.distribute.get_strategy()
    fit_epoch(model, setup.ds, 2, strategy, progress=False, loop=True)  # trace
    t = time.perf_counter()
    fit_epoch(model, setup.ds, setup.steps, strategy, progress=False, loop=True)
    return setup.images / (time.perf_counter() - t)


if __name__ == "__main__":
    sys.exit(main())
