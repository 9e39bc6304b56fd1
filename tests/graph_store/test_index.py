"""The compact index's own structures: every shortcut is checked against the plain way.

* the batch fast path (``GraphState.apply_batch``) against one ``apply`` per record;
* the index rebuilt at open (bulk load) against the index built incrementally;
* the numpy copies of the columns (synced in bulk at each read) across interleaved writes;
* the ring-diff shortcut against the explicit peer-set comparison;
* stores written in format 1 (JSON values) still open and read the same.

The first three also run on worlds with deletes (tombstone rows in the chains).
"""
from __future__ import annotations

import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rocksdict import Options, Rdict

from leadpulse.graph_store.memory import MemoryGraphStore
from leadpulse.graph_store.options import GraphStoreOptions
from leadpulse.graph_store.records import decode_attrs, to_record
from leadpulse.graph_store.rings import Rings
from leadpulse.graph_store.rocks import RocksDBGraphStore
from leadpulse.graph_store.state import GraphState
from leadpulse.schemas.types import EDGE_TYPES, NODE_TYPES
from tests.graph_store.reference import Reference, as_sets
from tests.graph_store.worlds import TIMES, histories, query_time, random_events

OPTS = GraphStoreOptions(industry_k=2, similar_k=2)
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
QUERY_TIMES = [TIMES[0] - 1, TIMES[3], TIMES[7], TIMES[-1] + 1]


def _reads(store, t: int, seeds: list[str]) -> tuple:
    """Everything a store answers at ``t``, in comparable form."""
    snap = as_sets(store.snapshot(t))
    out = [snap, store.node_ids("contact", t), store.time_span(), store.positions()]
    for kind in NODE_TYPES:
        for nid in sorted(snap[0][kind])[:5]:
            out.append(store.node(kind, nid, t))
    for etype in EDGE_TYPES:
        for nid in sorted(snap[0][etype[0]])[:4]:
            out.append(store.neighbors(etype, nid, t))
    for cid in snap[0]["contact"]:
        out.append(store.timeline(cid, t))
    for cid in snap[0]["company"]:
        out.append(store.company_orders(cid, t))
    g = store.subgraph(seeds, t, hops=2)
    out.append((as_sets(g), [g.node_ids["contact"][i] for i in g.seeds]))
    return tuple(out)


@PROPS
@given(events=histories(max_size=40), seed=st.integers(0, 2**16))
def test_fast_path_equals_one_apply_per_record(events, seed):
    _fast_path_equals_one_apply_per_record(events, seed)


@PROPS
@given(events=histories(max_size=40, with_deletes=True), seed=st.integers(0, 2**16))
def test_fast_path_equals_one_apply_per_record_with_deletes(events, seed):
    _fast_path_equals_one_apply_per_record(events, seed)


def _fast_path_equals_one_apply_per_record(events, seed):
    rng = random.Random(seed)
    records = [to_record(e) for e in events]
    batched, single = GraphState(2, 2), GraphState(2, 2)
    got, want = [], []
    i = 0
    while i < len(records):
        n = rng.randint(1, 6)
        got += batched.apply_batch(records[i:i + n], 1)
        want += [single.apply(r, -1 if r.kind == "company" else 1) for r in records[i:i + n]]
        i += n
    assert [tuple(c) for c in got] == [tuple(c) for c in want]
    a, b = MemoryGraphStore(OPTS), MemoryGraphStore(OPTS)
    a._state, b._state = batched, single
    for t in QUERY_TIMES:
        assert _reads(a, t, ["ct0", "ct1", "ct3"]) == _reads(b, t, ["ct0", "ct1", "ct3"])


@PROPS
@given(events=histories(max_size=40), parts=st.lists(st.integers(0, 2), min_size=40, max_size=40),
       more=histories(max_size=10))
def test_index_rebuilt_at_open_equals_index_built_incrementally(tmp_path_factory, events, parts, more):
    _index_rebuilt_at_open_equals_index_built_incrementally(tmp_path_factory, events, parts, more)


@PROPS
@given(events=histories(max_size=40, with_deletes=True), parts=st.lists(st.integers(0, 2), min_size=40, max_size=40),
       more=histories(max_size=10, with_deletes=True))
def test_index_with_deletes_rebuilt_at_open_equals_index_built_incrementally(tmp_path_factory, events, parts, more):
    _index_rebuilt_at_open_equals_index_built_incrementally(tmp_path_factory, events, parts, more)


def _index_rebuilt_at_open_equals_index_built_incrementally(tmp_path_factory, events, parts, more):
    path = tmp_path_factory.mktemp("reopen")
    store = RocksDBGraphStore(path, OPTS)
    for k, (ev, p) in enumerate(zip(events, parts)):
        store.apply([ev], {("crm.x", p): k + 1}, partition=p)
    seeds = ["ct0", "ct2", "ct5", "nobody"]
    before = [_reads(store, t, seeds) for t in QUERY_TIMES]
    store.close()
    store = RocksDBGraphStore(path, OPTS)
    assert [_reads(store, t, seeds) for t in QUERY_TIMES] == before
    twin = RocksDBGraphStore(tmp_path_factory.mktemp("twin"), OPTS)   # loaded, then written to
    for k, (ev, p) in enumerate(zip(events, parts)):
        twin.apply([ev], {("crm.x", p): k + 1}, partition=p)
    effects = store.apply(more, partition=1)
    assert [(e.changed, e.feature_nodes, e.edge_nodes) for e in effects] == \
        [(e.changed, e.feature_nodes, e.edge_nodes) for e in twin.apply(more, partition=1)]
    assert [_reads(store, t, seeds) for t in QUERY_TIMES] == [_reads(twin, t, seeds) for t in QUERY_TIMES]
    store.close()
    twin.close()


@PROPS
@given(events=histories(min_size=5, max_size=40), seed=st.integers(0, 2**16), t=query_time)
def test_column_copies_follow_interleaved_writes(events, seed, t):
    """Reads between batches (late versions rewrite ``ve``/``vp``/``latest``/``first`` in place)."""
    _column_copies_follow_interleaved_writes(events, seed, t)


@PROPS
@given(events=histories(min_size=5, max_size=40, with_deletes=True), seed=st.integers(0, 2**16), t=query_time)
def test_column_copies_and_tombstone_masks_follow_interleaved_writes(events, seed, t):
    _column_copies_follow_interleaved_writes(events, seed, t)


def _column_copies_follow_interleaved_writes(events, seed, t):
    rng = random.Random(seed)
    store = MemoryGraphStore(OPTS)
    applied = []
    i = 0
    while i < len(events):
        n = rng.randint(1, 5)
        store.apply(events[i:i + n])
        applied += events[i:i + n]
        i += n
        ref = Reference(applied, industry_k=2, similar_k=2)
        nodes, _ = ref.snapshot(t)
        assert as_sets(store.snapshot(t)) == ref.snapshot(t)
        seeds = sorted(nodes["contact"])[:2]
        assert as_sets(store.subgraph(seeds, t)) == ref.subgraph(seeds, t)


def _explicit_diff(rings: Rings, k: int, with_x: list, without_x: list, cid: str) -> set[str]:
    """The peer-set comparison of every member near x, done the long way."""
    out = set(rings.ring_peers(with_x, cid, k)) if with_x else set()
    for _, c in with_x:
        if c == cid:
            continue
        p1 = set(rings.ring_peers(with_x, c, k))
        p2 = set(rings.ring_peers(without_x, c, k))
        p1.discard(cid)
        if p1 != p2:
            out.add(c)
            out |= p1 ^ p2
    return out


def _random_rings(seed: int, per_size: int):
    """(rings, k, ring, x, ring without x) for random rings of every size up to k + 29."""
    rng = random.Random(seed)
    for k in (2, 4, 6, 8):
        rings = Rings({}, (k, k))
        for n in range(1, k + 30):
            for _ in range(per_size):
                ring = sorted(rings.key(f"c{i}") for i in rng.sample(range(100_000), n))
                x = rng.choice(ring)[1]
                yield rings, k, ring, x, [m for m in ring if m[1] != x]


def test_ring_diff_shortcut_equals_explicit_comparison():
    for rings, k, ring, x, without in _random_rings(1, 40):
        assert rings._diff(0, ring, without, x) == _explicit_diff(rings, k, ring, without, x), (k, len(ring))


def test_window_peers_equal_the_ring_diff_with_and_without_the_company():
    """``Rings.window_peers`` reads in place what ``_diff`` computes from copies (the ring may
    hold the company or not), and declines small rings."""
    for rings, k, ring, x, without in _random_rings(2, 30):
        for offered in (ring, without):
            got = rings.window_peers(0, offered, x)
            if len(ring) <= k + 2:
                assert got is None
            else:
                assert got == rings._diff(0, ring, without, x), (k, len(ring))


def test_format_1_store_with_json_values_opens_and_upgrades(tmp_path):
    events = random_events(1500, seed=11)
    store = RocksDBGraphStore(tmp_path, OPTS)
    store.apply(events[:1000], {("crm.all", 0): 1000})
    t = TIMES[-1] + 100 * 86_400_000_000
    store.close()
    # rewrite it as the format-1 code wrote it: JSON values
    opts = Options(raw_mode=True)
    opts.set_allow_concurrent_memtable_write(False)   # the store's vector memtable requires it
    db = Rdict(str(tmp_path), opts)
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    for key, value in list(db.items()):
        if key[:2] == b"RV" or (key[:1] == b"P" and key[5:6] == b"V"):
            assert value[0] == 0x80
            db[key] = encoder.encode(decode_attrs(value)).encode()
    db[b"Mformat"] = b"1"
    db.close()
    twin = MemoryGraphStore(OPTS)
    twin.apply(events[:1000])
    store = RocksDBGraphStore(tmp_path, OPTS)
    assert as_sets(store.snapshot(t)) == as_sets(twin.snapshot(t))
    store.apply(events[1000:], {("crm.all", 0): 1500})   # new versions are pickles
    twin.apply(events[1000:])
    store.close()
    store = RocksDBGraphStore(tmp_path, OPTS)
    assert as_sets(store.snapshot(t)) == as_sets(twin.snapshot(t))
    assert store.db.get(b"Mformat") == b"2" and store.positions() == {("crm.all", 0): 1500}
    store.close()


def test_effects_of_the_fast_path_name_activity_and_contact():
    store = MemoryGraphStore()
    ev = random_events(50, seed=2)
    effects = store.apply(ev)
    for e, rec in zip(effects, map(to_record, ev)):
        if rec.kind == "activity" and e.changed and "opportunity_id" not in rec.attrs:
            both = {("activity", rec.id), ("contact", rec.attrs["contact_id"])}
            assert e.feature_nodes == both and e.edge_nodes == both and e.time == rec.time


def test_effects_equal_constructed_ones():
    from dataclasses import fields

    from leadpulse.graph_store.base import ApplyEffect
    store = MemoryGraphStore()
    events = random_events(40, seed=4)
    effects = store.apply(events + events[:5])
    assert [f.name for f in fields(ApplyEffect)] == ["event", "changed", "feature_nodes", "edge_nodes", "time"]
    for e in effects:
        built = ApplyEffect(e.event, e.changed, e.feature_nodes, e.edge_nodes, e.time)
        assert e == built and repr(e) == repr(built) and vars(e) == vars(built)
    assert [e.changed for e in effects[-5:]] == [False] * 5
