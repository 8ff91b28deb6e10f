"""Export a detector and/or an embedder run folder to ONNX, for ``infer.py --runtime onnx``.

    python pipeline/export.py --detector DET_DIR --embedder EMB_DIR

Writes ``DET_DIR/detector.onnx`` (the most confident box per image) and ``EMB_DIR/embedder.onnx``
(the embedding) beside the ``.keras`` files; each is checked against TensorFlow on random input
and refused if it differs, and records the digest of the model it came from, so that ``infer``
refuses a stale export after the run is trained again. Needs the ``[onnx]`` extra (onnxruntime,
tf2onnx, onnx). Prints one JSON line: the files written and the largest differences found.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repo's packages, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])


from pipeline.exporting import ExportConfig, export
from runtime import cli


def _main(a: argparse.Namespace) -> None:
    print(json.dumps(export(ExportConfig(detector=a.detector, embedder=a.embedder, batch_size=a.batch_size))))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, cli.parse_config(__doc__, ExportConfig, argv))


if __name__ == "__main__":
    sys.exit(main())
