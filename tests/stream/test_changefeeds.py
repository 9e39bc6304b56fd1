"""Real CRM change feeds through the worker's runtime (real broker, RocksDB, torch): one logical
change stream — the tiny world as a snapshot then live changes, partial updates, deletes and
tombstones, a re-snapshot, out-of-order and duplicated records, a delete that arrives before its
contact — sent as whole records, as Kafka Connect envelopes, as Debezium events in the envelope
(with a field mapping) and as Salesforce change events, ends in the same graph and the same final
scores, equal to the full recompute; deleted contacts' scores are withdrawn with tombstones
(docs/stream.md, "Change feeds"). Bad variants are dead letters with their reason, counted,
and the worker goes on.
"""
from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from leadpulse.schemas.feeds import ID_FIELD
from leadpulse.schemas.topics import ALL_TOPICS, INPUT_TOPICS, input_spec_for_topic
from tests.schemas.changefeed import record_time, render
from tests.stream.test_runtime import PARTITIONS, run_worker
from tests.stream.tests_support import account_partition, full_recompute, graph_signature, last_scores, read_all

pytestmark = pytest.mark.slow

#: a CRM whose columns are not ours: the Debezium run maps them (LEADPULSE_FEEDS "fields")
MAPPING = {"crm.companies": {"account_key": "company_id", "modified": "updated_at"},
           "crm.contacts": {"person_key": "contact_id", "account_key": "company_id", "modified": "updated_at"},
           "crm.activities": {"person_key": "contact_id"},
           "crm.opportunities": {"account_key": "company_id", "modified": "updated_at"},
           "crm.orders": {"person_key": "contact_id", "account_key": "company_id"}}
#: records handed to a stage at once: small enough that some deleted contacts are scored for sure
#: before their delete (``_far_from_their_delete``)
BATCH = 20
FORMS = {"record": {}, "connect": {}, "debezium-connect": {"fields": True}, "salesforce": {}}


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _topic(event) -> str:
    return input_spec_for_topic(event.kind).name


def change_stream(events: list) -> tuple[list[tuple[str, tuple]], list]:
    """(topic, change) in send order, and the events the graph must end up equal to
    (``stream.merge`` merges the patches; deletes are ``Delete`` events)."""
    from leadpulse.schemas.events import Delete
    from leadpulse.schemas.parse import parse_record
    from leadpulse.schemas.tables import event_json

    rng = random.Random(22)
    rows = [(_topic(e), json.loads(event_json(e))) for e in events]
    end = max(e.event_time for e in events).replace(microsecond=0) + timedelta(seconds=1)
    at = lambda minutes: end + timedelta(minutes=minutes)  # noqa: E731 - a clock for the live part
    changes: list[tuple[str, tuple]] = [(t, ("snapshot" if i < 300 else "upsert", r)) for i, (t, r) in enumerate(rows)]
    # out of order: some activities swap places with their neighbour
    for i in rng.sample(range(301, len(changes) - 1), 40):
        if changes[i][0] == changes[i + 1][0] == "crm.activities":
            changes[i], changes[i + 1] = changes[i + 1], changes[i]
    expected = list(events)
    latest: dict[tuple[str, str], dict] = {}
    for t, r in rows:
        key = (t, r[ID_FIELD[t]])
        if key not in latest or r.get("updated_at", "") >= latest[key].get("updated_at", ""):
            latest[key] = r
    contacts = sorted({r["contact_id"] for t, r in rows if t == "crm.contacts"})
    companies = sorted({r["company_id"] for t, r in rows if t == "crm.companies"})
    opportunities = sorted({r["opportunity_id"] for t, r in rows if t == "crm.opportunities"})
    acts = [r for t, r in rows if t == "crm.activities"]

    live: list[tuple[str, tuple]] = []

    def patch(topic: str, entity_id: str, minutes: int, **fields) -> None:
        id_field = input_spec_for_topic(topic).key_field
        time_field = "updated_at"
        partial = {id_field: entity_id, time_field: _iso(at(minutes)), **fields}
        merged = {k: v for k, v in {**latest[(topic, entity_id)], **partial}.items() if v is not None}
        latest[(topic, entity_id)] = merged
        live.append((topic, ("patch", partial, merged)))
        expected.append(parse_record(topic, merged))

    def delete(topic: str, entity: str, entity_id: str, minutes: int, **hints) -> None:
        live.append((topic, ("delete", entity_id, at(minutes), hints)))
        expected.append(Delete(entity=entity, entity_id=entity_id, deleted_at=at(minutes)))

    for i, cid in enumerate(rng.sample(contacts, 15)):
        patch("crm.contacts", cid, 10 + i, title=f"Head of Revenue {i}", department=None)
    for i, co in enumerate(rng.sample(companies, 4)):
        patch("crm.companies", co, 30 + i, industry="fintech", employees=500 + i)
    for i, op in enumerate(opportunities[:3]):
        patch("crm.opportunities", op, 40 + i, stage="negotiation")
    gone = rng.sample(contacts, 4)
    for i, cid in enumerate(gone[:3]):
        delete("crm.contacts", "contact", cid, 60 + i)
    # the fourth is deleted, then comes back with a new version
    delete("crm.contacts", "contact", gone[3], 63)
    back = {**latest[("crm.contacts", gone[3])], "updated_at": _iso(at(90)), "title": "Returned"}
    live.append(("crm.contacts", ("upsert", back)))
    expected.append(parse_record("crm.contacts", back))
    for i, act in enumerate(rng.sample(acts, 6)):
        delete("crm.activities", "activity", act["activity_id"], 70 + i, contact_id=act["contact_id"])
    delete("crm.opportunities", "opportunity", opportunities[-1], 80,
           company_id=latest[("crm.opportunities", opportunities[-1])]["company_id"])
    delete("crm.companies", "company", companies[-1], 85)
    # a contact whose delete arrives before the contact itself (the router holds it). It is dated
    # before the live deletes: it moves its account partition's watermark past the history as soon
    # as the router releases it, and the contacts deleted live in that partition must still be
    # scored (as of it) before their own deletes withdraw them
    early = latest[("crm.contacts", contacts[0])]
    first = next(i for i, (t, c) in enumerate(changes) if t == "crm.contacts" and c[1]["contact_id"] == contacts[0])
    changes.insert(max(0, first - 5), ("crm.contacts", ("delete", early["contact_id"], at(5), {})))
    expected.append(Delete(entity="contact", entity_id=early["contact_id"], deleted_at=at(5)))

    replays = [changes[i] for i in rng.sample(range(len(changes)), 30)]  # at-least-once duplicates
    resnapshot = [(t, ("snapshot", c[1])) for t, c in changes[:400:8] if c[0] in ("snapshot", "upsert")]
    stream = changes[:600] + replays[:15] + changes[600:] + live + replays[15:] + resnapshot + live[:5]
    return stream, expected


async def _produce(broker: str, topics: dict, stream: list, form: str, mapped: bool) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=5)
    await producer.start()
    try:
        for topic, change in stream:
            key, value = render(form, topic, change, **({"fields": MAPPING[topic]} if mapped else {}))
            when = record_time(topic, change)
            await producer.send(topics[topic], value, key=key, timestamp_ms=int(when.timestamp() * 1000))
        await producer.flush()
    finally:
        await producer.stop()


def _topics(broker: str) -> dict:
    prefix = f"cf{uuid.uuid4().hex[:8]}."
    topics = {s.name: prefix + s.name for s in ALL_TOPICS}

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topics[s.name], PARTITIONS, 1) for s in INPUT_TOPICS])
        finally:
            await admin.close()
    asyncio.run(create())
    return topics


@pytest.fixture(scope="module")
def runs(tmp_path_factory, broker, tiny_world, trained_registry) -> dict:
    from leadpulse.schemas.feeds import FeedFormat, FeedSpec
    from leadpulse.schemas.tables import read_tables

    events, _ = read_tables(tiny_world)
    stream, expected = change_stream(events)
    out = {"expected": expected, "stream": stream}
    for form, opts in FORMS.items():
        topics = _topics(broker)
        mapped = bool(opts.get("fields"))
        asyncio.run(_produce(broker, topics, stream, form, mapped))
        feeds = {t: FeedSpec(format=FeedFormat.DEBEZIUM, fields=m) for t, m in MAPPING.items()} if mapped else None
        # the final sweep rescores every lead as of its partition's watermark, so the scores of
        # two runs compare whatever their batches were
        out[form] = run_worker(tmp_path_factory.mktemp(form), broker, topics, trained_registry[0], run=form,
                               feeds=feeds, decay_min_age=0.0, batch=BATCH)
    return out


def test_every_form_gives_the_same_graph_as_the_changes_applied_directly(runs):
    from leadpulse.graph_store.memory import MemoryGraphStore
    want = MemoryGraphStore()
    want.apply(runs["expected"])
    for form in FORMS:
        assert runs[form].signature == graph_signature(want, 2**62), f"{form}: the graph differs"


def test_every_form_gives_the_same_scores_equal_to_the_full_recompute(runs, broker, trained_registry):
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.model.registry import ModelRegistry

    first = runs["record"]
    full = MemoryGraphStore()
    full.apply(runs["expected"])
    model = ModelRegistry(trained_registry[0]).load("champion")
    want = full_recompute(full, model, {c: first.marks[e["partition"]] for c, e in first.book.items()})
    assert np.max([abs(want[c] - e["score"]) for c, e in first.book.items()]) <= 1e-5
    for form in FORMS:
        out = runs[form]
        assert out.marks == first.marks, form
        assert set(out.book) == set(first.book), form
        assert max(abs(out.book[c]["score"] - e["score"]) for c, e in first.book.items()) <= 1e-5, form
        published = asyncio.run(read_all(broker, out.scores_topic))
        assert last_scores(published).keys() == out.book.keys(), f"{form}: the compacted view is the book"
        letters = asyncio.run(read_all(broker, out.deadletter_topic))
        assert letters == [], f"{form}: {[json.loads(m.value)['error'] for m in letters][:3]}"


def _far_from_their_delete(stream: list, form: str, mapped: bool, contacts: set[str]) -> set[str]:
    """The contacts of ``contacts`` whose first version and delete have at least a batch of
    records between them in their crm.contacts partition bound for their account partition.

    Those records keep their order through the router, so the account stage applies the version
    in an earlier batch than the delete and scores the contact as of it: a score is published
    whatever the timing. (Across topics, and within a batch, the order is up to the fetches.)"""
    seen: dict[str, tuple[int, int, int]] = {}  # contact -> (input partition, account partition, index)
    lanes: dict[tuple[int, int], list[int]] = {}  # (input, account partition) -> stream indexes
    far = set()
    for i, (topic, change) in enumerate(stream):
        if topic != "crm.contacts":
            continue
        key, _ = render(form, topic, change, **({"fields": MAPPING[topic]} if mapped else {}))
        lane_in = account_partition(key.decode(), PARTITIONS)  # the same murmur2, of the input key
        if change[0] == "delete":
            cid = change[1]
            if cid in contacts and cid in seen and seen[cid][0] == lane_in:
                between = [j for j in lanes.get(seen[cid][:2], ()) if j > seen[cid][2]]
                far |= {cid} if len(between) >= BATCH else set()
            continue
        record = change[2] if change[0] == "patch" else change[1]
        lane = (lane_in, account_partition(record["company_id"], PARTITIONS))
        lanes.setdefault(lane, []).append(i)
        seen.setdefault(record["contact_id"], (*lane, i))
    return far


def test_deleted_contacts_lose_their_score_with_a_tombstone(runs, broker):
    from leadpulse.schemas.events import Delete
    deleted = {e.entity_id for e in runs["expected"] if isinstance(e, Delete) and e.entity == "contact"}
    for form, opts in FORMS.items():
        out = runs[form]
        published = asyncio.run(read_all(broker, out.scores_topic))
        tombstones = {m.key.decode() for m in published if m.value is None}
        scored = {m.key.decode() for m in published if m.value is not None}
        gone = deleted - set(out.book)
        assert len(deleted - gone) == 1, "the contact re-created after its delete is scored again"
        # whether a deleted contact was ever published depends on how records fell into batches;
        # every one that was is withdrawn, and the compacted view keeps none of them
        assert gone & scored <= tombstones, form
        assert not gone & last_scores(published).keys(), form
        surely = _far_from_their_delete(runs["stream"], form, bool(opts.get("fields")), gone)
        assert surely, f"{form}: the change stream has no contact scored for sure before its delete"
        assert surely <= scored & tombstones, (form, surely - scored)


def test_bad_change_records_are_dead_letters_with_their_reason_and_the_worker_goes_on(
        tmp_path, broker, tiny_world, trained_registry):
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.schemas.tables import event_json, read_tables

    events, _ = read_tables(tiny_world)
    rows = [(_topic(e), json.loads(event_json(e))) for e in events]
    contact = next(r for t, r in rows if t == "crm.contacts")
    company = next(r for t, r in rows if t == "crm.companies")
    order = next(r for t, r in rows if t == "crm.orders")
    first = min(r["updated_at"] for t, r in rows if t == "crm.contacts" and r["contact_id"] == contact["contact_id"])
    header = {"entityName": "Contact", "changeType": "UPDATE", "commitTimestamp": 1767225600000,
              "changedFields": ["Title"]}
    bad = {  # name -> (topic, key, value, what the error must say)
        "unknown op": ("crm.contacts", contact["contact_id"],
                       {"op": "x", "before": None, "after": contact, "ts_ms": 1767225600000}, "op"),
        "envelope without payload": ("crm.companies", company["company_id"],
                                     {"schema": {"type": "struct", "fields": []}, "payload": None}, "envelope"),
        "partial update of an unknown entity": (
            "crm.contacts", "ct-nobody", {"ChangeEventHeader": {**header, "recordIds": ["ct-nobody"]},
                                          "title": "CTO"}, "unknown entity"),
        "a merge that breaks a type": (
            "crm.companies", company["company_id"],
            {"ChangeEventHeader": {**header, "entityName": "Account", "recordIds": [company["company_id"]],
                                   "changedFields": ["employees"]}, "employees": "many"}, "employees"),
        "a partial update before the entity's first version": (
            "crm.contacts", contact["contact_id"],
            {"ChangeEventHeader": {**header, "recordIds": [contact["contact_id"]],
                                   "commitTimestamp": int(datetime.fromisoformat(first).timestamp() * 1000) - 60_000},
             "title": "Too early"}, "unknown entity"),
        "a far-future date": ("crm.activities", contact["contact_id"],
                              {"activity_id": "ac-2099", "contact_id": contact["contact_id"], "type": "call",
                               "timestamp": "2099-01-01T00:00:00Z"}, "future"),
        "an order delete": ("crm.orders", order["contact_id"],
                            {"op": "d", "before": order, "after": None, "ts_ms": 1767225600000}, "delete"),
    }
    topics = _topics(broker)

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=5)
        await producer.start()
        try:
            for i, (topic, row) in enumerate(rows):
                await producer.send(topics[topic], json.dumps(row).encode(),
                                    key=row[input_spec_for_topic(topic).key_field].encode())
                if i == len(rows) // 2:  # the bad records in the middle: what follows must still apply
                    for topic_b, key, value, _ in bad.values():
                        await producer.send(topics[topic_b], json.dumps(value).encode(), key=key.encode())
            await producer.flush()
        finally:
            await producer.stop()
    asyncio.run(produce())
    out = run_worker(tmp_path, broker, topics, trained_registry[0], run="bad")

    letters = [json.loads(m.value) for m in asyncio.run(read_all(broker, out.deadletter_topic))]
    assert len(letters) == len(bad), [x["error"] for x in letters]
    for name, (topic, _, _, says) in bad.items():
        mine = [x for x in letters if x["source_topic"] == topics[topic] and says in x["error"]]
        assert mine, f"{name}: no dead letter says {says!r}: {[x['error'] for x in letters]}"
    rejected = sum(s.value for s in out.metrics.rejected.collect()[0].samples if s.name.endswith("_total"))
    assert rejected == len(bad)
    world = MemoryGraphStore()
    world.apply(events)
    assert out.signature == graph_signature(world, 2**62), "the bad records changed nothing"
