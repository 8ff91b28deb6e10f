"""The README's "Quickstart on your own photos", run as written (bash, the README's own lines) in a
folder holding ``catalog_photos/``, ``labels.csv`` and ``new_photos/``: enrol, fit on the catalog,
identify, and the review server answering on the result."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pandas as pd
from conftest import ROOT
from test_review_app import free_port

# ``python SCRIPT ...`` runs the repo's script from the user's folder; the review server, which
# serves until stopped, goes to the background on a free port
SHIM = """python() {
  if [[ "$1" == pipeline/review.py ]]; then
    "$PY" "$ROOT/$1" "${@:2}" --port "$PORT" > review.log 2>&1 & echo $! > review.pid
  else "$PY" "$ROOT/$1" "${@:2}"; fi
}
"""


def quickstart() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Quickstart on your own photos"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_the_readme_quickstart_enrols_identifies_and_serves_the_review(tiny_data, tmp_path):
    train = pd.read_csv(tiny_data / "train.csv")
    (tmp_path / "catalog_photos").mkdir()
    for name in train["image"]:
        shutil.copy(tiny_data / "train_images" / name, tmp_path / "catalog_photos")
    train[["image", "individual_id", "species"]].to_csv(tmp_path / "labels.csv", index=False)
    shutil.copytree(tiny_data / "test_images", tmp_path / "new_photos")
    port = free_port()
    env = {**os.environ, "PY": sys.executable, "ROOT": str(ROOT), "PORT": str(port),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", SHIM + quickstart()], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    pid = int((tmp_path / "review.pid").read_text())
    try:
        for _ in range(300):
            try:
                stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=1).read())
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError((tmp_path / "review.log").read_text()[-2000:])
    finally:
        os.kill(pid, 15)
    fit = json.loads((tmp_path / "work" / "pixels" / "threshold.json").read_text())
    assert fit["records"] == "work/catalog.npz" and fit["rerank"]["k"] >= 10  # fitted on the catalog: infer re-ranks
    sub = pd.read_csv(tmp_path / "work" / "run" / "submission.csv")
    assert sorted(sub["image"]) == sorted(os.listdir(tiny_data / "test_images"))
    assert sub["predictions"].str.split().map(len).eq(5).all()
    truth = pd.read_csv(tiny_data / "test_truth.csv").set_index("image")["individual_id"]
    known = [i for i in sub["image"] if truth[i] in set(train["individual_id"])]
    m = pd.read_csv(tmp_path / "work" / "run" / "matches.csv")
    top1 = m[m["rank"] == 1].set_index("image")["individual_id"]
    # 16x16 pixels of whole photos rank the right individual first 4 times in 16, chance is 1 in 20
    assert (top1[known] == truth[known]).mean() >= 0.2
    assert stats["queries"] == 20 and stats["decided"] == 0  # the review queue holds every new photo
