"""The README's Kaggle block, run as written (bash, the README's own lines) on a synthetic
Kaggle-layout folder with public-style ``image,xmin,ymin,xmax,ymax`` boxes and no label column,
from the raw folder to ``submission.csv``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT


def kaggle_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Kaggle use"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow  # 2-3 minutes: the default suite is at its 20-minute budget
def test_the_readme_kaggle_commands_go_from_public_boxes_to_a_submission(tiny_data, tmp_path):
    from pipeline.submission import validate_submission

    data = tmp_path / "input"
    shutil.copytree(tiny_data, data)
    ours = pd.read_csv(data / "boxes.csv")
    (data / "boxes.csv").unlink()  # only the public file below
    public = ours.rename(columns={"x_min": "xmin", "y_min": "ymin", "x_max": "xmax", "y_max": "ymax"})
    public[["image", "xmin", "ymin", "xmax", "ymax"]].to_csv(tmp_path / "public_boxes.csv", index=False)
    env = {**os.environ, "D": str(data), "W": str(tmp_path / "w"), "BOXES": str(tmp_path / "public_boxes.csv"),
           "TRAIN": "--smoke --epochs 1", "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", kaggle_block()], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    truth = pd.read_csv(data / "test_truth.csv")
    sub = validate_submission(str(tmp_path / "w" / "embedder" / "submission" / "submission.csv"),
                              truth["image"].tolist())
    assert len(sub) == len(truth)
    crops = pd.read_csv(tmp_path / "w" / "records" / "index.csv")
    assert len(crops) == len(ours["image"].unique()) or len(crops) >= len(truth)
    rejected = pd.read_csv(tmp_path / "w" / "records" / "rejected.csv")
    assert not rejected["reason"].str.contains("label").any()  # no label column: every box took --part
