"""The graph store contract, run against both stores (memory and RocksDB) and checked
against the brute-force reference."""
from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadpulse.graph_store.base import activity_cut
from leadpulse.graph_store.options import GraphStoreOptions
from leadpulse.schemas.events import Activity, Company, Contact, Order
from leadpulse.schemas.timeutil import from_micros
from leadpulse.schemas.types import EDGE_TYPES, NODE_TYPES
from tests.graph_store.reference import Reference, as_sets
from tests.graph_store.worlds import TIMES, histories, late_query_time, query_time

SMALL_RINGS = GraphStoreOptions(industry_k=2, similar_k=2)
PROPS = settings(max_examples=int(os.environ.get("GS_EXAMPLES", 120)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _apply_in_batches(store, events, rng, partition=0):
    i = 0
    while i < len(events):
        n = rng.randint(1, 8)
        store.apply(events[i:i + n], partition=partition)
        i += n


def _check_reads(store, ref, t, rng):
    nodes, edges = ref.snapshot(t)
    assert as_sets(store.snapshot(t)) == (nodes, edges)
    for kind in NODE_TYPES:
        assert store.node_ids(kind, t) == sorted(nodes[kind])
        for nid in list(nodes[kind])[:4]:
            assert store.node(kind, nid, t) == {k: v for k, v in nodes[kind][nid].items() if k != "career"}
    for etype in EDGE_TYPES:
        for nid in sorted(nodes[etype[0]])[:3]:
            assert store.neighbors(etype, nid, t) == ref.neighbors(etype, nid, t), (etype, nid, t)
    for cid in nodes["contact"]:
        assert store.timeline(cid, t) == ref.timeline(cid, t)
    for cid in ref.ids("contact", TIMES[-1] + 1) + ["nobody"]:   # absent ones too: the empty career
        assert store.career(cid, t) == ref.career(cid, t), (cid, t)
    for cid in nodes["company"]:
        assert store.company_orders(cid, t) == ref.orders(cid, t)
    contacts = sorted(nodes["contact"])
    for hops in (1, 2):
        seeds = rng.sample(contacts, min(len(contacts), rng.randint(1, 3))) + ["nobody"]
        g = store.subgraph(seeds, t, hops=hops)
        assert as_sets(g) == ref.subgraph(seeds, t, hops=hops)
        assert [g.node_ids["contact"][i] for i in g.seeds] == [s for s in seeds if s in nodes["contact"]]
        for days in (0.5, 3.0):   # an activity window read: the union's recent activities, nothing else cut
            windowed = store.subgraph(seeds, t, hops=hops, activity_days=days)
            assert _activity_view(windowed) == _activity_view(g.recent_activities(days)), (days, hops, t)
            times = [windowed.edge_time[e] for e in EDGE_TYPES if "activity" in (e[0], e[2])]
            assert all((tm > activity_cut(t, days)).all() for tm in times)


def _activity_view(g):
    """What an activity window may change in a read: its activities, their edges, its contacts
    (with their whole timelines)."""
    nodes, edges = as_sets(g)
    return (nodes["activity"], nodes["contact"],
            {e: edges.get(e, set()) for e in EDGE_TYPES if "activity" in (e[0], e[2])})


@PROPS
@given(events=histories(), seed=st.integers(0, 2**16), times=st.lists(query_time, min_size=1, max_size=3))
def test_reads_match_reference(make_store, events, seed, times):
    _reads_match_reference(make_store, events, seed, times)


@PROPS
@given(events=histories(with_deletes=True), seed=st.integers(0, 2**16),
       times=st.lists(query_time, min_size=1, max_size=3))
def test_reads_match_reference_with_deletes(make_store, events, seed, times):
    _reads_match_reference(make_store, events, seed, times)


@PROPS
@given(events=histories(careers=True, with_deletes=True), seed=st.integers(0, 2**16),
       times=st.lists(late_query_time, min_size=1, max_size=3))
def test_reads_match_reference_with_job_changes(make_store, events, seed, times):
    _reads_match_reference(make_store, events, seed, times)


def _reads_match_reference(make_store, events, seed, times):
    store = make_store(SMALL_RINGS)
    rng = random.Random(seed)
    _apply_in_batches(store, events, rng)
    ref = Reference(events, industry_k=2, similar_k=2)
    for t in times:
        _check_reads(store, ref, t, rng)


@PROPS
@given(events=histories(max_size=25), seed=st.integers(0, 2**16))
def test_reapplying_changes_nothing(make_store, events, seed):
    _reapplying_changes_nothing(make_store, events, seed)


@PROPS
@given(events=histories(max_size=25, with_deletes=True), seed=st.integers(0, 2**16))
def test_reapplying_with_deletes_changes_nothing(make_store, events, seed):
    _reapplying_changes_nothing(make_store, events, seed)


def _reapplying_changes_nothing(make_store, events, seed):
    store = make_store(SMALL_RINGS)
    rng = random.Random(seed)
    _apply_in_batches(store, events, rng)
    t = TIMES[-1]
    before = as_sets(store.snapshot(t))
    shuffled = list(events)
    rng.shuffle(shuffled)
    effects = store.apply(shuffled)
    assert not any(e.changed for e in effects)
    assert store.affected_leads(effects, t) == set()
    assert as_sets(store.snapshot(t)) == before


@PROPS
@given(events=histories(max_size=30), parts=st.lists(st.integers(0, 2), min_size=30, max_size=30),
       dropped=st.integers(0, 2))
def test_drop_partition_forgets_only_that_partition(make_store, events, parts, dropped):
    _drop_partition_forgets_only_that_partition(make_store, events, parts, dropped)


@PROPS
@given(events=histories(max_size=30, with_deletes=True), parts=st.lists(st.integers(0, 2), min_size=30, max_size=30),
       dropped=st.integers(0, 2))
def test_drop_partition_with_deletes(make_store, events, parts, dropped):
    _drop_partition_forgets_only_that_partition(make_store, events, parts, dropped)


def _drop_partition_forgets_only_that_partition(make_store, events, parts, dropped):
    store = make_store(SMALL_RINGS)
    for ev, p in zip(events, parts):
        store.apply([ev], {("crm.x", p): 1}, partition=p)
    store.drop_partition(dropped)
    first: dict = {}   # (kind, entity, id, time) -> (first delivered event, partitions that delivered it)
    for ev, p in zip(events, parts):
        key = (ev.kind, getattr(ev, "entity", None), ev.entity_id, ev.event_time)
        first.setdefault(key, (ev, set()))[1].add(p)
    # company versions and company deletes are replicated: never dropped
    kept = [ev for ev, ps in first.values() if ps - {dropped} or "company" in (ev.kind, getattr(ev, "entity", None))]
    ref = Reference(kept, industry_k=2, similar_k=2)
    t = TIMES[-1]
    assert as_sets(store.snapshot(t)) == ref.snapshot(t)
    assert ("crm.x", dropped) not in store.positions()


def test_positions_are_recorded_with_the_batch(make_store):
    store = make_store()
    assert store.positions() == {}
    ev = Contact(contact_id="c1", company_id="a1", updated_at=from_micros(TIMES[0]))
    store.apply([ev], {("crm.contacts", 0): 5, ("crm.contacts", 1): 2})
    store.apply([], {("crm.contacts", 0): 9})
    assert store.positions() == {("crm.contacts", 0): 9, ("crm.contacts", 1): 2}


def test_activity_before_its_contact_makes_a_stub(make_store):
    store = make_store()
    t0, t1, t2 = TIMES[0], TIMES[1], TIMES[2]
    act = Activity(activity_id="a1", contact_id="c1", type="page_view", timestamp=from_micros(t0), page="/p")
    con = Contact(contact_id="c1", company_id="co1", updated_at=from_micros(t1), title="cto")
    effects = store.apply([act])
    assert effects[0].changed and ("contact", "c1") in effects[0].feature_nodes
    assert store.node("contact", "c1", t0) == {"timeline": [(t0, "page_view", "/p")]}
    assert store.neighbors(("contact", "works_at", "company"), "c1", t2) == []
    store.apply([con])
    assert store.node("contact", "c1", t0) == {"timeline": [(t0, "page_view", "/p")]}
    assert store.node("contact", "c1", t1)["title"] == "cto"
    assert store.neighbors(("contact", "had_activity", "activity"), "c1", t2) == [("a1", t0)]
    assert store.neighbors(("contact", "works_at", "company"), "c1", t2) == [("co1", t1)]
    assert store.node("contact", "c1", t0 - 1) is None


def test_contact_versions_move_company_and_orders_follow(make_store):
    store = make_store()
    t = TIMES
    store.apply([
        Contact(contact_id="c1", company_id="A", updated_at=from_micros(t[3])),
        Order(order_id="o1", contact_id="c1", amount=10, timestamp=from_micros(t[4])),
        Order(order_id="o2", contact_id="c1", amount=20, timestamp=from_micros(t[7])),
    ])
    store.apply([Contact(contact_id="c1", company_id="B", updated_at=from_micros(t[6]))])   # late-ish
    assert store.neighbors(("contact", "works_at", "company"), "c1", t[5]) == [("A", t[3])]
    assert store.neighbors(("contact", "works_at", "company"), "c1", t[6]) == [("B", t[6])]
    assert store.neighbors(("company", "rev_works_at", "contact"), "A", t[9]) == []
    assert store.company_orders("A", t[9]) == [(t[4], 10.0)]
    assert store.company_orders("B", t[9]) == [(t[7], 20.0)]
    assert store.company_orders("B", t[6]) == []


def test_industry_peers_are_a_deterministic_ring(make_store):
    opts = GraphStoreOptions(industry_k=2, similar_k=2)
    events = [Company(company_id=f"k{i}", industry="saas", updated_at=from_micros(TIMES[i % 3]))
              for i in range(6)]
    a, b = make_store(opts), make_store(opts)
    a.apply(events)
    b.apply(list(reversed(events)))
    t = TIMES[-1]
    for cid in (f"k{i}" for i in range(6)):
        peers = a.neighbors(("company", "industry_peer", "company"), cid, t)
        assert len(peers) == 2
        assert peers == b.neighbors(("company", "industry_peer", "company"), cid, t)
        for other, _ in peers:
            assert cid in [p for p, _ in a.neighbors(("company", "industry_peer", "company"), other, t)]


def test_time_span_and_duplicate_effects(make_store):
    store = make_store()
    assert store.time_span() is None
    act = Activity(activity_id="a1", contact_id="c1", type="call", timestamp=from_micros(TIMES[3]))
    con = Contact(contact_id="c1", company_id="co1", updated_at=from_micros(TIMES[1]))
    store.apply([act, con])
    assert store.time_span() == (TIMES[1], TIMES[3])
    (dup,) = store.apply([act])
    assert not dup.changed and dup.time == TIMES[3]
    assert dup.feature_nodes == {("activity", "a1"), ("contact", "c1")}
    assert store.affected_leads([dup], TIMES[5]) == set()
    replay = type(dup)(dup.event, True, dup.feature_nodes, dup.edge_nodes)   # rescore after a crash
    assert store.affected_leads([replay], TIMES[5]) == {"c1"}
