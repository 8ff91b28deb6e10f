"""Load check of the match review: simulated reviewers against the real server on loopback.

    python bench/review.py [--reviewers 20] [--seconds 60] [--queries 20000]

Each reviewer loops as the page does: claim the next photo (``/api/next``) and load its crop
(together: one page), then answer it (``/api/decide``: accept a candidate, new individual or not
identifiable). A one-reviewer run of ``--baseline-seconds`` first gives the baseline in the same
run. Afterwards ``decisions.csv`` is compared with every answer the server acknowledged: each must
be stored exactly once (no loss, no duplicate, no photo answered twice). Prints one JSON line.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from runtime import flags

ROOT = Path(__file__).resolve().parents[1]


def make_inputs(folder: Path, queries: int, seed: int = 0) -> Path:
    """matches.csv of ``queries`` photos x 5 candidates, photos linked to a few small JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = folder / "photos"
    photos.mkdir()
    bases = []
    for i in range(8):
        path = folder / f"base{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path, quality=85)
        bases.append(path)
    names = [f"q{i:06d}.jpg" for i in range(queries)]
    for i, n in enumerate(names):
        os.symlink(bases[i % len(bases)], photos / n)
    rows = {"image": np.repeat(names, 5), "rank": np.tile(np.arange(1, 6), queries),
            "individual_id": [f"ind{j:05d}" for j in rng.integers(0, 5000, queries * 5)],
            "species": "bottlenose_dolphin", "score": np.sort(rng.random((queries, 5)))[:, ::-1].ravel().round(4),
            "predicted_species": "bottlenose_dolphin", "detection_score": 0.9, "box": "0.2 0.2 0.8 0.8",
            "catalog_image": ""}
    pd.DataFrame(rows).to_csv(folder / "matches.csv", index=False)
    return photos


def start_server(folder: Path, photos: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "pipeline/review.py", "--matches", str(folder / "matches.csv"),
                             "--catalog", str(folder / "catalog.npz"), "--images", str(photos), "--db",
                             str(folder / "review.sqlite"), "--port", str(port), "--threshold", "0.5"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(folder / "server.log", "w"))
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the review server did not start: {(folder / 'server.log').read_text()[-2000:]}")


def reviewer(name: str, port: int, until: float, out: dict, seed: int) -> None:
    """One reviewer's loop; appends (page ms, decide ms) and the acknowledged answers to ``out``."""
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(method: str, url: str, body: dict | None = None) -> tuple[int, bytes]:
        conn.request(method, url, json.dumps(body) if body else None, {"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()

    while time.perf_counter() < until:
        t0 = time.perf_counter()
        status, data = call("GET", f"/api/next?reviewer={name}")
        q = json.loads(data)
        if q.get("done"):
            break
        status, _ = call("GET", f"/img/query/{q['image']}?crop=1")
        t1 = time.perf_counter()
        decision = rng.choice(["accept", "accept", "accept", "new", "unidentifiable"])
        status, data = call("POST", "/api/decide", {"image": q["image"], "reviewer": name, "decision": decision,
                                                    "rank": rng.randint(1, 5)})
        t2 = time.perf_counter()
        out["page_ms"].append((t1 - t0) * 1e3)
        out["decide_ms"].append((t2 - t1) * 1e3)
        if status == 200:
            out["acked"].append((q["image"], name, decision))
        else:
            out["refused"].append((q["image"], status))
    conn.close()


def load(port: int, reviewers: int, seconds: float, prefix: str) -> dict:
    out: dict[str, list] = {"page_ms": [], "decide_ms": [], "acked": [], "refused": []}
    until = time.perf_counter() + seconds
    threads = [threading.Thread(target=reviewer, args=(f"{prefix}{i}", port, until, out, i)) for i in range(reviewers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--reviewers", type=int, default=20, help="concurrent reviewers")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the load")
    p.add_argument("--baseline-seconds", type=float, default=10.0, help="one reviewer first")
    p.add_argument("--queries", type=int, default=20000, help="photos in the queue")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = make_inputs(folder, a.queries)
        port = free_port()
        server = start_server(folder, photos, port)
        try:
            one = load(port, 1, a.baseline_seconds, "solo")
            many = load(port, a.reviewers, a.seconds, "rev")
            csv = urllib.request.urlopen(f"http://127.0.0.1:{port}/decisions.csv", timeout=60).read().decode()
        finally:
            server.kill()
            server.wait()
    stored = pd.read_csv(io.StringIO(csv), dtype=str, keep_default_na=False)
    acked = {(i, r, d) for i, r, d in one["acked"] + many["acked"]}
    got = set(map(tuple, stored[["image", "reviewer", "decision"]].to_numpy()))
    p95 = lambda v: float(np.percentile(v, 95)) if v else float("nan")  # noqa: E731
    print(json.dumps({
        "reviewers": a.reviewers, "seconds": a.seconds, "decisions_acknowledged": len(acked),
        "decisions_stored": len(stored), "lost": len(acked - got), "unacknowledged_stored": len(got - acked),
        "duplicates": int(stored["image"].duplicated().sum()), "refused": len(one["refused"] + many["refused"]),
        "decisions_per_s": round(len(many["acked"]) / a.seconds, 1),
        "p50_page_ms": round(float(np.median(many["page_ms"])), 1), "p95_page_ms": round(p95(many["page_ms"]), 1),
        "p95_decide_ms": round(p95(many["decide_ms"]), 1),
        "baseline_one_reviewer_p95_page_ms": round(p95(one["page_ms"]), 1),
        "baseline_one_reviewer_decisions_per_s": round(len(one["acked"]) / a.baseline_seconds, 1),
        "p95_page_ratio_vs_one_reviewer": round(p95(many["page_ms"]) / p95(one["page_ms"]), 2),
        "throughput_ratio_vs_one_reviewer": round(len(many["acked"]) / a.seconds
                                                  / max(len(one["acked"]) / a.baseline_seconds, 1e-9), 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
