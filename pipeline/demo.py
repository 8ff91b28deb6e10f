"""The end-to-end demo, the README's first command (``make demo``).

    python pipeline/demo.py [--workdir work/demo] [--size small|default]

Today it runs the data stage: synthesize a Happywhale-like dataset -> validated, sharded TFRecords
-> an EDA report. Detection, embedding, evaluation and the submission join as their stages land.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from tfrecords import cli
from tfrecords.synthesize import SMOKE, SynthConfig

SIZES = {"small": SMOKE, "default": SynthConfig(seed=1)}


def step(n: int, total: int, what: str) -> float:
    print(f"[{n}/{total}] {what}", flush=True)
    return time.perf_counter()


def run_demo(workdir: str, size: str) -> dict:
    from tfrecords.build import build
    from tfrecords.eda import report
    from tfrecords.plan import BuildConfig
    from tfrecords.synthesize import synthesize

    data, records, eda = (os.path.join(workdir, d) for d in ("data", "records", "eda"))
    total = 3
    t = step(1, total, f"synthesize a {size} Happywhale-like dataset -> {data}")
    if not os.path.exists(os.path.join(data, "train.csv")):  # train.csv is written last: present = whole
        synthesize(SIZES[size], data)
    print(f"      {time.perf_counter() - t:.1f} s")
    t = step(2, total, f"build validated TFRecords -> {records}")
    m = build(BuildConfig(data=data, out=records, folds=5, holdout_individuals=0.1, max_side=512))
    print(f"      {m['counts']['train']} train / {m['counts']['test']} test records, "
          f"{m['counts']['rejected']} rejected; {time.perf_counter() - t:.1f} s")
    t = step(3, total, f"EDA report -> {os.path.join(eda, 'index.html')}")
    summary = report(data, eda)
    print(f"      {time.perf_counter() - t:.1f} s")
    print("demo arrives with the pipeline: detector, embedder and submission are the next stages")
    return {"data": data, "records": records, "report": os.path.join(eda, "index.html"), **summary}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="work/demo", help="root of every output")
    p.add_argument("--size", choices=sorted(SIZES), default="default")
    cli.add_debug_flag(p)
    return p.parse_args(argv)


def _main(a: argparse.Namespace) -> int:
    print(json.dumps(run_demo(a.workdir, a.size)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
