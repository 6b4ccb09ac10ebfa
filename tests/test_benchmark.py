"""Keeps the benchmark (bench/, docs/benchmark.md) from rotting: its worker drives the plugin's
entry points with a handful of events in every mode. The baseline (paho-mqtt 1.6) and the Rust
ceiling clients are not run here: they need the benchmark's own virtualenv and build."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.mqtt_env import free_port

WORKER = Path(__file__).resolve().parent.parent / "bench" / "worker.py"


def run_worker(tmp_path, port, mode, *args, stdin=None, publish=None):
    cmd = [sys.executable, str(WORKER), "ours", mode, "--port", str(port), *args]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if publish is not None:
        assert proc.stdout.readline().strip() == "ready"
        publish()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.timeout(60)
def test_worker_modes(session_broker, tmp_path):
    port = session_broker.port
    burst = run_worker(tmp_path, port, "burst", "--n", "300")
    assert burst["delivered"] >= 300 and 0 < burst["p50_ns"] <= burst["p99_ns"]
    assert burst["status"]["dropped"] == 0

    qos1 = run_worker(tmp_path, port, "burst", "--n", "200", "--qos", "1")
    assert qos1["delivered"] >= 200

    latency = run_worker(tmp_path, port, "latency", "--n", "20", "--times", str(tmp_path / "sent"))
    assert latency["delivered"] >= 20
    assert len((tmp_path / "sent").read_text().splitlines()) == 20

    memory = run_worker(tmp_path, port, "memory", "--n", "600", "--batch", "300", "--chunk", "100")
    assert [n for n, _ in memory["checkpoints"]] == [300, 600]

    def publish():
        lines = "".join(f"message {i}\n" for i in range(50))
        subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", "bench/in/x", "-l"],
            input=lines,
            text=True,
            check=True,
            timeout=20,
        )

    inbound = run_worker(tmp_path, port, "inbound", "--n", "50", "--quiet-s", "1", publish=publish)
    assert inbound["count"] == 50

    offline = run_worker(tmp_path, free_port(), "offline", "--n", "200", "--window", "50")
    assert len(offline["on_event"]["windows"]) == 4
    assert offline["status"]["published"] == 0
