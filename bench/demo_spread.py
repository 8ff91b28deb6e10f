"""The demo's spread over seeds: mean and standard deviation of test MAP@5, of every baseline and of
the new-individual share estimate, not the best run.

    python bench/demo_spread.py [--size small] [--seeds 1,2,3] [--workdir work/spread] [--real DIR]

Each seed runs ``pipeline/demo.py --size SIZE --seed S`` in a fresh interpreter (a new synthetic
world and new trainings; a finished seed's folder is reused). The last line is JSON with
``test_map5_mean``, ``test_map5_sd``, the same for each baseline, ``pixels_ratio`` (the pipeline's
test MAP@5 over the pixels baseline's, the closest trivial one), and every seed's figures. With
``--real DIR`` (a Kaggle-layout folder with ``boxes.csv``) each seed's detector, trained only on
its synthetic world, is also scored on those real photos (``bench/real.py --embedder pixels``):
``real_detector_map50`` and ``real_detector_iou50_share``, and at sea on the two proxies (the fins cut
out and laid into a synthetic sea, ``real_detector_map50_at_sea``, and into the set's own water,
``real_detector_map50_at_sea_real``), since one detector's real-photo score says little when runs of
the same budget differ.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from runtime import flags

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("test_map5", "baseline_new_plus_frequent_map5", "baseline_untrained_map5", "baseline_pixels_map5",
        "baseline_pixels_sift_map5",
        "new_share_estimate", "new_share_true", "detector_map50", "minutes")
REAL_KEYS = ("real_detector_map50", "real_detector_iou50_share", "real_detector_map50_at_sea",
             "real_detector_map50_at_sea_real")


def run_seed(size: str, seed: int, workdir: str) -> dict:
    done = os.path.join(workdir, "demo.json")
    if os.path.exists(done):
        return json.loads(open(done).read())
    r = subprocess.run([sys.executable, "-m", "pipeline.demo", "--size", size, "--seed", str(seed), "--workdir",
                        workdir], cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"seed {seed}: the demo failed:\n{r.stderr[-2000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    with open(done, "w") as f:
        json.dump(out, f)
    return out


def real_detector(seed_dir: str, real: str) -> dict:
    """The seed's detector on the real photos of ``real`` (``bench/real.py``, pixels: no training)."""
    done = os.path.join(seed_dir, "real.json")
    if not os.path.exists(done):
        r = subprocess.run([sys.executable, "bench/real.py", "--data", real, "--detector",
                            os.path.join(seed_dir, "detector"), "--embedder", "pixels", "--workdir",
                            os.path.join(seed_dir, "real")], cwd=ROOT, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"{seed_dir}: bench/real.py failed:\n{r.stderr[-2000:]}")
        with open(done, "w") as f:
            f.write(r.stdout.strip().splitlines()[-1])
    res = json.loads(open(done).read())
    return {k: res.get(k.removeprefix("real_")) for k in REAL_KEYS}  # bench/real.py's keys, prefixed


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--size", default="small", choices=("small", "default"), help="demo size")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    p.add_argument("--workdir", default="work/spread", help="one folder per seed under it")
    p.add_argument("--real", help="a real Kaggle-layout folder with boxes.csv: score each seed's detector on it")
    a = p.parse_args(argv)

    import pandas as pd

    seeds = [int(s) for s in a.seeds.split(",") if s]
    rows = []
    for s in seeds:
        print(f"seed {s} ...", flush=True)
        seed_dir = os.path.join(a.workdir, f"{a.size}-seed{s}")
        demo = run_seed(a.size, s, seed_dir)
        row = {"seed": s, **{k: demo.get(k) for k in KEYS}}
        row["pixels_ratio"] = demo["test_map5"] / demo["baseline_pixels_map5"]
        rows.append({**row, **(real_detector(seed_dir, a.real) if a.real else {})})
    df = pd.DataFrame(rows).set_index("seed").astype(float)
    print(df.round(3).to_string())
    keys = [*KEYS, "pixels_ratio", *(REAL_KEYS if a.real else ())]
    out = {"size": a.size, "seeds": seeds, **{f"{k}_mean": round(float(df[k].mean()), 4) for k in keys},
           **{f"{k}_sd": round(float(df[k].std(ddof=1)), 4) if len(df) > 1 else 0.0 for k in keys},
           "runs": df.round(4).reset_index().to_dict("records")}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
