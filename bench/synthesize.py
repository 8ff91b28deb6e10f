"""Synthesizer throughput at 640x480 (the data issue's target: >= 30 images/s on 2 cores).

    python bench/synthesize.py [--images 300] [--workers 0]

Measures, in one run, one worker (the baseline) and all workers on the same photos; the last
line is JSON with images/s for both and their ratio.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime import flags
from tfrecords.synthetic.world import SynthConfig, synthesize


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--images", type=int, default=300, help="photos to draw")
    p.add_argument("--workers", type=int, default=0, help="0: one per core")
    a = p.parse_args(argv)
    workers = a.workers or mp.cpu_count()
    cfg = SynthConfig(seed=1, individuals=max(1, a.images // 4), train_images=a.images, test_images=0,
                      size=(640, 480))
    rates = {}
    for w in (1, workers):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            synthesize(cfg, tmp, workers=w, progress=False)
            rates[w] = a.images / (time.perf_counter() - t)
    print(json.dumps({"images": a.images, "size": "640x480", "workers": workers,
                      "one_worker_img_s": round(rates[1], 1), "img_s": round(rates[workers], 1),
                      "speedup": round(rates[workers] / rates[1], 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
