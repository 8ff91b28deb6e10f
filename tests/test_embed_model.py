import keras
import numpy as np
import pytest

from stage2_embed.model import BACKBONES, EmbedderConfig, build_backbone, build_models, weights_path


def test_backbone_table_covers_b0_b7_and_v2():
    assert {f"b{i}" for i in range(8)} | {"v2b0", "v2b1", "v2b2", "v2b3", "v2s", "v2m", "v2l"} == set(BACKBONES)
    assert weights_path("v2s").endswith("models/efficientnetv2-s_notop.h5")


@pytest.mark.parametrize("head", ["subcenter", "arcface", "softmax"])
def test_models_shapes_and_unit_embeddings(head):
    cfg = EmbedderConfig(num_classes=6, num_species=3, image_size=64, embedding_dim=16, head=head)
    train, embed = build_models(cfg)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    out = train({"image": x, "label": np.array([1, 5])}, training=False)
    assert out["individual"].shape == (2, 6) and out["species"].shape == (2, 3)
    e = keras.ops.convert_to_numpy(embed(x))
    assert e.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)


def test_embedder_keras_round_trip_gives_identical_embeddings(tmp_path):
    _, embed = build_models(EmbedderConfig(num_classes=4, image_size=64, embedding_dim=8))
    x = np.random.default_rng(1).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    embed.save(tmp_path / "e.keras")
    again = keras.saving.load_model(tmp_path / "e.keras", safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(embed(x)), keras.ops.convert_to_numpy(again(x)))


def test_weights_errors_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_backbone("b0", str(tmp_path / "missing.h5"), 64)
    # a local weights file works anywhere
    src = build_backbone("b0", "none", 64)
    path = tmp_path / "b0.weights.h5"
    src.save_weights(path)
    again = build_backbone("b0", str(path), 64)
    np.testing.assert_array_equal(src.get_weights()[0], again.get_weights()[0])
    # offline: the error names the file and where to put it
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    import keras.src.utils.file_utils as fu

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(fu, "get_file", offline)
    where = r"put efficientnetb0_notop\.h5 at .*kh/models/efficientnetb0_notop\.h5"
    with pytest.raises(FileNotFoundError, match=where):
        build_backbone("b0", "imagenet", 64)


def test_config_rejects_unknown_choices():
    with pytest.raises(ValueError, match="--backbone"):
        EmbedderConfig(num_classes=3, backbone="resnet")
    with pytest.raises(ValueError, match="--head"):
        EmbedderConfig(num_classes=3, head="cosface")
