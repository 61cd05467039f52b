import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("keras_tuner")
pytest.importorskip("grpc")

from tests.markers import once  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@once("three processes on 2 cores; the chief/worker protocol is KerasTuner's gRPC")
def test_chief_and_two_workers_finish_a_search(tmp_path):
    port = str(_free_port())
    command = [
        sys.executable,
        str(HERE / "distributed_search.py"),
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--steps",
        "2",
        "--max-trials",
        "4",
        "--branches",
        "1",
        "2",
        "--capsule-sizes",
        "9",
        "16",
        "--capsule-layers",
        "2",
        "3",
        "--routing",
        "1",
        "1",
        "--verbose",
        "0",
        "--out",
        str(tmp_path),
    ]
    processes = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = {
            **os.environ,
            "KERAS_BACKEND": "torch",
            "KERASTUNER_TUNER_ID": tuner_id,
            "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": port,
        }
        log = (tmp_path / f"{tuner_id}.log").open("w")
        processes[tuner_id] = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        for tuner_id, process in processes.items():
            code = process.wait(timeout=480)
            log = (tmp_path / f"{tuner_id}.log").read_text()
            assert code == 0, f"{tuner_id} failed:\n{log[-3000:]}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()

    # The chief serves the oracle and writes the report; workers run trials.
    with (tmp_path / "trials.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert sorted(r["trial_id"] for r in rows) == ["0", "1", "2", "3"]
    assert {r["status"] for r in rows} == {"COMPLETED"}
    assert all(float(r["val_wacc"]) >= 0 for r in rows)
    assert (tmp_path / "branches.png").is_file()
    assert not (tmp_path / "ran_chief.txt").exists()
    ran = {
        tuner_id: (tmp_path / f"ran_{tuner_id}.txt").read_text().split()
        for tuner_id in ("tuner0", "tuner1")
    }
    assert ran["tuner0"] and ran["tuner1"], ran
    assert sorted(ran["tuner0"] + ran["tuner1"]) == ["0", "1", "2", "3"]
