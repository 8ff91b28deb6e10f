"""The one training loop's pieces that both stages share: the schedule, and packages that import
without side effects."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT


def test_warmup_cosine_starts_low_peaks_at_lr_and_ends_at_the_floor():
    from runtime.trainer import COSINE_FLOOR, WARMUP_START, warmup_cosine

    s = warmup_cosine(lr=0.01, steps_per_epoch=10, epochs=5, warmup_epochs=1.0)
    assert float(s(0)) == pytest.approx(0.01 * WARMUP_START)
    assert float(s(10)) == pytest.approx(0.01)  # the peak, after one epoch of warmup
    assert float(s(5)) < float(s(10)) and float(s(30)) < float(s(10))
    assert float(s(50)) == pytest.approx(0.01 * COSINE_FLOOR, rel=1e-3)
    assert float(warmup_cosine(0.01, 3, 1, 0.0)(0)) == pytest.approx(0.01 * WARMUP_START)  # >= one warm step


def test_importing_the_packages_sets_nothing_and_loads_no_tensorflow():
    code = ("import os, sys; before = dict(os.environ); "
            "import runtime, tfrecords, stage1_detect, stage2_embed, pipeline; "
            "import runtime.flags, runtime.cli, stage1_detect.training, stage2_embed.training, pipeline.identify; "
            "assert dict(os.environ) == before, set(os.environ) ^ set(before); "
            "assert 'tensorflow' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1500:]
