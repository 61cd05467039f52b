"""A pytest plugin that records each test's wall time and CPU time.

    python ci/test_backends.py -- -q -p tests.cpu_times

writes one tab-separated file per test process, `<backend>[<xdist
worker>].tsv`, under `$PARCAPS_CPU_TIMES` (default `.test-logs/cpu`): for
each test, the wall seconds, the CPU seconds of the test process (all its
threads), the CPU seconds of the subprocesses it started and waited for,
the process's peak memory in MiB, and the test id. With more test processes
than cores a test's wall time is mostly waiting for a core; its CPU time is
what it costs (docs/benchmarks.md, "Test suite wall time").
"""

import os
import resource
import time
from pathlib import Path

_state = {}


def _cpu_seconds(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def pytest_configure(config):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if getattr(config.option, "numprocesses", None) and not worker:
        return  # an xdist controller runs no tests
    import keras

    folder = Path(os.environ.get("PARCAPS_CPU_TIMES", ".test-logs/cpu"))
    folder.mkdir(parents=True, exist_ok=True)
    _state["file"] = open(folder / f"{keras.backend.backend()}{worker}.tsv", "w")


def pytest_runtest_logstart(nodeid, location):
    if "file" in _state:
        _state[nodeid] = (
            time.perf_counter(),
            _cpu_seconds(resource.RUSAGE_SELF),
            _cpu_seconds(resource.RUSAGE_CHILDREN),
        )


def pytest_runtest_logfinish(nodeid, location):
    if nodeid not in _state:
        return
    wall, own, children = _state.pop(nodeid)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _state["file"].write(
        f"{time.perf_counter() - wall:.2f}\t"
        f"{_cpu_seconds(resource.RUSAGE_SELF) - own:.2f}\t"
        f"{_cpu_seconds(resource.RUSAGE_CHILDREN) - children:.2f}\t"
        f"{peak:.0f}\t{nodeid}\n"
    )
    _state["file"].flush()
