"""Fixtures of the operations tests: the real Prometheus tools and one live worker.

The worker fixtures of tests/stream/conftest.py (``tiny_world``, ``trained_registry``,
``WorkerRun``) are imported from it rather than copied, so both suites start workers the
same way. ``live_worker`` is one ``leadpulse worker`` process for the whole session, fed the
tiny world until its scores settled: the Prometheus and example tests read what it produced.
"""
from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from tests.stream.conftest import WorkerRun
from tests.stream.tests_support import settle

#: alert threshold of the live worker: low, so the tiny world surely raises jump alerts
JUMP_THRESHOLD = "0.001"


@pytest.fixture(scope="session")
def live_worker(broker, tmp_path_factory, tiny_world, trained_registry) -> Iterator[WorkerRun]:
    """A ``leadpulse worker`` that consumed the whole tiny world and published its scores."""
    from leadpulse.stream.broker import free_port
    from leadpulse.stream.config import Settings
    from leadpulse.stream.publish import publish
    from leadpulse.stream.topics_admin import TopicLayout, create_topics

    prefix = f"ops{uuid.uuid4().hex[:8]}."
    # as `leadpulse topics create` makes them: on Apache Kafka the worker refuses finite retention
    create_topics(broker, TopicLayout.from_settings(Settings.from_env({"LEADPULSE_PARTITIONS": "2"}), prefix))
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
