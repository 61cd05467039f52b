"""Tests of `benchmarks/suite.py`: the doc writer, the table's arithmetic, and
one tiny case end to end, so that `make bench` cannot rot unnoticed."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.markers import on_backend

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "suite.py"
# The suite imports its sibling `bench_utils`, as it does when run as a script.
sys.path.insert(0, str(SUITE.parent))
spec = importlib.util.spec_from_file_location("bench_suite", SUITE)
suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite)

# The end-to-end test counts FLOPs with PyTorch's FlopCounterMode, which needs
# the torch backend in this process; the suite's own subprocesses pick their
# backend explicitly, so running it under every backend would repeat the same
# measurement three times.
torch_only = on_backend(
    "torch", "counts FLOPs in-process with torch; backend-independent otherwise"
)


def test_write_doc_replaces_only_between_markers(tmp_path):
    doc = tmp_path / "bench.md"
    doc.write_text(
        "# B\n\nhand text\n\n## Benchmark suite\n\nmethod\n\n"
        f"{suite.BEGIN}\nold table\n{suite.END}\n\n## Later\n\nmore\n"
    )
    suite.write_doc(doc, "new table\n")
    suite.write_doc(doc, "newer table\n")  # idempotent: replaces its own output
    assert doc.read_text() == (
        "# B\n\nhand text\n\n## Benchmark suite\n\nmethod\n\n"
        f"{suite.BEGIN}\nnewer table\n{suite.END}\n\n## Later\n\nmore\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        "no markers\n",
        f"{suite.END}\n{suite.BEGIN}\n",
        f"{suite.BEGIN}{suite.BEGIN}{suite.END}",
    ],
)
def test_write_doc_refuses_without_one_marker_pair(tmp_path, text):
    doc = tmp_path / "bench.md"
    doc.write_text(text)
    with pytest.raises(ValueError, match="bench:begin"):
        suite.write_doc(doc, "table\n")
    assert doc.read_text() == text


def test_render_gives_ratios_to_the_limits():
    peak = {
        "n": 64,
        "flops_per_s": 8e9,
        "memory_mib": 1024.0,
        "device": None,
        "versions": "Keras x, torch y",
    }
    row = {
        "case": "DRCaps",
        "jit": True,
        "jit_effective": True,
        "flops": 2e9,
        "step_s": 0.5,
        "first_s": 3.0,
        "batch": 8,
        "peak_mib": 512.0,
        "params": 1234,
        "description": "in -> out",
        "loss_finite": True,
    }
    failed = {
        "case": "EMClassCaps",
        "jit": False,
        "flops": 1e6,
        "error": "stopped after 9 s",
    }
    entry = {
        "date": "d",
        "machine": "m",
        "cores": 2,
        "command": "c",
        "steps": 3,
        "warmup": 2,
        "timeout": 9,
        "probe_repeats": 4,
        "load": [3.0, 0.1],
        "peak": peak,
        "rows": [row, failed],
    }
    text = suite.render({"runs": {"small": {"torch": entry}}})
    # 2 GFLOP in 0.5 s is 4 GFLOP/s, half of 8; 8 images in 0.5 s; 512 of 1024 MiB.
    assert (
        "| DRCaps | on | 3.00 | 500 | 16.00 | 2.000 | 4.00 | 50.0% | 512 | 50.0% "
        "| 1,234 |"
    ) in text
    assert "| EMClassCaps | off | stopped after 9 s |" in text
    assert "measured under load" in text  # load 3 on 2 cores
    assert "8.0 GFLOP/s" in text
    assert "DRCaps 50.0% (jit_compile on)" in text


@torch_only
def test_one_case_end_to_end(tmp_path, monkeypatch):
    # The child protocol, through real subprocesses: a result and a timeout.
    result, error = suite.spawn("torch", ["probe", 32, 1], timeout=600)
    assert error is None and result["n"] == 32 and result["flops_per_s"] > 0
    assert suite.spawn("torch", ["probe", 32, 1], timeout=0.01) == (
        None,
        "stopped after 0 s",
    )

    # The driver, with the children run in this process to keep the test short.
    def in_process(backend, task, timeout):
        assert backend == "torch"
        kind, *args = task
        tasks = {
            "probe": suite.probe,
            "measure": suite.measure,
            "flops": suite.count_flops,
        }
        return tasks[kind](*args), None

    monkeypatch.setattr(suite, "spawn", in_process)
    doc, out = tmp_path / "bench.md", tmp_path / "results.json"
    doc.write_text(f"before\n{suite.BEGIN}\n{suite.END}\nafter\n")
    suite.main(
        [
            "--backend",
            "torch",
            "--cases",
            "PrimaryCaps",
            "--jit",
            "off",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--matmul",
            "64",
            "--probe-repeats",
            "1",
            "--out",
            str(out),
            "--doc",
            str(doc),
        ]
    )

    results = json.loads(out.read_text())
    # PrimaryCaps small: 3x3 valid convolution, 64 -> 8 x 8 channels, on a batch
    # of 8 16x16 maps (14x14 out). Forward 2 * 8 * 14 * 14 * 64 * 64 * 9 FLOPs,
    # the kernel's gradient as many again; the input needs no gradient.
    forward = 2 * 8 * 14 * 14 * 64 * 64 * 9
    assert results["flops"]["small"]["PrimaryCaps"] == 2 * forward
    (row,) = results["runs"]["small"]["torch"]["rows"]
    assert row["case"] == "PrimaryCaps" and row["jit"] is False
    assert row["step_s"] > 0 and row["loss_finite"] and row["batch"] == 8
    text = doc.read_text()
    assert text.startswith(f"before\n{suite.BEGIN}\n") and text.endswith(
        f"{suite.END}\nafter\n"
    )
    assert "| PrimaryCaps | off |" in text and "Limits: dense 64x64" in text
