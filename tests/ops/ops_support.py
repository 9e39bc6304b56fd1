"""Helpers shared by the operations tests."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

def require_tool(name: str) -> str:
    """Path of a real command-line tool; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: install Debian's prometheus and prometheus-alertmanager "
                    "packages (./scripts/test.sh does it when run as root with apt-get)")
    return path


def wait_for(predicate, timeout: float, what: str, every: float = 0.5) -> None:
    """Poll ``predicate`` until it is true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def exposed_metric_names() -> set[str]:
    """Every series name a worker's /metrics can carry (counters with _total, histogram parts)."""
    from leadpulse.stream.metrics import Metrics

    names: set[str] = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names |= {family.name + "_total", family.name + "_created"}
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(family.name)
    return names


def metric_names_in(expr: str) -> set[str]:
    """The metric names of a worker (leadpulse's, the process's and Python's) and ``up`` that a
    PromQL expression refers to."""
    return set(re.findall(r"\b((?:leadpulse|process|python)_[a-z_]+|up)\b(?=\s*[{\[)\s]|$)", expr))
