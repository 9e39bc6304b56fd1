"""Scale-out (docs/architecture.md#invariant-4): two workers over the partitions score exactly
like one, route lookups to the owner, and one takes over when the other dies.

"Like one": every lead's final score equals the full recompute on the whole graph as of its
partition's watermark — the same reference the one-worker crash test holds a single worker to.
Industry peers cross partitions, so this only holds because each worker replicates the
companies, contacts, opportunities and orders of every partition (stream/replica.py); people who
change jobs (the simulated world's, and one moved across the two workers on top) only because
the old account passes their activities on (stream/carry.py).
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from kafka import KafkaProducer

from tests.stream.tests_support import account_partition, book_matches_reference, publish, settle, wait_for

pytestmark = pytest.mark.slow


def test_two_workers_score_like_one_route_lookups_and_take_over(worker_factory, tiny_world, trained_registry):
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.model.registry import ModelRegistry
    from leadpulse.schemas.events import Activity
    from leadpulse.schemas.tables import event_json, format_time, read_tables

    events, _ = read_tables(tiny_world)
    reference = MemoryGraphStore()
    reference.apply(events)
    model = ModelRegistry(trained_registry[0]).load(trained_registry[1][0])
    contacts = {e.contact_id for e in events if e.kind == "contact"}

    a, b = worker_factory("a").start(), worker_factory("b").start()
    publish(a, tiny_world)
    wait_for(lambda: a.metric("leadpulse_events_applied_total") > 0 and b.metric("leadpulse_events_applied_total") > 0,
             240, f"both workers own partitions\n{a.log()}\n{b.log()}")
    try:
        wait_for(lambda: sum(_applied(w) for w in (a, b)) >= len(events), 240, "every event applied by its owner")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {len(events)} events; " + "; ".join(
            f"{n} consumed {w.metric('leadpulse_events_consumed_total')} applied {_applied(w)}"
            for n, w in (("a", a), ("b", b)))) from None
    settle(a, 1)
    settle(b, 1)

    # change-data-capture records on top: a tombstone and a Debezium delete, a Salesforce partial
    # update; both workers apply them as one would (and the deleted lead's score is withdrawn)
    sample = sorted(contacts)[:: max(1, len(contacts) // 12)]
    changed = _send_changes(a, events, exclude=set(sample))
    wait_for(lambda: sum(_applied(w) for w in (a, b)) >= len(events) + len(changed), 240,
             f"the changes applied\n{a.log()}\n{b.log()}")
    settle(a, 1)
    settle(b, 1)
    reference.apply(changed)
    gone = {e.entity_id for e in changed if getattr(e, "entity", None) == "contact"}
    mover = changed[-1]
    moves = sum(w.metric("leadpulse_job_changes_total") for w in (a, b))
    assert moves >= 1 + _movers(events), f"{moves} departures applied"
    assert sum(w.metric("leadpulse_alerts_total", kind="job_change") for w in (a, b)) >= 1
    for w in (a, b):  # the mover is scored at the new account, whichever worker is asked
        assert json.loads(w.get(f"/leads/{mover.contact_id}") or "{}").get("company_id") == mover.company_id
    contacts -= gone
    for cid in gone:
        for w in (a, b):
            status, body = w.fetch(f"/leads/{cid}")
            assert status == 404 and json.loads(body).get("status") == "deleted", (status, body)

    # /leads on either worker answers for every lead, whichever worker owns it (Faust's router)
    for cid in sample:
        got = [json.loads(w.get(f"/leads/{cid}") or "{}") for w in (a, b)]
        assert got[0].get("score") is not None and got[0]["score"] == got[1]["score"], (cid, got)
        # the documented answer (docs/getting-started.md), none of the score book's bookkeeping
        assert set(got[0]) == {"contact_id", "score", "tier", "as_of", "model_version", "company_id",
                               "top_factors", "positive_factors", "negative_factors", "percentile",
                               "partition"}, got[0]

    partitions = [json.loads(w.get("/healthz"))["account_partitions"] for w in (a, b)]
    assert sorted(partitions[0] + partitions[1]) == [0, 1], partitions
    a.kill()
    b.kill()
    owned = [book_matches_reference(w, reference, model, parts) for w, parts in zip((a, b), partitions)]
    assert not set(owned[0]) & set(owned[1]), "a lead is owned by one worker"
    assert set(owned[0]) | set(owned[1]) == contacts, "every contact scored by exactly one worker"

    # b dies for good: a takes b's partitions over and keeps scoring them
    a.start()
    theirs = sorted(owned[1])[:5]
    now = max(e.event_time for e in events)
    fresh = [Activity(activity_id=f"late-{cid}", contact_id=cid, type="demo_request", timestamp=now)
             for cid in theirs]
    producer = KafkaProducer(bootstrap_servers=a.bootstrap)
    for ev in fresh:
        producer.send(a.topics["crm.activities"], key=ev.contact_id.encode(), value=event_json(ev))
    producer.flush()
    producer.close()

    def rescored() -> bool:  # the survivor's lookup shows each of them scored as of the new event
        return all(json.loads(a.get(f"/leads/{cid}") or "{}").get("as_of") == format_time(now) for cid in theirs)
    wait_for(rescored, 240, f"the survivor scores the dead worker's leads\n{a.log()}")
    settle(a, 1)
    a.kill()
    reference.apply(fresh)
    entries = book_matches_reference(a, reference, model)
    assert set(entries) == contacts


def _movers(events: list) -> int:
    """People of the world whose versions name more than one company."""
    companies: dict[str, set] = {}
    for e in events:
        if e.kind == "contact":
            companies.setdefault(e.contact_id, set()).add(e.company_id)
    return sum(len(c) > 1 for c in companies.values())


def _send_changes(run, events: list, exclude: set) -> list:
    """A contact's tombstone, a Debezium delete of an activity, a Salesforce update of a
    contact's title and a person with activities moving to a company of the other account
    partition, dated days before the world's end; the events they stand for (the move last)."""
    from leadpulse.schemas.events import Activity, Contact, Delete
    from leadpulse.schemas.parse import parse_record
    from leadpulse.schemas.tables import event_json
    from tests.schemas.changefeed import record_time, render

    end = max(e.event_time for e in events).replace(microsecond=0)
    contacts = sorted({e.contact_id for e in events if isinstance(e, Contact)} - exclude)
    latest = {e.contact_id: e for e in sorted((e for e in events if isinstance(e, Contact)),
                                               key=lambda e: e.updated_at)}
    activity = next(e for e in events if isinstance(e, Activity) and e.contact_id not in {contacts[0]})
    # days before the end: no partition's watermark moves (it would leave leads of a partition
    # behind it by less than the decay sweep's age, which the check below does not allow)
    gone_at, act_at, patch_at = (end - timedelta(days=d) for d in (3, 4, 5))
    partial = {"contact_id": contacts[1], "updated_at": patch_at.isoformat().replace("+00:00", "Z"), "title": "VP Sales"}
    merged = {**json.loads(event_json(latest[contacts[1]])), **partial}
    active = {e.contact_id for e in events if isinstance(e, Activity)}
    person = next(latest[c] for c in contacts[2:] if c in active and c != activity.contact_id)
    target = next(e.company_id for e in events if e.kind == "company"
                  and account_partition(e.company_id) != account_partition(person.company_id))
    move = person.model_copy(update={"company_id": target, "updated_at": end - timedelta(days=6)})
    sends = [("crm.contacts", "record", ("delete", contacts[0], gone_at, {})),
             ("crm.activities", "debezium", ("delete", activity.activity_id, act_at,
                                             {"contact_id": activity.contact_id})),
             ("crm.contacts", "salesforce", ("patch", partial, merged))]
    producer = KafkaProducer(bootstrap_servers=run.bootstrap)
    for topic, form, change in sends:
        key, value = render(form, topic, change)
        producer.send(run.topics[topic], key=key, value=value,
                      timestamp_ms=int(record_time(topic, change).timestamp() * 1000))
    producer.send(run.topics["crm.contacts"], key=move.contact_id.encode(), value=event_json(move))
    producer.flush()
    producer.close()
    return [Delete(entity="contact", entity_id=contacts[0], deleted_at=gone_at),
            Delete(entity="activity", entity_id=activity.activity_id, deleted_at=act_at),
            parse_record("crm.contacts", merged), move]


def _applied(run) -> float:
    return run.metric("leadpulse_events_applied_total") + run.metric("leadpulse_events_duplicate_total")
