"""Every command, given bad input, exits 2 with one line on stderr naming the file and what to do,
and no traceback. Commands run in-process (TensorFlow is already loaded here); one runs as a user
would, to check that TensorFlow's start-up notices stay off stderr."""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_script


@pytest.fixture(scope="module")
def bad(tiny_records, tiny_embedder, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    old = root / "old_records"
    shutil.copytree(tiny_records, old)
    m = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**m, "schema_version": 0}))
    (root / "empty").mkdir()
    (root / "photos").mkdir()
    (root / "photos" / "a.jpg").write_bytes(b"")
    (root / "no_columns.csv").write_text("image,whale\na.jpg,x\n")
    (root / "blank.csv").write_text("")
    return {"old": old, "empty": root / "empty", "photos": root / "photos", "no_columns": root / "no_columns.csv",
            "blank": root / "blank.csv", "records": tiny_records, "embedder": tiny_embedder, "out": root / "out"}


# (module, argv with {placeholders}, a fragment the one line must hold)
CASES = [
    ("tfrecords.build", ["--data", "{empty}", "--out", "{out}/r"], "{empty}"),
    ("tfrecords.eda", ["--data", "{empty}/missing", "--out", "{out}/e"], "missing"),
    ("stage1_detect.train", ["--records", "{old}", "--out", "{out}/d"], "schema version"),
    ("stage1_detect.train", ["--records", "{empty}", "--out", "{out}/d"], "manifest.json"),
    ("stage1_detect.crop", ["--detector", "{embedder}", "--records", "{records}", "--out", "{out}/c"], "detector"),
    ("stage1_detect.crop", ["--detector", "{empty}/nothing", "--records", "{records}", "--out", "{out}/c"], "nothing"),
    ("stage1_detect.evaluate", ["--detector", "{records}", "--records", "{records}"], "detector"),
    ("stage2_embed.train", ["--records", "{old}", "--out", "{out}/t"], "schema version"),
    ("stage2_embed.train", ["--records", "{records}", "--out", "{out}/t", "--head", "cosface"], "--head"),
    ("stage2_embed.embed", ["--embedder", "{records}", "--records", "{records}", "--npz", "{out}/x.npz"], "embedder"),
    ("stage2_embed.embed", ["--embedder", "{embedder}", "--records", "{old}", "--npz", "{out}/x.npz"], "schema"),
    ("pipeline.infer", ["--detector", "none", "--embedder", "{embedder}", "--catalog", "{records}",
                        "--images", "{empty}", "--out", "{out}/s.csv"], "{empty}"),
    ("pipeline.infer", ["--detector", "{embedder}", "--embedder", "{embedder}", "--catalog", "{records}",
                        "--images", "{photos}", "--out", "{out}/s.csv"], "detector"),
    ("pipeline.infer", ["--detector", "none", "--embedder", "{records}", "--catalog", "{records}",
                        "--images", "{photos}", "--out", "{out}/s.csv"], "embedder"),
    ("pipeline.evaluate", ["--embedder", "{embedder}", "--records", "{old}"], "schema"),
    ("pipeline.enroll", ["--embedder", "{embedder}", "--catalog", "{out}/c.npz", "--images", "{photos}",
                         "--labels", "{no_columns}"], "no_columns.csv"),
    ("pipeline.enroll", ["--embedder", "{embedder}", "--catalog", "{out}/c.npz", "--images", "{photos}",
                         "--labels", "{blank}"], "blank.csv"),
]


def _fill(text: str, bad: dict[str, Path]) -> str:
    return text.format(**{k: str(v) for k, v in bad.items()})


@pytest.mark.parametrize(("module", "argv", "fragment"), CASES,
                         ids=[f"{m.split('.')[-1]}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_bad_input_is_one_line_and_exit_2(bad, capsys, module, argv, fragment):
    try:
        rc = importlib.import_module(module).main([_fill(a, bad) for a in argv])
    except SystemExit as e:  # rejected by the option parser itself (a value outside its choices)
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert _fill(fragment, bad) in err[0], err


def test_tensorflow_start_up_notices_stay_off_stderr(bad):
    out = run_script(["stage2_embed/train.py", "--records", str(bad["old"]), "--out", str(bad["out"] / "t2")])
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "schema version" in out.stderr, out.stderr


def test_debug_shows_the_traceback(bad):
    out = run_script(["stage2_embed/train.py", "--records", str(bad["old"]), "--out", str(bad["out"] / "t3"),
                      "--debug"])
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_a_model_with_code_in_it_is_refused(tmp_path):
    """``safe_mode=True``: a .keras file with a Lambda layer (arbitrary code) does not load."""
    import keras

    from stage2_embed.embedder import load_embedder

    run = tmp_path / "run"
    run.mkdir()
    x = keras.Input((4,))
    keras.Model(x, keras.layers.Lambda(lambda t: t * 2)(x)).save(run / "embedder.keras")
    (run / "embedder_config.json").write_text("{}")
    with pytest.raises(ValueError, match="(?i)safe_mode|lambda"):
        load_embedder(str(run))


def test_a_catalog_holding_pickled_objects_is_refused(tmp_path):
    import numpy as np

    from pipeline.catalog import load_npz

    path = tmp_path / "cat.npz"
    np.savez(path, embeddings=np.zeros((1, 4), "float32"), individual_ids=np.array([{"x": 1}], dtype=object),
             species=np.array(["a"]), filenames=np.array(["a.jpg"]))
    with pytest.raises(ValueError, match="not a readable .npz catalog"):
        load_npz(str(path))


def test_a_file_where_a_folder_is_wanted_is_one_line(bad, capsys):
    from pipeline import demo

    (bad["out"]).mkdir(exist_ok=True)
    not_a_folder = bad["out"] / "file"
    not_a_folder.write_text("x")
    before = os.environ.get("MLFLOW_TRACKING_URI")
    assert demo.main(["--workdir", str(not_a_folder), "--size", "small"]) == 2
    assert os.environ.get("MLFLOW_TRACKING_URI") == before  # later runs do not go to its store
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(not_a_folder) in err[0], err
