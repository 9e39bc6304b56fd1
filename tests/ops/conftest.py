"""Fixtures of the operations tests: the real Prometheus tools and one live worker.

The worker fixtures of tests/stream/conftest.py (``tiny_world``, ``trained_registry``,
``WorkerRun``) are loaded from that file rather than copied, so both suites start workers the
same way. ``live_worker`` is one ``leadpulse worker`` process for the whole session, fed the
tiny world until its scores settled: the Prometheus and example tests read what it produced.
"""
from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # ops_support (import-mode=importlib)
from ops_support import ROOT, wait_for  # noqa: E402

_spec = importlib.util.spec_from_file_location("_ops_stream_conftest", ROOT / "tests" / "stream" / "conftest.py")
_stream = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _stream  # dataclasses resolve their module through sys.modules
_spec.loader.exec_module(_stream)

tiny_world = _stream.tiny_world
trained_registry = _stream.trained_registry
WorkerRun = _stream.WorkerRun
sys.path.insert(0, str(ROOT / "tests" / "stream"))
from tests_support import settle  # noqa: E402

#: alert threshold of the live worker: low, so the tiny world surely raises jump alerts
JUMP_THRESHOLD = "0.001"


@pytest.fixture(scope="session")
def live_worker(broker, tmp_path_factory, tiny_world, trained_registry) -> Iterator[WorkerRun]:
    """A ``leadpulse worker`` that consumed the whole tiny world and published its scores."""
    from schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS
    from stream.broker import free_port
    from stream.publish import publish
    from stream.topics_admin import ensure_topics

    prefix = f"ops{uuid.uuid4().hex[:8]}."
    ensure_topics(broker, [prefix + s.name for s in INPUT_TOPICS + OUTPUT_TOPICS]
                  + [prefix + "leadpulse.accounts"], partitions=2)
    # The world is sent at once, so the worker is behind its input and would score the whole
    # tiny world in one coalescing window: each lead once, with no earlier score to jump from.
    # Scored batch by batch, the low threshold turns score rises into the alerts these tests use.
    run = WorkerRun(broker, tmp_path_factory.mktemp("ops-worker"), trained_registry[0], prefix,
                    free_port(), {"LEADPULSE_JUMP_THRESHOLD": JUMP_THRESHOLD, "LEADPULSE_COALESCE_MS": "0"})
    try:
        run.start()
        report = publish(tiny_world, broker, progress=False, topics=run.topics, partitions=2)
        settle(run, sum(report.counts.values()))
        yield run
    finally:
        run.kill()
