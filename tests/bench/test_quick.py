"""``leadpulse bench --quick``: every benchmark runs and writes well-formed JSON, Markdown and PNGs.

Real broker, RocksDB, torch and worker processes, at tiny size. It checks that the suite runs
and what it writes; it never checks a timing (benchmarks measure, they do not judge).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
JSON_FILES = ["run", "stream", "incremental", "accounts", "recovery", "memory", "graph_store", "accuracy-tiny"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench-results")
    cache = tmp_path_factory.mktemp("bench-cache")
    proc = subprocess.run([sys.executable, "-m", "leadpulse.stream.cli", "bench", "--quick", "--out", str(out),
                           "--cache", str(cache)], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


@pytest.mark.timeout(1900)
def test_every_benchmark_ran_and_wrote_json(quick_results):
    data = {name: json.loads((quick_results / f"{name}.json").read_text()) for name in JSON_FILES}
    assert [r["exit_code"] for r in data["run"]["runs"]] == [0] * len(data["run"]["runs"])
    assert {r["name"] for r in data["run"]["runs"]} >= {"stream", "incremental", "recovery", "memory", "accuracy"}
    stream = data["stream"]
    for app in ("worker", "passthrough"):
        phases = stream["apps"][app]["phases"]
        assert [p["name"] for p in phases] == ["250", "1000", "2000", "max"]
        assert all(p["events"] > 0 and set(p["latency_ms"]) == {"p50", "p95", "p99"} for p in phases)
        # every phase found done: for the worker, applied (or held by the router for good) and
        # all its scores published, well inside the drain timeout at these sizes
        assert all(p["drained"] for p in phases), [(p["name"], p["drained"]) for p in phases]
    assert set(stream["headline"]) >= {"worker_max_events_per_s", "passthrough_max_events_per_s",
                                       "worker_over_passthrough", "worker_p99_ms_at_1000"}
    worlds = data["incremental"]["worlds"]
    assert worlds and all(w["events_measured"] > 0 and w["max_abs_diff"] >= 0 for w in worlds)
    assert len(data["recovery"]["kills"]) == 1
    rows = data["accounts"]["rows"]
    assert rows and all(r["events"] > 0 and r["events_per_s"] > 0 and 0 <= r["apply_share"] <= 1 for r in rows)
    for r in rows:  # --phases 2: the timed events split in two at a whole batch, each phase measured
        assert [ph["ends_at"] for ph in r["phases"]] == [200, 300] and r["last_over_first"] > 0
        assert sum(ph["events"] for ph in r["phases"]) == r["events"]
    assert {"worker", "store"} <= set(data["memory"])
    assert "gnn" in data["accuracy-tiny"]["summary"]
    for name in ("stream", "incremental", "accounts", "recovery", "memory"):  # ours carry machine and command
        assert data[name]["machine"]["cpus"] >= 1 and data[name]["command"]


@pytest.mark.timeout(1900)
def test_report_links_every_plot_and_reads_every_section(quick_results):
    report = (quick_results / "REPORT.md").read_text()
    for heading in ("## Headline figures", "## Throughput and latency", "## Account stage in-process (no Kafka)",
                    "## Incremental vs full recompute",
                    "## Accuracy", "## Recovery", "## Memory", "## Machine"):
        assert heading in report
    assert "not measured" not in report
    assert "leadpulse bench --quick" in report
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert set(linked) >= {"latency_cdf.png", "throughput_vs_rate.png", "auroc.png", "speedup_vs_size.png"}
    for name in linked:
        data = (quick_results / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name


@pytest.mark.timeout(600)
def test_a_phase_the_worker_did_not_finish_is_waited_for_before_the_next(tmp_path):
    # a drain timeout far below what a phase takes: every phase is unfinished when it times out,
    # and each but the last is waited for (untimed) so the next one starts without its backlog
    proc = subprocess.run([sys.executable, "-m", "leadpulse.bench.stream", "--quick", "--apps", "worker",
                           "--drain-timeout", "0.3", "--catch-up-timeout", "120", "--name", "catchup",
                           "--out", str(tmp_path), "--cache", str(tmp_path / "cache")],
                          cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    phases = json.loads((tmp_path / "catchup.json").read_text())["apps"]["worker"]["phases"]
    waited = [p for p in phases[:-1] if not p["drained"]]
    assert waited, [(p["name"], p["drained"]) for p in phases]
    assert all(p["caught_up"] is True and p["catch_up_seconds"] >= 0 for p in waited)
    assert all(p["caught_up"] is None for p in phases if p["drained"]) and phases[-1]["caught_up"] is None
