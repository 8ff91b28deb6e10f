"""Builder throughput against the limit measured in the same run.

    python bench/build_records.py [--images 600] [--workers 0] [--max-side 512]

Generates a dataset whose images are all larger than ``--max-side`` (so every image is decoded,
resized and re-encoded), then measures, in this one run:
  - limit_1proc: the bare decode -> resize -> encode rate of the same images, one process, bytes in memory;
  - limit: the same bare work spread over the worker processes (the ceiling for the builder);
  - single_process: ``build --workers 1`` (planning, reading, protobuf, shard writing, manifest);
  - builder: ``build --workers W``.
Interpreter imports are excluded from every timing; worker start-up is included. The last line is
JSON; ``ratio_to_limit`` is builder / limit (target >= 0.7).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import flags
from tfrecords.builder import build
from tfrecords.images import prepare_image, worker_init
from tfrecords.plan import BuildConfig
from tfrecords.synthetic.world import SynthConfig, synthesize


def _bare(args: tuple[bytes, int]) -> int:
    data, max_side = args
    return len(prepare_image(data, max_side=max_side).encoded)


def _noop(_: int) -> int:
    return 0


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--images", type=int, default=1200, help="synthetic photos to build")
    p.add_argument("--workers", type=int, default=0, help="0: one per core")
    p.add_argument("--max-side", type=int, default=512, help="records' longer side (images are 1.25-2.5x larger)")
    a = p.parse_args(argv)
    workers = a.workers or mp.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        n_ind = max(1, a.images // 4)
        synthesize(SynthConfig(seed=1, individuals=n_ind, train_images=a.images, test_images=0,
                               max_side=int(a.max_side * 2.5)), data, progress=True)
        folder = Path(data, "train_images")
        blobs = [f.read_bytes() for f in sorted(folder.iterdir())]
        jobs = [(b, a.max_side) for b in blobs]

        t = time.perf_counter()
        for j in jobs:
            _bare(j)
        limit_1 = len(jobs) / (time.perf_counter() - t)

        with mp.get_context("spawn").Pool(workers, worker_init) as pool:
            pool.map(_noop, range(workers * 4))  # start-up excluded: this is the ceiling
            t = time.perf_counter()
            pool.map(_bare, jobs, chunksize=4)
            limit_w = len(jobs) / (time.perf_counter() - t)

        # one-time interpreter imports are outside every timing (the limit has none either); worker
        # start-up is inside the builder's. With TensorFlow loaded, the builder takes its safe path
        # (workers from a fork server), the slower of its two.
        import tensorflow  # noqa: F401

        rates = {}
        for w in (workers, 1):
            out = os.path.join(tmp, f"rec{w}")
            t = time.perf_counter()
            build(BuildConfig(data=data, out=out, max_side=a.max_side, workers=w), progress=False)
            rates[w] = len(jobs) / (time.perf_counter() - t)
    result = {
        "images": len(jobs), "workers": workers, "max_side": a.max_side,
        "limit_1proc_img_s": round(limit_1, 1), "limit_img_s": round(limit_w, 1),
        "single_process_img_s": round(rates[1], 1), "builder_img_s": round(rates[workers], 1),
        "speedup_vs_single_process": round(rates[workers] / rates[1], 2),
        "ratio_to_limit": round(rates[workers] / limit_w, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
