"""The end-to-end demo, the README's first command (``make demo``).

    python pipeline/demo.py [--workdir work/demo] [--size small|default]

Today: synthesize a Happywhale-like dataset -> validated, sharded TFRecords -> an EDA report ->
train the stage-1 detector -> evaluate it -> crop records for stage 2. Embedding, retrieval,
evaluation and the submission join as their stages land.
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
DETECTOR_EPOCHS = 10  # of the 20-minute demo budget, ~7 minutes: mAP@0.5 ~0.9 on the default data


def step(n: int, total: int, what: str) -> float:
    print(f"[{n}/{total}] {what}", flush=True)
    return time.perf_counter()


def run_demo(workdir: str, size: str) -> dict:
    from stage1_detect.crop import CropConfig, crop_records
    from stage1_detect.evaluate import evaluate
    from stage1_detect.train import TrainConfig, smoke, train
    from tfrecords.build import build
    from tfrecords.eda import report
    from tfrecords.plan import BuildConfig
    from tfrecords.synthesize import synthesize

    data, records, eda, det, crops = (os.path.join(workdir, d) for d in ("data", "records", "eda", "detector",
                                                                         "crops"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.abspath(workdir)}/mlflow.db")
    total = 6
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
    t = step(4, total, f"train the fin/fluke/body detector -> {det}")
    cfg = smoke(records, det) if size == "small" else TrainConfig(records=records, out=det, epochs=DETECTOR_EPOCHS)
    if not os.path.exists(os.path.join(det, "detector.keras")):
        train(cfg, resume=os.path.exists(os.path.join(det, "ckpt", "state.json")), progress=False)
    print(f"      {time.perf_counter() - t:.1f} s")
    t = step(5, total, "evaluate the detector on the validation fold")
    det_eval = evaluate(det, records, out=os.path.join(det, "eval"))
    print(f"      mAP@0.5 {det_eval['map50']:.3f}, mAP {det_eval['map']:.3f}, crops with IoU >= 0.5: "
          f"{det_eval['iou50_share']:.1%}; grid: {det_eval['grid']}; {time.perf_counter() - t:.1f} s")
    t = step(6, total, f"crop every image for stage 2 -> {crops}")
    m = crop_records(CropConfig(records=records, out=crops, model=det, crop_size=256))
    print(f"      by source: {m['sources']}; {time.perf_counter() - t:.1f} s")
    print("next stages: the embedder, retrieval and submission.csv arrive with the pipeline")
    print(f"runs: mlflow ui --backend-store-uri {os.environ['MLFLOW_TRACKING_URI']} --host 127.0.0.1")
    return {"data": data, "records": records, "report": os.path.join(eda, "index.html"), "detector": det,
            "crops": crops, "detector_map50": det_eval["map50"], "detector_iou50_share": det_eval["iou50_share"],
            **summary}


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
