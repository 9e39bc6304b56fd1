"""People change jobs (docs/stream.md, "Job changes"): the router sends a contact version that
moves the person to both accounts, the old account's stage carries the person's activities to
the new one in its checkpoint, the new owner raises a ``job_change`` alert, and the old owner
lets the lead go.

The router on real RocksDB; the account stage in-process on a real RocksDB store and score
book and the trained model, its outputs fed back as the account topic would (the multi-worker
run over the broker is tests/stream/test_scaleout.py).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.stream.tests_support import full_recompute

T0 = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
_TOPIC = {"company": "crm.companies", "contact": "crm.contacts", "activity": "crm.activities",
          "opportunity": "crm.opportunities", "order": "crm.orders"}


def _raw(topic: str, offset: int, body: dict):
    from leadpulse.stream.ingest import RawRecord
    return RawRecord(topic, 0, offset, body.get("contact_id", "").encode(), json.dumps(body).encode(), 1767605400.0)


def _contact(cid: str, company: str, at: datetime) -> dict:
    return {"contact_id": cid, "company_id": company, "updated_at": at.isoformat(), "title": "VP Data"}


def _activity(aid: str, cid: str, at: datetime) -> dict:
    return {"activity_id": aid, "contact_id": cid, "type": "pricing_view", "timestamp": at.isoformat()}


def _route(router, *items: tuple[str, dict]):
    from leadpulse.schemas.parse import parse_record
    batch = [(_raw(t, i, b), t, parse_record(t, b)) for i, (t, b) in enumerate(items)]
    forwards, change = router.route(batch)
    router.commit(change)
    return forwards


@pytest.fixture
def router(tmp_path):
    from leadpulse.stream.router import Router
    from leadpulse.stream.state import KVState
    state = KVState(tmp_path / "router")
    yield Router(state)
    state.close()


def test_a_move_goes_to_both_accounts_and_later_activities_follow_the_person(router):
    from leadpulse.stream.router import decode_forward
    first = _route(router, ("crm.contacts", _contact("c1", "acme", T0)),
                   ("crm.activities", _activity("a1", "c1", T0 + timedelta(days=1))))
    assert [(f.account, f.departure, f.moved_from) for f in first] == [("acme", False, None), ("acme", False, None)]

    moved = _route(router, ("crm.contacts", _contact("c1", "globex", T0 + timedelta(days=10))),
                   ("crm.activities", _activity("a2", "c1", T0 + timedelta(days=2))))
    assert [(f.account, f.contract_topic, f.departure, f.moved_from) for f in moved] == [
        ("globex", "crm.contacts", False, "acme"),   # the new account: a job_change alert
        ("acme", "crm.contacts", True, None),        # the old one: carry the person's activities
        ("globex", "crm.activities", False, None),   # a late activity goes where the person is
    ]
    back = decode_forward(moved[1].wire())
    assert back.departure and not back.carried and back.item.company_id == "globex"
    assert decode_forward(moved[0].wire()).moved_from == "acme"

    # an older version (out of order) is no move: the directory keeps the newest
    late = _route(router, ("crm.contacts", _contact("c1", "acme", T0 + timedelta(days=5))))
    assert [(f.account, f.departure, f.moved_from) for f in late] == [("acme", False, None)]
    # nor is a newer version at the same company
    same = _route(router, ("crm.contacts", _contact("c1", "globex", T0 + timedelta(days=11))))
    assert [(f.account, f.departure, f.moved_from) for f in same] == [("globex", False, None)]


def test_a_partial_update_naming_a_new_company_is_a_move(router):
    from leadpulse.schemas.partial import parse_partial
    from leadpulse.stream.router import Partial
    _route(router, ("crm.contacts", _contact("c2", "acme", T0)))
    patch = parse_partial("crm.contacts", {"contact_id": "c2", "company_id": "initech",
                                           "updated_at": (T0 + timedelta(days=3)).isoformat()})
    assert isinstance(patch, Partial)
    forwards, change = router.route([(_raw("crm.contacts", 9, {"contact_id": "c2"}), "crm.contacts", patch)])
    router.commit(change)
    assert [(f.account, f.departure, f.moved_from) for f in forwards] == [("initech", False, "acme"),
                                                                           ("acme", True, None)]


def _processor(work, root):
    from leadpulse.graph_store.rocks import RocksDBGraphStore
    from leadpulse.model.registry import ModelRegistry
    from leadpulse.model.scorer import Scorer
    from leadpulse.stream.accounts import AccountProcessor
    from leadpulse.stream.options import ScoringOptions
    from leadpulse.stream.state import KVState
    return AccountProcessor(RocksDBGraphStore(work / "graph"), KVState(work / "scores"),
                            Scorer(ModelRegistry(root).load("champion")), ScoringOptions(explain_budget=10))


@pytest.fixture
def workers(tmp_path, trained_registry):
    """Two account stages with stores of their own: ``old`` owns partition 0, ``new`` 1."""
    procs = [_processor(tmp_path / name, trained_registry[0]) for name in ("old", "new")]
    for p, part in zip(procs, (0, 1)):
        p.local = {part}
    yield procs
    for p in procs:
        p.store.close()
        p.book.close()


def _account_records(forwards, partition: int, start: int):
    from leadpulse.stream.ingest import RawRecord
    return [RawRecord("acc", partition, start + i, f.account.encode(), f.wire()) for i, f in enumerate(forwards)]


def _run(proc, forwards, partition: int, start: int, replica: bool = False):
    out = proc.process(_account_records(forwards, partition, start), partition, replica)
    proc.commit_published(out)
    return out


def test_the_old_account_carries_the_history_and_the_new_owner_alerts(workers, router):
    """The old owner (partition 0, acme) carries the person's activities to the new one
    (partition 1, globex), which holds no activity of theirs before: with the carried records
    its score of the person equals the full recompute on the whole graph, and it raised one
    ``job_change`` alert; the old owner let the lead go."""
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.schemas.events import Activity, Company, Contact
    from leadpulse.stream.router import Forward

    old, new = workers
    companies = [Company(company_id=c, name=c, industry="software", updated_at=T0 - timedelta(days=30))
                 for c in ("acme", "globex")]
    history = [Activity(activity_id=f"h{i}", contact_id="c1", type=t, timestamp=T0 + timedelta(days=i, hours=1))
               for i, t in enumerate(["page_view", "pricing_view", "demo_request", "email_open"])]
    before = Contact(contact_id="c1", company_id="acme", title="VP Data", updated_at=T0)
    colleague = Contact(contact_id="c9", company_id="globex", title="CTO", updated_at=T0)
    after = Contact(contact_id="c1", company_id="globex", title="VP Data", updated_at=T0 + timedelta(days=20))
    part0 = [Forward("acme", "crm.companies", companies[0]), Forward("acme", "crm.contacts", before)] + \
        [Forward("acme", "crm.activities", a) for a in history]
    part1 = [Forward("globex", "crm.companies", companies[1]), Forward("globex", "crm.contacts", colleague)]
    moved = _route(router, ("crm.contacts", json.loads(before.model_dump_json())),
                   ("crm.contacts", json.loads(after.model_dump_json())))
    arrival = [f for f in moved if f.account == "globex"]
    departure = [f for f in moved if f.departure]
    assert len(arrival) == 1 and len(departure) == 1 and arrival[0].moved_from == "acme"

    # each worker: its own partition, and the other's through replication (no activities)
    _run(old, part0, 0, 0)
    _run(old, part1, 1, 0, replica=True)
    _run(new, part1, 1, 0)
    _run(new, part0, 0, 0, replica=True)
    assert old.book.get("s", "c1") is not None and new.book.get("s", "c1") is None

    # the move: globex's partition gets the arrival, acme's the departure
    carried = _run(old, departure, 0, len(part0)).forwards
    assert sorted(f.event.activity_id for f in carried) == [a.activity_id for a in history]
    assert all(f.carried and f.account == "globex" for f in carried)
    assert old.metrics.job_changes._value.get() == 1
    arrived = _run(new, arrival, 1, len(part1))
    assert [(a.contact_id, a.company_id, a.previous_company_id) for a in arrived.alerts
            if a.kind == "job_change"] == [("c1", "globex", "acme")]
    _run(old, arrival, 1, len(part1), replica=True)
    assert old.book.get("s", "c1") is None  # the new owner's lead now

    got = _run(new, carried, 1, len(part1) + 1)
    assert "c1" in {s.contact_id for s in got.scores}
    assert new.metrics.carried.labels(kind="activity")._value.get() == len(history)

    reference = MemoryGraphStore()
    reference.apply(companies + [before, colleague] + history + [after])
    entry = new.book.get("s", "c1")
    assert entry["as_of"] == new.watermark(1)
    want = full_recompute(reference, new.scorer.model, {"c1": entry["as_of"]})
    assert abs(want["c1"] - entry["score"]) <= 1e-5
