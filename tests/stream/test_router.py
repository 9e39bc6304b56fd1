"""Held events: an activity or order for a contact not seen yet waits in the router's state until
its contact arrives, at most the hold limit of wall-clock time; then it is a dead letter with the
reason "contact never arrived" (docs/stream.md, "Held events").

The router itself on real RocksDB (times given explicitly), then the runtime over the real
broker: the expiry goes through the same send -> flush -> commit checkpoint as a batch, and the
worker's /metrics carries the held count, the applied event time per partition and the process
figures.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Optional

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

DAY = 86400.0
ACTS, CONTACTS = "in.activities", "in.contacts"


def _activity(activity_id: str, contact_id: str) -> bytes:
    return json.dumps({"activity_id": activity_id, "contact_id": contact_id, "type": "page_view",
                       "timestamp": "2026-01-05T09:30:00Z"}).encode()


def _contact(contact_id: str, company_id: str = "acme") -> bytes:
    return json.dumps({"contact_id": contact_id, "company_id": company_id,
                       "updated_at": "2026-01-05T09:00:00Z"}).encode()


def _record(topic: str, partition: int, offset: int, key: str, value: bytes):
    from leadpulse.stream.ingest import RawRecord
    return RawRecord(topic, partition, offset, key.encode(), value, 1767605400.0)


def _batch(*records):
    """(record, contract topic, event) as the ingest stage hands them to the router."""
    from leadpulse.schemas.parse import parse_event
    contract = {ACTS: "crm.activities", CONTACTS: "crm.contacts"}
    return [(r, contract[r.topic], parse_event(contract[r.topic], r.value)) for r in records]


def _route(router, *records) -> list:
    forwards, change = router.route(_batch(*records))
    router.commit(change)
    return forwards


def _keys(state, namespace: str) -> list:
    return [k for k, _ in state.scan(namespace)]


@pytest.fixture
def state(tmp_path):
    from leadpulse.stream.state import KVState
    s = KVState(tmp_path / "router")
    yield s
    s.close()


def test_a_held_event_older_than_the_limit_becomes_a_dead_letter(state):
    from leadpulse.stream.router import NEVER_ARRIVED, Router

    router = Router(state)
    router.assigned = frozenset({(ACTS, 0), (CONTACTS, 0)})
    before = time.time()
    assert _route(router, _record(ACTS, 0, 5, "c-never", _activity("a-1", "c-never"))) == []
    assert router.held_count() == 1

    letters, change = router.expire(7 * DAY, now=before + 7 * DAY - 60)
    assert letters == [] and change["deletes"] == []

    letters, change = router.expire(7 * DAY, now=time.time() + 7 * DAY)
    assert router.held_count() == 1, "nothing changes before the commit (after the producer's flush)"
    [(letter, key)] = letters
    assert key == b"c-never"
    assert (letter.source_topic, letter.partition, letter.offset) == (ACTS, 0, 5)
    assert letter.error.startswith(f"contact_id: {NEVER_ARRIVED}: no contact c-never within 7 days")
    assert json.loads(base64.b64decode(letter.raw)) == json.loads(_activity("a-1", "c-never"))
    router.commit(change)
    assert router.held_count() == 0
    assert _keys(state, "h") == [] and _keys(state, "t") == [], "the held event and its time index are gone"

    # the contact arriving afterwards releases nothing: the event is in the dead-letter topic
    assert [f.event.kind for f in _route(router, _record(CONTACTS, 0, 0, "c-never", _contact("c-never")))] \
        == ["contact"]


def test_a_contact_arriving_before_the_limit_releases_the_held_event(state):
    from leadpulse.stream.router import Router

    router = Router(state)
    router.assigned = frozenset({(ACTS, 0), (CONTACTS, 0)})
    _route(router, _record(ACTS, 0, 0, "c-late", _activity("a-1", "c-late")),
           _record(ACTS, 0, 1, "c-late", _activity("a-2", "c-late")))
    assert router.held_count() == 2
    forwards = _route(router, _record(CONTACTS, 0, 0, "c-late", _contact("c-late", "acme")))
    assert sorted((f.account, f.event.kind, getattr(f.event, "activity_id", None)) for f in forwards) == \
        [("acme", "activity", "a-1"), ("acme", "activity", "a-2"), ("acme", "contact", None)]
    assert router.held_count() == 0
    assert _keys(state, "h") == [] and _keys(state, "t") == []
    assert router.expire(0.0, now=time.time() + 30 * DAY)[0] == []


def test_held_and_released_within_one_batch_leaves_nothing_behind(state):
    from leadpulse.stream.router import Router

    router = Router(state)
    forwards = _route(router, _record(ACTS, 0, 0, "c-1", _activity("a-1", "c-1")),
                      _record(CONTACTS, 0, 0, "c-1", _contact("c-1")))
    assert sorted(f.event.kind for f in forwards) == ["activity", "contact"]
    assert router.held_count() == 0
    assert _keys(state, "h") == [] and _keys(state, "t") == []


def test_only_the_assigned_partitions_are_counted_and_expired(state):
    from leadpulse.stream.router import Router

    router = Router(state)
    _route(router, _record(ACTS, 0, 0, "c-a", _activity("a-1", "c-a")),
           _record(ACTS, 1, 0, "c-b", _activity("a-2", "c-b")))
    later = time.time() + 8 * DAY
    # before the first assignment: everything counts, nothing expires (it may not be ours)
    assert router.held_count() == 2
    assert router.expire(7 * DAY, now=later)[0] == []

    # partition 1 is another worker's now: its copy there expires, not this stale one
    router.assigned = frozenset({(ACTS, 0), (CONTACTS, 0)})
    assert router.held_count() == 1
    letters, change = router.expire(7 * DAY, now=later)
    assert [(letter.partition, key) for letter, key in letters] == [(0, b"c-a")]
    router.commit(change)
    assert router.held_count() == 0
    assert [k[0] for k in _keys(state, "h")] == ["c-b"]


def test_the_count_survives_a_restart_and_older_entries_count_from_the_start(tmp_path):
    from leadpulse.stream.router import Router
    from leadpulse.stream.state import KVState

    state = KVState(tmp_path / "router")
    try:
        router = Router(state)
        _route(router, _record(ACTS, 0, 0, "c-new", _activity("a-1", "c-new")))
        # held by a version that recorded no hold time
        state.commit({("h", "c-old", f"{ACTS}:0:1"): {"topic": "crm.activities", "ts": None,
                                                     "event": json.loads(_activity("a-2", "c-old"))}})
    finally:
        state.close()

    state = KVState(tmp_path / "router")
    try:
        started = time.time()
        router = Router(state)
        router.assigned = frozenset({(ACTS, 0)})
        assert router.held_count() == 2
        assert state.get("h", "c-old", f"{ACTS}:0:1")["held_at"] >= started
        assert router.expire(7 * DAY, now=started + 7 * DAY - 60)[0] == [], \
            "the old entry's limit counts from this start"
        letters, change = router.expire(7 * DAY, now=time.time() + 7 * DAY)
        assert [key for _, key in letters] == [b"c-new", b"c-old"], "oldest first"
        router.commit(change)
        assert router.held_count() == 0 and _keys(state, "t") == []
    finally:
        state.close()


# --------------------------------------------------------------- the runtime, real broker
class _Producer:
    """``runtime.Producer`` on aiokafka that refuses the first ``fail_sends`` sends."""

    def __init__(self, producer: AIOKafkaProducer, fail_sends: int = 0):
        self.producer, self.fail_sends = producer, fail_sends

    async def send(self, topic: str, key: Optional[bytes], value: Optional[bytes]) -> None:
        if self.fail_sends:
            self.fail_sends -= 1
            raise RuntimeError("injected: the broker refused the record")
        await self.producer.send(topic, value, key=key)

    async def flush(self) -> None:
        await self.producer.flush()


def _samples(metrics) -> dict:
    text = metrics.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


async def _read(bootstrap: str, topic: str) -> list:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await c.start()
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        end, out = (await c.end_offsets([tp]))[tp], []
        while len(out) < end:
            for ms in (await c.getmany(timeout_ms=500)).values():
                out += ms
        return out
    finally:
        await c.stop()


def test_the_runtime_expires_held_events_through_the_checkpoint_and_exposes_them(broker, topic_prefix, tmp_path):
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.stream.accounts import AccountProcessor
    from leadpulse.stream.metrics import Metrics
    from leadpulse.stream.router import NEVER_ARRIVED, Router
    from leadpulse.stream.runtime import RuntimeTopics, ScoringRuntime
    from leadpulse.stream.state import KVState

    acts, contacts = topic_prefix + ACTS, topic_prefix + CONTACTS
    topics = RuntimeTopics(inputs={acts: "crm.activities", contacts: "crm.contacts"},
                           accounts=topic_prefix + "accounts", deadletter=topic_prefix + "deadletter",
                           scores=topic_prefix + "scores", alerts=topic_prefix + "alerts")
    router_state, book = KVState(tmp_path / "router"), KVState(tmp_path / "scores")
    metrics = Metrics()
    processor = AccountProcessor(MemoryGraphStore(), book, None, metrics=metrics)
    rejected = ("leadpulse_events_rejected_total", (("reason", NEVER_ARRIVED), ("topic", acts)))

    async def go() -> list:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, 1, 1) for t in (acts, contacts, topics.accounts,
                                                                   topics.deadletter)])
        finally:
            await admin.close()
        aio = AIOKafkaProducer(bootstrap_servers=broker)
        await aio.start()
        try:
            producer = _Producer(aio)

            async def seek(topic: str, partition: int, offset: int) -> None:
                pass

            runtime = ScoringRuntime(Router(router_state), processor, metrics, producer, seek, topics,
                                     batch_size=100)
            runtime.assigned([(acts, 0), (contacts, 0), (topics.accounts, 0)])

            def r(topic: str, offset: int, value: bytes):
                return _record(topic, 0, offset, json.loads(value)["contact_id"], value)

            await runtime.ingest([r(acts, 0, _activity("a-1", "c-never")), r(acts, 1, _activity("a-2", "c-late"))])
            assert _samples(metrics)[("leadpulse_held_events", ())] == 2
            await runtime.ingest([r(contacts, 0, _contact("c-late"))])  # before the limit: released
            assert _samples(metrics)[("leadpulse_held_events", ())] == 1

            assert await runtime.expire_held(3600) == 0, "held for less than the limit"
            producer.fail_sends = 1  # the letter never reaches the broker: nothing is forgotten
            assert await runtime.expire_held(0.0) == 0
            assert _samples(metrics)[("leadpulse_held_events", ())] == 1
            assert rejected not in _samples(metrics)
            assert await runtime.expire_held(0.0) == 1  # the next tick
            samples = _samples(metrics)
            assert samples[("leadpulse_held_events", ())] == 0
            assert samples[rejected] == 1

            # freshness: the newest applied event time of the owned account partitions only
            book.commit({("w", "0"): 1_767_605_400_000_000, ("w", "1"): 1_767_000_000_000_000})
            now = time.time()
            samples = _samples(metrics)
            assert samples[("leadpulse_applied_event_time_seconds", (("partition", "0"),))] == 1_767_605_400
            age = samples[("leadpulse_applied_event_age_seconds", (("partition", "0"),))]
            assert abs(age - (now - 1_767_605_400)) < 5
            assert ("leadpulse_applied_event_time_seconds", (("partition", "1"),)) not in samples
            assert list(runtime.freshness()) == [0] and abs(runtime.freshness(now)[0] - age) < 5
            assert samples[("process_resident_memory_bytes", ())] > 0
            assert samples[("process_open_fds", ())] > 0
            assert any(name == "python_gc_collections_total" for name, _ in samples)
            return await _read(broker, topics.deadletter)
        finally:
            await aio.stop()

    try:
        letters = asyncio.run(go())
    finally:
        router_state.close()
        book.close()
    assert [m.key for m in letters] == [b"c-never"], "one letter, for the contact that never came"
    letter = json.loads(letters[0].value)
    assert (letter["source_topic"], letter["partition"], letter["offset"]) == (acts, 0, 0)
    assert NEVER_ARRIVED in letter["error"]
    assert json.loads(base64.b64decode(letter["raw"]))["activity_id"] == "a-1"
    assert _keys_after(tmp_path) == ([], [])


def _keys_after(tmp_path) -> tuple[list, list]:
    from leadpulse.stream.state import KVState
    state = KVState(tmp_path / "router")
    try:
        return _keys(state, "h"), _keys(state, "t")
    finally:
        state.close()


def test_the_decay_sweep_waits_for_a_backlog_only_while_batches_keep_coming(broker, topic_prefix, tmp_path, state):
    """A full last batch flags a backlog; if the input then goes quiet, no batch ever clears
    it, yet the leads still decay: the sweep skips one tick, not every tick after."""
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.stream.accounts import AccountProcessor
    from leadpulse.stream.metrics import Metrics
    from leadpulse.stream.router import Router
    from leadpulse.stream.runtime import RuntimeTopics, ScoringRuntime
    from leadpulse.stream.state import KVState

    topics = RuntimeTopics(inputs={CONTACTS: "crm.contacts"}, accounts=topic_prefix + "accounts",
                           deadletter=topic_prefix + "deadletter", scores=topic_prefix + "scores",
                           alerts=topic_prefix + "alerts")
    book = KVState(tmp_path / "scores")
    processor = AccountProcessor(MemoryGraphStore(), book, None, metrics=Metrics())
    sweeps: list[int] = []
    real_sweep = processor.sweep
    processor.sweep = lambda limit: sweeps.append(limit) or real_sweep(limit)
    forwards = _route(Router(state), _record(CONTACTS, 0, 0, "c-1", _contact("c-1")),
                      _record(CONTACTS, 0, 1, "c-2", _contact("c-2")))
    records = [_record(topics.accounts, 0, i, f.account, f.wire()) for i, f in enumerate(forwards)]

    async def go() -> None:
        aio = AIOKafkaProducer(bootstrap_servers=broker)
        await aio.start()
        try:
            async def seek(topic: str, partition: int, offset: int) -> None:
                pass
            runtime = ScoringRuntime(Router(state), processor, Metrics(), _Producer(aio), seek, topics,
                                     batch_size=len(records))
            runtime.assigned([(CONTACTS, 0), (topics.accounts, 0)])
            await runtime.accounts(records)  # a full batch
            assert runtime.backlog
            await runtime.sweep_tick(10)
            assert sweeps == [], "a batch came since the last tick: ingestion first"
            await runtime.sweep_tick(10)
            assert sweeps == [10], "no batch since: the backlog is over and the sweep runs"
            await runtime.accounts(records)  # busy again (a replay, admitted or not): the next tick waits
            await runtime.sweep_tick(10)
            assert sweeps == [10]
        finally:
            await aio.stop()

    try:
        asyncio.run(go())
    finally:
        book.close()
