"""Regenerate ``RESULTS.md``: rerun the demo and every benchmark, keep each one's JSON line, and write
the figures with the command that made them. The README quotes figures from this file only.

    python bench/results.py [--only demo,infer] [--render-only] [--workdir work/results]

Each entry's JSON line is kept in ``WORKDIR/NAME.json`` (with its command, date and minutes), so a
failed or skipped entry keeps its last figures and ``--only`` reruns a few; ``--render-only``
rewrites ``RESULTS.md`` from the kept files. An entry whose file is missing (a fresh checkout: the
work folder is not committed) keeps its section of the existing ``RESULTS.md`` as it was. An entry
that fails is shown as failed, never silently dropped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from runtime import flags

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
REAL_SET = "tests/data/finid_sharks"


def entries(w: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (what it measures, command)."""
    demo = os.path.join(w, "demo")
    return {
        "demo": ("`make demo`: the whole pipeline on the default synthetic data, beside its baselines",
                 ["-m", "pipeline.demo", "--workdir", demo]),
        "new_share": ("MAP@5 lost by estimating the new-individual share instead of knowing it (on the demo)",
                      ["bench/new_share.py", "--workdir", demo]),
        "ablation": ("test MAP@5 of the pipeline without and with each addition: head blend, pixel fusion, SIFT "
                     "re-ranking, group thresholds, pseudo-labels, all folds (on the demo)",
                     ["bench/ablation.py", "--workdir", demo]),
        "weak_embedder": ("the descriptors raw against the default `--descriptor-metric auto` beside an embedder "
                          "that learned nothing (the demo's, untrained; on the demo's crops and test photos), and "
                          "the descriptors alone fitted on the same fold with no network (`fitted_*`)",
                          ["bench/weak_embedder.py", "--workdir", demo]),
        "real_sharks": ("the real photo set in the repo (tests/data/finid_sharks: 115 white-shark fins, "
                        "CDLA-Permissive-1.0) through the demo's detector and an embedder trained on its crops "
                        "(3 seeds), beside the whole-frame and training-free references; the detector also on "
                        "grids of the photos and on the photos shrunk into a synthetic sea (`_at_sea`) or into "
                        "the set's own water (`_at_sea_real`), each also for the photos taken from the surface "
                        "alone (`_surface`: the set's views.csv)",
                        ["bench/real.py", "--data", REAL_SET, "--detector", os.path.join(demo, "detector"),
                         "--embedder", "train", "--repeats", "3", "--workdir", os.path.join(w, "real_sharks")]),
        "real_sharks_boxes": ("the same real set cropped by its hand-drawn boxes (no detector): stage 2 alone",
                              ["bench/real.py", "--data", REAL_SET, "--detector", "none", "--embedder", "train",
                               "--repeats", "3", "--workdir", os.path.join(w, "real_sharks_boxes")]),
        "real_sharks_fitted": ("the same real set through the demo's detector, identified with both descriptors "
                               "fitted on its crops' validation fold, no network (`--embedder fitted`)",
                               ["bench/real.py", "--data", REAL_SET, "--detector", os.path.join(demo, "detector"),
                                "--embedder", "fitted", "--workdir", os.path.join(w, "real_sharks_fitted")]),
        "real_sharks_at256": ("the same real set through the demo's detector at a 256-px input instead of the "
                              "160 px it trained at (`--input-size 256`), identified with 16x16 pixels (no "
                              "training): every detector figure of `real_sharks` at the larger input",
                              ["bench/real.py", "--data", REAL_SET, "--detector", os.path.join(demo, "detector"),
                               "--embedder", "pixels", "--input-size", "256", "--workdir",
                               os.path.join(w, "real_sharks_at256")]),
        "real_sharks_init": ("the same, stage 2 started from the demo's embedder (--init, trained on the "
                             "synthetic world) instead of from scratch",
                             ["bench/real.py", "--data", REAL_SET, "--detector", "none", "--embedder", "train",
                              "--init", os.path.join(demo, "embedder"), "--repeats", "3", "--workdir",
                              os.path.join(w, "real_sharks_init")]),
        "quickstart": ("the README's Quickstart with no trained model on the real set in the repo (whole photos, "
                       "16x16 pixels and HOG edges): identification before and after `evaluate.py --catalog` fitted "
                       "the threshold and the SIFT re-ranking on the catalog",
                       ["bench/quickstart.py", "--data", REAL_SET, "--workdir", os.path.join(w, "quickstart")]),
        "demo_spread": ("the small demo over three seeds: mean and spread",
                        ["bench/demo_spread.py", "--workdir", os.path.join(w, "spread")]),
        "demo_spread_default": ("the default demo (`make demo`) over two more seeds (the `demo` entry is a "
                                "third): mean and spread of every figure and of the minutes, and each seed's "
                                "detector scored on the real set",
                                ["bench/demo_spread.py", "--size", "default", "--seeds", "1,2", "--real", REAL_SET,
                                 "--workdir",
                                 os.path.join(w, "spread")]),
        "synthesize": ("synthetic photos per second", ["bench/synthesize.py"]),
        "build_records": ("TFRecord build throughput", ["bench/build_records.py"]),
        "detect": ("crop throughput: batched against a warmed per-image loop", ["bench/detect.py"]),
        "train_step": ("a training step: Keras fit against a GradientTape loop", ["bench/train_step.py"]),
        "infer": ("identification throughput: batched against a warmed per-image loop; ONNX Runtime against "
                  "TensorFlow on the demo's models and test photos", ["bench/infer.py", "--demo", demo]),
        "search": ("catalog search: exact against FAISS", ["bench/search.py"]),
        "review": ("the match review under load", ["bench/review.py"]),
    }


def run_entry(name: str, cmd: list[str], w: str) -> dict:
    t = time.perf_counter()
    print(f"== {name}: python {' '.join(cmd)}", flush=True)
    r = subprocess.run([PY, *cmd], cwd=ROOT, capture_output=True, text=True)
    lines = [ln for ln in r.stdout.strip().splitlines() if ln.startswith("{")]
    rec = {"command": "python " + " ".join(cmd), "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
           "minutes": round((time.perf_counter() - t) / 60, 1), "ok": r.returncode == 0 and bool(lines)}
    try:  # a failed entry's last "{" line may be a printed dict, not its JSON line
        rec["result"] = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        rec["ok"], rec["result"] = False, {}
    if not rec["ok"]:
        rec["error"] = (r.stderr.strip().splitlines() or ["no JSON line"])[-1][:300]
    with open(os.path.join(w, f"{name}.json"), "w") as f:
        json.dump(rec, f, indent=1)
    print(f"   {'ok' if rec['ok'] else 'FAILED: ' + rec['error']} ({rec['minutes']} min)", flush=True)
    return rec


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and len(v) > 8 or isinstance(v, dict):
        return "`" + json.dumps(v)[:200] + "`"
    return str(v)


def kept_sections(path: str) -> dict[str, list[str]]:
    """The sections of an existing RESULTS.md by entry name: a checkout without the JSON files (they
    live in the ignored work folder) keeps the figures it was handed instead of losing them."""
    if not os.path.exists(path):
        return {}
    sections, name = {}, None
    for line in open(path).read().splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            sections[name] = []
        if name:
            sections[name].append(line)
    return {k: v + [""] * (v[-1] != "") for k, v in sections.items()
            if not any(ln.endswith(": not run yet.") for ln in v)}


def render(w: str, out: str) -> None:
    kept = kept_sections(out)
    parts = ["# Results", "",
             "Generated by `make results` (`bench/results.py`); do not edit by hand. Each section is one command's "
             "JSON line, run on the machine and date shown (2 CPU cores, shared: wall clocks vary by +-40 %; "
             "compare ratios measured in one run). The README quotes figures from here.", ""]
    for name, (what, _) in entries(w).items():
        path = os.path.join(w, f"{name}.json")
        if not os.path.exists(path):
            parts += kept.get(name) or [f"## {name}", "", f"{what}: not run yet.", ""]
            continue
        rec = json.loads(open(path).read())
        status = "" if rec["ok"] else f" **FAILED**: {rec.get('error', '')}"
        parts += [f"## {name}", "", f"{what}.", "", f"`{rec['command']}`, {rec['date']}, {rec['minutes']} min{status}",
                  *(["", f"Note: {rec['note']}"] if rec.get("note") else []), "", "| key | value |", "|---|---|"]
        parts += [f"| {k} | {fmt(v)} |" for k, v in rec["result"].items() if k != "runs"]
        for run in rec["result"].get("runs", []):  # a spread's individual runs
            parts.append(f"| run seed {run.get('seed')} | " + ", ".join(f"{k} {fmt(v)}" for k, v in run.items()
                                                                        if k != "seed") + " |")
        parts.append("")
    with open(out, "w") as f:
        f.write("\n".join(parts))


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__)
    p.add_argument("--only", default="", help="comma-separated entries to rerun (empty: all)")
    p.add_argument("--render-only", action="store_true", help="rewrite RESULTS.md from the kept JSON files")
    p.add_argument("--workdir", default="work/results", help="where runs and JSON files go")
    p.add_argument("--out", default=str(ROOT / "RESULTS.md"), help="the file to write")
    p.add_argument("--note", action="append", default=[], metavar="NAME=TEXT",
                   help="a remark kept with an entry's figures (e.g. what shared the machine)")
    a = p.parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    todo = entries(a.workdir)
    only = [n for n in a.only.split(",") if n]
    if unknown := set(only) - set(todo):
        raise SystemExit(f"--only: unknown entries {sorted(unknown)}; choose from {', '.join(todo)}")
    failed = 0
    if not a.render_only:
        for name, (_, cmd) in todo.items():
            if not only or name in only:
                failed += not run_entry(name, cmd, a.workdir)["ok"]
    for note in a.note:
        name, _, text = note.partition("=")
        path = os.path.join(a.workdir, f"{name}.json")
        if name not in todo or not os.path.exists(path):
            raise SystemExit(f"--note {note!r}: no kept entry {name!r}")
        rec = json.loads(open(path).read())
        with open(path, "w") as f:
            json.dump({**rec, "note": text}, f, indent=1)
    render(a.workdir, a.out)
    print(f"wrote {a.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
