"""The demo's spread over seeds: mean and standard deviation of test MAP@5, of every baseline and of
the new-individual share estimate, not the best run.

    python bench/demo_spread.py [--size small] [--seeds 1,2,3] [--workdir work/spread]

Each seed runs ``pipeline/demo.py --size SIZE --seed S`` in a fresh interpreter (a new synthetic
world and new trainings; a finished seed's folder is reused). The last line is JSON with
``test_map5_mean``, ``test_map5_sd``, the same for each baseline, and every seed's figures.
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


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--size", default="small", choices=("small", "default"), help="demo size")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    p.add_argument("--workdir", default="work/spread", help="one folder per seed under it")
    a = p.parse_args(argv)

    import pandas as pd

    seeds = [int(s) for s in a.seeds.split(",") if s]
    rows = []
    for s in seeds:
        print(f"seed {s} ...", flush=True)
        rows.append({"seed": s, **{k: run_seed(a.size, s, os.path.join(a.workdir, f"{a.size}-seed{s}")).get(k)
                                   for k in KEYS}})
    df = pd.DataFrame(rows).set_index("seed").astype(float)
    print(df.round(3).to_string())
    out = {"size": a.size, "seeds": seeds, **{f"{k}_mean": round(float(df[k].mean()), 4) for k in KEYS},
           **{f"{k}_sd": round(float(df[k].std(ddof=1)), 4) if len(df) > 1 else 0.0 for k in KEYS},
           "runs": df.round(4).reset_index().to_dict("records")}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
