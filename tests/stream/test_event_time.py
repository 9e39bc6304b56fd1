"""Time cannot be poisoned (docs/architecture.md#invariant-7), in-process with a real broker and
RocksDB: the tiny world, then one activity of a known contact dated 2099 (a typo in a CRM date
field) and one dated a few minutes ahead of the clock. The typo ends in the dead-letter topic
with its reason and is counted; no published score's ``as_of`` passes the wall clock plus the
tolerance; the event within the tolerance is applied like any other.

The runtime is driven as in tests/stream/test_runtime.py (``run_worker``).
"""
from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from leadpulse.schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS
from tests.stream.test_runtime import PARTITIONS, run_worker
from tests.stream.tests_support import read_all

pytestmark = pytest.mark.slow


def test_a_far_future_event_is_dead_lettered_and_moves_no_scoring_time(tmp_path, broker, tiny_world,
                                                                      trained_registry):
    from leadpulse.schemas.events import Activity
    from leadpulse.schemas.tables import read_tables
    from leadpulse.schemas.timeutil import to_micros
    from leadpulse.stream.options import ScoringOptions
    from leadpulse.stream.publish import publish, publish_messages, to_messages

    prefix = f"et{uuid.uuid4().hex[:8]}."
    topics = {s.name: prefix + s.name for s in INPUT_TOPICS + OUTPUT_TOPICS}
    publish(tiny_world, broker, progress=False, topics=topics, partitions=PARTITIONS)
    events, _ = read_tables(tiny_world)
    contacts = sorted({e.contact_id for e in events if isinstance(e, Activity)})
    typo = Activity(activity_id="ac_typo_2099", contact_id=contacts[0], type="demo_request",
                    timestamp=datetime(2099, 1, 1, tzinfo=timezone.utc))
    soon = Activity(activity_id="ac_soon", contact_id=contacts[-1], type="page_view",
                    timestamp=datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=5))
    asyncio.run(publish_messages(to_messages([typo, soon], topics), broker, progress=False))

    out = run_worker(tmp_path, broker, topics, trained_registry[0], run="future")
    ceiling = to_micros(datetime.now(timezone.utc)) + ScoringOptions.max_future * 1_000_000

    # the typo is a dead letter with its reason, counted under its own kind
    letters = [json.loads(m.value) for m in asyncio.run(read_all(broker, topics["crm.deadletter"] + ".future"))]
    assert len(letters) == 1, letters
    letter = letters[0]
    assert letter["source_topic"] == topics["crm.activities"]
    assert letter["error"].startswith("timestamp: future: event time 2099-01-01T00:00:00Z is ")
    assert "ahead of the worker's clock" in letter["error"] and "LEADPULSE_MAX_FUTURE_SECONDS" in letter["error"]
    assert json.loads(base64.b64decode(letter["raw"]))["activity_id"] == "ac_typo_2099"
    rejected = out.metrics.registry.get_sample_value(
        "leadpulse_events_rejected_total", {"topic": topics["crm.activities"], "reason": "future"})
    assert rejected == 1

    # it never reached the graph; the event within the tolerance did
    nodes = dict(out.signature[0])
    assert "ac_typo_2099" not in nodes["activity"] and "ac_soon" in nodes["activity"]

    # no score, and no partition, is as of a time past the clock plus the tolerance
    scores = [json.loads(m.value) for m in asyncio.run(read_all(broker, out.scores_topic))]
    assert len({s["contact_id"] for s in scores}) > 100
    assert max(to_micros(datetime.fromisoformat(s["as_of"])) for s in scores) <= ceiling
    assert max(out.marks.values()) == to_micros(soon.timestamp) <= ceiling
    assert all(e["as_of"] <= ceiling for e in out.book.values())
