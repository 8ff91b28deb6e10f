"""Training under MirroredStrategy over two logical CPU devices, and under MultiWorkerMirroredStrategy
with two worker processes on 127.0.0.1, matches one device: the same losses and the same weights
after two steps (synchronised BatchNorm, same global batch)."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HELPER = Path(__file__).parent / "helpers" / "mirrored_step.py"


def _last_json(out: subprocess.CompletedProcess) -> dict:
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def all_runs() -> dict[str, dict]:
    """One device, two logical devices and two workers, all started at once: building and tracing
    an EfficientNet is mostly single-threaded Python, so the four share the cores well."""
    ports = ",".join(map(str, _free_ports(2)))
    argv = {"one": ["1"], "two": ["2"], "worker0": ["worker", "0", ports], "worker1": ["worker", "1", ports]}
    procs = {k: subprocess.Popen([sys.executable, str(HELPER), *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for k, a in argv.items()}
    try:
        outs = {k: p.communicate(timeout=900) for k, p in procs.items()}
    finally:
        for p in procs.values():
            p.kill()
    return {k: _last_json(subprocess.CompletedProcess(procs[k].args, procs[k].returncode, *o))
            for k, o in outs.items()}


@pytest.fixture(scope="module")
def runs(all_runs):
    return all_runs["one"], all_runs["two"]


@pytest.fixture(scope="module")
def workers(all_runs):
    return [all_runs["worker0"], all_runs["worker1"]]


@pytest.mark.slow  # ~4 min of processes and devices: pytest -m slow
def test_two_logical_devices_are_two_replicas(runs):
    assert [r["replicas"] for r in runs] == [1, 2]


@pytest.mark.slow  # ~4 min of processes and devices: pytest -m slow
def test_first_step_loss_matches_one_device(runs):
    one, two = runs
    assert one["losses"][0] == pytest.approx(two["losses"][0], rel=1e-4)
    assert one["losses"][1] == pytest.approx(two["losses"][1], rel=1e-4)


@pytest.mark.slow  # ~4 min of processes and devices: pytest -m slow
def test_weights_after_two_steps_match_one_device(runs):
    one, two = runs
    for a, b in zip(one["weights"], two["weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


@pytest.mark.slow  # ~4 min of processes and devices: pytest -m slow
def test_two_workers_match_one_process(runs, workers):
    one = runs[0]
    for w in workers:  # both workers hold the same (mirrored) weights
        assert w["replicas"] == 2
        assert w["losses"] == pytest.approx(one["losses"], rel=1e-4)
        for a, b in zip(one["weights"], w["weights"], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


def test_the_chief_is_worker_zero_unless_tf_config_names_one(monkeypatch):
    from runtime.strategy import is_chief, workers_in_tf_config

    def tf_config(cluster: dict, kind: str, index: int) -> None:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}))

    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    tf_config(workers, "worker", 0)
    assert workers_in_tf_config() == 2 and is_chief()
    tf_config(workers, "worker", 1)
    assert not is_chief()
    tf_config({"chief": ["127.0.0.1:3"], **workers}, "worker", 0)
    assert workers_in_tf_config() == 3 and not is_chief()
    tf_config({"chief": ["127.0.0.1:3"], **workers}, "chief", 0)
    assert is_chief()
    monkeypatch.delenv("TF_CONFIG")
    assert workers_in_tf_config() == 0 and is_chief()
