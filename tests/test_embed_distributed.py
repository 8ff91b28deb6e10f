"""Training under MirroredStrategy over two logical CPU devices matches one device: the same
first-step loss and the same weights after two steps (synchronised BatchNorm, same global batch)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HELPER = Path(__file__).parent / "helpers" / "mirrored_step.py"


def _run(replicas: int) -> dict:
    out = subprocess.run([sys.executable, str(HELPER), str(replicas)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs():
    return _run(1), _run(2)


def test_two_logical_devices_are_two_replicas(runs):
    assert [r["replicas"] for r in runs] == [1, 2]


def test_first_step_loss_matches_one_device(runs):
    one, two = runs
    assert one["losses"][0] == pytest.approx(two["losses"][0], rel=1e-4)
    assert one["losses"][1] == pytest.approx(two["losses"][1], rel=1e-4)


def test_weights_after_two_steps_match_one_device(runs):
    one, two = runs
    for a, b in zip(one["weights"], two["weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


def test_several_workers_in_tf_config_are_refused_with_the_reason(monkeypatch):
    from tfrecords.strategy import choose_strategy, workers_in_tf_config

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                                "task": {"type": "worker", "index": 0}}))
    assert workers_in_tf_config() == 2
    with pytest.raises(ValueError, match="keras-team/keras#20585"):
        choose_strategy()
