"""Right to erasure through real workers (docs/operating.md, "Erasing a person"): two workers
over the tiny world and one distinctive person; `leadpulse erase` removes every trace of them
from every RocksDB directory both workers keep (read key by key, and byte by byte on disk),
withdraws their score with a tombstone, and a replay of their events is dropped.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.stream.tests_support import last_scores, publish, read_all, settle, wait_for

pytestmark = pytest.mark.slow

PERSON = "c-ERASE-ME-7q"
TRACES = (PERSON.encode(), b"Unique-Title-Zq9", b"act-ERASE-1", b"ord-ERASE-1")


def _rocksdb_dirs(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.rglob("CURRENT")})


def _logical_traces(db_dir: Path) -> list[bytes]:
    """Every key and value of the database (opened read-only), searched for the traces."""
    from rocksdict import AccessType, Options, Rdict
    db = Rdict(str(db_dir), Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        return [t for k, v in db.items() for t in TRACES if t in k or t in v]
    finally:
        db.close()


def _file_traces(db_dir: Path) -> list[tuple[str, bytes]]:
    return [(f.name, t) for f in db_dir.iterdir() if f.is_file() for t in TRACES if t in f.read_bytes()]


def _send(run, events) -> None:
    from leadpulse.schemas.tables import event_json, event_key
    from leadpulse.schemas.topics import input_spec_for_topic
    producer = KafkaProducer(bootstrap_servers=run.bootstrap)
    for e in events:
        producer.send(run.topics[input_spec_for_topic(e.kind).name], key=event_key(e), value=event_json(e))
    producer.flush()
    producer.close()


def test_an_erased_person_leaves_no_trace_in_any_worker(worker_factory, tiny_world):
    from leadpulse.schemas.events import Activity, Contact, Order
    from leadpulse.schemas.tables import read_tables

    events, _ = read_tables(tiny_world)
    end = max(e.event_time for e in events)
    company = next(e.company_id for e in events if e.kind == "contact")
    person = [Contact(contact_id=PERSON, company_id=company, updated_at=end - timedelta(days=20),
                      title="Unique-Title-Zq9", seniority="vp"),
              Activity(activity_id="act-ERASE-1", contact_id=PERSON, type="demo_request",
                       timestamp=end - timedelta(days=3)),
              Order(order_id="ord-ERASE-1", contact_id=PERSON, amount=1200, timestamp=end - timedelta(days=2))]
    a, b = worker_factory("a").start(), worker_factory("b").start()
    n = publish(a, tiny_world)
    _send(a, person)
    wait_for(lambda: sum(w.metric("leadpulse_events_applied_total") + w.metric("leadpulse_events_duplicate_total")
                         for w in (a, b)) >= n + len(person), 240, f"every event applied\n{a.log()}\n{b.log()}")
    settle(a, 1)
    settle(b, 1)
    assert json.loads(a.get(f"/leads/{PERSON}") or "{}").get("score") is not None, "the person was scored"
    assert all(_file_traces(d) for w in (a, b) for d in _rocksdb_dirs(w.data_dir / "worker") if "graph" in d.name), \
        "before the erasure the check finds the person on disk (it has teeth)"

    env = {k: v for k, v in a.env().items() if k != "LEADPULSE_WEB_PORT"}
    done = subprocess.run([sys.executable, "-m", "leadpulse.stream.cli", "erase", "--contact", PERSON],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: all(w.metric("leadpulse_erasures_total") >= 1 for w in (a, b)), 120,
             f"both workers erased\n{a.log()}\n{b.log()}")
    for w in (a, b):
        status, body = w.fetch(f"/leads/{PERSON}")
        assert status == 404 and json.loads(body).get("status") == "erased", (status, body)

    # a replay of the person's history is dropped, not applied again
    _send(a, person[1:2])
    wait_for(lambda: sum(w.metric("leadpulse_events_erased_total") for w in (a, b)) >= 1, 120,
             f"the replayed event dropped\n{a.log()}")
    settle(a, 1)
    settle(b, 1)
    scores = asyncio.run(read_all(a.bootstrap, a.topics["leads.scores"]))
    assert any(r.key == PERSON.encode() and r.value is None for r in scores), "a tombstone withdrew the score"
    assert PERSON not in last_scores(scores)
    a.kill()
    b.kill()

    for w in (a, b):
        dirs = _rocksdb_dirs(w.data_dir / "worker")
        assert {d.name for d in dirs} >= {"graph", "router", "scores"}, dirs
        for d in dirs:
            assert _logical_traces(d) == [], f"{d}: the person is still readable"
            assert _file_traces(d) == [], f"{d}: the person is still in a file"
    assert os.path.exists(a.data_dir / "worker" / "graph")
