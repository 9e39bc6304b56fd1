"""RocksDB-only behaviour: reopen, the on-disk edge layout, errors at the boundary."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings

from leadpulse.graph_store.errors import GraphStoreError, StoreClosed, StoreCorrupted
from leadpulse.graph_store.memory import MemoryGraphStore
from leadpulse.graph_store.options import GraphStoreOptions
from leadpulse.graph_store.rocks import RocksDBGraphStore
from leadpulse.schemas.types import EDGE_TYPES
from tests.graph_store.reference import as_sets
from tests.graph_store.worlds import TIMES, histories, query_time, random_events

OPTS = GraphStoreOptions(industry_k=2, similar_k=2)


def test_reopen_restores_everything(tmp_path):
    events = random_events(3000, seed=3)
    store = RocksDBGraphStore(tmp_path, OPTS)
    twin = MemoryGraphStore(OPTS)
    for p, lo in enumerate(range(0, len(events), 500)):
        store.apply(events[lo:lo + 500], {("crm.all", p % 2): lo + 500}, partition=p % 2)
        twin.apply(events[lo:lo + 500], partition=p % 2)
    t = TIMES[0] + 30 * 86_400_000_000
    before = as_sets(store.snapshot(t))
    store.close()
    with pytest.raises(StoreClosed):
        store.node("contact", "ct1", t)
    store = RocksDBGraphStore(tmp_path, OPTS)
    assert as_sets(store.snapshot(t)) == before == as_sets(twin.snapshot(t))
    assert store.positions() == {("crm.all", 0): 2500, ("crm.all", 1): 3000}
    store.drop_partition(1)
    twin.drop_partition(1)
    store.close()
    store = RocksDBGraphStore(tmp_path, OPTS)
    assert as_sets(store.snapshot(t)) == as_sets(twin.snapshot(t))
    assert store.positions() == {("crm.all", 0): 2500}
    store.close()


def test_reopen_with_deletes_restores_everything_and_marks_the_format(tmp_path):
    events = random_events(3000, seed=3, deletes=0.05)
    assert sum(e.kind == "delete" for e in events) > 100
    store = RocksDBGraphStore(tmp_path, OPTS)
    twin = MemoryGraphStore(OPTS)
    for p, lo in enumerate(range(0, len(events), 500)):
        store.apply(events[lo:lo + 500], {("crm.all", p % 2): lo + 500}, partition=p % 2)
        twin.apply(events[lo:lo + 500], partition=p % 2)
    assert store.db.get(b"Mformat") == b"3"   # older code, blind to tombstones, refuses the store
    times = [TIMES[0] + d * 86_400_000_000 for d in (5, 30, 61)]
    before = [as_sets(store.snapshot(t)) for t in times]
    assert before == [as_sets(twin.snapshot(t)) for t in times]
    store.close()
    store = RocksDBGraphStore(tmp_path, OPTS)
    assert [as_sets(store.snapshot(t)) for t in times] == before
    store.drop_partition(1)
    twin.drop_partition(1)
    store.close()
    store = RocksDBGraphStore(tmp_path, OPTS)
    assert [as_sets(store.snapshot(t)) for t in times] == [as_sets(twin.snapshot(t)) for t in times]
    store.close()


def test_store_without_deletes_keeps_format_2(tmp_path):
    store = RocksDBGraphStore(tmp_path, OPTS)
    store.apply(random_events(300, seed=1))
    store.close()
    store = RocksDBGraphStore(tmp_path, OPTS)
    assert store.db.get(b"Mformat") == b"2" and not any(k[:2] == b"RD" or k[5:6] == b"D" for k in store.db.keys())
    store.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=histories(max_size=30), t=query_time)
def test_disk_prefix_scans_match_the_index(tmp_path_factory, events, t):
    _disk_prefix_scans_match_the_index(tmp_path_factory, events, t)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=histories(max_size=30, with_deletes=True), t=query_time)
def test_disk_prefix_scans_with_deletes_match_the_index(tmp_path_factory, events, t):
    _disk_prefix_scans_match_the_index(tmp_path_factory, events, t)


def _disk_prefix_scans_match_the_index(tmp_path_factory, events, t):
    store = RocksDBGraphStore(tmp_path_factory.mktemp("disk"), OPTS)
    rng = random.Random(len(events))
    for ev in events:
        store.apply([ev], partition=rng.randrange(2))
    for etype in EDGE_TYPES:
        if etype[1] in ("industry_peer", "similar_to", "rev_industry_peer", "rev_similar_to"):
            with pytest.raises(GraphStoreError):
                store.disk_neighbors(etype, "x", t)
            continue
        for nid in store.node_ids(etype[0], t):
            assert store.disk_neighbors(etype, nid, t) == store.neighbors(etype, nid, t)
    store.close()


def test_unreadable_store_is_reported(tmp_path):
    (tmp_path / "CURRENT").write_text("garbage\n")
    with pytest.raises(StoreCorrupted):
        RocksDBGraphStore(tmp_path)


def test_failed_write_applies_nothing(tmp_path, monkeypatch):
    events = random_events(200, seed=5)
    store = RocksDBGraphStore(tmp_path)
    store.apply(events[:100], {("crm.all", 0): 100})
    t = TIMES[-1] + 100 * 86_400_000_000
    before = as_sets(store.snapshot(t))
    monkeypatch.setattr(store, "_db", _Failing(store._db))
    with pytest.raises(GraphStoreError):
        store.apply(events[100:], {("crm.all", 0): 200})
    monkeypatch.undo()
    assert as_sets(store.snapshot(t)) == before
    assert store.positions() == {("crm.all", 0): 100}
    store.close()


class _Failing:
    """Delegates to a real Rdict but fails every write."""
    def __init__(self, db):
        self._db = db

    def write(self, *a, **k):
        raise OSError("disk full")

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_read_only_open_reads_and_refuses_writes(tmp_path):
    events = random_events(300, seed=9)
    writer = RocksDBGraphStore(tmp_path)
    writer.apply(events, {("crm.all", 0): 300})
    t = TIMES[-1] + 100 * 86_400_000_000
    reader = RocksDBGraphStore(tmp_path, read_only=True)   # next to a live writer
    assert as_sets(reader.snapshot(t)) == as_sets(writer.snapshot(t))
    assert reader.time_span() == writer.time_span() and reader.positions() == {("crm.all", 0): 300}
    with pytest.raises(GraphStoreError):
        reader.apply(events[:1])
    with pytest.raises(GraphStoreError):
        reader.drop_partition(0)
    reader.close()
    writer.close()
