"""Stage 2 training: the loss falls on a separable set; a run checkpoints, resumes, and saves an
embedder that reloads with safe_mode and gives identical embeddings."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from runtime.strategy import fit_epoch
from stage2_embed.model import EmbedderConfig, build_models


def test_loss_falls_and_classes_separate_on_a_tiny_separable_set():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    colours = np.array([[220, 30, 30], [30, 220, 30], [30, 30, 220], [220, 220, 30]], "float32")
    y = np.repeat(np.arange(4), 8)
    x = np.clip(colours[y][:, None, None, :] + rng.normal(0, 20, (32, 32, 32, 3)), 0, 255).astype("float32")
    train, embed = build_models(EmbedderConfig(num_classes=4, image_size=32, embedding_dim=16, head="subcenter",
                                               k=2, scale=10.0, margin=0.2, dropout=0.0))
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    train.compile(optimizer=keras.optimizers.Adam(3e-3), loss={"individual": ce})
    ds = tf.data.Dataset.from_tensor_slices(({"image": x, "label": y}, {"individual": y})).batch(16)
    # the trainers' own epoch (runtime.strategy.fit_epoch: the step traced once)
    h = [fit_epoch(train, ds, None, tf.distribute.get_strategy(), progress=False)["loss"] for _ in range(15)]
    assert h[-1] < 0.5 * h[0]
    # batch statistics: 30 steps are too few for BatchNorm's moving averages (momentum 0.99) to settle
    e = np.asarray(embed(x, training=True))
    sim = e @ e.T
    same = y[:, None] == y[None, :]
    assert sim[same].mean() > sim[~same].mean() + 0.3


@pytest.fixture(scope="module")
def embed_run(tiny_records, tmp_path_factory):
    import os

    from stage2_embed.training import smoke, train

    out = tmp_path_factory.mktemp("emb_run")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{out}/mlflow.db"
    try:
        cfg = smoke(str(tiny_records), str(out), crop=True, epochs=1, balance="resample")
        train(cfg, progress=False)
        first = json.loads((out / "ckpt" / "state.json").read_text())["history"]
        from dataclasses import replace

        final = train(replace(cfg, epochs=2), resume=True, progress=False)  # resumes after epoch 1
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    return out, first, final


def test_resume_continues_the_history(embed_run):
    out, first, final = embed_run
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [0, 1] and hist[0] == first[0]
    assert final["epoch"] == 1 and 0.0 <= final["val_map5"] <= 1.0


def test_saved_embedder_reloads_with_identical_embeddings(embed_run, tiny_records):
    from stage2_embed.data import image_dataset
    from stage2_embed.fusion import fused_model

    out, _, _ = embed_run
    cfg = json.loads((out / "embedder_config.json").read_text())
    again = keras.saving.load_model(out / "embedder.keras", safe_mode=True)
    fresh_train, fresh_embed = build_models(EmbedderConfig(**{**cfg, "margins": None}))
    fresh_train.load_weights(out / "best.weights.h5")  # the saved model is the best validated epoch's
    batch = next(iter(image_dataset(str(tiny_records), "train", cfg["image_size"], 8, crop=True)))
    a = np.asarray(again(batch["image"], training=False))
    kernels = {k: again.get_layer(f"{k}_metric").get_weights()[0]  # the projections fitted on its folds
               for k, flag in (("pixels", "pixel_metric"), ("hog", "hog_metric")) if cfg[flag]}
    fused = fused_model(fresh_embed, cfg["pixel_weight"], cfg["hog_weight"], kernels)  # as chosen on validation
    b = np.asarray(fused(batch["image"], training=False))
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_train_cli_help_and_bad_balance():
    from conftest import run_script

    r = run_script(["stage2_embed/train.py", "--help"])
    assert r.returncode == 0 and "--dynamic-margin" in r.stdout
    r = run_script(["stage2_embed/train.py", "--records", "x", "--out", "y", "--balance", "magic"])
    assert r.returncode == 2 and "--balance: invalid choice" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_embedding_export_covers_every_record_without_pickle(embed_run, tiny_records, tmp_path):
    from stage2_embed.embedder import export

    out, _, _ = embed_run
    export(str(out), str(tiny_records), str(tmp_path / "e.npz"), crop=True, batch_size=16)
    with np.load(tmp_path / "e.npz", allow_pickle=False) as z:
        assert set(z.files) == {"embeddings", "filenames", "individual_ids", "species", "splits", "folds", "holdout"}
        m = json.loads((tiny_records / "manifest.json").read_text())
        n = m["counts"]["train"] + m["counts"]["test"]
        cfg = json.loads((out / "embedder_config.json").read_text())  # 32-d, 256-d pixels, 324-d edges
        saved = keras.saving.load_model(out / "embedder.keras", safe_mode=True)  # or fewer, projected
        dims = {"embedding": 32, **{k: saved.get_layer(f"{layer}_metric").get_weights()[0].shape[1] if cfg[flag] else d
                                    for k, layer, flag, d in (("pixel", "pixels", "pixel_metric", 256),
                                                              ("hog", "hog", "hog_metric", 324))}}
        weighed = {"embedding": 1.0 - cfg["pixel_weight"] - cfg["hog_weight"], "pixel": cfg["pixel_weight"],
                   "hog": cfg["hog_weight"]}
        assert z["embeddings"].shape == (n, sum(dims[k] for k, w in weighed.items() if w > 1e-6))
        assert len(set(z["filenames"])) == n
        assert (z["splits"] == "test").sum() == m["counts"]["test"]
        np.testing.assert_allclose(np.linalg.norm(z["embeddings"], axis=1), 1.0, atol=1e-5)
        assert set(z["individual_ids"][z["splits"] == "train"]) <= set(m["individuals"])


def test_seeded_training_batches_repeat_exactly(tiny_crops):
    """Stateless augmentation keyed per element: the same seed gives the same batches (whatever the
    thread scheduling of the parallel map), another seed other ones."""
    from stage2_embed.data import augment, train_dataset
    from tfrecords.reader import read_manifest

    counts = np.ones(len(read_manifest(str(tiny_crops))["individuals"]), np.int64)

    def first_batches(seed: int) -> np.ndarray:
        ds = train_dataset(str(tiny_crops), 48, 8, 0, counts, seed=seed)
        return np.stack([x["image"].numpy() for x, _ in ds.take(3)])

    np.testing.assert_array_equal(first_batches(5), first_batches(5))
    assert not np.array_equal(first_batches(5), first_batches(6))
    img = np.random.default_rng(0).uniform(0, 255, (60, 60, 3)).astype("float32")
    one = augment({"image": img, "seed": np.array([1, 2])}, 48)["image"].numpy()  # eagerly, a dict -> dict op
    assert one.shape == (48, 48, 3)
    np.testing.assert_array_equal(one, augment({"image": img, "seed": np.array([1, 2])}, 48)["image"].numpy())
    assert not np.array_equal(one, augment({"image": img, "seed": np.array([1, 3])}, 48)["image"].numpy())


def test_init_takes_over_backbone_and_neck_and_leaves_a_new_head(tiny_embedder):
    """``--init RUN_DIR``: another run's backbone and embedding, a head sized for these individuals."""
    from stage2_embed.model import init_from

    cfg = json.loads((tiny_embedder / "embedder_config.json").read_text())
    fields = {k: v for k, v in cfg.items() if k in EmbedderConfig.__dataclass_fields__}
    new_train, _ = build_models(EmbedderConfig(**{**fields, "num_classes": fields["num_classes"] + 3,
                                                  "margins": None}))
    old = keras.saving.load_model(str(tiny_embedder / "train_model.keras"), safe_mode=True, compile=False)
    copied = init_from(new_train, str(tiny_embedder))
    assert copied >= 3  # backbone, neck dense, neck BN at least
    np.testing.assert_array_equal(new_train.get_layer("neck_dense").get_weights()[0],
                                  old.get_layer("neck_dense").get_weights()[0])
    head, old_head = new_train.get_layer("individual"), old.get_layer("individual")
    assert head.get_weights()[0].shape != old_head.get_weights()[0].shape
