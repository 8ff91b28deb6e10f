import json

from conftest import run_script


def test_small_demo_runs_the_data_stage_end_to_end(tmp_path):
    r = run_script(["pipeline/demo.py", "--workdir", str(tmp_path), "--size", "small"])
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    m = json.loads((tmp_path / "records" / "manifest.json").read_text())
    assert m["counts"]["train"] == out["train_images"] == 72 and m["counts"]["test"] == 24
    assert (tmp_path / "eda" / "index.html").exists()
    assert "[3/3]" in r.stdout
